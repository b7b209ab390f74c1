"""ContainerFeed: one shipping container's records turned into documents, and what Elasticsearch has of them.

Records come from the local store in order. Each becomes a document, except the parts of a line dockerd split at
16 KiB, which are joined back into one document (up to ``MAX_MESSAGE`` bytes, then cut and flagged). Parts join
only with parts of their own stream and partial id: dockerd copies stdout and stderr separately, so a long stdout
line and a long stderr line may interleave, with complete lines between their parts.

A container with processing options (JSON, multiline, line filters) hands each complete line to its
``Processor`` (``shipper/processing.py``) instead, and makes a document per event it returns (a filtered one is done
at once).

The feed acknowledges a position only once every record before it is done, and never past the start of a line
or event whose parts are still open or on their way: a restart resumes at the first line Elasticsearch may lack,
all its parts included (what it already has answers 409). Nor does it stop inside a finished document of several
records (an event or line of the other stream may start there): a restart there would send its tail again.
"""

from __future__ import annotations

import base64
import hashlib
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from proto.entry_pb2 import LogEntry
from proto.framing import HEADER_SIZE, Position, is_marker_entry, record_spans
from proto.messages import Records
from shipper.encoder import Encoder
from shipper.multiline import Event, Line
from shipper.processing import Processor

MAX_MESSAGE = 1 << 20  # a reassembled line longer than this is cut and flagged
# A split line still open after this many later records is sent as it is (its remaining parts make a second
# document): the acknowledgement waits at its start, so a line whose end never comes would hold the container's
# cursor for ever (a restart would replay everything since, and the local store would never see it shipped).
MAX_GROUP_SPAN = 10_000
# dockerd writes two streams; a FIFO carrying other sources (bad input) must not hold a MiB per source name.
MAX_OPEN_GROUPS = 4


