"""BulkShipper: documents for one Elasticsearch output, sent in bulk requests, retried until accepted.

Containers with the same output options share one BulkShipper (one client, shared bulk requests). A document is
finished when Elasticsearch created it (201), already had it (409: our ids are deterministic, so this is a
retry or a replay), or refused it for good (a 4xx such as a mapping error: counted, logged once per reason,
optionally written to the dead-letter index). Everything else (429, 5xx, timeouts, refused connections,
401/403) is retried with exponential back-off and jitter; the queue is bounded, and while it is full the feeds
simply stop fetching from the local store, which keeps every line.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout, TlsError, TransportError
from elasticsearch import ApiError, AsyncElasticsearch

from shipper.feed import PendingDoc
from supervisor.logopts import without_credentials

log = logging.getLogger("elp.shipper")

RETRYABLE_ITEM = frozenset({429, 500, 502, 503, 504})
QUEUE_MAX_BYTES = 64 << 20
NDJSON = "application/vnd.elasticsearch+x-ndjson; compatible-with=8"
ACCEPT = "application/vnd.elasticsearch+json; compatible-with=8"


class BulkShipper:
    def __init__(self, name: str, client: AsyncElasticsearch, options: Mapping[str, Any],
                 finished: Callable[[PendingDoc], None]) -> None:
        self.name = name
        self.client = client
        self.finished = finished
        self.max_docs: int = options["bulk_max_size"]
        self.max_bytes: int = options["bulk_max_bytes"]
        self.flush_interval: float = options["flush_interval"]
        self.level: int = options["compression_level"]
        self.backoff_init: float = options["backoff_init"]
        self.backoff_max: float = options["backoff_max"]
        self.max_retries: int = options["max_retries"]
        self.dead_letter_index: str | None = options["dead_letter_index"]
        self.queue: deque[PendingDoc] = deque()
        self.queued_bytes = 0
        self.wakeup = asyncio.Event()
        self.counters: Counter[str] = Counter()
        self.failed_reasons: Counter[str] = Counter()
        self.reachable: bool | None = None
        self.last_error = ""
        self.in_flight = 0
        self.task: asyncio.Task[None] | None = None

    @property
    def full(self) -> bool:
        return self.queued_bytes >= QUEUE_MAX_BYTES

    def add(self, docs: list[PendingDoc]) -> None:
        self.queue.extend(docs)
        self.queued_bytes += sum(len(d.body) for d in docs)
        self.wakeup.set()

    def start(self) -> None:
        self.task = asyncio.create_task(self.run())

    async def run(self) -> None:
        while True:
            if not self.queue:
                self.wakeup.clear()
                await self.wakeup.wait()
            # Give a partial bulk the flush interval to fill up, unless it is already full.
            deadline = time.monotonic() + self.flush_interval
            while len(self.queue) < self.max_docs and self.queued_bytes < self.max_bytes:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.wakeup.clear()
                try:
                    await asyncio.wait_for(self.wakeup.wait(), left)
                except TimeoutError:
                    break
            batch = self._take()
            await self._deliver(batch)

    def _take(self) -> list[PendingDoc]:
        batch: list[PendingDoc] = []
        size = 0
        while self.queue and len(batch) < self.max_docs:
            if batch and size + len(self.queue[0].body) > self.max_bytes:
                break
            doc = self.queue.popleft()
            size += len(doc.body)
            batch.append(doc)
        self.queued_bytes -= size
        return batch

    async def _deliver(self, batch: list[PendingDoc]) -> None:
        """Send until every document of ``batch`` is finished; back off between failed attempts."""
        delay = self.backoff_init
        self.in_flight = len(batch)
        while batch:
            retry = await self._send(batch)
            if retry and self.max_retries >= 0:
                retry = self._give_up_on_exhausted(retry)
            batch = retry
            if batch:
                self.counters["retried_total"] += len(batch)
                await asyncio.sleep(delay * (0.5 + random.random()))  # jitter: not every shipper at once
                delay = min(self.backoff_max, delay * 2)
        self.in_flight = 0

    def _give_up_on_exhausted(self, docs: list[PendingDoc]) -> list[PendingDoc]:
        keep = []
        for doc in docs:
            doc.attempts += 1
            if doc.attempts > self.max_retries:
                self._fail(doc, "retries exhausted (max_retries)")
            else:
                keep.append(doc)
        return keep

    async def _send(self, batch: list[PendingDoc]) -> list[PendingDoc]:
        """One bulk request; returns the documents to try again."""
        if len(batch) > 1 and sum(len(d.body) for d in batch) > self.max_bytes:
            half = len(batch) // 2
            return await self._send(batch[:half]) + await self._send(batch[half:])
        body = self._body(batch)
        headers = {"content-type": NDJSON, "accept": ACCEPT}
        if self.level:
            body = gzip.compress(body, self.level)
            headers["content-encoding"] = "gzip"
        try:
            resp = await self.client.perform_request("PUT", "/_bulk", headers=headers, body=body)
        except ApiError as exc:
            if exc.meta.status == 413:
                if len(batch) == 1:
                    self._fail(batch[0], "413 document larger than http.max_content_length")
                    return []
                half = len(batch) // 2
                self.counters["split_total"] += 1
                return await self._send(batch[:half]) + await self._send(batch[half:])
            self._unreachable(f"HTTP {exc.meta.status} {_reason(exc)}")
            return batch
        except (TransportConnectionError, ConnectionTimeout, TransportError) as exc:
            self._unreachable(_transport_error(exc))
            return batch
        self._reachable()
        return self._results(batch, resp.body)

    def _body(self, batch: list[PendingDoc]) -> bytes:
        out = bytearray()
        for doc in batch:
            out += b'{"create":{"_index":' + orjson.dumps(doc.index) + b',"_id":"' + doc.doc_id.encode() + b'"'
            if doc.pipeline:
                out += b',"pipeline":' + orjson.dumps(doc.pipeline)
            out += b"}}\n"
            out += doc.body
            out += b"\n"
        return bytes(out)

    def _results(self, batch: list[PendingDoc], body: Any) -> list[PendingDoc]:
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list) or len(items) != len(batch):
            self._unreachable("bulk answer without one item per document")
            return batch
        retry = []
        for doc, item in zip(batch, items, strict=True):
            result = next(iter(item.values())) if isinstance(item, dict) and item else {}
            status = result.get("status", 0) if isinstance(result, dict) else 0
            if status in (200, 201):
                self.counters["shipped_total"] += 1
                self.finished(doc)
            elif status == 409:
                self.counters["duplicates_total"] += 1
                self.finished(doc)
            elif status in RETRYABLE_ITEM:
                retry.append(doc)
            else:
                error = result.get("error", {}) if isinstance(result, dict) else {}
                reason = f"{status} {error.get('type', 'error')}" if isinstance(error, dict) else str(status)
                self._fail(doc, reason, error)
        return retry

    def _fail(self, doc: PendingDoc, reason: str, error: Any = None) -> None:
        """A document Elasticsearch will never take: count it, say so once per reason, dead-letter it."""
        self.counters["failed_total"] += 1
        self.failed_reasons[reason] += 1
        if self.failed_reasons[reason] == 1:
            detail = _short(str(error.get("reason", ""))) if isinstance(error, dict) else ""
            log.error("%s: Elasticsearch refused a document of container %s (%s%s); later ones with this reason "
                      "are only counted", self.name, doc.container_id[:12], reason, f": {detail}" if detail else "")
        if self.dead_letter_index:
            wrapped = orjson.dumps({"@timestamp": _now(), "error": {"reason": reason},
                                    "original": doc.body.decode("utf-8", "replace"), "index": doc.index})
            self.queue.append(PendingDoc(doc.container_id, doc.end, doc.doc_id, self.dead_letter_index, wrapped,
                                         attempts=0))
            self.counters["dead_lettered_total"] += 1
            return
        self.finished(doc)

    def _unreachable(self, why: str) -> None:
        self.counters["request_errors_total"] += 1
        if self.reachable is not False or why != self.last_error:
            log.error("%s: cannot deliver (%s); retrying with back-off, lines stay in the local store", self.name, why)
        self.reachable = False
        self.last_error = why

    def _reachable(self) -> None:
        if self.reachable is False:
            log.info("%s: delivering again", self.name)
        self.reachable = True
        self.last_error = ""


def _reason(exc: ApiError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("type", ""))
    return ""


def _transport_error(exc: TransportError) -> str:
    """What went wrong, for the log: elastic-transport's ``str()`` is only "TLS error" or "Connection error"; the
    cause (e.g. "certificate verify failed: unable to get local issuer certificate") is in ``message``."""
    detail = exc.message if isinstance(exc.message, str) and exc.message else str(exc)
    text = f"{type(exc).__name__}: {_short(without_credentials(detail), 400)}"
    if isinstance(exc, TlsError) and "CERTIFICATE_VERIFY_FAILED" in detail:
        text += ("; the server's certificate is not trusted: give its CA in log-opt 'ssl.certificate_authorities' "
                 "and connect by a name the certificate holds")
    return text


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
