"""Dead letters: a document Elasticsearch refused for good, wrapped once for the dead-letter index.

A dead letter carries the original's container and end position, so that when it is stored (or given up on) the
original is finished too and the container's acknowledgement moves on. A dead letter is never wrapped again: if
Elasticsearch refuses it as well it is counted and dropped, so a refusal loop cannot grow a document (each wrap
used to double its size: 570 MB after 24 rounds).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson

from shipper.feed import PendingDoc


@dataclass
class DeadLetter(PendingDoc):
    """A wrapped refused document, on its way to the dead-letter index."""


def wrap(doc: PendingDoc, dead_letter_index: str, reason: str, detail: str) -> DeadLetter:
    """The dead letter of ``doc``: when and why it was refused, the original's index and body (as text)."""
    error = {"reason": reason, "detail": detail} if detail else {"reason": reason}
    body = orjson.dumps({"@timestamp": _now(), "error": error, "original": doc.body.decode("utf-8", "replace"),
                         "index": doc.index})
    return DeadLetter(doc.container_id, doc.end, doc.doc_id, dead_letter_index, body, attempts=0)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
