"""Every message the plugin's processes exchange, in one place.

Two channels carry them, both as msgpack maps that always hold ``kind`` and ``v`` (the format version):

- the data path, ZeroMQ DEALER (reader) -> ROUTER (local store) over ``ipc://`` under the data dir: readers send
  ``Batch`` and ``LoggerClosed``; the local store answers ``Stored`` once they are on disk.
- the shipping path, ZeroMQ DEALER (shipper) -> ROUTER (local store): the shipper pulls stored records with
  ``Fetch`` (a long poll: answered when records exist) and gets ``Records``; it confirms what Elasticsearch
  accepted with ``Ack``, which the local store persists as the container's shipping cursor. Positions are
  ``(generation, offset)`` in the container's rotation chain (see localstore/segments.py).
- the control path, one ``AF_UNIX``/``SOCK_SEQPACKET`` socketpair between the supervisor and each child,
  inherited at fork. The supervisor keeps no ZeroMQ context (it forks readers; a forking process must stay
  free of threads), so it talks to its children here: ``ChildStats`` and ``StatsPart`` up (the first also the
  heartbeat), and ``LoggerStarted``, ``LoggersSynced`` and ``ReadRequest`` down to the local store,
  ``ShipContainer`` down to the shipper, ``Followers`` down to a reader. A ``ReadRequest`` carries two file
  descriptors (``SCM_RIGHTS``): dockerd's connection, into which the local store writes the ReadLogs frames (the
  supervisor wrote the HTTP response head), and a pipe's write end the store closes when the stream ended.

Also here: the exit codes every child leaves with, which the supervisor acts on.
"""

from __future__ import annotations

import enum
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgpack

VERSION = 1
# A control message never comes near this; a bigger datagram is a bug or an attack.
MAX_CONTROL_MESSAGE = 256 * 1024
# A child's report is cut into datagrams of at most this: one datagram must fit the socketpair's send buffer
# (net.core.wmem_default, 208 KiB on most hosts; a bigger one fails with EMSGSIZE) and MAX_CONTROL_MESSAGE. The
# per-container figures of 1,450 containers were already too big for one.
MAX_STATS_MESSAGE = 64 * 1024
# Upper bound for one data-path message (the reader cuts batches far below it).
MAX_DATA_MESSAGE = 64 * 1024 * 1024
# Each reader incarnation numbers its lines from a fresh multiple of 2**SEQ_SHIFT (``Batch.seq``), so the local store
# tells a new incarnation's first batch from a batch that skipped over a lost one.
SEQ_SHIFT = 32


class MessageError(ValueError):
    """A message that cannot be decoded or lacks a required field."""


class ExitCode(enum.IntEnum):
    """How a child process ended; the supervisor decides from this whether to respawn it."""

    DONE = 0  # finished its job (a reader at EOF, any child told to stop): forget it
    CRASHED = 1  # an unexpected exception: respawn with back-off
    BOOT_FAILED = 3  # could not start (bad FIFO, cannot bind): respawn with back-off, log why


@dataclass(frozen=True, slots=True)
class Message:
    """Base of every message; ``KIND`` names it on the wire."""

    KIND: ClassVar[str] = ""

    def encode(self) -> bytes:
        wire: dict[str, Any] = {"kind": self.KIND, "v": VERSION}
        names: tuple[str, ...] = self.__slots__  # the fields, in order (slots dataclass; the base has none)
        for name in names:
            wire[name] = getattr(self, name)
        return msgpack.packb(wire, use_bin_type=True)

    def frames(self) -> list[bytes | bytearray | memoryview]:
        """The message as ZeroMQ frames (``decode_frames`` reads them): one msgpack frame, or for a message with a
        ``RAW`` field a small msgpack header without it and that field's bytes as a second frame, as they are
        (opaque bytes wrapped in msgpack are copied once more on each side, for nothing)."""
        return [self.encode()]


# --- data path: reader -> local store (and shipper) -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Batch(Message):
    """reader -> local store. Consecutive lines of one logger.

    ``records`` is the on-disk form, ready to append: ``[N][LogEntry][N]`` per line, where a complete line's
    ``line`` already ends with ``"\\n"`` so that ReadLogs sends stored bytes as they are. ``seq`` is the
    per-logger sequence number of the first line, ``count`` the number of lines.
    """

    KIND: ClassVar[str] = "batch"
    RAW: ClassVar[str] = "records"  # travels as a frame of its own (see frames)
    container_id: str
    fifo: str
    seq: int
    count: int
    records: bytes | bytearray | memoryview

    def frames(self) -> list[bytes | bytearray | memoryview]:
        header = {"kind": self.KIND, "v": VERSION, "container_id": self.container_id, "fifo": self.fifo,
                  "seq": self.seq, "count": self.count}
        return [msgpack.packb(header, use_bin_type=True), self.records]


