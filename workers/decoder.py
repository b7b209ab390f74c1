"""FrameDecoder: FIFO bytes in, on-disk records out."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import DecodeError

from proto.entry_pb2 import LogEntry
from proto.framing import HEADER, FrameSplitter

# Frames inside a salvaged body are salvaged in turn, this deep at most: only a crafted stream nests them.
MAX_SALVAGE_DEPTH = 4

# What dockerd writes for a complete line: source ("stdout"/"stderr"), time_nano (a 9-byte varint for any time
# between 2006 and 2262), then line, last: field 1, length 6, the source, field 2's tag. For such a body the
# "\n" is added without decoding it (parse + serialize cost 3 times as much): see FrameDecoder._store.
_STDOUT_HEAD = b"\n\x06stdout\x10"
_STDERR_HEAD = b"\n\x06stderr\x10"
_LINE_TAG_AT = 18  # after the head (9 bytes) and the 9-byte time
_LINE_TAG = 0x1A  # field 3 (line), length-delimited


@dataclass
class DecoderCounters:
    """What one reader has seen, for stats and its closing log line."""

    lines: int = 0
    bytes: int = 0
    partial_chunks: int = 0
    undecodable_frames: int = 0  # part of FrameDecoder.discarded_frames, which adds the oversized ones


class FrameDecoder:
    """Cuts FIFO chunks into frames and turns each into a stored record.

    A stored record is Docker's ``local`` layout, ``[N][LogEntry][N]``, with one change: a complete line
    (not partial, or the last part of a split line) gets back the ``"\\n"`` that dockerd stripped, so that
    ReadLogs can send stored entries as they are and ``docker logs`` prints each line whole. A split line's
    other parts keep no newline, so dockerd prints the parts back to back as one line.
    """

    def __init__(self) -> None:
        self.splitter = FrameSplitter()
        self.counters = DecoderCounters()

    def feed(self, chunk: bytes, out: bytearray) -> int:
        """Append the records of every complete frame in ``chunk`` to ``out``; return how many."""
        n = self._store(self.splitter.feed(chunk), out)
        self.counters.lines += n
        self.counters.bytes += len(chunk)
        return n

    def _store(self, bodies: list[bytes], out: bytearray, depth: int = 0) -> int:
        pack = HEADER.pack
        from_string = LogEntry.FromString
        counters = self.counters
        n = 0
        for body in bodies:
            # dockerd's usual layout, with line last (so not partial) and a canonical 9-byte time: the record is the
            # body with "\n" appended and line's length one more, exactly what decoding and encoding would make.
            if (len(body) > _LINE_TAG_AT + 2 and body[_LINE_TAG_AT] == _LINE_TAG
                    and (body.startswith(_STDOUT_HEAD) or body.startswith(_STDERR_HEAD))
                    and 0 < body[17] < 0x80 and min(body[9:17]) >= 0x80):
                low = body[19]
                grown, width = low + 1, 1  # line's new length and its varint's width (kept: never 1 -> 2)
                if not (low < 0x7F and 20 + low == len(body)):
                    high = body[20]
                    grown, width = (low & 0x7F | high << 7) + 1, 2
                    if not (low >= 0x80 and high > 0 and 20 + grown == len(body) and 0x80 <= grown < 1 << 14):
                        width = 0
                if width:
                    size = pack(len(body) + 1)
                    at = len(out) + 4 + 19
                    out += size
                    out += body
                    out += b"\n"
                    out += size
                    if width == 1:
                        out[at] = grown
                    else:
                        out[at] = grown & 0x7F | 0x80
                        out[at + 1] = grown >> 7
                    n += 1
                    continue
            try:
                entry = from_string(body)
            except DecodeError:
                counters.undecodable_frames += 1
                if depth < MAX_SALVAGE_DEPTH:
                    n += self._salvage(body, out, depth + 1)
                continue
            if entry.partial:
                counters.partial_chunks += 1
                if entry.partial_log_metadata.last:
                    entry.line += b"\n"
            else:
                entry.line += b"\n"
            stored = entry.SerializeToString()
            size = pack(len(stored))
            out += size
            out += stored
            out += size
            n += 1
        return n

    def _salvage(self, body: bytes, out: bytearray, depth: int) -> int:
        """Store the frames inside a body that does not decode: its length was wrong but believable (at most
        MAX_FRAME), so it swallowed the frames that followed. They are found as after any corrupt length; only the
        frame cut at the body's end is lost with it."""
        inner = FrameSplitter(resyncing=True)
        n = self._store(inner.feed(body), out, depth)
        self.counters.undecodable_frames += inner.oversized_frames
        return n

    def finish(self) -> int:
        """At EOF: drop an incomplete trailing frame; return its size in bytes (0 when the stream ended clean)."""
        return self.splitter.discard_pending()

    @property
    def discarded_bytes(self) -> int:
        return self.splitter.discarded_bytes

    @property
    def discarded_frames(self) -> int:
        """Every frame thrown away, undecodable or of a corrupt length (stats: frames_discarded_total)."""
        return self.counters.undecodable_frames + self.splitter.oversized_frames
