"""An in-process stand-in for Elasticsearch, for tests that drive the real ``elasticsearch`` client.

It is a real HTTP(S) server on 127.0.0.1 (random free port) run by aiohttp on its own event loop in a
background thread, so synchronous tests start it, talk to it with the real sync or async client, change
its behaviour and read back what it stored, all without blocking::

    with EsStandin() as es:
        client = Elasticsearch(es.url, max_retries=0)
        helpers.bulk(client, [{"_op_type": "create", "_index": "logs-docker-default", "@timestamp": ...}])
        assert es.docs("logs-docker-default") == [...]
        es.fail_next(429)                 # the next request answers 429 es_rejected_execution_exception
        es.item_error(lambda doc: "boom" in doc.get("message", ""), status=400,
                      error_type="document_parsing_exception")
        es.down(); ...; es.up()           # refuse connections, keep documents, same port

Shapes mirrored (Elasticsearch 8.15 unless said otherwise; ``version="9.x"`` changes only the root
document and the accepted compatible-with versions):

* ``GET|HEAD /``: the root document (name, cluster_name, cluster_uuid, version{number, build_flavor,
  build_type, build_hash, build_date, build_snapshot, lucene_version, minimum_*_compatibility_version},
  tagline). Every answer carries ``X-Elastic-Product: Elasticsearch`` (the client refuses 2xx without it),
  except the 413, which ES sends from its HTTP layer with an empty body (elastic/elasticsearch#2902,
  #76705). A request whose Accept asks ``application/vnd.elasticsearch+json; compatible-with=N`` (the
  8.x client always does) gets that media type back; N outside {major, major-1} gets the real 400
  ``media_type_header_exception``.
* ``POST|PUT [/{index}]/_bulk``: ``create``/``index``/``delete`` (``update`` is refused per item),
  gzip/deflate request bodies, per-action and ``?pipeline=`` pipelines, auto-generated 20-char ids,
  item results and errors as ES writes them (``version_conflict_engine_exception`` 409 for a duplicate
  ``create``; ``index`` overwrites with result ``updated``). Names matching ``logs-*-*``, ``metrics-*-*``
  or ``synthetics-*-*`` (the built-in templates of ES 8.x) are data streams whose backing index is
  ``.ds-<name>-<yyyy.MM.dd>-000001``; only ``create`` may write them ("only write ops with an op_type of
  create are allowed in data streams", text from TransportBulkAction/BulkOperation). A document without
  ``@timestamp`` gets ``document_parsing_exception`` "[1:N] failed to parse: data stream timestamp field
  [@timestamp] is missing" -- BUT, as in ES >= 8.8 (elastic/elasticsearch#95971), ``logs-*-*`` has the
  default pipeline ``logs@default-pipeline`` that fills a missing ``@timestamp`` with the ingest time.
  It only runs when the request names no pipeline (a request pipeline replaces the default one), and
  ``logs_default_pipeline=False`` turns it off (as with a custom template without it).
* Security: ``401 security_exception`` with ES's messages ("missing authentication credentials for REST
  request [uri]", "unable to authenticate user [u] for REST request [uri]", "unable to authenticate with
  provided credentials and anonymous access is not allowed for this request" plus
  ``additional_unsuccessful_credentials`` for API keys) and the three ``WWW-Authenticate`` headers.
* Read-back: ``_refresh``, ``_count``, ``_search`` (match_all, term, terms, match, exists, range, bool;
  sort, size, from, track_total_hits), ``_cluster/health``; wildcard and comma-separated targets.

* Index privileges (security on): :meth:`EsStandin.deny_writes` takes the write privilege on some indices from a
  user or an API key; their bulk items get ES's per-item ``403 security_exception`` ("action
  [indices:data/write/bulk[s]] is unauthorized for user [u] ..."; ``[indices:admin/auto_create]`` while the
  target does not exist yet) inside a 200 answer. ``auto_create_index=False`` makes items for a missing target
  fail with ``404 index_not_found_exception`` "no such index [x] and [action.auto_create_index] is [false]"
  (elastic/elasticsearch#22488, #24048: only the items fail, not the request). Answers recorded from Elastic's
  docs and issues are kept in ``tests/fixtures/es8/`` and compared with these in tests/test_es_standin.py.
* ``too_large="close"``: a body over ``max_content_length`` makes the server drop the connection instead of
  answering 413 (as a server or proxy may do while the body is still coming in).
* ``delay_next``: as in ES, a request whose client hung up is still carried out (documents are stored at once,
  the answer comes ``seconds`` later, to nobody if the client left); ``cancel_on_hangup=True`` is the old model.
* A buggy or hostile server, for the shipper's defences: :meth:`EsStandin.tamper_next` carries a bulk out and
  answers what a function makes of the real answer; :meth:`EsStandin.huge_answer_next` streams an endless one.
* ``POST <stream>/_rollover`` (or :meth:`EsStandin.rollover`): a new write index ``.ds-<stream>-<date>-00000N``;
  as in ES, a ``create`` checks ``_id`` only in the write index, so an id stored before the rollover is stored
  again (reference/current/indices-rollover-index.html for the answer's fields).

* Dynamic mappings (:class:`tests.es_mappings.DynamicMapping`, one per write index): a field's type comes from
  its first value; a later document that does not fit, or that passes ``total_fields_limit`` (1000) or
  ``depth_limit`` (20), fails per item with ES 8's 400 (``document_parsing_exception``; recorded answers in
  ``tests/fixtures/es8/``).

Not modelled: explicit mappings and date detection (tests/es_mappings.py says what is), routing, versioning
parameters, roles (a principal may write everywhere unless :meth:`EsStandin.deny_writes`), scoring.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import fnmatch
import gzip
import os
import re
import socket
import struct
import threading
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from tests.es_mappings import DynamicMapping
from tests.tls_certs import TlsFiles

JsonObj = dict[str, Any]
DocPredicate = Callable[[JsonObj], bool]

PRODUCT_HEADER = ("X-Elastic-Product", "Elasticsearch")
WWW_AUTHENTICATE = ('Basic realm="security", charset="UTF-8"', 'Bearer realm="security"', "ApiKey")
DATA_STREAM_PATTERNS = ("logs-*-*", "metrics-*-*", "synthetics-*-*")
LOGS_DEFAULT_PIPELINE_PATTERN = "logs-*-*"
MAX_RESULT_WINDOW = 10_000
_WRITE_SHARDS: JsonObj = {"total": 2, "successful": 1, "failed": 0}
_BULK_META = frozenset({
    "_index", "_id", "routing", "pipeline", "require_alias", "require_data_stream", "version", "version_type",
    "if_seq_no", "if_primary_term", "op_type", "dynamic_templates", "retry_on_conflict", "_source",
    "list_executed_pipelines",
})
_INVALID_INDEX_CHARS = frozenset('\\/*?"<>| ,#:')
_COMPAT_RE = re.compile(r"compatible-with=(\d+)")

# Per major version: what GET / reports besides the number (8.15.0 / 9.0.0 builds).
_BUILDS: dict[str, JsonObj] = {
    "8": {"build_hash": "1a77947f34deddb41af25e6f0ddb8e830159c179", "build_date": "2024-08-05T10:05:34.233336849Z",
          "lucene_version": "9.11.1", "minimum_wire_compatibility_version": "7.17.0",
          "minimum_index_compatibility_version": "7.0.0"},
    "9": {"build_hash": "112859b85d50de2a7e63f73c8fc70b99eea24291", "build_date": "2025-04-08T15:13:46.049795831Z",
          "lucene_version": "10.1.0", "minimum_wire_compatibility_version": "8.18.0",
          "minimum_index_compatibility_version": "8.0.0"},
}

_DEFAULT_REASONS: dict[str, str] = {
    "es_rejected_execution_exception": (
        "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, "
        "all_bytes=0, coordinating_operation_bytes={size}, max_coordinating_and_primary_bytes=0]"),
    "cluster_block_exception": "blocked by: [SERVICE_UNAVAILABLE/2/no master];",
    "circuit_breaking_exception": "[parent] Data too large, data for [<http_request>] would be [{size}/{size}b]",
}
_DEFAULT_STATUS_TYPES: dict[int, str] = {
    429: "es_rejected_execution_exception",
    500: "illegal_state_exception",
    502: "bad_gateway_exception",
    503: "cluster_block_exception",
    504: "timeout_exception",
}
_ITEM_REASONS: dict[str, str] = {
    "es_rejected_execution_exception": (
        "rejected execution of primary operation [coordinating_and_primary_bytes=0, replica_bytes=0, "
        "all_bytes=0, primary_operation_bytes={size}, max_coordinating_and_primary_bytes=0]"),
    "document_parsing_exception": "[1:{col}] failed to parse: injected by es_standin",
    "mapper_parsing_exception": "failed to parse",
}


def es_error(status: int, error_type: str, reason: str | None, **extra: Any) -> JsonObj:
    """An Elasticsearch REST error body: ``{"error": {"root_cause": [...], "type", "reason", ...}, "status"}``."""
    cause: JsonObj = {"type": error_type, "reason": reason, **extra}
    return {"error": {"root_cause": [cause], **cause}, "status": status}


def _new_id() -> str:
    """A 20-character URL-safe id, like ES's auto-generated ``_id`` (a base64 time-based UUID)."""
    return base64.urlsafe_b64encode(os.urandom(15)).decode()