@dataclass(slots=True)  # one per line on the hot path: slots make it cheaper to build and read
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
class _Group:
    """The parts of one split line received so far."""

    partial_id: str
    start: Position
    time_nano: int
    source: str
    opened_at: int  # ContainerFeed.records_seen when its first part came
    end: Position = (0, 0)  # after its last part so far
    parts: list[bytes] = field(default_factory=list)
    size: int = 0


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
    groups_cut: int = 0  # split lines sent before their end: too late (MAX_GROUP_SPAN) or too many (MAX_OPEN_GROUPS)
    records_seen: int = 0
    acked: Position | None = None
    done_to: Position | None = None  # the furthest end of a finished record or document
    acked_sent: Position | None = None
    # document end position -> done, in the order the documents were made (records that make no document too)
    inflight: OrderedDict[Position, bool] = field(default_factory=OrderedDict)
    # The start of each split line's document not done yet, by its end: records of other lines lie between its
    # parts, so the acknowledgement must not pass its start even when they are done.
    joined_starts: dict[Position, Position] = field(default_factory=dict)
    # Documents of more than one record that are done, start by end, while the acknowledgement is before their end:
    # it must never stop inside one (a restart there would send its tail again as a new document).
    done_spans: dict[Position, Position] = field(default_factory=dict)
    # JSON, multiline, filters (None: the plain path, one document per complete line).
    processor: Processor | None = None
    dropped_total: int = 0  # events include_lines / exclude_lines dropped
    # Processing: the events sent and not done, per stream in the order of their starts (an event's document is made
    # when a later line ends it, after records of the other stream: the acknowledgement must wait at its start),
    # the ends of those done but not yet at the head of their stream, and the starts of those of several records.
    sent_events: dict[str, deque[tuple[Position, Position]]] = field(default_factory=dict)
    events_done: set[Position] = field(default_factory=set)
    event_ends: set[Position] = field(default_factory=set)  # the ends of those not done
    event_spans: dict[Position, Position] = field(default_factory=dict)
    # The open split lines, one per stream at most (dockerd's copier finishes a line before its next on a stream).
    groups: dict[str, _Group] = field(default_factory=dict)
    id_prefix: str = field(init=False)

    def __post_init__(self) -> None:
        self.id_prefix = id_prefix(self.container_id)

    @property
    def group(self) -> bool:
        """Whether a split line or a multiline event is open (its document is not made yet)."""
        return bool(self.groups) or (self.processor is not None and bool(self.processor.open_starts))

    def on_records(self, msg: Records) -> list[PendingDoc]:
        """Documents for the records in ``msg``; also moves ``next_pos``."""
        docs: list[PendingDoc] = []
        data = msg.records
        generation, base = msg.generation, msg.offset
        self.lost_files += msg.skipped_files
        processor = self.processor
        # The plain path's per-line work is inlined below (one document per complete line of a named stream):
        # it runs for every line, and calls and lookups were a fifth of the shipper's time (issue 15).
        from_string, encode, inflight, prefix = LogEntry.FromString, self.encode, self.inflight, self.id_prefix
        # Without a pipeline the builder's encode_line itself (see shipper/encoder.py): no wrapper call per line.
        encode_line = getattr(encode, "line", None)
        made = 0
        for first, after in record_spans(data):
            start, end = (generation, base + first), (generation, base + after)
            body = data[first + HEADER_SIZE : after - HEADER_SIZE]
            self.records_seen += 1
            try:
                entry = from_string(body)
            except DecodeError:
                self.undecodable += 1
                inflight[end] = True  # counted; nothing to send
                continue
            if processor is None and entry.source and not entry.partial:  # never a marker: those have no source
                line = entry.line
                if encode_line is not None:
                    pipeline = None
                    index, doc = encode_line(entry.time_nano, entry.source,
                                             line[:-1] if line[-1:] == b"\n" else line, False)
                else:
                    index, pipeline, doc = encode(entry.time_nano, entry.source,
                                                  line[:-1] if line[-1:] == b"\n" else line, False)
                inflight[end] = False
                made += 1
                docs.append(PendingDoc(self.container_id, end, f"{prefix}{start[0]:x}.{start[1]:x}", index, doc,
                                       pipeline))
            else:
                if processor is not None and not is_marker_entry(entry):
                    for event in processor.on_record(entry.time_nano, self.records_seen):
                        self._event(event, docs)
                self._add(entry, start, end, docs)
            if self.groups:
                self._cut_stale_groups(docs)
        self.docs_total += made
        self.next_pos = (msg.next_generation, msg.next_offset)
        self.stopped = msg.stopped
        if msg.stopped:
            # The container ended in the middle of a line (its output had no final newline).
            for source in list(self.groups):
                self._flush_group(source, docs)
            if self.processor is not None:  # and the events still open end with it
                for event in self.processor.flush_all():
                    self._event(event, docs)
        return docs

    def reconfigure(self, processor: Processor | None) -> list[PendingDoc]:
        """Other processing settings: the events open under the old ones are sent as they are, then the new apply."""
        docs = self.flush_events()
        self.processor = processor
        return docs

    def flush_events(self) -> list[PendingDoc]:
        """Every open multiline event, sent as it is (the container's processing settings change)."""
        docs: list[PendingDoc] = []
        if self.processor is not None:
            for event in self.processor.flush_all():
                self._event(event, docs)
        return docs

    def expire(self, now_ns: int) -> list[PendingDoc]:
        """The multiline events a quiet container left open past their timeout (see shipper/processing.py)."""
        docs: list[PendingDoc] = []
        if self.processor is not None:
            for event in self.processor.expire(now_ns):
                self._event(event, docs)
        return docs

    def _add(self, entry: LogEntry, start: Position, end: Position, docs: list[PendingDoc]) -> None:
        if is_marker_entry(entry):
            self.inflight[end] = True  # the local store's batch marker, not a line: done at once
            return
        line = entry.line
        if not entry.partial:
            message = line[:-1] if line.endswith(b"\n") else line
            if self.processor is None:  # the plain path, as direct as it was before processing
                docs.append(self._doc(start, end, entry.time_nano, entry.source, message, False))
            else:
                self._complete(start, end, entry.time_nano, entry.source, message, False, False, docs)
            return
        meta = entry.partial_log_metadata
        group = self.groups.get(entry.source)
        if group is not None and group.partial_id != meta.id:
            # A new line on this stream while the previous one never got its last part (e.g. dockerd restarted):
            # the previous one is as complete as it will get.
            self._flush_group(entry.source, docs)
            group = None
        if group is None:
            if len(self.groups) >= MAX_OPEN_GROUPS:
                oldest = min(self.groups.values(), key=lambda g: g.opened_at)
                self.groups_cut += 1
                self._flush_group(oldest.source, docs)
            group = self.groups[entry.source] = _Group(meta.id, start, entry.time_nano, entry.source,
                                                       self.records_seen)
        last = meta.last
        if last and line.endswith(b"\n"):
            line = line[:-1]
        if group.size < MAX_MESSAGE:
            group.parts.append(line[: MAX_MESSAGE - group.size])
        group.size += len(line)
        group.end = end
        if last:
            self._flush_group(entry.source, docs)

    def _cut_stale_groups(self, docs: list[PendingDoc]) -> None:
        for source, group in list(self.groups.items()):
            if self.records_seen - group.opened_at >= MAX_GROUP_SPAN:
                self.groups_cut += 1
                self._flush_group(source, docs)

    def _flush_group(self, source: str, docs: list[PendingDoc]) -> None:
        group = self.groups.pop(source)
        message = b"".join(group.parts)
        self.joined_total += len(group.parts) > 1
        self._complete(group.start, group.end, group.time_nano, group.source, message, group.size > MAX_MESSAGE,
                       True, docs)

    def _complete(self, start: Position, end: Position, time_nano: int, source: str, message: bytes,
                  truncated: bool, spans: bool, docs: list[PendingDoc]) -> None:
        """A complete line (``spans``: of more than one record): its document (the plain path), or on to
        processing."""
        if self.processor is None:
            if spans:
                self.joined_starts[end] = start
            docs.append(self._doc(start, end, time_nano, source, message, truncated))
            return
        for event in self.processor.on_line(Line(start, end, time_nano, source, message, truncated, spans=spans),
                                            self.records_seen):
            self._event(event, docs)

    def _event(self, event: Event, docs: list[PendingDoc]) -> None:
        """A finished event: its document, or done at once when the filters drop it."""
        assert self.processor is not None
        if not self.processor.keeps(event):
            self.dropped_total += 1
            self.inflight[event.end] = True
            if event.spans:
                self.done_spans[event.end] = event.start
            return
        index, pipeline, body = self.processor.encode_event(event)
        sent = self.sent_events.get(event.source)
        if sent is None:
            sent = self.sent_events[event.source] = deque()
        sent.append((event.start, event.end))
        self.event_ends.add(event.end)
        if event.spans:
            self.event_spans[event.end] = event.start
        self.inflight[event.end] = False
        self.docs_total += 1
        docs.append(PendingDoc(self.container_id, event.end, doc_id(self.id_prefix, event.start), index, body,
                               pipeline))

    def _doc(self, start: Position, end: Position, time_nano: int, source: str, message: bytes,
             truncated: bool) -> PendingDoc:
        index, pipeline, body = self.encode(time_nano, source, message, truncated)
        self.inflight[end] = False
        self.docs_total += 1
        return PendingDoc(self.container_id, end, doc_id(self.id_prefix, start), index, body, pipeline)

    def done(self, end: Position) -> Position | None:
        """A document is in Elasticsearch (or given up on); returns a new position to acknowledge, if any."""
        self.mark_done(end)
        return self.advance()

    def mark_done(self, end: Position) -> None:
        """``done`` without moving the acknowledgement: the shipper finishes a whole bulk answer's documents, then
        calls ``advance`` once per container (advancing per document was a twentieth of its time)."""
        if end in self.inflight:
            self.inflight[end] = True
        if self.joined_starts:
            start = self.joined_starts.pop(end, None)
            if start is not None:
                self.done_spans[end] = start
        if self.sent_events and end in self.event_ends:  # an event's document (processing)
            self.event_ends.discard(end)
            self.events_done.add(end)
            start = self.event_spans.pop(end, None)
            if start is not None:
                self.done_spans[end] = start

    def advance(self) -> Position | None:
        """Drop the finished head of ``inflight``; the new position to acknowledge, if it moved.

        Everything before the furthest finished end is done, except the split lines and multiline events still
        open or on their way: the acknowledgement stops at the first of their starts."""
        reached = self.done_to
        while self.inflight:
            first, finished = next(iter(self.inflight.items()))
            if not finished:
                break
            self.inflight.popitem(last=False)
            # A line cut before its end is made after records that follow it: keep the furthest.
            reached = first if reached is None or first > reached else reached
        self.done_to = reached
        if reached is None:
            return None
        if self.groups or self.joined_starts:
            reached = min(reached, *(g.start for g in self.groups.values()), *self.joined_starts.values())
        if self.processor is not None or self.sent_events:
            starts = self._unfinished_event_starts()
            if self.processor is not None:
                starts += self.processor.open_starts
            if starts:
                reached = min(reached, min(starts))
        if self.acked is not None and reached <= self.acked:
            return None
        if self.done_spans:
            reached = self._outside_spans(reached)
            if self.acked is not None and reached <= self.acked:
                return None
        self.acked = reached
        return reached

    def _unfinished_event_starts(self) -> list[Position]:
        """The first start of each stream's events sent and not done (done ones at the head are dropped)."""
        starts = []
        for source, sent in list(self.sent_events.items()):
            while sent and sent[0][1] in self.events_done:
                self.events_done.discard(sent.popleft()[1])
            if sent:
                starts.append(sent[0][0])
            elif len(self.sent_events) > MAX_OPEN_GROUPS:
                del self.sent_events[source]  # bad input naming many sources: keep a few
        return starts

    def _outside_spans(self, reached: Position) -> Position:
        """``reached``, moved back to the start of any finished document it falls inside (a stream's open line or
        event can start in the middle of the other stream's: a restart there would make the other's tail a second
        document). Spans that end before the result are forgotten: the acknowledgement only moves forward."""
        moved = True
        while moved:
            moved = False
            for end, start in self.done_spans.items():
                if start < reached < end:
                    reached, moved = start, True
        for end in [end for end in self.done_spans if end <= reached]:
            del self.done_spans[end]
        return reached

    @property
    def backlog(self) -> int:
        return len(self.inflight)


def id_prefix(container_id: str) -> str:
    """16 characters standing for the container in its documents' ``_id`` (96 bits of a hash of its id)."""
    return base64.urlsafe_b64encode(hashlib.blake2b(container_id.encode(), digest_size=12).digest()).decode()


def doc_id(prefix: str, start: Position) -> str:
    """Deterministic ``_id`` of the document starting at ``start``: a retry or a replay after a restart sends the
    same id, and ``create`` answers 409 instead of indexing the line twice. The container's hashed prefix, then the
    position in hex: no hashing per document (it was a tenth of the shipper's time). ``on_records`` inlines this
    format on the plain path: change both together."""
    return f"{prefix}{start[0]:x}.{start[1]:x}"
