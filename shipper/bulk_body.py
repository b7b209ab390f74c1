"""The NDJSON body of a bulk request: per document a ``create`` action line, then the document itself."""

from __future__ import annotations

import orjson

from shipper.feed import PendingDoc


def bulk_body(batch: list[PendingDoc]) -> bytes:
    """The NDJSON bulk body: a ``create`` action line and the document per document, joined once."""
    heads: dict[str, bytes] = {}  # index -> the action line up to the id (a batch has one index, or a few)
    parts: list[bytes] = []
    append = parts.append
    for doc in batch:
        head = heads.get(doc.index)
        if head is None:
            head = heads[doc.index] = b'{"create":{"_index":' + orjson.dumps(doc.index) + b',"_id":"'
        append(head)
        append(doc.doc_id.encode())
        if doc.pipeline:
            append(b'","pipeline":' + orjson.dumps(doc.pipeline) + b"}}\n")
        else:
            append(b'"}}\n')
        append(doc.body)
        append(b"\n")
    return b"".join(parts)
