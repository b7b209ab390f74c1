"""Processing of one container's complete lines, in Filebeat's log input order: JSON decoding, multiline,
``include_lines`` then ``exclude_lines`` (on the joined event), then the document.

A container with none of these options never comes here (``ContainerFeed`` keeps its plain path).

**Timeout, deterministic on replay.** An open event is ended before any record (of either stream) whose
``time_nano`` is ``multiline.timeout`` or more after the event's last line: dockerd's clock, stored with the lines,
so a restarted shipper replaying the same records ends the same events at the same places. While the container is
quiet no record comes, so :meth:`Processor.expire` (the shipper's housekeeping, once a second) ends an open event
once the wall clock is past its last line's time + timeout + :data:`TIMEOUT_GRACE_NS` (3 s), and only when the
shipper has read everything the local store had: a line written before the timeout may still be on its way (the
reader holds a batch up to 1 s, then the local store, then the fetch), and had it joined on replay but not live, its
text would be lost to a 409. A line that still comes later than that is logged once and counted (``late_lines_total``).

A stopped container's open events are sent at once (``Records.stopped``); a replay of a stopped container ends
them at the same place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from proto.options import user_regex
from shipper.multiline import Event, Joiner, Line, MultilineConfig, single

log = logging.getLogger("elp.shipper")

TIMEOUT_GRACE_NS = 3_000_000_000  # the reader's batch window (1 s at most), the local store and the fetch
# An event open over this many records (of both streams) is ended: the acknowledgement waits at its start, so an
# event that never ends (a pattern every line matches) would hold the container's cursor for ever. Counted in
# records, not time, so that a replay cuts at the same record.
MAX_EVENT_SPAN = 10_000
# dockerd writes two streams; a FIFO carrying other source names (bad input) must not hold an event per name.
MAX_STREAMS = 4

# (event) -> (index, pipeline or None, document bytes)
EventEncoder = Callable[[Event], tuple[str, str | None, bytes]]
# (complete line) -> Line with text, fields, error, alone set (json_lines.decode_line's view)
LineDecoder = Callable[[Line], Line]


@dataclass(frozen=True)
class LineFilter:
    """Filebeat's ``include_lines`` then ``exclude_lines``: unanchored RE2 searches on the event's text."""

    include: tuple[Any, ...]
    exclude: tuple[Any, ...]

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> LineFilter | None:
        include = tuple(user_regex(p) for p in options.get("include_lines") or ())
        exclude = tuple(user_regex(p) for p in options.get("exclude_lines") or ())
        return cls(include, exclude) if include or exclude else None

    def keeps(self, text: bytes) -> bool:
        if self.include and not any(p.search(text) for p in self.include):
            return False
        return not any(p.search(text) for p in self.exclude)


class Processor:
    """Turns complete lines into finished events (per stream), and finished events into kept or dropped ones."""

    def __init__(self, multiline: MultilineConfig | None, line_filter: LineFilter | None,
                 encode_event: EventEncoder, decode: LineDecoder | None = None, join_fields: Any = None,
                 container: str = "") -> None:
        self.container = container  # for the log
        self.multiline = multiline
        self.line_filter = line_filter
        self.encode_event = encode_event
        self.decode = decode
        self.join_fields = join_fields
        self.joiners: dict[str, Joiner] = {}
        self.timeout_ns = multiline.timeout_ns if multiline else 0
        self.last_flushed: dict[str, int] = {}  # stream -> last line time of its event ended by expire()
        self.dropped_total = 0  # events dropped by include_lines / exclude_lines
        self.multiline_total = 0  # events of more than one line
        self.late_lines_total = 0  # lines that came after expire() ended the event they would have joined
        self.span_cut_total = 0  # events ended by MAX_EVENT_SPAN

    @property
    def open_starts(self) -> list[Any]:
        return [j.open.start for j in self.joiners.values() if j.open is not None]

    def on_record(self, time_nano: int, records_seen: int) -> list[Event]:
        """Before each record: the open events its time (or the span) ends."""
        ended: list[Event] = []
        for joiner in self.joiners.values():
            event = joiner.open
            if event is None:
                continue
            if self.timeout_ns and time_nano - event.last_time >= self.timeout_ns:
                ended.append(event)
                joiner.open = None
            elif records_seen - event.opened_at >= MAX_EVENT_SPAN:
                self.span_cut_total += 1
                ended.append(event)
                joiner.open = None
        return ended

    def on_line(self, line: Line, records_seen: int) -> list[Event]:
        """A complete line; returns the events it finished (in order)."""
        if self.decode is not None:
            line = self.decode(line)
        if self.timeout_ns and self.last_flushed:
            flushed = self.last_flushed.pop(line.source, None)
            if flushed is not None and line.time_nano - flushed < self.timeout_ns:
                self.late_lines_total += 1
                if self.late_lines_total == 1:
                    log.warning("container %s: a line came more than multiline.timeout + %d s after it was written, "
                                "after its event was sent; it starts an event of its own (a restarted shipper may "
                                "join it to the earlier one, and Elasticsearch would keep the earlier one). Later "
                                "ones are counted in stats (late_lines_total)", self.container,
                                TIMEOUT_GRACE_NS // 1_000_000_000)
        if self.multiline is None:
            return [single(line, records_seen)]
        ended: list[Event] = []
        joiner = self.joiners.get(line.source)
        if joiner is None:
            if len(self.joiners) >= MAX_STREAMS:
                ended += self._forget_a_stream()
            joiner = self.joiners[line.source] = Joiner(self.multiline, self.join_fields)
        if line.alone:
            # A JSON line without message text: neither multiline nor the filters apply (Filebeat's documented rule).
            event = joiner.flush()
            return ended + ([] if event is None else [event]) + [single(line, records_seen)]
        return ended + joiner.add(line, records_seen)

    def _forget_a_stream(self) -> list[Event]:
        """Make room for a new stream: the one whose event opened first (or one with none open) is forgotten, its
        event ended as it is."""
        def opened(item: tuple[str, Joiner]) -> int:
            return -1 if item[1].open is None else item[1].open.opened_at

        source, joiner = min(self.joiners.items(), key=opened)
        del self.joiners[source]
        event = joiner.flush()
        if event is None:
            return []
        self.span_cut_total += 1
        return [event]

    def flush_all(self) -> list[Event]:
        """Every open event (the container stopped)."""
        events = [e for e in (j.flush() for j in self.joiners.values()) if e is not None]
        events.sort(key=lambda e: e.start)
        return events

    def expire(self, now_ns: int) -> list[Event]:
        """Open events whose last line is more than timeout + grace ago by the wall clock (the caller checks that
        nothing is left to read)."""
        if not self.timeout_ns:
            return []
        ended = []
        for source, joiner in self.joiners.items():
            event = joiner.open
            if event is not None and now_ns >= event.last_time + self.timeout_ns + TIMEOUT_GRACE_NS:
                joiner.open = None
                self.last_flushed[source] = event.last_time
                ended.append(event)
        return ended

    def keeps(self, event: Event) -> bool:
        """Whether the event is sent (counts it either way)."""
        if event.multiline:
            self.multiline_total += 1
        if self.line_filter is None or event.alone or self.line_filter.keeps(event.text):
            return True
        self.dropped_total += 1
        return False
