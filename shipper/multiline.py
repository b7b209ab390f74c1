"""Multiline events with Filebeat's semantics (libbeat ``reader/multiline``), one :class:`Joiner` per stream.

The options and their meaning are Filebeat's:

- ``pattern`` (the default type): with ``match=after`` a line joins the open event when it matches ``pattern``
  (when it does not, with ``negate``); with ``match=before`` when the *previous* line matched (did not). A line that
  matches ``flush_pattern`` ends the open event, itself included (never checked on an event's first line, as in
  Filebeat).
- ``count``: every ``count_lines`` lines make one event.
- ``while_pattern``: consecutive lines that match (do not match, with ``negate``) make one event; any other line is an
  event of its own.

An event keeps at most ``max_lines`` lines and ``max_bytes`` bytes (:data:`MAX_EVENT_BYTES`, 1 MiB like a split line);
later lines still belong to it (they are matched, and end where it ends) but are dropped, and the document gets
``log.flags: ["truncated", "multiline"]`` as Filebeat's ``messageBuffer.finalize`` writes them. Lines are joined with
``"\\n"``.

Time is part of the rule, and only dockerd's ``time_nano`` (never the shipper's clock) decides it, so a restarted
shipper that replays the same records cuts them at the same places (an event's ``_id`` is its first line's position:
a different cut would reuse an ``_id`` for other lines, and ``create`` would answer 409 and lose them). See
``shipper/processing.py`` for the rule and the wall-clock timer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from proto.framing import Position
from proto.options import user_regex

MAX_EVENT_BYTES = 1 << 20  # like feed.MAX_MESSAGE: the bytes of one document's message
SEPARATOR = b"\n"
TYPES = ("pattern", "count", "while_pattern")


@dataclass(frozen=True)
class MultilineConfig:
    kind: str  # one of TYPES
    pattern: Any  # an RE2 pattern, or None (count)
    negate: bool
    match_after: bool
    flush_pattern: Any  # RE2 or None
    count_lines: int
    max_lines: int
    timeout_ns: int  # 0: no timeout
    max_bytes: int = MAX_EVENT_BYTES

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> MultilineConfig | None:
        """None when multiline is off (neither ``multiline.type`` nor ``multiline.pattern`` given). The options
        were validated at StartLogging; a value still wrong here (a config saved by another version) raises
        ValueError naming the option."""
        kind = options.get("multiline.type")
        pattern = options.get("multiline.pattern")
        if kind is None and pattern is None:
            return None
        kind = kind or "pattern"
        if kind not in TYPES:
            raise ValueError(f"multiline.type {kind!r} is not one of {', '.join(TYPES)}")
        if kind != "count" and not pattern:
            raise ValueError(f"multiline.type {kind} needs multiline.pattern")
        count = options.get("multiline.count_lines")
        if kind == "count" and (not isinstance(count, int) or count < 1):
            raise ValueError("multiline.type count needs multiline.count_lines (at least 1)")
        flush = options.get("multiline.flush_pattern")
        timeout = float(options.get("multiline.timeout", 5.0) or 0.0)
        return cls(
            kind=kind,
            pattern=user_regex(pattern) if pattern else None,
            negate=bool(options.get("multiline.negate", False)),
            match_after=(options.get("multiline.match") or "after") == "after",
            flush_pattern=user_regex(flush) if flush else None,
            count_lines=int(count or 0),
            max_lines=int(options.get("multiline.max_lines", 500) or 0),
            timeout_ns=int(timeout * 1_000_000_000),
        )


@dataclass
class Line:
    """One complete line (dockerd's 16 KiB parts joined) as multiline sees it."""

    start: Position
    end: Position
    time_nano: int
    source: str
    text: bytes  # without its "\n"; the JSON message_key's value when JSON decoding is on
    truncated: bool = False  # cut at the split-line cap already
    fields: dict[str, Any] | None = None  # the decoded JSON object (JSON decoding on)
    error: str | None = None  # the JSON decoding error (JSON decoding on)
    spans: bool = False  # made of more than one record (dockerd's parts)
    alone: bool = False  # a JSON line without a string message_key: its own event, no filters


@dataclass
class Event:
    """Lines joined into one document (a single line is an event of one line)."""

    source: str
    start: Position  # its first line's: the document's _id
    end: Position  # after its last line
    time_nano: int  # its first line's: the document's @timestamp
    last_time: int  # its last line's: the timeout counts from it
    opened_at: int  # ContainerFeed.records_seen when it opened
    parts: list[bytes] = field(default_factory=list)
    size: int = 0
    lines: int = 0  # lines kept
    processed: int = 0  # lines that belong to it, kept or dropped (Filebeat's processedLines)
    truncated: bool = False
    last: bytes = b""  # the last line's text (match=before looks at it)
    fields: dict[str, Any] | None = None
    error: str | None = None
    alone: bool = False
    spans: bool = False  # made of more than one record

    @property
    def text(self) -> bytes:
        return self.parts[0] if len(self.parts) == 1 else SEPARATOR.join(self.parts)

    @property
    def multiline(self) -> bool:
        return self.lines > 1


def single(line: Line, opened_at: int) -> Event:
    """An event of one line, never joined (a JSON line without message text)."""
    return Event(line.source, line.start, line.end, line.time_nano, line.time_nano, opened_at, [line.text],
                 len(line.text), 1, 1, line.truncated, line.text, line.fields, line.error, line.alone, line.spans)


class Joiner:
    """The multiline state machine of one stream: :meth:`add` takes a line and returns the events it finished."""

    def __init__(self, config: MultilineConfig, join_fields: Any = None) -> None:
        self.config = config
        self.join_fields = join_fields  # json_lines.join_fields when JSON decoding is on
        self.open: Event | None = None

    def add(self, line: Line, records_seen: int) -> list[Event]:
        kind = self.config.kind
        if kind == "pattern":
            return self._pattern(line, records_seen)
        if kind == "count":
            return self._count(line, records_seen)
        return self._while(line, records_seen)

    def flush(self) -> Event | None:
        event, self.open = self.open, None
        return event

    # ---------------------------------------------------------------- the three types (Filebeat's readers)

    def _pattern(self, line: Line, records_seen: int) -> list[Event]:
        event = self.open
        if event is None:
            self._start(line, records_seen)
            return []
        flush = self.config.flush_pattern
        if flush is not None and flush.search(line.text):
            self._append(event, line)
            self.open = None
            return [event]
        if not self._joins(event.last, line.text):
            self._start(line, records_seen)
            return [event]
        self._append(event, line)
        return []

    def _joins(self, last: bytes, current: bytes) -> bool:
        config = self.config
        matched = config.pattern.search(current if config.match_after else last) is not None
        return matched != config.negate

    def _count(self, line: Line, records_seen: int) -> list[Event]:
        event = self.open
        if event is None:
            event = self._start(line, records_seen)
        else:
            self._append(event, line)
        if event.processed >= self.config.count_lines:
            self.open = None
            return [event]
        return []

    def _while(self, line: Line, records_seen: int) -> list[Event]:
        config = self.config
        matches = (config.pattern.search(line.text) is not None) != config.negate
        event = self.open
        if not matches:
            self.open = None
            alone = single(line, records_seen)
            return [alone] if event is None else [event, alone]
        if event is None:
            self._start(line, records_seen)
        else:
            self._append(event, line)
        return []

    # ---------------------------------------------------------------- the buffer (Filebeat's messageBuffer)

    def _start(self, line: Line, records_seen: int) -> Event:
        event = self.open = Event(line.source, line.start, line.end, line.time_nano, line.time_nano, records_seen,
                                  fields=line.fields, error=line.error, spans=line.spans)
        self._append(event, line, first=True)
        return event

    def _append(self, event: Event, line: Line, first: bool = False) -> None:
        """Filebeat's ``addLine``: kept while under max_lines and max_bytes (cut at max_bytes), else dropped and
        the event flagged truncated; either way the line belongs to the event."""
        config = self.config
        text = line.text
        size = event.size + (0 if first else len(SEPARATOR))
        space = config.max_bytes - size
        if space > 0 and (config.max_lines <= 0 or event.lines < config.max_lines):
            kept = text[:space]
            event.parts.append(kept)
            event.size = size + len(kept)
            event.lines += 1
            event.truncated |= len(kept) < len(text) or line.truncated
        else:
            event.truncated = True
        event.processed += 1
        event.spans |= not first
        event.last = text
        event.end = line.end
        event.last_time = line.time_nano
        if not first and self.join_fields is not None and line.fields is not None:
            event.fields = self.join_fields(event.fields, line.fields)
