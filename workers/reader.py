"""FrameReader: FIFO bytes in, on-disk records out."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import DecodeError

from proto.entry_pb2 import LogEntry
from proto.framing import HEADER, FrameSplitter


@dataclass
class ReaderCounters:
    """What one reader has seen, for stats and its closing log line."""

    lines: int = 0
    bytes: int = 0
    partial_chunks: int = 0
    undecodable_frames: int = 0

    @property
    def discarded_frames(self) -> int:
        return self.undecodable_frames


class FrameReader:
    """Cuts FIFO chunks into frames and turns each into a stored record.

    A stored record is Docker's ``local`` layout, ``[N][LogEntry][N]``, with one change: a complete line
    (not partial, or the last part of a split line) gets back the ``"\\n"`` that dockerd stripped, so that
    ReadLogs can send stored entries as they are and ``docker logs`` prints each line whole. A split line's
    other parts keep no newline, so dockerd prints the parts back to back as one line.
    """

    def __init__(self) -> None:
        self.splitter = FrameSplitter()
        self.counters = ReaderCounters()

    def feed(self, chunk: bytes, out: bytearray) -> int:
        """Append the records of every complete frame in ``chunk`` to ``out``; return how many."""
        pack = HEADER.pack
        from_string = LogEntry.FromString
        counters = self.counters
        n = 0
        for body in self.splitter.feed(chunk):
            try:
                entry = from_string(body)
            except DecodeError:
                counters.undecodable_frames += 1
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
        counters.lines += n
        counters.bytes += len(chunk)
        return n

    def finish(self) -> int:
        """At EOF: drop an incomplete trailing frame; return its size in bytes (0 when the stream ended clean)."""
        return self.splitter.discard_pending()

    @property
    def discarded_bytes(self) -> int:
        return self.splitter.discarded_bytes

    @property
    def discarded_frames(self) -> int:
        return self.counters.undecodable_frames + self.splitter.oversized_frames