def _new_uuid() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def parse_es_date(value: Any) -> int | None:
    """Epoch millis for ``strict_date_optional_time||epoch_millis`` values, ``None`` when unparseable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    if not isinstance(value, str) or not value:
        return None
    if value.lstrip("-").isdigit():
        return int(value)
    if len(value) > 10 and value[10] != "T":
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp() * 1000)


def field_values(source: Mapping[str, Any], path: str) -> list[Any]:
    """Values of a dotted field in a ``_source``, whether written nested or with dots in the key."""
    found: list[Any] = []

    def walk(node: Any, rest: str) -> None:
        if isinstance(node, list):
            for element in node:
                walk(element, rest)
            return
        if not isinstance(node, Mapping):
            return
        if rest in node:
            value = node[rest]
            found.extend(value if isinstance(value, list) else [value])
        parts = rest.split(".")
        for cut in range(1, len(parts)):
            head = ".".join(parts[:cut])
            if head in node:
                walk(node[head], ".".join(parts[cut:]))

    walk(source, path)
    return found


@dataclass
class RecordedRequest:
    """One request as the stand-in received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    raw_body: bytes  # as sent (possibly gzip-compressed)
    body: bytes  # decompressed
    status: int | None = None  # what was answered; None while pending or when the connection was reset
    received: float = field(default_factory=time.monotonic)  # when it arrived: tests measure timeouts and back-off
    principal: tuple[str, str] | None = None  # ("user", name) or ("api_key", id), once authenticated

    def json(self) -> Any:
        return orjson.loads(self.body)

    def ndjson(self) -> list[Any]:
        return [orjson.loads(line) for line in self.body.splitlines() if line.strip()]


@dataclass
class StoredDoc:
    """A document as stored: ``index`` is the name written to (data stream or index)."""

    index: str
    backing_index: str
    id: str
    source: JsonObj
    version: int
    seq_no: int
    pipeline: str | None


@dataclass
class ItemErrorRule:
    """Bulk items whose ``_source`` matches ``predicate`` fail with ``status`` and ``error``."""

    predicate: DocPredicate
    status: int
    error: JsonObj
    remaining: int | None  # None: until removed
    hits: int = 0


@dataclass
class Hold:
    """Requests matched by :meth:`EsStandin.hold_next` wait until :meth:`release`."""

    _standin: EsStandin
    _event: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: int = 0

    def release(self) -> None:
        self._standin._call_soon(self._event.set)


@dataclass
class _Fault:
    kind: str  # "status" | "delay" | "reset" | "hold" | "tamper" | "huge"
    remaining: int | None
    path: str | None
    status: int = 0
    body: bytes | None = None
    content_type: str = "application/json"
    delay: float = 0.0
    hold: Hold | None = None
    cancel_on_hangup: bool = False
    tamper: Callable[[JsonObj], Any] | None = None  # a JSON value, or bytes sent verbatim
    size: int = 0
    declared: bool = False


@dataclass
class _Target:
    """An index or a data stream (with its one backing index)."""

    name: str
    concrete: str
    uuid: str
    data_stream: bool
    docs: dict[str, StoredDoc] = field(default_factory=dict)  # the write index's documents
    next_seq_no: int = 0
    visible_upto: int = 0  # seq_no below this are searchable (when refreshes are required)
    generation: int = 1
    older: list[str] = field(default_factory=list)  # backing indices rolled over, oldest first
    rolled: list[StoredDoc] = field(default_factory=list)  # their documents (seq_no keeps counting, unlike ES)
    mapping: DynamicMapping = field(default_factory=DynamicMapping)  # the write index's (tests/es_mappings.py)

    def all_docs(self) -> list[StoredDoc]:
        return self.rolled + list(self.docs.values())


class _QueryError(Exception):
    def __init__(self, error_type: str, reason: str) -> None:
        super().__init__(reason)
        self.error_type = error_type
        self.reason = reason


