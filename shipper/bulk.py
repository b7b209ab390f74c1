"""BulkShipper: documents for one Elasticsearch output, sent in bulk requests, retried until accepted.

Containers with the same output options share one BulkShipper (one client, shared bulk requests). What happens to
a document, by Elasticsearch's answer (``shipper/answers.py`` reads it):

* 201 created, or 409 (our ids are deterministic, so this is a retry or a replay): done.
* 429 and 5xx items, a whole request refused (401, 403, 429, 5xx...), timeouts, connection errors, answers that
  make no sense: sent again with exponential back-off and jitter (given up after ``max_retries``, if set).
* 401/403 items (a missing privilege) and 404 ``index_not_found_exception`` items (auto-create denied): a
  configuration fault. The documents wait aside ("parked", with their own back-off) while the other documents of
  the output go on; never dropped, not counted against ``max_retries``; the fault is logged once until fixed.
* Any other refusal (a mapping error...): counted, logged once per reason, and written to the dead-letter index
  if one is set. A dead letter that is refused in turn is counted and dropped, never wrapped again.
* 413, or the connection closed while a large body was being sent (a server that does not answer 413) while the
  server still answers a probe: the request is split in halves. A single document too large waits, loudly.

The queue is bounded; while it is full the feeds stop fetching from the local store, which keeps every line.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout, SerializationError, TransportError
from elasticsearch import ApiError, AsyncElasticsearch

from shipper.answers import BadAnswer, Verdict, read_answer
from shipper.bounded import AnswerTooLarge
from shipper.bulk_body import bulk_body
from shipper.deadletter import DeadLetter, wrap
from shipper.feed import PendingDoc
from shipper.request_errors import api_reason, cause_of, closed_while_sending, transport_error

log = logging.getLogger("elp.shipper")

QUEUE_MAX_BYTES = 64 << 20
# Bulk requests in flight per output at once. With one, the shipper idled while Elasticsearch handled each request
# (a third of the time under P3, issue 15); our ids are deterministic and the acknowledgement waits for every
# document before it, so the order in which requests finish does not matter.
SENDERS = 2
MAX_REASONS = 32  # distinct refusal reasons counted one by one; later ones are counted as "other"
NDJSON = "application/vnd.elasticsearch+x-ndjson; compatible-with=8"
ACCEPT = "application/vnd.elasticsearch+json; compatible-with=8"


@dataclass
class Left:
    """Documents of a request that are not finished: to try again, and to wait for an admin (never given up)."""

    retry: list[PendingDoc] = field(default_factory=list)
    wait: list[PendingDoc] = field(default_factory=list)

    def __add__(self, other: Left) -> Left:
        return Left(self.retry + other.retry, self.wait + other.wait)


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
        self.config_fault = ""  # the reason documents wait for an admin, while they do
        # Documents refused for a configuration fault wait here, so that other containers of this output (other
        # indices, other privileges) keep shipping; they are tried again with their own back-off.
        self.parked: deque[PendingDoc] = deque()
        self.parked_bytes = 0
        self.park_delay = self.backoff_init
        self.park_until = 0.0
        self.in_flight = 0
        # Set when the output answers again after failing: the other senders cut their back-off short. Otherwise a
        # sender whose request failed last sleeps on (up to 1.5 x backoff_max) with the oldest documents, and the
        # acknowledgement, so the fetching (MAX_BACKLOG), waits for it: catch-up after an outage idled (issue 15).
        self.recovered = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self._logged_errors: set[str] = set()

    @property
    def full(self) -> bool:
        return self.queued_bytes + self.parked_bytes >= QUEUE_MAX_BYTES

    def add(self, docs: list[PendingDoc]) -> None:
        self.queue.extend(docs)
        self.queued_bytes += sum(len(d.body) for d in docs)
        self.wakeup.set()

    def start(self) -> None:
        self.task = asyncio.create_task(self.run())

    async def run(self) -> None:
        await asyncio.gather(*(self._sender() for _ in range(SENDERS)))

    async def _sender(self) -> None:
        while True:
            try:
                await self._next_bulk()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not stop the output for good: say so, pause, go on
                self._internal_error(exc, "the bulk loop")
                await asyncio.sleep(self.backoff_init)

    async def _next_bulk(self) -> None:
        self._unpark_if_due()
        if not self.queue:
            self.wakeup.clear()
            wait = max(0.0, self.park_until - time.monotonic()) if self.parked else None
            try:
                await asyncio.wait_for(self.wakeup.wait(), wait)
            except TimeoutError:
                pass
            self._unpark_if_due()
            if not self.queue:
                return
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
        if batch:  # another sender may have taken it while this one waited
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
        self.in_flight += len(batch)  # every sender's documents
        while batch:
            left = await self._attempt(batch)
            retry = left.retry
            if retry and self.max_retries >= 0:
                retry = self._give_up_on_exhausted(retry)
            self._park(left.wait)
            keep = {id(doc) for doc in retry}
            kept = [doc for doc in batch if id(doc) in keep]
            self.in_flight -= len(batch) - len(kept)
            batch = kept
            if batch:
                self.counters["retried_total"] += len(batch)
                await self._back_off(delay * (0.5 + random.random()))  # jitter: not every shipper at once
                delay = min(self.backoff_max, delay * 2)

    async def _back_off(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if the output answers again meanwhile (another sender's request passed)."""
        if self.reachable is not False:  # this request's own trouble (429 items...): the whole back-off
            await asyncio.sleep(seconds)
            return
        self.recovered.clear()
        try:
            await asyncio.wait_for(self.recovered.wait(), seconds)
        except TimeoutError:
            pass

    def _park(self, docs: list[PendingDoc]) -> None:
        if not docs:
            return
        if not self.parked:
            self.park_until = time.monotonic() + self.park_delay * (0.5 + random.random())
            self.park_delay = min(self.backoff_max, self.park_delay * 2)
        self.parked.extend(docs)
        self.parked_bytes += sum(len(d.body) for d in docs)

    def _unpark_if_due(self) -> None:
        """Parked documents go back to the front of the queue once their back-off is over."""
        if self.parked and time.monotonic() >= self.park_until:
            self.counters["retried_total"] += len(self.parked)
            self.queue.extendleft(reversed(self.parked))
            self.queued_bytes += self.parked_bytes
            self.parked.clear()
            self.parked_bytes = 0

    async def _attempt(self, batch: list[PendingDoc]) -> Left:
        try:
            return await self._send(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an answer nothing here expected: the documents wait, the output goes on
            self._internal_error(exc, "a bulk request")
            return Left(wait=batch)

    def _give_up_on_exhausted(self, docs: list[PendingDoc]) -> list[PendingDoc]:
        keep = []
        for doc in docs:
            doc.attempts += 1
            if doc.attempts > self.max_retries:
                self._fail(doc, "retries exhausted (max_retries)")
            else:
                keep.append(doc)
        return keep

    async def _send(self, batch: list[PendingDoc]) -> Left:
        """One bulk request (or two halves of it); returns the documents not finished."""
        if len(batch) > 1 and sum(len(d.body) for d in batch) > self.max_bytes:
            return await self._halves(batch)
        body = bulk_body(batch)
        headers = {"content-type": NDJSON, "accept": ACCEPT}
        if self.level:
            # In a worker thread: zlib releases the GIL, so the loop makes the next documents meanwhile (gzip was
            # a fifteenth of the shipper's time on the loop).
            body = await asyncio.get_running_loop().run_in_executor(None, gzip.compress, body, self.level)
            headers["content-encoding"] = "gzip"
        try:
            resp = await self.client.perform_request("PUT", "/_bulk", headers=headers, body=body)
        except ApiError as exc:
            if exc.meta.status == 413:
                if len(batch) == 1:
                    self._fail(batch[0], "413 document larger than http.max_content_length")
                    return Left()
                return await self._halves(batch)
            self._unreachable(f"HTTP {exc.meta.status} {api_reason(exc)}")
            return Left(retry=batch)
        except TransportConnectionError as exc:
            return await self._connection_failed(batch, exc, len(body))
        except SerializationError:
            # Not quoted: the text would vary (and re-log) with every answer of a server gone wrong.
            self._unreachable("a bulk answer that is not JSON", "bad_answers_total")
            return Left(retry=batch)
        except (ConnectionTimeout, TransportError) as exc:
            self._unreachable(transport_error(exc))
            return Left(retry=batch)
        return self._results(batch, resp.body)

    async def _halves(self, batch: list[PendingDoc]) -> Left:
        self.counters["split_total"] += 1
        half = len(batch) // 2
        return await self._send(batch[:half]) + await self._send(batch[half:])

    async def _connection_failed(self, batch: list[PendingDoc], exc: TransportConnectionError, size: int) -> Left:
        cause = cause_of(exc)
        if isinstance(cause, AnswerTooLarge):
            self._unreachable(f"a bulk answer too large to read ({cause})", "bad_answers_total")
            # A smaller request gets a smaller answer (when the server is honest about it).
            return await self._halves(batch) if len(batch) > 1 else Left(retry=batch)
        if closed_while_sending(exc) and await self._alive():
            # The server answers, yet dropped this request: what some servers do with a body over their limit
            # (instead of 413). Halves until they pass; one document alone that does not pass waits, loudly.
            self.counters["closed_requests_total"] += 1
            if len(batch) > 1:
                return await self._halves(batch)
            self._unreachable(f"the server closed the connection while receiving one document of {size} bytes; "
                              "if it limits request sizes (http.max_content_length, a proxy), raise the limit")
            return Left(retry=batch)
        self._unreachable(transport_error(exc))
        return Left(retry=batch)

    async def _alive(self) -> bool:
        """Does the server answer a tiny request right now (whatever the status)?"""
        try:
            await self.client.perform_request("HEAD", "/", headers={"accept": ACCEPT})
        except ApiError:
            return True
        except TransportError:
            return False
        return True

    def _results(self, batch: list[PendingDoc], body: Any) -> Left:
        try:
            results, reordered = read_answer(batch, body)
        except BadAnswer as exc:
            self._unreachable(f"Elasticsearch sent {exc}", "bad_answers_total")
            return Left(retry=batch)
        if reordered:
            self.counters["bad_answers_total"] += 1
            self._log_once("reordered", "%s: a bulk answer listed its items out of order; matched them by _id",
                           self.name)
        left = Left()
        fault = None
        created = 0
        finished = self.finished
        for doc, result in zip(batch, results, strict=True):
            if result.verdict is Verdict.CREATED:
                created += 1  # counted once per answer: a Counter update per document was measurable
                finished(doc)
            elif result.verdict is Verdict.DUPLICATE:
                self.counters["duplicates_total"] += 1
                self.finished(doc)
            elif result.verdict is Verdict.RETRY:
                left.retry.append(doc)
            elif result.verdict is Verdict.BAD:
                self.counters["bad_items_total"] += 1
                self._log_once("bad item", "%s: Elasticsearch answered a document with a malformed item (%s); "
                               "sending it again", self.name, result.reason)
                left.retry.append(doc)
            elif result.verdict is Verdict.CONFIG:
                self.counters["config_fault_docs_total"] += 1
                fault = fault or result
                left.wait.append(doc)
            else:
                self._fail(doc, result.reason, result.detail)
        self.counters["shipped_total"] += created
        if fault is not None:
            self._config_faulty(fault.reason, fault.detail)
        elif not (self.parked and self.config_fault):  # others ship while parked ones still wait: no news
            self._reachable()
        return left

    def _fail(self, doc: PendingDoc, reason: str, detail: str = "") -> None:
        """A document Elasticsearch will never take: count it, say so once per reason, dead-letter it."""
        if isinstance(doc, DeadLetter):
            self.counters["dead_letters_refused_total"] += 1
            if self._count_reason(f"dead letter: {reason}"):
                log.error("%s: Elasticsearch refused the dead letter of a document of container %s (%s%s); it is "
                          "dropped, and later ones with this reason are only counted", self.name,
                          doc.container_id[:12], reason, f": {detail}" if detail else "")
            self.finished(doc)  # finishes the original too: the container's acknowledgement moves on
            return
        self.counters["failed_total"] += 1
        if self._count_reason(reason):
            log.error("%s: Elasticsearch refused a document of container %s (%s%s); later ones with this reason "
                      "are only counted", self.name, doc.container_id[:12], reason, f": {detail}" if detail else "")
        if self.dead_letter_index:
            self.add([wrap(doc, self.dead_letter_index, reason, detail)])
            self.counters["dead_lettered_total"] += 1
            return
        self.finished(doc)

    def _count_reason(self, reason: str) -> bool:
        """Count a refusal by reason (at most ``MAX_REASONS`` of them, then "other"); True the first time."""
        if reason not in self.failed_reasons and len(self.failed_reasons) >= MAX_REASONS:
            reason = "other"
        self.failed_reasons[reason] += 1
        return self.failed_reasons[reason] == 1

    def _config_faulty(self, reason: str, detail: str) -> None:
        if self.config_fault != reason:
            log.error("%s: Elasticsearch does not let the plugin write (%s%s). This is a configuration fault (a "
                      "missing privilege, or an index that may not be created): the lines wait in the local store "
                      "and ship once it is fixed", self.name, reason, f": {detail}" if detail else "")
        self.config_fault = reason
        self.reachable = False
        self.last_error = f"configuration fault: {reason}"

    def _unreachable(self, why: str, counter: str = "request_errors_total") -> None:
        self.counters[counter] += 1
        if self.reachable is not False or why != self.last_error:
            log.error("%s: cannot deliver (%s); retrying with back-off, lines stay in the local store", self.name, why)
        self.reachable = False
        self.last_error = why

    def _reachable(self) -> None:
        if self.reachable is False:
            log.info("%s: delivering again", self.name)
            self.recovered.set()
        self.reachable = True
        self.last_error = ""
        self.config_fault = ""
        self.park_delay = self.backoff_init

    def _internal_error(self, exc: Exception, where: str) -> None:
        self.counters["internal_errors_total"] += 1
        key = f"{where}:{type(exc).__name__}"
        if key not in self._logged_errors and len(self._logged_errors) < MAX_REASONS:
            self._logged_errors.add(key)
            log.exception("%s: unexpected error in %s; the documents wait and are sent again (later ones of this "
                          "kind are only counted)", self.name, where)

    def _log_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._logged_errors:
            self._logged_errors.add(key)
            log.error(message, *args)