@dataclass(frozen=True, slots=True)
class LoggerClosed(Message):
    """reader -> local store. The logger's FIFO reached EOF; every batch of it was sent before this. Also supervisor
    -> local store (control path) for a logger whose writer left before any data, when no reader was forked."""

    KIND: ClassVar[str] = "logger_closed"
    container_id: str
    fifo: str
    lines: int
    discarded: int


@dataclass(frozen=True, slots=True)
class Stored(Message):
    """local store -> reader. Every batch of ``fifo`` before sequence number ``seq_end`` is on disk (or was
    refused for good and counted); ``closed`` acknowledges the ``LoggerClosed``. A reader keeps each batch until
    this arrives and sends it again when it does not (the local store died): the store drops batches it has."""

    KIND: ClassVar[str] = "stored"
    fifo: str
    seq_end: int
    closed: bool


# --- control path: supervisor <-> children --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChildStats(Message):
    """any child -> supervisor, about once a second; also the heartbeat: a child that sends none for a while is taken
    for hung, killed and respawned.

    ``counters`` maps a figure's name (with its unit, e.g. ``bytes_total``) to a number (a few small lists and
    strings too, all bounded). Figures that grow with the number of containers or outputs follow in ``StatsPart``s.
    """

    KIND: ClassVar[str] = "stats"
    role: str
    counters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StatsPart(Message):
    """local store or shipper -> supervisor, right after each ``ChildStats``: the figures per container (container
    id -> a map like ``counters``) and per output, cut into datagrams of at most MAX_STATS_MESSAGE. ``report`` numbers
    the child's reports; ``last`` marks a report's final part. The supervisor shows a report's figures once its last
    part came (a report cut short, its socket full, is dropped whole; the next one replaces it)."""

    KIND: ClassVar[str] = "stats_part"
    role: str
    report: int
    last: bool
    per_container: dict[str, Any]
    outputs: list[Any]


@dataclass(frozen=True, slots=True)
class LoggerStarted(Message):
    """supervisor -> local store. StartLogging accepted ``fifo`` for ``container_id``; ``info`` is Docker's
    ``Info`` object, kept beside the container's files so that its logs stay readable once it stopped.
    ``max_size`` (bytes, 0 = never rotate), ``max_file`` and ``compress`` are its validated rotation options."""

    KIND: ClassVar[str] = "logger_started"
    container_id: str
    fifo: str
    info: dict[str, Any]
    max_size: int
    max_file: int
    compress: bool
    ships: bool


@dataclass(frozen=True, slots=True)
class LoggersSynced(Message):
    """supervisor -> local store, after the ``LoggerStarted`` of every running logger that a (re)started local store
    must hear about (``loggers`` of them): from now on a container without an open logger really has none. Until it
    comes, RETAIN_STOPPED_FOR deletes nothing, since a quiet running container looks like a stopped one."""

    KIND: ClassVar[str] = "loggers_synced"
    loggers: int


@dataclass(frozen=True, slots=True)
class ReadRequest(Message):
    """supervisor -> local store, with two file descriptors attached (dockerd's connection, then the pipe that tells
    the end of the stream): a ``docker logs`` request.

    Times are Unix nanoseconds, 0 meaning no bound; ``tail`` < 0 means everything. ``open_fifos`` are the
    container's loggers still running when the request arrived: a follow ends once all of them closed and
    every stored line was sent. ``draining_fifos`` are those of them that got StopLogging and are still being
    read to their end: the history is read only once they closed (bounded wait), so ``docker logs`` right after
    a container exited shows all of it.
    """

    KIND: ClassVar[str] = "read"
    container_id: str
    since_ns: int
    until_ns: int
    tail: int
    follow: bool
    open_fifos: list[str]
    draining_fifos: list[str]


@dataclass(frozen=True, slots=True)
class ShipContainer(Message):
    """supervisor -> shipper. Ship ``container_id``'s stored lines with these validated log options (``options``
    holds secrets: it only travels over the socketpair and is kept by the shipper in a 0600 file)."""

    KIND: ClassVar[str] = "ship"
    container_id: str
    info: dict[str, Any]
    options: dict[str, Any]


# --- shipping path: shipper <-> local store ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fetch(Message):
    """shipper -> local store. Send up to ``max_bytes`` of records from the position; ``generation`` -1 means
    from the container's persisted shipping cursor. Answered as soon as at least one record exists there."""

    KIND: ClassVar[str] = "fetch"
    container_id: str
    generation: int
    offset: int
    max_bytes: int


@dataclass(frozen=True, slots=True)
class Records(Message):
    """local store -> shipper. Stored records ``[N][LogEntry][N]...`` from ``(generation, offset)`` up to
    ``(next_generation, next_offset)``. ``skipped_files`` counts rotated files deleted before they were shipped
    (their lines are lost to Elasticsearch); ``stopped`` says the container has no running logger and this is
    all there is."""

    KIND: ClassVar[str] = "records"
    container_id: str
    generation: int
    offset: int
    next_generation: int
    next_offset: int
    records: bytes
    skipped_files: int
    stopped: bool


