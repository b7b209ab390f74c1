"""Docker's length-prefixed LogEntry framing, written once.

A FIFO (and a ReadLogs response) is a sequence of ``[uint32 big-endian N][N bytes of LogEntry]``. The local
store keeps each record as ``[N][LogEntry][N]`` (Docker's ``local`` driver layout) so that ``--tail`` can walk a
file backwards from its end.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

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


# --- walking stored records ------------------------------------------------------------------------------------
# Every reader of the stored files (ReadLogs, the fetch server, the shipper's feed, crash recovery, rotation) walks
# them with these. A position in a container's files is (generation, offset): see localstore/segments.py.
Position = tuple[int, int]
RECORD_OVERHEAD = 2 * HEADER_SIZE  # the two lengths around a stored record's body


def record_spans(data: bytes | memoryview, pos: int = 0) -> Iterator[tuple[int, int]]:
    """(start, end) of each whole record in ``data`` from ``pos`` on, in order; the body is
    ``data[start + HEADER_SIZE : end - HEADER_SIZE]``. Stops before a record the end of ``data`` cuts (the last
    end yielded is where the whole records end). Lengths are not checked against MAX_FRAME: callers reading what
    may be corrupt do that."""
    unpack_from = HEADER.unpack_from
    size = len(data)
    while pos + RECORD_OVERHEAD <= size:
        (n,) = unpack_from(data, pos)
        end = pos + n + RECORD_OVERHEAD
        if end > size:
            return
        yield pos, end
        pos = end


def record_spans_back(data: bytes | memoryview, end: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each record in ``data`` ending at or before ``end``, newest first, walking back by the
    trailing lengths; stops at a length above MAX_FRAME or one that reaches before the start of ``data``."""
    unpack_from = HEADER.unpack_from
    while end >= RECORD_OVERHEAD:
        (n,) = unpack_from(data, end - HEADER_SIZE)
        start = end - n - RECORD_OVERHEAD
        if start < 0 or n > MAX_FRAME:
            return
        yield start, end
        end = start


def whole_records_end(data: bytes | memoryview) -> int:
    """Where the whole records at the start of ``data`` end (0 when the first one is cut)."""
    pos, size = 0, len(data)
    unpack_from = HEADER.unpack_from
    while pos + RECORD_OVERHEAD <= size:  # record_spans' walk without a generator: this one runs per fetch
        (n,) = unpack_from(data, pos)
        end = pos + n + RECORD_OVERHEAD
        if end > size:
            break
        pos = end
    return pos


def record_boundary_after(records: bytes | memoryview, at_least: int) -> int:
    """End offset of the first whole record in ``records`` that ends at or after ``at_least`` bytes."""
    pos, size = 0, len(records)
    while pos < size:
        (n,) = HEADER.unpack_from(records, pos)
        pos += n + RECORD_OVERHEAD
        if pos >= at_least:
            return min(pos, size)
    return size


# dockerd's encoder writes ``source`` first and it is always "stdout" or "stderr": every frame body starts with
# these bytes (field 1, length 6, "std"). After a corrupt length this is where the next frame can begin.
FRAME_MARK = b"\n\x06std"


