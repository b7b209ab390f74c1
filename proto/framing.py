"""Docker's length-prefixed LogEntry framing, written once.

A FIFO (and a ReadLogs response) is a sequence of ``[uint32 big-endian N][N bytes of LogEntry]``. The local
store keeps each record as ``[N][LogEntry][N]`` (Docker's ``local`` driver layout) so that ``--tail`` can walk a
file backwards from its end.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from proto.entry_pb2 import LogEntry

HEADER = struct.Struct(">I")
HEADER_SIZE = HEADER.size
# dockerd never writes a frame above ~16.5 KB (16 KiB line + metadata); Docker's own readers refuse
# anything above 1e6 bytes, so a bigger length can only be a corrupt stream.
MAX_FRAME = 1_000_000


def encode_frame(entry: LogEntry) -> bytes:
    """One FIFO / ReadLogs frame for ``entry``."""
    body = entry.SerializeToString()
    return HEADER.pack(len(body)) + body


def encode_record(body: bytes) -> bytes:
    """One on-disk record for an encoded LogEntry ``body``."""
    size = HEADER.pack(len(body))
    return size + body + size


@dataclass
class FrameSplitter:
    """Cuts a byte stream into frame bodies, across any chunk boundaries.

    A length above ``MAX_FRAME`` means the stream is corrupt: the splitter cannot know where the next frame
    starts, so it throws away what it holds and resynchronises on the next chunk boundary. dockerd writes one
    frame per ``write()``, so a fresh chunk usually starts with a frame header again. Every discarded byte is
    counted; nothing here ever blocks or raises on bad input.
    """

    tail: bytes = b""
    discarded_bytes: int = 0
    oversized_frames: int = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add ``chunk`` and return every complete frame body now available, in order."""
        buf = self.tail + chunk if self.tail else chunk
        bodies: list[bytes] = []
        append = bodies.append
        unpack_from = HEADER.unpack_from
        pos = 0
        end = len(buf)
        while end - pos >= HEADER_SIZE:
            (size,) = unpack_from(buf, pos)
            if size > MAX_FRAME:
                self.oversized_frames += 1
                self.discarded_bytes += end - pos
                pos = end
                break
            start = pos + HEADER_SIZE
            pos = start + size
            if pos > end:
                pos = start - HEADER_SIZE
                break
            append(buf[start:pos])
        self.tail = buf[pos:]
        return bodies

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self.tail)

    def discard_pending(self) -> int:
        """Drop an incomplete trailing frame (at EOF) and return how many bytes that was."""
        n = len(self.tail)
        self.discarded_bytes += n
        self.tail = b""
        return n
