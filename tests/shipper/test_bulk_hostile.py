"""A buggy or hostile Elasticsearch never kills the bulk task, never grows memory, and every bad answer is counted.

Each case answers one bulk request with nonsense (``EsStandin.tamper_next`` / ``huge_answer_next``; the request
itself is carried out), then answers normally: every document must end up stored exactly once and finished.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psutil
import pytest

from shipper.bounded import MAX_ANSWER
from tests.es_standin import EsStandin, JsonObj
from tests.shipper.bulk_harness import INDEX, all_finished, make_docs, ship

N = 20



def each_item(change: Callable[[JsonObj], Any]) -> Callable[[JsonObj], JsonObj]:
    def tamper(answer: JsonObj) -> JsonObj:
        return {**answer, "items": [change(item) for item in answer["items"]]}
    return tamper


def with_status(value: Any) -> Callable[[JsonObj], JsonObj]:
    return each_item(lambda item: {"create": {**item["create"], "status": value}})


def without_status(item: JsonObj) -> JsonObj:
    return {"create": {k: v for k, v in item["create"].items() if k != "status"}}


BAD_ITEMS: dict[str, Callable[[JsonObj], Any]] = {
    "status is a string": with_status("201"),
    "status is a list": with_status([201]),
    "status is a bool": with_status(True),
    "status is out of range": with_status(99_999),
    "status is a float": with_status(201.0),
    "status beyond 64 bits": lambda a: json.dumps(with_status(2**70)(a)).encode(),  # parsed as a float
    "no status": each_item(without_status),
}
BAD_ANSWERS: dict[str, Callable[[JsonObj], Any]] = {
    "too few items": lambda a: {**a, "items": a["items"][:-1]},
    "too many items": lambda a: {**a, "items": a["items"] + a["items"][:1]},
    "no items": lambda a: {"errors": False},
    "items is an object": lambda a: {**a, "items": {"0": a["items"][0]}},
    "a list": lambda a: [a],
    "not JSON": lambda a: b"<html>502 Bad Gateway</html>",
    "ids that do not match": each_item(lambda item: {"create": {**item["create"], "_id": "someone-else"}}),
    "one id twice": lambda a: {**a, "items": [a["items"][0]] * len(a["items"])},
    "items are strings": each_item(lambda item: "created"),
    "items with two actions": each_item(lambda item: {"create": item["create"], "index": item["create"]}),
}


def is_line(i: int) -> Callable[[JsonObj], bool]:
    return lambda doc: doc.get("message") == f"line {i}"


def stored_once(es: EsStandin) -> None:
    messages = [d["message"] for d in es.docs(INDEX)]
    assert sorted(messages) == sorted(f"line {i}" for i in range(N))


@pytest.mark.parametrize("case", list(BAD_ITEMS))
def test_malformed_items_are_counted_and_sent_again(es: EsStandin, case: str) -> None:
    es.tamper_next(BAD_ITEMS[case])
    run = ship(es, make_docs(N), all_finished(N))
    assert run.bulk.counters["bad_items_total"] == N
    assert run.bulk.counters["duplicates_total"] == N  # the second try found them stored
    assert run.bulk.counters["failed_total"] == 0
    stored_once(es)


@pytest.mark.parametrize("case", list(BAD_ANSWERS))
def test_answers_that_do_not_match_the_request_are_counted_and_sent_again(es: EsStandin, case: str) -> None:
    es.tamper_next(BAD_ANSWERS[case])
    run = ship(es, make_docs(N), all_finished(N))
    assert run.bulk.counters["bad_answers_total"] == 1
    assert run.bulk.counters["shipped_total"] == 0 and run.bulk.counters["duplicates_total"] == N
    stored_once(es)


def test_items_out_of_order_are_matched_by_id(es: EsStandin) -> None:
    es.item_error(lambda d: d.get("message") == "line 0", status=400, error_type="document_parsing_exception")
    es.tamper_next(lambda a: {**a, "items": a["items"][::-1]})
    run = ship(es, make_docs(N), all_finished(N), dead_letter_index="dead-letters")
    (dead,) = es.docs("dead-letters")
    assert '"line 0"' in dead["original"]  # the refused line, not the one whose item came first
    assert run.bulk.counters["bad_answers_total"] == 1
    assert run.bulk.counters["shipped_total"] == N - 1 + 1  # N - 1 lines and the dead letter
    assert es.duplicates_rejected == 0  # nothing was sent twice


def test_a_huge_error_type_is_cut_short_everywhere(es: EsStandin) -> None:
    es.item_error(lambda d: d.get("message") == "line 1", status=400, error_type="x" * 200_000, reason="y" * 300_000)
    run = ship(es, make_docs(N), all_finished(N), dead_letter_index="dead-letters")
    ((reason, count),) = run.bulk.failed_reasons.items()
    assert count == 1 and len(reason) < 100 and reason.startswith("400 xxx")
    (dead,) = es.docs("dead-letters")
    assert len(dead["error"]["reason"]) < 100 and len(dead["error"]["detail"]) < 300


def test_distinct_refusal_reasons_are_bounded(es: EsStandin) -> None:
    for i in range(50):
        es.item_error(is_line(i), status=400, error_type=f"kind_{i}_exception")
    run = ship(es, make_docs(50), all_finished(50))
    assert len(run.bulk.failed_reasons) == 33  # 32 reasons, then "other"
    assert run.bulk.failed_reasons["other"] == 18
    assert run.bulk.counters["failed_total"] == 50


@pytest.mark.parametrize("declared", [False, True], ids=["streamed", "declared"])
def test_an_answer_of_hundreds_of_mb_is_not_read(es: EsStandin, declared: bool) -> None:
    me = psutil.Process()
    before = me.memory_info().rss
    es.huge_answer_next(300 << 20, declared=declared)
    run = ship(es, make_docs(N), all_finished(N), timeout=60)
    grown = me.memory_info().rss - before
    assert run.bulk.counters["bad_answers_total"] == 1
    assert grown < MAX_ANSWER + (48 << 20), f"RSS grew by {grown >> 20} MiB"
    stored_once(es)