@dataclass
class FrameSplitter:
    """Cuts a byte stream into frame bodies, across any chunk boundaries.

    A length above ``MAX_FRAME`` means the stream is corrupt. The splitter then skips ahead to the next place
    that looks like the start of one of dockerd's frames (a plausible length followed by ``FRAME_MARK``) and goes
    on from there. Every skipped byte is counted; nothing here ever blocks or raises on bad input.
    """

    tail: bytes = b""
    discarded_bytes: int = 0
    oversized_frames: int = 0
    resyncing: bool = False

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add ``chunk`` and return every complete frame body now available, in order."""
        buf = self.tail + chunk if self.tail else chunk
        bodies: list[bytes] = []
        append = bodies.append
        unpack_from = HEADER.unpack_from
        pos = 0
        end = len(buf)
        while end - pos >= HEADER_SIZE:
            if self.resyncing:
                # After corruption only a header followed by the mark counts as the next frame.
                if end - pos < HEADER_SIZE + len(FRAME_MARK):
                    break
                if buf[pos + HEADER_SIZE : pos + HEADER_SIZE + len(FRAME_MARK)] != FRAME_MARK:
                    pos = self._resync(buf, pos)
                    continue
            (size,) = unpack_from(buf, pos)
            if size > MAX_FRAME:
                if not self.resyncing:
                    self.oversized_frames += 1  # one per corrupt stretch, however long the search
                pos = self._resync(buf, pos)
                continue
            start = pos + HEADER_SIZE
            stop = start + size
            if stop > end:
                break
            append(buf[start:stop])
            self.resyncing = False
            pos = stop
        self.tail = buf[pos:]
        return bodies

    def _resync(self, buf: bytes, pos: int) -> int:
        """Position of the next plausible frame after a corrupt one at ``pos`` (or of what must wait for more)."""
        mark = buf.find(FRAME_MARK, pos + HEADER_SIZE + 1)
        if mark < 0:
            # Keep the few bytes that could be the beginning of a header and mark split by the chunk boundary.
            keep_from = max(pos + 1, len(buf) - HEADER_SIZE - len(FRAME_MARK) + 1)
            self.discarded_bytes += keep_from - pos
            self.resyncing = True
            return keep_from
        start = mark - HEADER_SIZE
        self.discarded_bytes += start - pos
        self.resyncing = True
        return start

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


# --- markers ---------------------------------------------------------------------------------------------------
# The local store writes one marker record before each batch it stores: an entry with no source (so dockerd drops
# it, were it ever sent) whose partial-metadata id names the logger and the sequence number after the batch. After
# a crash the store finds the last one of a logger at the end of the file and so knows which re-sent batches it
# already has: nothing is lost and nothing is stored twice.
# Every file also starts with a generation marker: the file's generation and the first generation of the
# container's folder (see localstore/generations.py). Positions, and so the documents' ids, are made of
# generations, and this keeps them with the records themselves: a lost state.json is rebuilt from the files.
# Readers of the files skip every marker (they all start with MARKER_PREFIX and have no source).
MARKER_PREFIX = "elp:"
GENERATION_PREFIX = MARKER_PREFIX + "generation:"
# Field 5 (partial_log_metadata) comes first when source, time and line are empty: a record body starting with any
# other byte is no marker. Hot loops test this byte before they slice the body for is_marker.
MARKER_FIRST_BYTE = 0x2A


def marker_record(fifo: str, seq_end: int) -> bytes:
    entry = LogEntry()
    entry.partial_log_metadata.id = f"{MARKER_PREFIX}{fifo}:{seq_end}"
    return encode_record(entry.SerializeToString())


def generation_record(generation: int, first: int) -> bytes:
    """The first record of every stored file: its own generation and its folder's first generation."""
    entry = LogEntry()
    entry.partial_log_metadata.id = f"{GENERATION_PREFIX}{generation}:{first}"
    return encode_record(entry.SerializeToString())


def is_marker_entry(entry: LogEntry) -> bool:
    """Whether a decoded stored entry is a marker of either kind (for readers that decode every record anyway)."""
    return not entry.source and entry.partial_log_metadata.id.startswith(MARKER_PREFIX)


def _marker_id(body: bytes | memoryview) -> str | None:
    """The partial-metadata id of a marker record body (batch or generation), None for an ordinary entry."""
    if not body or body[0] != MARKER_FIRST_BYTE:
        return None
    try:
        entry = LogEntry.FromString(bytes(body))
    except Exception:
        return None
    return entry.partial_log_metadata.id if is_marker_entry(entry) else None


def is_marker(body: bytes | memoryview) -> bool:
    """Whether a stored record body is a marker of either kind (cheap: looks at the first byte, then checks)."""
    return _marker_id(body) is not None


def marker_of(body: bytes | memoryview) -> tuple[str, int] | None:
    """(fifo, seq_end) of a batch marker record body, None for an ordinary entry or a generation marker."""
    mark = _marker_id(body)
    if mark is None or mark.startswith(GENERATION_PREFIX):
        return None
    fifo, _, seq = mark[len(MARKER_PREFIX):].rpartition(":")
    return (fifo, int(seq)) if seq.isdigit() else None


def generation_of(body: bytes | memoryview) -> tuple[int, int] | None:
    """(generation, first generation) of a generation marker record body, None for any other record."""
    mark = _marker_id(body)
    if mark is None or not mark.startswith(GENERATION_PREFIX):
        return None
    generation, _, first = mark[len(GENERATION_PREFIX):].partition(":")
    if not (generation.isdigit() and first.isdigit()):
        return None
    return int(generation), int(first)