class EsStandin:
    """A fake single-node Elasticsearch cluster. See the module docstring."""

    def __init__(
        self,
        *,
        version: str = "8.15.0",
        users: Mapping[str, str] | None = None,
        api_keys: Mapping[str, str] | None = None,
        tls: TlsFiles | None = None,
        max_content_length: int = 100 * 1024 * 1024,
        logs_default_pipeline: bool = True,
        pipelines: set[str] | None = None,
        require_refresh: bool = False,
        data_stream_patterns: tuple[str, ...] = DATA_STREAM_PATTERNS,
        auto_create_index: bool = True,
        too_large: str = "413",
        cluster_name: str = "docker-cluster",
        node_name: str = "es-standin",
        port: int = 0,
        total_fields_limit: int = 1000,
        depth_limit: int = 20,
    ) -> None:
        """``users`` (name -> password) and ``api_keys`` (id -> key) turn security on when either is given.

        ``pipelines``: the ingest pipelines that exist (others fail per item); ``None`` = any name exists.
        ``require_refresh``: documents become searchable only after a refresh, as in ES; by default they
        are searchable at once.
        ``auto_create_index``: False as ``action.auto_create_index: false`` (items for a missing target: 404).
        ``too_large``: ``"413"`` (ES's empty 413) or ``"close"`` (the connection is dropped, nothing answered).
        ``total_fields_limit``, ``depth_limit``: ``index.mapping.total_fields.limit`` / ``.depth.limit`` of every
        index (dynamic mappings and their refusals: tests/es_mappings.py).
        """
        if too_large not in ("413", "close"):
            raise ValueError(f"too_large must be '413' or 'close', not {too_large!r}")
        self.auto_create_index = auto_create_index
        self.too_large = too_large
        self.total_fields_limit = total_fields_limit
        self.depth_limit = depth_limit
        self._denied: dict[str, tuple[str, ...]] = {}  # principal -> index patterns it may not write
        self._late_answers: set[asyncio.Task[web.StreamResponse]] = set()
        self.version = version
        self.users = dict(users or {})
        self.api_keys = dict(api_keys or {})
        self.security = bool(users or api_keys)
        self.tls = tls
        self.max_content_length = max_content_length
        self.logs_default_pipeline = logs_default_pipeline
        self.pipelines = pipelines
        self.require_refresh = require_refresh
        self.data_stream_patterns = data_stream_patterns
        self.cluster_name = cluster_name
        self.node_name = node_name
        self.cluster_uuid = _new_uuid()
        self.host = "127.0.0.1"
        self.port = port
        self._lock = threading.Lock()
        self._targets: dict[str, _Target] = {}
        self._requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._item_rules: list[ItemErrorRule] = []
        self._holds: list[Hold] = []
        self._failed_items: list[JsonObj] = []
        self._duplicates_rejected = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.ServerRunner | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._runner is not None

    def start(self) -> EsStandin:
        """Start the event-loop thread and the listener."""
        if self._loop is not None:
            raise RuntimeError("already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name=f"es-standin-{id(self):x}", daemon=True)
        self._thread.start()
        self.up()
        return self

    def stop(self) -> None:
        """Stop the listener and the thread (documents are kept in memory for inspection)."""
        if self._loop is None:
            return
        if self._runner is not None:
            self.down()
        self._run(self._drop_late_answers())
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop.close()
        self._loop, self._thread = None, None

    def down(self) -> None:
        """Close the listener and every open connection: connections are refused until :meth:`up`."""
        runner, self._runner = self._runner, None
        if runner is not None:
            self._run(runner.cleanup())

    def up(self) -> None:
        """(Re)open the listener on the same port, with the stored documents."""
        if self._runner is None:
            self._runner = self._run(self._open())

    def __enter__(self) -> EsStandin:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _run(self, coro: Any, timeout: float = 10.0) -> Any:
        if self._loop is None:
            raise RuntimeError("EsStandin is not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _call_soon(self, callback: Callable[[], object]) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(callback)

    async def _open(self) -> web.ServerRunner:
        server = web.Server(self._handle, handler_cancellation=True, auto_decompress=False, access_log=None)
        runner = web.ServerRunner(server, shutdown_timeout=0.2)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, ssl_context=self.tls.server_context() if self.tls else None,
                           reuse_address=True)
        await site.start()
        self.port = runner.addresses[0][1]
        return runner

    # ------------------------------------------------------------------ fault injection (any thread)

    def _add_fault(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def fail_next(self, status: int, count: int | None = 1, *, path: str | None = None,
                  error_type: str | None = None, reason: str | None = None, body: bytes | None = None,
                  content_type: str = "application/json") -> None:
        """The next ``count`` requests (``None``: all until :meth:`clear_faults`) answer ``status``.

        The body is ES's error JSON with ``error_type`` (default per status: 429
        ``es_rejected_execution_exception``, 503 ``cluster_block_exception``...), unless ``body`` is
        given verbatim. ``path``: only requests whose path contains this text (e.g. ``"_bulk"``).
        """
        if body is None:
            etype = error_type or _DEFAULT_STATUS_TYPES.get(status, "status_exception")
            text = reason or _DEFAULT_REASONS.get(etype, f"injected by es_standin ({status})")
            body = orjson.dumps(es_error(status, etype, text.replace("{size}", "0")))
        self._add_fault(_Fault("status", count, path, status=status, body=body, content_type=content_type))

    def delay_next(self, seconds: float, count: int | None = 1, *, path: str | None = None,
                   cancel_on_hangup: bool = False) -> None:
        """The next ``count`` requests are answered ``seconds`` late (others are not blocked).

        As in ES, the request is carried out at once and whether or not the client waits for the answer (a
        client timeout does not undo a bulk). ``cancel_on_hangup=True``: wait first, and do nothing if the client
        hangs up meanwhile.
        """
        self._add_fault(_Fault("delay", count, path, delay=seconds, cancel_on_hangup=cancel_on_hangup))

    def reset_next(self, count: int | None = 1, *, path: str | None = None) -> None:
        """The next ``count`` requests are read, then the connection is reset without an answer."""
        self._add_fault(_Fault("reset", count, path))

    def hold_next(self, count: int | None = 1, *, path: str | None = None) -> Hold:
        """The next ``count`` requests wait until the returned :class:`Hold` is released."""
        hold = Hold(self)
        with self._lock:
            self._holds.append(hold)
            self._faults.append(_Fault("hold", count, path, hold=hold))
        return hold

    def item_error(self, predicate: DocPredicate, *, status: int = 429,
                   error_type: str = "es_rejected_execution_exception", reason: str | None = None,
                   count: int | None = None, **extra: Any) -> ItemErrorRule:
        """Bulk items whose ``_source`` satisfies ``predicate`` fail with ``status``/``error_type``.

        ``count``: how many items it fails before it expires (``None``: until removed). ``extra`` keys
        go into the item's ``error`` object (e.g. ``caused_by={...}``).
        """
        error: JsonObj = {"type": error_type, "reason": reason or _ITEM_REASONS.get(error_type, "injected"), **extra}
        rule = ItemErrorRule(predicate, status, error, count)
        with self._lock:
            self._item_rules.append(rule)
        return rule

    def tamper_next(self, change: Callable[[JsonObj], Any], count: int | None = 1) -> None:
        """A buggy or hostile server: the next ``count`` bulk requests are carried out, then answered 200 with
        ``change(answer)`` instead of the real answer (a JSON value is sent as JSON, bytes verbatim)."""
        self._add_fault(_Fault("tamper", count, "_bulk", tamper=change))

    def huge_answer_next(self, size: int, count: int | None = 1, *, declared: bool = False) -> None:
        """The next ``count`` bulk requests are carried out, then answered 200 with ``size`` bytes of a bulk answer
        that never ends (items of 201), streamed; with ``declared`` the Content-Length says so up front."""
        self._add_fault(_Fault("huge", count, "_bulk", size=size, declared=declared))

    def pending_faults(self) -> int:
        """How many injected faults (of any kind) are still waiting for their requests."""
        with self._lock:
            return len(self._faults)

    def clear_faults(self) -> None:
        """Forget every pending fault and item rule; releases held requests."""
        with self._lock:
            holds = list(self._holds)
            self._faults.clear()
            self._item_rules.clear()
        for hold in holds:
            hold.release()

    # ------------------------------------------------------------------ privileges and rollover (any thread)

    def deny_writes(self, principal: str, indices: tuple[str, ...] = ("*",)) -> None:
        """``principal`` (a user name or an API key id) loses the write privilege on ``indices`` (patterns)."""
        if not self.security:
            raise RuntimeError("privileges need security: give users or api_keys")
        with self._lock:
            self._denied[principal] = indices

    def allow_writes(self, principal: str) -> None:
        """Give ``principal`` its write privilege back (on every index)."""
        with self._lock:
            self._denied.pop(principal, None)

    def rollover(self, stream: str) -> JsonObj:
        """``POST <stream>/_rollover``: a new write index; returns ES's answer."""
        with self._lock:
            return self._rollover(stream)

    def backing_indices(self, stream: str) -> list[str]:
        """Every backing index of a data stream, oldest first."""
        with self._lock:
            target = self._targets.get(stream)
            if target is None:
                return []
            return [*target.older, target.concrete]

    # ------------------------------------------------------------------ read-back (any thread)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def bulk_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/_bulk")]

    @property
    def bulk_request_count(self) -> int:
        return len(self.bulk_requests)

    @property
    def duplicates_rejected(self) -> int:
        with self._lock:
            return self._duplicates_rejected

    @property
    def failed_items(self) -> list[JsonObj]:
        """Every failed bulk item answered so far, as ``{"create": {...,"status", "error"}}``."""
        with self._lock:
            return list(self._failed_items)

    def held_count(self) -> int:
        """How many requests are waiting on a :class:`Hold` right now."""
        with self._lock:
            return sum(hold.waiting for hold in self._holds)

    def stored(self, target: str = "*") -> list[StoredDoc]:
        """Stored documents of the indices/data streams matching ``target`` (all of them, refreshed or not)."""
        with self._lock:
            targets = self._resolve(target, must_exist=False)
            return [doc for t in targets for doc in t.all_docs()]

    def count(self, target: str = "*") -> int:
        """How many documents ``stored(target)`` holds, without copying them (cheap enough to poll)."""
        with self._lock:
            return sum(len(t.docs) + len(t.rolled) for t in self._resolve(target, must_exist=False))

    def docs(self, target: str = "*") -> list[JsonObj]:
        """The ``_source`` of every stored document in ``target``, in write order per index."""
        return [doc.source for doc in self.stored(target)]

    def data_streams(self) -> list[str]:
        with self._lock:
            return sorted(t.name for t in self._targets.values() if t.data_stream)

    def indices(self) -> list[str]:
        """Concrete index names (backing indices for data streams)."""
        with self._lock:
            return sorted(name for t in self._targets.values() for name in (*t.older, t.concrete))

    def reset(self) -> None:
        """Forget documents, recorded requests, counters and faults."""
        self.clear_faults()
        with self._lock:
            self._targets.clear()
            self._requests.clear()
            self._failed_items.clear()
            self._duplicates_rejected = 0

    # ------------------------------------------------------------------ HTTP

    def _take_fault(self, kind: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.kind != kind or (fault.path is not None and fault.path not in path):
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    def _respond(self, request: web.BaseRequest, rec: RecordedRequest, status: int, body: Any,
                 headers: CIMultiDict[str] | None = None) -> web.Response:
        out: CIMultiDict[str] = CIMultiDict(headers or {})
        out.add(*PRODUCT_HEADER)
        compat = _COMPAT_RE.search(request.headers.get("Accept", ""))
        out["Content-Type"] = (f"application/vnd.elasticsearch+json;compatible-with={compat.group(1)}"
                               if compat else "application/json")
        rec.status = status
        return web.Response(status=status, body=orjson.dumps(body), headers=out)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        declared = request.content_length
        if self.too_large == "close" and declared is not None and declared > self.max_content_length:
            # Dropped while the body is still coming in: the client sees the connection close, no status.
            rec = RecordedRequest(request.method, request.path, dict(request.query),
                                  {k.lower(): v for k, v in request.headers.items()}, b"", b"")
            with self._lock:
                self._requests.append(rec)
            return self._reset_connection(request)
        raw = await request.content.read()
        rec = RecordedRequest(request.method, request.path, dict(request.query),
                              {k.lower(): v for k, v in request.headers.items()}, raw, raw)
        with self._lock:
            self._requests.append(rec)
        path = request.path

        hold_fault = self._take_fault("hold", path)
        if hold_fault is not None and hold_fault.hold is not None:
            await self._wait_hold(hold_fault)
        delay = self._take_fault("delay", path)
        if delay is not None and delay.cancel_on_hangup:
            await asyncio.sleep(delay.delay)
        if self._take_fault("reset", path) is not None:
            return self._reset_connection(request)
        if delay is not None and not delay.cancel_on_hangup:
            # ES carries a request out whether or not its client still waits: shielded from aiohttp's
            # cancellation when the client hangs up, and kept referenced until it is done.
            task = asyncio.ensure_future(self._answer_late(request, rec, delay.delay))
            self._late_answers.add(task)
            task.add_done_callback(self._late_answers.discard)
            return await asyncio.shield(task)
        return self._answer(request, rec)

    async def _drop_late_answers(self) -> None:
        """Answers still being delayed when the stand-in stops go nowhere (their requests were carried out)."""
        for task in list(self._late_answers):
            task.cancel()
        await asyncio.gather(*self._late_answers, return_exceptions=True)

    async def _answer_late(self, request: web.BaseRequest, rec: RecordedRequest, seconds: float) -> web.StreamResponse:
        response = self._answer(request, rec)
        await asyncio.sleep(seconds)
        return response

    def _answer(self, request: web.BaseRequest, rec: RecordedRequest) -> web.StreamResponse:
        path, raw = request.path, rec.raw_body
        encoding = request.headers.get("Content-Encoding", "").lower()
        try:
            if encoding == "gzip":
                rec.body = gzip.decompress(raw)
            elif encoding == "deflate":
                rec.body = zlib.decompress(raw)
        except (OSError, zlib.error, EOFError) as exc:
            return self._respond(request, rec, 400, es_error(400, "parse_exception", f"bad {encoding} body: {exc}"))
        if len(rec.body) > self.max_content_length or len(raw) > self.max_content_length:
            if self.too_large == "close":
                return self._reset_connection(request)
            rec.status = 413
            response = web.Response(status=413, body=b"")
            response.force_close()
            return response

        unauthorized = self._check_auth(request)
        if unauthorized is not None:
            return self._respond(request, rec, 401, unauthorized,
                                 CIMultiDict([("WWW-Authenticate", v) for v in WWW_AUTHENTICATE]))
        rec.principal = self._principal(request)

        injected = self._take_fault("status", path)
        if injected is not None:
            rec.status = injected.status
            compat = _COMPAT_RE.search(request.headers.get("Accept", ""))
            content_type = injected.content_type
            if compat and content_type == "application/json":
                content_type = f"application/vnd.elasticsearch+json;compatible-with={compat.group(1)}"
            return web.Response(status=injected.status, body=injected.body,
                                headers={PRODUCT_HEADER[0]: PRODUCT_HEADER[1], "Content-Type": content_type})

        bad_media = self._check_media_types(request)
        if bad_media is not None:
            return self._respond(request, rec, 400, bad_media)

        status, body = self._route(request, rec)
        if status == 200 and path.endswith("/_bulk"):
            changed = self._hostile_answer(request, rec, body)
            if changed is not None:
                return changed
        return self._respond(request, rec, status, body)

    def _hostile_answer(self, request: web.BaseRequest, rec: RecordedRequest, body: JsonObj) -> web.Response | None:
        """What ``tamper_next`` / ``huge_answer_next`` send instead of a real bulk answer."""
        headers = {PRODUCT_HEADER[0]: PRODUCT_HEADER[1], "Content-Type": "application/json"}
        tamper = self._take_fault("tamper", request.path)
        if tamper is not None and tamper.tamper is not None:
            changed = tamper.tamper(body)
            rec.status = 200
            return web.Response(status=200, body=changed if isinstance(changed, bytes) else orjson.dumps(changed),
                                headers=headers)
        huge = self._take_fault("huge", request.path)
        if huge is None:
            return None
        rec.status = 200
        if huge.declared:
            headers["Content-Length"] = str(huge.size)
        return web.Response(status=200, body=_endless_items(huge.size), headers=headers)

    async def _wait_hold(self, fault: _Fault) -> None:
        assert fault.hold is not None
        with self._lock:
            fault.hold.waiting += 1
        try:
            await fault.hold._event.wait()
        finally:
            with self._lock:
                fault.hold.waiting -= 1

    @staticmethod
    def _reset_connection(request: web.BaseRequest) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:  # SO_LINGER 0: close() sends RST instead of FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        raise asyncio.CancelledError  # nothing is answered; aiohttp drops the request quietly

    def _principal(self, request: web.BaseRequest) -> tuple[str, str] | None:
        """Who an authenticated request comes from (``_check_auth`` has let it in)."""
        if not self.security:
            return None
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        try:
            name = base64.b64decode(value, validate=True).decode().partition(":")[0]
        except (ValueError, UnicodeDecodeError):
            return None
        return ("api_key" if scheme.lower() == "apikey" else "user", name)

    def _check_auth(self, request: web.BaseRequest) -> JsonObj | None:
        if not self.security:
            return None
        uri = request.raw_path  # path and query string, as ES quotes it
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        unsuccessful: str | None = None
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user, password = "", ""
            if user and self.users.get(user) == password:
                return None
            return es_error(401, "security_exception", f"unable to authenticate user [{user}] for REST request [{uri}]",
                            header={"WWW-Authenticate": list(WWW_AUTHENTICATE)})
        if scheme.lower() == "apikey":
            try:
                key_id, _, key = base64.b64decode(value, validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                key_id, key = "", ""
            if key_id in self.api_keys and self.api_keys[key_id] == key:
                return None
            unsuccessful = (f"API key: invalid credentials for API key [{key_id}]" if key_id in self.api_keys
                            else f"API key: unable to find apikey with id {key_id}")
        elif header:
            unsuccessful = f"{scheme}: authentication scheme not supported by es_standin"
        if unsuccessful is not None:
            return es_error(401, "security_exception", "unable to authenticate with provided credentials and "
                            "anonymous access is not allowed for this request",
                            additional_unsuccessful_credentials=unsuccessful,
                            header={"WWW-Authenticate": list(WWW_AUTHENTICATE)})
        return es_error(401, "security_exception", f"missing authentication credentials for REST request [{uri}]",
                        header={"WWW-Authenticate": list(WWW_AUTHENTICATE)})

    def _check_media_types(self, request: web.BaseRequest) -> JsonObj | None:
        major = int(self.version.split(".")[0])
        accept = request.headers.get("Accept", "")
        content_type = request.headers.get("Content-Type", "")
        for header_value in (accept, content_type):
            found = _COMPAT_RE.search(header_value)
            if found is not None and int(found.group(1)) not in (major, major - 1):
                return es_error(400, "media_type_header_exception",
                                "Invalid media-type value on headers [Accept, Content-Type]",
                                caused_by={"type": "status_exception", "reason": (
                                    f"Accept version must be either version {major} or {major - 1}, but found "
                                    f"{found.group(1)}. Accept={accept}")})
        return None

    def _route(self, request: web.BaseRequest, rec: RecordedRequest) -> tuple[int, JsonObj]:
        method, path = request.method, request.path
        parts = [p for p in path.split("/") if p]
        if not parts:
            if method in ("GET", "HEAD"):
                return 200, self._root()
            return 405, self._bad_method(method, path, "GET, HEAD")
        endpoint = parts[-1]
        target = parts[0] if len(parts) == 2 else None
        if len(parts) > 2 or (len(parts) == 2 and not endpoint.startswith("_")):
            return 400, {"error": f"no handler found for uri [{path}] and method [{method}]"}
        if parts == ["_cluster", "health"]:
            return 200, self._health()
        if endpoint == "_bulk":
            if method not in ("POST", "PUT"):
                return 405, self._bad_method(method, path, "POST, PUT")
            return self._bulk(rec, target)
        if endpoint == "_rollover" and target is not None and method == "POST":
            try:
                with self._lock:
                    return 200, self._rollover(target)
            except _QueryError as exc:
                return 404, es_error(404, exc.error_type, f"no such index [{exc.reason}]",
                                     **{"resource.type": "index_or_alias", "resource.id": exc.reason,
                                        "index_uuid": "_na_", "index": exc.reason})
        try:
            if endpoint == "_refresh" and method in ("GET", "POST"):
                return 200, self._refresh(target)
            if endpoint in ("_count", "_search") and method in ("GET", "POST"):
                body = orjson.loads(rec.body) if rec.body.strip() else {}
                if not isinstance(body, dict):
                    raise _QueryError("parsing_exception", "request body must be an object")
                if endpoint == "_count":
                    return 200, self._count(target, body)
                return 200, self._search(target, body, rec.query)
        except orjson.JSONDecodeError as exc:
            return 400, es_error(400, "x_content_parse_exception", f"[1:1] {exc}")
        except _QueryError as exc:
            status = 404 if exc.error_type == "index_not_found_exception" else 400
            extra: JsonObj = {}
            if status == 404:
                extra = {"resource.type": "index_or_alias", "resource.id": exc.reason, "index_uuid": "_na_",
                         "index": exc.reason}
                return status, es_error(status, exc.error_type, f"no such index [{exc.reason}]", **extra)
            return status, es_error(status, exc.error_type, exc.reason)
        return 400, {"error": f"no handler found for uri [{path}] and method [{method}]"}

    @staticmethod
    def _bad_method(method: str, path: str, allowed: str) -> JsonObj:
        return {"error": f"Incorrect HTTP method for uri [{path}] and method [{method}], allowed: [{allowed}]",
                "status": 405}

    def _root(self) -> JsonObj:
        build = _BUILDS.get(self.version.split(".")[0], _BUILDS["8"])
        return {
            "name": self.node_name,
            "cluster_name": self.cluster_name,
            "cluster_uuid": self.cluster_uuid,
            "version": {
                "number": self.version,
                "build_flavor": "default",
                "build_type": "docker",
                "build_hash": build["build_hash"],
                "build_date": build["build_date"],
                "build_snapshot": False,
                "lucene_version": build["lucene_version"],
                "minimum_wire_compatibility_version": build["minimum_wire_compatibility_version"],
                "minimum_index_compatibility_version": build["minimum_index_compatibility_version"],
            },
            "tagline": "You Know, for Search",
        }

    def _health(self) -> JsonObj:
        with self._lock:
            shards = len(self._targets)
        return {"cluster_name": self.cluster_name, "status": "yellow" if shards else "green", "timed_out": False,
                "number_of_nodes": 1, "number_of_data_nodes": 1, "active_primary_shards": shards,
                "active_shards": shards, "relocating_shards": 0, "initializing_shards": 0,
                "unassigned_shards": shards, "delayed_unassigned_shards": 0, "number_of_pending_tasks": 0,
                "number_of_in_flight_fetch": 0, "task_max_waiting_in_queue_millis": 0,
                "active_shards_percent_as_number": 50.0 if shards else 100.0}

    # ------------------------------------------------------------------ bulk

    def _rollover(self, stream: str) -> JsonObj:
        """A new write index for a data stream (caller holds the lock); ES's answer without conditions."""
        target = self._targets.get(stream)
        if target is None or not target.data_stream:
            raise _QueryError("index_not_found_exception", stream)
        old = target.concrete
        target.generation += 1
        day = dt.datetime.now(dt.UTC).strftime("%Y.%m.%d")
        target.older.append(old)
        target.rolled.extend(target.docs.values())
        target.docs = {}
        target.concrete = f".ds-{stream}-{day}-{target.generation:06d}"
        target.uuid = _new_uuid()
        target.mapping = self._new_mapping(True)  # a new backing index starts from the template again
        return {"acknowledged": True, "shards_acknowledged": True, "old_index": old, "new_index": target.concrete,
                "rolled_over": True, "dry_run": False, "lazy": False, "conditions": {}}

    def _write_refused(self, name: str, principal: tuple[str, str] | None) -> tuple[int, JsonObj] | None:
        """The per-item 403 of a missing write privilege, or the 404 of a denied auto-create (lock held)."""
        exists = name in self._targets
        if principal is not None and any(fnmatch.fnmatchcase(name, p) for p in self._denied.get(principal[1], ())):
            kind, who = principal
            action = "indices:data/write/bulk[s]" if exists else "indices:admin/auto_create"
            granted = ("create_doc,create,delete,index,write,all" if exists
                       else "auto_configure,create_index,manage,all")
            subject = f"API key id [{who}] of user [{who}-owner]" if kind == "api_key" else (
                f"user [{who}] with effective roles [{who}_role]")
            return 403, {"type": "security_exception",
                         "reason": f"action [{action}] is unauthorized for {subject} on indices [{name}], this "
                                   f"action is granted by the index privileges [{granted}]"}
        if not exists and not self.auto_create_index:
            return 404, {"type": "index_not_found_exception",
                         "reason": f"no such index [{name}] and [action.auto_create_index] is [false]",
                         "resource.type": "index_expression", "resource.id": name, "index_uuid": "_na_",
                         "index": name}
        return None

    def _is_data_stream(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.data_stream_patterns)

    def _target_for_write(self, name: str) -> _Target:
        target = self._targets.get(name)
        if target is None:
            if self._is_data_stream(name):
                day = dt.datetime.now(dt.UTC).strftime("%Y.%m.%d")
                target = _Target(name, f".ds-{name}-{day}-000001", _new_uuid(), True)
            else:
                target = _Target(name, name, _new_uuid(), False)
            target.mapping = self._new_mapping(target.data_stream)
            self._targets[name] = target
        return target

    def _new_mapping(self, data_stream: bool) -> DynamicMapping:
        return DynamicMapping(strings_as_keyword=data_stream, total_fields_limit=self.total_fields_limit,
                              depth_limit=self.depth_limit)

    @staticmethod
    def _invalid_index_name(name: str) -> str | None:
        if name != name.lower():
            return f"Invalid index name [{name}], must be lowercase"
        if name.startswith(("_", "-", "+")):
            return f"Invalid index name [{name}], must not start with '_', '-', or '+'"
        bad = sorted(_INVALID_INDEX_CHARS & set(name))
        if bad or name in (".", ".."):
            return f"Invalid index name [{name}], must not contain the following characters {bad}"
        return None

    def _bulk(self, rec: RecordedRequest, path_index: str | None) -> tuple[int, JsonObj]:
        started = time.perf_counter()
        body = rec.body
        if not body.strip():
            return 400, es_error(400, "parse_exception", "request body is required")
        if not body.endswith(b"\n"):
            return 400, es_error(400, "illegal_argument_exception",
                                 "The bulk request must be terminated by a newline [\\n]")
        lines = body.split(b"\n")[:-1]
        ops: list[tuple[str, JsonObj, bytes | None]] = []
        number = 0
        while number < len(lines):
            line = lines[number]
            number += 1
            if not line.strip():
                continue
            try:
                action_line = orjson.loads(line)
            except orjson.JSONDecodeError:
                return 400, es_error(400, "illegal_argument_exception",
                                     f"Malformed action/metadata line [{number}], expected START_OBJECT")
            if not isinstance(action_line, dict) or len(action_line) != 1:
                return 400, es_error(400, "illegal_argument_exception",
                                     f"Malformed action/metadata line [{number}], expected a simple value for "
                                     f"field [{next(iter(action_line), '')}] but found [START_OBJECT]"
                                     if isinstance(action_line, dict) else
                                     f"Malformed action/metadata line [{number}], expected START_OBJECT")
            ((action, meta),) = action_line.items()
            if action not in ("create", "index", "delete", "update"):
                return 400, es_error(400, "illegal_argument_exception",
                                     f"Malformed action/metadata line [{number}], expected field [create], "
                                     f"[delete], [index] or [update] but found [{action}]")
            if not isinstance(meta, dict):
                return 400, es_error(400, "illegal_argument_exception",
                                     f"Malformed action/metadata line [{number}], expected START_OBJECT")
            unknown = sorted(set(meta) - _BULK_META)
            if unknown:
                return 400, es_error(400, "illegal_argument_exception",
                                     f"Action/metadata line [{number}] contains an unknown parameter [{unknown[0]}]")
            if "_index" not in meta and path_index is None:
                return 400, es_error(400, "action_request_validation_exception",
                                     "Validation Failed: 1: index is missing;")
            source_line: bytes | None = None
            if action != "delete":
                if number >= len(lines):
                    return 400, es_error(400, "illegal_argument_exception",
                                         "The bulk request must be terminated by a newline [\\n]")
                source_line = lines[number]
                number += 1
            ops.append((action, meta, source_line))
        if not ops:
            return 400, es_error(400, "action_request_validation_exception", "Validation Failed: 1: no requests added;")

        items: list[JsonObj] = []
        ingest = False
        with self._lock:
            for action, meta, source_line in ops:
                status, result, ran_pipeline = self._bulk_item(action, meta, source_line, path_index, rec.query,
                                                               rec.principal)
                ingest = ingest or ran_pipeline
                if "error" in result:  # ES writes status before error in failed items
                    result = {"_index": result["_index"], "_id": result["_id"], "status": status,
                              "error": result["error"]}
                else:
                    result["status"] = status
                item = {action: result}
                items.append(item)
                if status >= 300:
                    self._failed_items.append(item)
            if rec.query.get("refresh") in ("", "true", "wait_for"):
                for target in self._targets.values():
                    target.visible_upto = target.next_seq_no
        took = int((time.perf_counter() - started) * 1000)
        response: JsonObj = {"errors": any(next(iter(i.values()))["status"] >= 300 for i in items), "took": took}
        if ingest:
            response["ingest_took"] = 0
        response["items"] = items
        return 200, response

    def _bulk_item(self, action: str, meta: JsonObj, source_line: bytes | None, path_index: str | None,
                   query: Mapping[str, str], principal: tuple[str, str] | None = None) -> tuple[int, JsonObj, bool]:
        """One bulk item, under the lock: ``(status, item body without status, ran an ingest pipeline)``."""
        name = str(meta.get("_index", path_index))
        doc_id: str | None = None if meta.get("_id") is None else str(meta["_id"])
        op = "create" if action == "create" or (action == "index" and meta.get("op_type") == "create") else action

        def failure(status: int, error: JsonObj, index: str = name, ident: str | None = doc_id,
                    ran: bool = False) -> tuple[int, JsonObj, bool]:
            return status, {"_index": index, "_id": ident, "error": error}, ran

        invalid = self._invalid_index_name(name)
        if invalid is not None:
            return failure(400, {"type": "invalid_index_name_exception", "reason": invalid, "index_uuid": "_na_",
                                 "index": name})
        if op != "delete":
            refused = self._write_refused(name, principal)
            if refused is not None:
                return failure(*refused)
        is_ds = self._is_data_stream(name)
        if is_ds and op != "create":
            return failure(400, {"type": "illegal_argument_exception",
                                 "reason": "only write ops with an op_type of create are allowed in data streams"})
        if op == "update":
            return failure(400, {"type": "illegal_argument_exception",
                                 "reason": "es_standin does not support bulk [update] actions"})
        if op == "delete":
            target = self._targets.get(name)
            if target is None:
                return failure(404, {"type": "index_not_found_exception", "reason": f"no such index [{name}]",
                                     "resource.type": "index_expression", "resource.id": name,
                                     "index_uuid": "_na_", "index": name})
            stored = target.docs.pop(doc_id or "", None)
            seq_no = target.next_seq_no
            target.next_seq_no += 1
            return (200 if stored else 404), {
                "_index": target.concrete, "_id": doc_id, "_version": (stored.version + 1) if stored else 1,
                "result": "deleted" if stored else "not_found", "_shards": dict(_WRITE_SHARDS),
                "_seq_no": seq_no, "_primary_term": 1}, False

        pipeline = meta.get("pipeline", query.get("pipeline"))
        if pipeline == "_none":
            pipeline = None
        if pipeline is not None and self.pipelines is not None and pipeline not in self.pipelines:
            return failure(400, {"type": "illegal_argument_exception",
                                 "reason": f"pipeline with id [{pipeline}] does not exist"})
        doc_id = doc_id if doc_id is not None else _new_id()
        target = self._target_for_write(name)
        assert source_line is not None
        try:
            source = orjson.loads(source_line)
        except orjson.JSONDecodeError as exc:
            source = exc
        if not isinstance(source, dict):
            return failure(400, {"type": "document_parsing_exception", "reason": "[1:1] failed to parse",
                                 "caused_by": {"type": "not_x_content_exception" if isinstance(source, Exception)
                                               else "illegal_argument_exception",
                                               "reason": "Compressor detection can only be called on some xcontent "
                                                         "bytes or compressed xcontent bytes"}},
                           target.concrete, doc_id)
        ran_pipeline = pipeline is not None
        if (pipeline is None and is_ds and self.logs_default_pipeline
                and fnmatch.fnmatchcase(name, LOGS_DEFAULT_PIPELINE_PATTERN)):
            ran_pipeline = True
            if "@timestamp" not in source:
                source["@timestamp"] = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace(
                    "+00:00", "Z")

        for rule in list(self._item_rules):
            if rule.predicate(source):
                rule.hits += 1
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._item_rules.remove(rule)
                col = len(source_line.rstrip())
                reason = str(rule.error.get("reason", "")).replace("{size}", str(len(source_line))).replace(
                    "{col}", str(col))
                return failure(rule.status, {**rule.error, "reason": reason}, target.concrete, doc_id, ran_pipeline)

        if is_ds:
            error = self._timestamp_error(source, source_line, doc_id)
            if error is not None:
                return failure(400, error, target.concrete, doc_id, ran_pipeline)
        refusal = target.mapping.admit(source, source_line, doc_id)  # parsing comes before the version check
        if refusal is not None:
            return failure(400, refusal, target.concrete, doc_id, ran_pipeline)

        existing = target.docs.get(doc_id)
        if existing is not None and op == "create":
            self._duplicates_rejected += 1
            return failure(409, {
                "type": "version_conflict_engine_exception",
                "reason": f"[{doc_id}]: version conflict, document already exists (current version "
                          f"[{existing.version}])",
                "index_uuid": target.uuid, "shard": "0", "index": target.concrete,
            }, target.concrete, doc_id, ran_pipeline)

        version = existing.version + 1 if existing else 1
        seq_no = target.next_seq_no
        target.next_seq_no += 1
        if existing is not None:
            del target.docs[doc_id]
        target.docs[doc_id] = StoredDoc(name, target.concrete, doc_id, source, version, seq_no, pipeline)
        if not self.require_refresh:
            target.visible_upto = target.next_seq_no
        return (200 if existing else 201), {
            "_index": target.concrete, "_id": doc_id, "_version": version,
            "result": "updated" if existing else "created", "_shards": dict(_WRITE_SHARDS),
            "_seq_no": seq_no, "_primary_term": 1}, ran_pipeline

    @staticmethod
    def _timestamp_error(source: JsonObj, source_line: bytes, doc_id: str) -> JsonObj | None:
        col = len(source_line.rstrip())
        values = field_values(source, "@timestamp")
        if not values:
            inner = "data stream timestamp field [@timestamp] is missing"
            return {"type": "document_parsing_exception", "reason": f"[1:{col}] failed to parse: {inner}",
                    "caused_by": {"type": "illegal_argument_exception", "reason": inner}}
        if len(values) > 1:
            inner = "data stream timestamp field [@timestamp] encountered multiple values"
            return {"type": "document_parsing_exception", "reason": f"[1:{col}] failed to parse: {inner}",
                    "caused_by": {"type": "illegal_argument_exception", "reason": inner}}
        if parse_es_date(values[0]) is None:
            preview = orjson.dumps(values[0]).decode()
            return {"type": "document_parsing_exception",
                    "reason": f"[1:{col}] failed to parse field [@timestamp] of type [date] in document with id "
                              f"'{doc_id}'. Preview of field's value: '{values[0]}'",
                    "caused_by": {"type": "illegal_argument_exception",
                                  "reason": f"failed to parse date field [{preview.strip(chr(34))}] with format "
                                            "[strict_date_optional_time||epoch_millis]"}}
        return None

    # ------------------------------------------------------------------ read APIs

    def _resolve(self, expression: str | None, must_exist: bool = True) -> list[_Target]:
        """Targets named by an index expression (comma list, ``*`` wildcards, ``_all``); caller holds the lock."""
        if expression in (None, "", "_all", "*"):
            return list(self._targets.values())
        chosen: dict[str, _Target] = {}
        for part in (expression or "").split(","):
            if "*" in part:
                for target in self._targets.values():
                    names = [target.name] if not part.startswith(".") else [target.name, target.concrete]
                    if any(fnmatch.fnmatchcase(n, part) for n in names):
                        chosen[target.name] = target
                continue
            found = [t for t in self._targets.values() if part in (t.name, t.concrete)]
            if not found and must_exist:
                raise _QueryError("index_not_found_exception", part)
            chosen.update((t.name, t) for t in found)
        return list(chosen.values())

    def _visible(self, expression: str | None, query: JsonObj | None) -> list[StoredDoc]:
        with self._lock:
            targets = self._resolve(expression)
            docs = [d for t in targets for d in t.all_docs() if d.seq_no < t.visible_upto]
        return [d for d in docs if query is None or _matches(query, d.source)]

    def _refresh(self, expression: str | None) -> JsonObj:
        with self._lock:
            targets = self._resolve(expression)
            for target in targets:
                target.visible_upto = target.next_seq_no
        return {"_shards": {"total": 2 * len(targets), "successful": len(targets), "failed": 0}}

    def _count(self, expression: str | None, body: JsonObj) -> JsonObj:
        docs = self._visible(expression, body.get("query"))
        with self._lock:
            shards = len(self._resolve(expression))
        return {"count": len(docs), "_shards": {"total": shards, "successful": shards, "skipped": 0, "failed": 0}}

    def _search(self, expression: str | None, body: JsonObj, params: Mapping[str, str]) -> JsonObj:
        started = time.perf_counter()
        size = int(params.get("size", body.get("size", 10)))
        offset = int(params.get("from", body.get("from", 0)))
        if size + offset > MAX_RESULT_WINDOW:
            raise _QueryError("illegal_argument_exception",
                              f"Result window is too large, from + size must be less than or equal to: "
                              f"[{MAX_RESULT_WINDOW}] but was [{size + offset}].")
        sort_spec = _parse_sort(params["sort"].split(",") if "sort" in params else body.get("sort"))
        docs = self._visible(expression, body.get("query"))
        for field_name, order in reversed(sort_spec):
            if field_name == "_doc":
                docs.sort(key=lambda d: d.seq_no, reverse=order == "desc")
                continue
            keyed = [(_sort_value(d.source, field_name), d) for d in docs]
            present = [(_sortable(v), d) for v, d in keyed if v is not None]
            present.sort(key=lambda pair: pair[0], reverse=order == "desc")
            docs = [d for _, d in present] + [d for v, d in keyed if v is None]  # missing values sort last
        track = params.get("track_total_hits", body.get("track_total_hits", MAX_RESULT_WINDOW))
        total: JsonObj = {"value": len(docs), "relation": "eq"}
        if track not in (True, "true") and isinstance(track, int | str) and len(docs) > int(track):
            total = {"value": int(track), "relation": "gte"}
        hits: list[JsonObj] = []
        for doc in docs[offset:offset + size]:
            hit: JsonObj = {"_index": doc.backing_index, "_id": doc.id, "_score": None if sort_spec else 1.0,
                            "_source": doc.source}
            if sort_spec:
                hit["sort"] = [_sort_value(doc.source, f) if f != "_doc" else doc.seq_no for f, _ in sort_spec]
            hits.append(hit)
        with self._lock:
            shards = len(self._resolve(expression))
        return {
            "took": int((time.perf_counter() - started) * 1000),
            "timed_out": False,
            "_shards": {"total": shards, "successful": shards, "skipped": 0, "failed": 0},
            "hits": {"total": total, "max_score": None if sort_spec or not docs else 1.0, "hits": hits},
        }


# ---------------------------------------------------------------------- query subset


def _parse_sort(spec: Any) -> list[tuple[str, str]]:
    if spec is None:
        return []
    items = spec if isinstance(spec, list) else [spec]
    out: list[tuple[str, str]] = []
    for item in items:
        if isinstance(item, str):
            name, _, order = item.partition(":")
            out.append((name, order or ("desc" if name == "_score" else "asc")))
        elif isinstance(item, dict) and len(item) == 1:
            ((name, how),) = item.items()
            order = how.get("order", "asc") if isinstance(how, dict) else str(how)
            out.append((name, order))
        else:
            raise _QueryError("parsing_exception", f"malformed sort: {item!r}")
    return [(n, o) for n, o in out if n != "_score"]


def _sort_value(source: JsonObj, field_name: str) -> Any:
    values = field_values(source, field_name)
    if not values:
        return None
    if field_name == "@timestamp":
        return parse_es_date(values[0])
    return values[0]


def _sortable(value: Any) -> tuple[int, Any]:
    """Numbers before strings, so mixed values never compare across types."""
    if isinstance(value, bool | int | float):
        return (0, value)
    return (1, str(value))


def _lower_tokens(value: Any) -> set[str]:
    return set(re.findall(r"\w+", str(value).lower()))


def _compare(value: Any, field_name: str) -> Any:
    return parse_es_date(value) if field_name == "@timestamp" else value


def _matches(query: Any, source: JsonObj) -> bool:
    """The tiny query subset: match_all, match_none, term, terms, match, exists, range, bool."""
    if not isinstance(query, dict) or len(query) != 1:
        raise _QueryError("parsing_exception", "[_na] query malformed, must start with start_object")
    ((kind, spec),) = query.items()
    if kind == "match_all":
        return True
    if kind == "match_none":
        return False
    if kind == "bool":
        must = _as_list(spec.get("must")) + _as_list(spec.get("filter"))
        should = _as_list(spec.get("should"))
        must_not = _as_list(spec.get("must_not"))
        minimum = int(spec.get("minimum_should_match", 0 if must else 1 if should else 0))
        return (all(_matches(q, source) for q in must)
                and not any(_matches(q, source) for q in must_not)
                and sum(_matches(q, source) for q in should) >= minimum)
    if kind == "exists":
        return bool(field_values(source, spec["field"]))
    if not isinstance(spec, dict) or len(spec) != 1:
        raise _QueryError("parsing_exception", f"[{kind}] query doesn't support multiple fields")
    ((field_name, arg),) = spec.items()
    values = field_values(source, field_name)
    if kind == "term":
        wanted = arg.get("value") if isinstance(arg, dict) else arg
        return wanted in values
    if kind == "terms":
        return any(v in values for v in arg)
    if kind == "match":
        wanted = arg.get("query") if isinstance(arg, dict) else arg
        if isinstance(wanted, str):
            tokens = _lower_tokens(wanted)
            return any(tokens & _lower_tokens(v) for v in values)
        return wanted in values
    if kind == "range":
        bounds = {op: _compare(v, field_name) for op, v in arg.items() if op in ("gt", "gte", "lt", "lte")}
        for raw in values:
            value = _compare(raw, field_name)
            if value is None:
                continue
            if all((op == "gt" and value > b) or (op == "gte" and value >= b) or (op == "lt" and value < b)
                   or (op == "lte" and value <= b) for op, b in bounds.items()):
                return True
        return False
    raise _QueryError("parsing_exception", f"unknown query [{kind}]")


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


async def _endless_items(size: int) -> AsyncIterator[bytes]:
    """``size`` bytes of ``{"errors":false,"items":[{"create":{"status":201}},...`` in 64 KiB chunks."""
    item = b'{"create":{"_index":"x","_id":"y","status":201}},'
    chunk = b'{"errors":false,"items":[' + item * ((1 << 16) // len(item))
    sent = 0
    while sent < size:
        part = chunk[: size - sent]
        sent += len(part)
        yield part
        chunk = item * ((1 << 16) // len(item))


def iter_failed(bulk_response: Mapping[str, Any]) -> Iterator[tuple[str, JsonObj]]:
    """``(action, item)`` for each failed item of a bulk response body."""
    for entry in bulk_response.get("items", []):
        ((action, item),) = entry.items()
        if item.get("status", 0) >= 300:
            yield action, item


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.es_standin --port 9200``: serve until interrupted (for manual or cross-process use)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--version", default="8.15.0")
    parser.add_argument("--user", action="append", default=[], metavar="NAME:PASSWORD")
    parser.add_argument("--api-key", action="append", default=[], metavar="ID:KEY")
    args = parser.parse_args(argv)
    users = dict(u.split(":", 1) for u in args.user)
    keys = dict(k.split(":", 1) for k in args.api_key)
    with EsStandin(port=args.port, version=args.version, users=users, api_keys=keys) as standin:
        print(standin.url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
