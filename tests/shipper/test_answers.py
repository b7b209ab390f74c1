"""read_answer's one-pass check of the usual answer, and the general path behind it for everything else."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from shipper.answers import Verdict, read_answer
from shipper.bulk_body import bulk_body as _body
from shipper.feed import PendingDoc


def docs(n: int, pipeline: str | None = None) -> list[PendingDoc]:
    return [PendingDoc("c" * 64, (0, i + 1), f"id{i}", "logs-a" if i % 2 else "logs-b", b'{"n":%d}' % i, pipeline)
            for i in range(n)]


def item(doc_id: str, status: Any, op: str = "create") -> dict[str, Any]:
    return {op: {"_index": "logs-a", "_id": doc_id, "status": status}}


def test_all_created_in_order() -> None:
    batch = docs(3)
    results, reordered = read_answer(batch, {"errors": False, "items": [item(d.doc_id, 201) for d in batch]})
    assert [r.verdict for r in results] == [Verdict.CREATED] * 3 and not reordered


@pytest.mark.parametrize("status", [200.0, True, "201", None, 409, 429, 400])
def test_a_status_the_fast_path_does_not_take_is_judged_as_before(status: Any) -> None:
    batch = docs(3)
    items = [item(d.doc_id, 201) for d in batch]
    items[1] = item(batch[1].doc_id, status)
    results, _ = read_answer(batch, {"errors": True, "items": items})
    expected = {409: Verdict.DUPLICATE, 429: Verdict.RETRY, 400: Verdict.REFUSED}.get(status, Verdict.BAD)
    assert [r.verdict for r in results] == [Verdict.CREATED, expected, Verdict.CREATED]


def test_items_out_of_order_are_matched_by_id() -> None:
    batch = docs(3)
    items = [item(batch[2].doc_id, 409), item(batch[0].doc_id, 201), item(batch[1].doc_id, 201)]
    results, reordered = read_answer(batch, {"errors": False, "items": items})
    assert [r.verdict for r in results] == [Verdict.CREATED, Verdict.CREATED, Verdict.DUPLICATE] and reordered


@pytest.mark.parametrize("pipeline", [None, 'ingest "p"'])
def test_bulk_body_is_an_action_line_and_the_document_per_document(pipeline: str | None) -> None:
    batch = docs(4, pipeline)
    lines = _body(batch).split(b"\n")
    assert lines[-1] == b"" and len(lines) == 2 * len(batch) + 1
    for doc, action, source in zip(batch, lines[0::2], lines[1::2], strict=False):
        meta = {"_index": doc.index, "_id": doc.doc_id, **({"pipeline": pipeline} if pipeline else {})}
        assert orjson.loads(action) == {"create": meta}
        assert source == doc.body
