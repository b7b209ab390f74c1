"""The stand-in's dynamic mappings (tests/es_mappings.py) through the real client: the refusals of Elasticsearch 8
when a document does not fit what the index learned, compared with the answers recorded in tests/fixtures/es8."""

from __future__ import annotations

import itertools
from typing import Any

from elasticsearch import Elasticsearch

from tests.es_standin import EsStandin
from tests.test_es_standin import assert_like_recorded

STREAM = "logs-docker-default"
_IDS = itertools.count()


def create(client: Elasticsearch, index: str, *docs: dict[str, Any]) -> list[dict[str, Any]]:
    """Each document in a bulk of its own (the order matters); the items."""
    items: list[dict[str, Any]] = []
    for doc in docs:
        answer = client.bulk(operations=[{"create": {"_index": index, "_id": f"id-{next(_IDS)}"}},
                                         {"@timestamp": "2024-05-01T12:00:00Z", **doc}])
        items.append(answer["items"][0])
    return items


def statuses(items: list[dict[str, Any]]) -> list[int]:
    return [next(iter(item.values()))["status"] for item in items]


def error(item: dict[str, Any]) -> dict[str, Any]:
    failure: dict[str, Any] = next(iter(item.values()))["error"]
    return failure


def nested(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        doc = {"o": doc}
    return doc


def test_a_long_field_refuses_text_like_es8(es: EsStandin) -> None:
    with Elasticsearch(es.url, max_retries=0) as client:
        client.bulk(operations=[{"create": {"_index": STREAM, "_id": "1"}},
                                {"@timestamp": "2024-05-01T12:00:00Z", "http": {"status": 200}}])
        answer = client.bulk(operations=[{"create": {"_index": STREAM, "_id": "2"}},
                                         {"@timestamp": "2024-05-01T12:00:00Z", "http": {"status": "OK"}}])
    assert_like_recorded("bulk_item_400_field_type_conflict", answer["items"][0], answer.meta.status)
    failure = error(answer["items"][0])
    assert failure["reason"].endswith("failed to parse field [http.status] of type [long] in document with id '2'. "
                                      "Preview of field's value: 'OK'")
    assert failure["caused_by"] == {"type": "illegal_argument_exception", "reason": 'For input string: "OK"'}
    assert [d.id for d in es.stored(STREAM)] == ["1"]


def test_numbers_that_fit_are_coerced_and_objects_or_huge_integers_do_not_fit(es: EsStandin) -> None:
    with Elasticsearch(es.url, max_retries=0) as client:
        items = create(client, STREAM, {"n": 1}, {"n": "42"}, {"n": 2.5}, {"n": [3, 4]}, {"n": None},
                       {"n": {"a": 1}}, {"n": 2**64}, {"n": -(2**63)})
    assert statuses(items) == [201, 201, 201, 201, 201, 400, 400, 201]
    assert error(items[5])["caused_by"]["type"] == "illegal_state_exception"
    assert "Preview of field's value: '{a=1}'" in error(items[5])["reason"]
    assert error(items[6])["caused_by"]["reason"] == f"Value [{2**64}] is out of range for a long"
    assert f"Preview of field's value: '{2**64}'" in error(items[6])["reason"]  # read exactly, not as a float


def test_an_object_field_refuses_a_concrete_value_like_es8(es: EsStandin) -> None:
    with Elasticsearch(es.url, max_retries=0) as client:
        items = create(client, STREAM, {"user": {"id": 7}}, {"user": "alice"}, {"user": {"id": 8, "name": "b"}})
    assert statuses(items) == [201, 400, 201]
    assert_like_recorded("bulk_item_400_object_concrete_value", items[1], 200)
    assert error(items[1])["reason"].endswith("object mapping for [user] tried to parse field [user] as object, "
                                              "but found a concrete value")


def test_dotted_names_are_object_paths(es: EsStandin) -> None:
    with Elasticsearch(es.url, max_retries=0) as client:
        items = create(client, STREAM, {"log.level": "info"}, {"log": {"level": "warn"}}, {"log": "flat"},
                       {"a": 1}, {"a.b": 2})
    assert statuses(items) == [201, 201, 400, 201, 400]
    assert "Could not dynamically add mapping for field [a.b]. Existing mapping for [a] must be of type object " \
           "but found [long]." in error(items[4])["reason"]


def test_the_total_fields_limit_like_es8() -> None:
    with EsStandin(total_fields_limit=50) as es, Elasticsearch(es.url, max_retries=0) as client:
        # Plain index: a string is text plus a .keyword multi-field, two fields.
        items = create(client, "plain", {f"k{i}": "v" for i in range(20)}, {f"j{i}": "v" for i in range(6)},
                       {f"k{i}": "again" for i in range(20)}, {"n": 1})
        assert statuses(items) == [201, 400, 201, 201]
        assert_like_recorded("bulk_item_400_total_fields_limit", items[1], 200)
        assert "Limit of total fields [50] has been exceeded while adding new fields [12]" in error(items[1])["reason"]
        # A logs-*-* data stream maps strings as keyword: one field each (and @timestamp is already mapped).
        assert statuses(create(client, STREAM, {f"k{i}": "v" for i in range(49)})) == [201]
        assert statuses(create(client, STREAM, {"one_more": 1})) == [400]


def test_the_depth_limit_like_es8(es: EsStandin) -> None:
    with Elasticsearch(es.url, max_retries=0) as client:
        items = create(client, STREAM, nested(19), nested(20))
    assert statuses(items) == [201, 400]
    path = ".".join(["o"] * 20)
    assert error(items[1]) == {"type": "illegal_argument_exception",
                               "reason": f"Limit of mapping depth [20] has been exceeded due to object field [{path}]"}


def test_mappings_are_per_index_and_a_refused_document_teaches_nothing(es: EsStandin) -> None:
    with Elasticsearch(es.url, max_retries=0) as client:
        items = create(client, STREAM, {"n": 1}, {"n": "x", "fresh": "text"}, {"fresh": 5})
        assert statuses(items) == [201, 400, 201]  # "fresh" was not mapped by the refused document
        assert statuses(create(client, "logs-other-default", {"n": "x"})) == [201]
        es.rollover(STREAM)  # a new backing index starts from the template
        assert statuses(create(client, STREAM, {"n": "x"})) == [201]
