"""What a restarted local store learns from the end of a container's file: where the last intact record ends, and
the last batch a logger stored."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from proto.framing import FRAME_MARK, HEADER, HEADER_SIZE, MAX_FRAME, marker_of, record_spans_back

MARKER_SCAN = 4 << 20  # how far back from the end a restarted store looks for a logger's last batch marker


def find_last_marker(path: Path, fifo: str) -> int:
    """Sequence number after the last stored batch of ``fifo`` (0 when none is near the end of the files).

    The newest file may have just been started (a rotation, or a new file after an unclean stop): then the last
    batch is at the end of the one before.
    """
    found = _last_marker_in(path, fifo)
    previous = path.with_name(path.name + ".1")
    scanned_whole = not path.exists() or path.stat().st_size <= MARKER_SCAN
    if found is None and scanned_whole and previous.exists():
        found = _last_marker_in(previous, fifo)
    return found or 0


def _last_marker_in(path: Path, fifo: str) -> int | None:
    if not path.exists():
        return None
    with open(path, "rb") as f:
        end = last_good_end(path, path.stat().st_size)
        start = max(0, end - MARKER_SCAN)
        f.seek(start)
        data = f.read(end - start)
    view = memoryview(data)
    for start, end in record_spans_back(view, len(data)):
        found = marker_of(view[start + HEADER_SIZE : end - HEADER_SIZE])
        if found is not None and found[0] == fifo:
            return found[1]
    return None


def last_good_end(path: Path, size: int) -> int:
    """Offset just after the last intact record of a file of ``size`` bytes.

    A crash can leave a torn record at the end. The fast path trusts the final record only if its two length
    fields agree *and* its body starts like every stored entry (``FRAME_MARK``): bytes inside a torn line (say,
    NULs) can fake matching lengths, but hardly that. Otherwise the file is walked from the start and cut after the
    last record whose lengths match.
    """
    if size == 0:
        return 0
    with open(path, "rb") as f:
        if size >= 2 * HEADER_SIZE:
            f.seek(size - HEADER_SIZE)
            (n,) = HEADER.unpack(f.read(HEADER_SIZE))
            start = size - n - 2 * HEADER_SIZE
            if start >= 0 and len(FRAME_MARK) <= n <= MAX_FRAME:
                f.seek(start)
                head = f.read(HEADER_SIZE + len(FRAME_MARK))
                if HEADER.unpack_from(head)[0] == n and head[HEADER_SIZE:] == FRAME_MARK:
                    return size
        return _walk(f, size)


WALK_CHUNK = 1 << 20


def _walk(f: BinaryIO, size: int) -> int:
    """End of the last record, from the start, whose two lengths agree; reads the file a chunk at a time (a big
    file's slow path must not hold it all in memory)."""
    pos = 0
    chunk_start, chunk = 0, b""

    def length_at(offset: int) -> int:
        nonlocal chunk_start, chunk
        if not chunk_start <= offset <= chunk_start + len(chunk) - HEADER_SIZE:
            f.seek(offset)
            chunk_start, chunk = offset, f.read(min(WALK_CHUNK, size - offset))
            if len(chunk) < HEADER_SIZE:  # the file shrank under us: nothing valid from here
                return MAX_FRAME + 1
        return int(HEADER.unpack_from(chunk, offset - chunk_start)[0])

    while pos + 2 * HEADER_SIZE <= size:
        n = length_at(pos)
        end = pos + n + 2 * HEADER_SIZE
        if n > MAX_FRAME or end > size or length_at(end - HEADER_SIZE) != n:
            break
        pos = end
    return pos