@dataclass(frozen=True, slots=True)
class Ack(Message):
    """shipper -> local store. Elasticsearch accepted every record before ``(generation, offset)``."""

    KIND: ClassVar[str] = "ack"
    container_id: str
    generation: int
    offset: int


@dataclass(frozen=True, slots=True)
class Followers(Message):
    """supervisor -> reader. How many ReadLogs (``docker logs``, with or without ``-f``) read the reader's container
    now. When one starts, the reader sends what it holds at once, and while any runs it closes batches after a few
    milliseconds (a follower sees lines at once); while none runs, it lets a quiet container's lines gather for up
    to a second, so that 100 quiet containers cost few wake-ups."""

    KIND: ClassVar[str] = "followers"
    count: int


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.KIND: cls
    for cls in (Batch, LoggerClosed, Stored, ChildStats, LoggerStarted, ReadRequest, ShipContainer, Fetch,
                Records, Ack, Followers, StatsPart, LoggersSynced)
}


def _wire_type(hint: Any) -> Any:
    """The plain type a field's value must have on the wire (``list[str]`` -> ``list``; a union as it is)."""
    if isinstance(hint, types.UnionType):
        return hint
    return typing.get_origin(hint) or hint


_FIELDS: dict[str, tuple[tuple[str, Any], ...]] = {
    kind: tuple((name, _wire_type(hint)) for name, hint in typing.get_type_hints(cls).items()
          if typing.get_origin(hint) is not ClassVar)
    for kind, cls in MESSAGE_TYPES.items()
}


def decode(raw: bytes | memoryview) -> Message:
    """Decode one message; anything malformed raises ``MessageError`` (never another exception)."""
    try:
        wire = msgpack.unpackb(raw, raw=False)
    except Exception as exc:
        raise MessageError(f"undecodable msgpack: {exc}") from None
    if not isinstance(wire, dict):
        raise MessageError("message is not a map")
    kind = wire.get("kind")
    cls = MESSAGE_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None or not isinstance(kind, str):
        raise MessageError(f"unknown message kind {kind!r}")
    return _build(wire, kind, cls)


def decode_frames(frames: list[bytes] | list[memoryview] | list[bytes | memoryview]) -> Message:
    """Decode a message sent as ``Message.frames()``: one msgpack frame, or a header and the bytes of its ``RAW``
    field (kept as they came, e.g. a memoryview of a ZeroMQ frame: no copy). Anything else raises ``MessageError``."""
    if len(frames) == 1:
        return decode(frames[0])
    if len(frames) != 2:
        raise MessageError(f"message with {len(frames)} frames")
    try:
        wire = msgpack.unpackb(frames[0], raw=False)
    except Exception as exc:
        raise MessageError(f"undecodable msgpack header: {exc}") from None
    kind = wire.get("kind") if isinstance(wire, dict) else None
    cls = MESSAGE_TYPES.get(kind) if isinstance(kind, str) else None
    raw_field = getattr(cls, "RAW", "")
    if cls is None or not isinstance(kind, str) or not raw_field or raw_field in wire:
        raise MessageError(f"a {kind!r} message has no frame of raw bytes")
    wire[raw_field] = frames[1]
    return _build(wire, kind, cls)


def _build(wire: dict[str, Any], kind: str, cls: type[Message]) -> Message:
    if wire.get("v") != VERSION:
        raise MessageError(f"{kind}: unsupported version {wire.get('v')!r}")
    values = {}
    for name, expected in _FIELDS[kind]:
        if name not in wire:
            raise MessageError(f"{kind}: missing field {name!r}")
        value = wire[name]
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise MessageError(f"{kind}: field {name!r} must be {getattr(expected, '__name__', expected)}, "
                               f"not {type(value).__name__}")
        values[name] = value
    return cls(**values)


def stats_report(role: str, counters: dict[str, Any], report: int, per_container: dict[str, Any] | None = None,
                 outputs: list[Any] | None = None) -> list[bytes]:
    """One report of a child, as datagrams of at most MAX_STATS_MESSAGE: its ``ChildStats``, then (when it has
    per-container or per-output figures, even none) its ``StatsPart``s. One entry bigger than a datagram on its own
    (figures are small maps of numbers: never in practice) is left out rather than break the report."""
    head = ChildStats(role, counters).encode()
    if per_container is None and outputs is None:
        return [head]
    budget = MAX_STATS_MESSAGE - 256  # the part's own fields
    parts: list[tuple[dict[str, Any], list[Any]]] = [({}, [])]
    used = 0
    entries: list[tuple[str | None, Any]] = [*(per_container or {}).items(), *((None, o) for o in outputs or [])]
    for key, value in entries:
        size = len(msgpack.packb([key, value], use_bin_type=True))
        if size > budget:
            continue
        if used + size > budget:
            parts.append(({}, []))
            used = 0
        if key is None:
            parts[-1][1].append(value)
        else:
            parts[-1][0][key] = value
        used += size
    return [head, *(StatsPart(role, report, n == len(parts) - 1, containers, outs).encode()
                    for n, (containers, outs) in enumerate(parts))]
