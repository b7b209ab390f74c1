"""Reading a bulk answer: one verdict per document, whatever Elasticsearch (or something posing as it) sent.

Elasticsearch answers ``{"errors": .., "items": [{"create": {"_id", "status", "error"?}}, ...]}`` with one item per
action, in request order. A buggy or hostile server may send anything else: items out of order, too few or too
many, a ``status`` that is missing or not an integer, an error ``type`` of hundreds of kB. None of that may raise,
lose a line or grow memory: an answer that cannot be matched to the request is a bad answer (the batch is sent
again: ``create`` is idempotent with our ids), an item that makes no sense is a bad item (that document is sent
again), and every text taken from an answer is cut short before it is logged, counted or stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from shipper.feed import PendingDoc

RETRYABLE_ITEM = frozenset({429, 500, 502, 503, 504})
MAX_TYPE = 80  # characters of an error type kept in a reason (real ones are < 60)
MAX_DETAIL = 200  # characters of an error reason kept for the log and the dead letter


class Verdict(Enum):
    CREATED = "created"  # 200/201
    DUPLICATE = "duplicate"  # 409: our ids are deterministic, so a retry or a replay
    RETRY = "retry"  # 429/5xx: try again later
    CONFIG = "config"  # 401/403, or 404 index_not_found: an admin must fix it; the line waits
    REFUSED = "refused"  # any other 4xx/5xx: never accepted (mapping error...)
    BAD = "bad"  # an item that is not an answer: sent again


@dataclass(frozen=True)
class ItemResult:
    verdict: Verdict
    reason: str = ""  # "403 security_exception": bounded, for counters and logs
    detail: str = ""  # the error's reason text, bounded


CREATED = ItemResult(Verdict.CREATED)  # frozen: one shared instance for every created document


class BadAnswer(Exception):
    """The answer as a whole cannot be matched to the request (the message says why, briefly)."""


def read_answer(batch: Sequence[PendingDoc], body: Any) -> tuple[list[ItemResult], bool]:
    """One ``ItemResult`` per document of ``batch``, in its order; the flag says the items came out of order.

    Raises ``BadAnswer`` when there is no item list, the count differs, or the ``_id``s do not match the request.
    """
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise BadAnswer("a bulk answer without an item list")
    if len(items) != len(batch):
        raise BadAnswer(f"a bulk answer with {len(items)} items for {len(batch)} documents")
    if _all_created_in_order(batch, items):
        return [CREATED] * len(batch), False
    results = [_result(item) for item in items]
    ids = [_item_id(item) for item in items]
    if all(got == doc.doc_id for got, doc in zip(ids, batch, strict=True)):
        return results, False
    # Out of order: match by _id, when every id is there exactly once.
    by_id = {got: result for got, result in zip(ids, results, strict=True) if got is not None}
    if len(by_id) != len(batch) or any(doc.doc_id not in by_id for doc in batch):
        raise BadAnswer("a bulk answer whose item ids do not match the documents sent")
    return [by_id[doc.doc_id] for doc in batch], True


def _all_created_in_order(batch: Sequence[PendingDoc], items: list[Any]) -> bool:
    """The usual answer, checked in one tight pass (the general one below was a tenth of the shipper's time): every
    item is ``{action: {"_id": <the document's id>, "status": 200|201, ...}}``, in request order."""
    for item, doc in zip(items, batch, strict=True):
        if type(item) is not dict or len(item) != 1:
            return False
        for inner in item.values():
            if type(inner) is not dict or inner.get("_id") != doc.doc_id:
                return False
            status = inner.get("status")
            if type(status) is not int or status not in (200, 201):  # not bool, not 200.0: the general path judges
                return False
    return True


def _item_id(item: Any) -> str | None:
    result = _inner(item)
    ident = result.get("_id") if result is not None else None
    return ident if isinstance(ident, str) else None


def _inner(item: Any) -> dict[str, Any] | None:
    if isinstance(item, dict) and len(item) == 1:
        inner = next(iter(item.values()))
        if isinstance(inner, dict):
            return inner
    return None


def _result(item: Any) -> ItemResult:
    result = _inner(item)
    if result is None:
        return ItemResult(Verdict.BAD, "item is not {action: {...}}")
    status = result.get("status")
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        return ItemResult(Verdict.BAD, f"item status {_short(repr(status), 20)}")
    if status in (200, 201):
        return CREATED
    if status == 409:
        return ItemResult(Verdict.DUPLICATE)
    error = result.get("error")
    error_type = error.get("type") if isinstance(error, dict) else None
    kind = _clean(error_type, MAX_TYPE) if isinstance(error_type, str) else "error"
    reason = f"{status} {kind}"
    text = error.get("reason") if isinstance(error, dict) else None
    detail = _clean(text, MAX_DETAIL) if isinstance(text, str) else ""
    if status in RETRYABLE_ITEM:
        return ItemResult(Verdict.RETRY, reason, detail)
    if status in (401, 403) or (status == 404 and error_type == "index_not_found_exception"):
        return ItemResult(Verdict.CONFIG, reason, detail)
    return ItemResult(Verdict.REFUSED, reason, detail)


def _clean(text: str, limit: int) -> str:
    """At most ``limit`` printable characters (an answer may carry control characters or megabytes)."""
    cut = text[: limit + 1]
    printable = "".join(ch if ch.isprintable() else "?" for ch in cut)
    return _short(printable, limit)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
