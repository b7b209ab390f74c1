"""ContainerFeed: one shipping container's records turned into documents, and what Elasticsearch has of them.

Records come from the local store in order. Each becomes a document, except the parts of a line dockerd split at
16 KiB, which are joined back into one document (up to ``MAX_MESSAGE`` bytes, then cut and flagged). Every
document carries the position after its last record; the feed acknowledges a position only once every document
before it is done, so a restart resumes exactly after the last line Elasticsearch holds.
"""

from __future__ import annotations

import base64
import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from proto.entry_pb2 import LogEntry
from proto.framing import HEADER, HEADER_SIZE, MARKER_PREFIX
from proto.messages import Records
from shipper.encoder import Encoder

Position = tuple[int, int]
MAX_MESSAGE = 1 << 20  # a reassembled line longer than this is cut and flagged


@dataclass
class PendingDoc:
    """One document on its way to Elasticsearch."""

    container_id: str
    end: Position
    doc_id: str
    index: str
    body: bytes
    pipeline: str | None = None
    attempts: int = 0


@dataclass
class ContainerFeed:
    container_id: str
    encode: Encoder
    next_pos: Position | None = None  # None: ask the store for its persisted cursor
    fetching: bool = False
    stopped: bool = False
    undecodable: int = 0
    lost_files: int = 0
    docs_total: int = 0
    joined_total: int = 0
    acked: Position | None = None
    acked_sent: Position | None = None
    # document end position -> done, in the order the documents were made
    inflight: OrderedDict[Position, bool] = field(default_factory=OrderedDict)
    group: list[bytes] = field(default_factory=list)
    group_start: Position | None = None
    group_time: int = 0
    group_source: str = ""
    id_prefix: str = field(init=False)

    def __post_init__(self) -> None:
        self.id_prefix = id_prefix(self.container_id)
    group_size: int = 0

    def on_records(self, msg: Records) -> list[PendingDoc]:
        """Documents for the records in ``msg``; also moves ``next_pos``."""
        docs: list[PendingDoc] = []
        data = msg.records
        generation, base = msg.generation, msg.offset
        pos = 0
        self.lost_files += msg.skipped_files
        while pos + 2 * HEADER_SIZE <= len(data):
            (n,) = HEADER.unpack_from(data, pos)
            start, end = (generation, base + pos), (generation, base + pos + n + 2 * HEADER_SIZE)
            body = data[pos + HEADER_SIZE : pos + HEADER_SIZE + n]
            pos += n + 2 * HEADER_SIZE
            try:
                entry = LogEntry.FromString(body)
            except DecodeError:
                self.undecodable += 1
                continue
            doc = self._add(entry, start, end)
            if doc is not None:
                docs.append(doc)
        self.next_pos = (msg.next_generation, msg.next_offset)
        self.stopped = msg.stopped
        if msg.stopped and self.group:
            # The container ended in the middle of a line (its output had no final newline).
            docs.append(self._flush_group(self.next_pos))
        return docs

    def _add(self, entry: LogEntry, start: Position, end: Position) -> PendingDoc | None:
        if not entry.source and entry.partial_log_metadata.id.startswith(MARKER_PREFIX):
            self._skip(end)  # the local store's batch marker, not a line
            return None
        line = entry.line
        if not entry.partial:
            return self._doc(start, end, entry.time_nano, entry.source, line[:-1] if line.endswith(b"\n") else line,
                             False)
        if not self.group:
            self.group_start, self.group_time, self.group_source = start, entry.time_nano, entry.source
        last = entry.partial_log_metadata.last
        if last and line.endswith(b"\n"):
            line = line[:-1]
        if self.group_size < MAX_MESSAGE:
            self.group.append(line[: MAX_MESSAGE - self.group_size])
        self.group_size += len(line)
        return self._flush_group(end) if last else None

    def _skip(self, end: Position) -> None:
        """A record that makes no document: acknowledged as soon as everything before it is."""
        if self.group:
            return  # inside a split line: the line's document covers it
        self.inflight[end] = True

    def _flush_group(self, end: Position) -> PendingDoc:
        assert self.group_start is not None
        message = b"".join(self.group)
        truncated = self.group_size > MAX_MESSAGE
        self.joined_total += len(self.group) > 1
        doc = self._doc(self.group_start, end, self.group_time, self.group_source, message, truncated)
        self.group.clear()
        self.group_size = 0
        self.group_start = None
        return doc

    def _doc(self, start: Position, end: Position, time_nano: int, source: str, message: bytes,
             truncated: bool) -> PendingDoc:
        index, pipeline, body = self.encode(time_nano, source, message, truncated)
        self.inflight[end] = False
        self.docs_total += 1
        return PendingDoc(self.container_id, end, doc_id(self.id_prefix, start), index, body, pipeline)

    def done(self, end: Position) -> Position | None:
        """A document is in Elasticsearch (or given up on); returns a new position to acknowledge, if any."""
        if end in self.inflight:
            self.inflight[end] = True
        return self.advance()

    def advance(self) -> Position | None:
        """Drop the finished head of ``inflight``; the new position to acknowledge, if it moved."""
        moved = None
        while self.inflight:
            first, finished = next(iter(self.inflight.items()))
            if not finished:
                break
            self.inflight.popitem(last=False)
            moved = first
        if moved is not None:
            self.acked = moved
        return moved

    @property
    def backlog(self) -> int:
        return len(self.inflight)


def id_prefix(container_id: str) -> str:
    """16 characters standing for the container in its documents' ``_id`` (96 bits of a hash of its id)."""
    return base64.urlsafe_b64encode(hashlib.blake2b(container_id.encode(), digest_size=12).digest()).decode()


def doc_id(prefix: str, start: Position) -> str:
    """Deterministic ``_id`` of the document starting at ``start``: a retry or a replay after a restart sends the
    same id, and ``create`` answers 409 instead of indexing the line twice. The container's hashed prefix, then the
    position in hex: no hashing per document (it was a tenth of the shipper's time)."""
    return f"{prefix}{start[0]:x}.{start[1]:x}"
