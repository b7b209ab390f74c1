"""ReadLogsStream: one ``docker logs`` request, served from a container's stored records.

The records on disk are ``[N][LogEntry][N]`` and a ReadLogs response is ``[N][LogEntry]`` frames, so serving
is slicing: the stored entries already end complete lines with ``"\\n"``. Order of operations follows Docker's
own file drivers: take the last ``tail`` records (walking back across rotated files), then skip records before
``since`` (until the first one at or after it), stop at the first record after ``until``; then, when following,
go on with new records from exactly where the history ended until the container's loggers closed.

Positions are ``(generation, offset)`` (see segments.py), so rotations during a request lose and repeat nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from pathlib import Path
from typing import BinaryIO

from localstore.container_log import ContainerLog
from localstore.segments import chain, open_generation, open_segment
from localstore.store import LocalStore
from proto.entry_pb2 import LogEntry
from proto.framing import (
    HEADER,
    HEADER_SIZE,
    MARKER_FIRST_BYTE,
    MAX_FRAME,
    RECORD_OVERHEAD,
    Position,
    is_marker,
    record_spans,
)
from proto.messages import ReadRequest

log = logging.getLogger("elp.localstore")

CHUNK = 1 << 20
TAIL_BLOCK = 64 << 10
MARKER_BYTE = bytes((MARKER_FIRST_BYTE,))  # checked before the full test (is_marker), which costs a slice
MAX_RECORD = MAX_FRAME + RECORD_OVERHEAD  # a longer one is a corrupt length
FOLLOW_POLL = 0.5
# dockerd itself gives a stopping container's logger this long to drain (loggerCloseTimeout).
DRAIN_WAIT = 10.0


def tail_in(f: BinaryIO, end: int, tail: int) -> tuple[int, int]:
    """Walk back up to ``tail`` records (batch markers do not count) from ``end``; return (offset, records found)."""
    pos, found = end, 0
    block_start, block = end, b""
    # Small blocks first: `--tail 100` needs a few KiB, and reading a whole CHUNK for it costs more than the rest.
    block_size = TAIL_BLOCK
    while found < tail and pos >= 2 * HEADER_SIZE:
        if pos - HEADER_SIZE < block_start:
            block_start, block, block_size = _block_before(f, pos, pos - block_size, block_size)
        (n,) = HEADER.unpack_from(block, pos - HEADER_SIZE - block_start)
        start = pos - n - 2 * HEADER_SIZE
        if n > MAX_FRAME or start < 0:
            log.warning("%s: corrupt record before offset %d; history starts after it", getattr(f, "name", "?"), pos)
            return pos, -1
        if start < block_start:  # the record begins before the block: read back far enough to hold it whole
            block_start, block, block_size = _block_before(f, pos, min(start, pos - block_size), block_size)
        if block[start + HEADER_SIZE - block_start : start + HEADER_SIZE - block_start + 1] != MARKER_BYTE or \
                not is_marker(block[start + HEADER_SIZE - block_start : pos - HEADER_SIZE - block_start]):
            found += 1
        pos = start
    return pos, found


def _block_before(f: BinaryIO, end: int, start: int, size: int) -> tuple[int, bytes, int]:
    """The bytes of ``f`` in [start, end) (start clamped at 0), and the next, larger, block size."""
    start = max(0, start)
    f.seek(start)
    return start, f.read(end - start), min(CHUNK, size * 4)


def tail_start(path: Path, end: int, tail: int) -> int:
    """Offset of the first of the last ``tail`` records before ``end`` of one file (all when ``tail`` < 0)."""
    if tail < 0:
        return 0
    with open(path, "rb") as f:
        return tail_in(f, end, tail)[0]


class ReadLogsStream:
    """Writes one request's frames into ``sock`` (the supervisor relays them to dockerd)."""

    def __init__(self, store: LocalStore, request: ReadRequest, sock: socket.socket) -> None:
        self.store = store
        self.request = request
        self.sock = sock
        self.since_pending = request.since_ns > 0
        self.sent = 0
        self.handle: tuple[int, BinaryIO] | None = None
        # Set whenever the stream has sent all it can and waits (for a draining logger, or for new lines when
        # following): from then on, what is appended reaches it as live lines.
        self.waiting = asyncio.Event()
        self.scratch = store.data_dir / "tmp"

    async def run(self) -> None:
        req = self.request
        if not await self._drained():
            return
        clog = self.store.existing(req.container_id)
        if clog is None and req.follow:
            clog = self.store.get(req.container_id)
        if clog is None:
            return
        try:
            snapshot = (clog.generation, clog.size)
            start = await self._history_start(clog, snapshot)
            pos, stop = await self._send(clog, start, snapshot)
            if req.follow and not stop:
                await self._follow(clog, pos)
        finally:
            self._release()

    async def _drained(self) -> bool:
        """Wait (bounded) until the loggers that got StopLogging stored their last lines; False if the peer left."""
        pending = set(self.request.draining_fifos)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_WAIT
        while not pending <= self.store.closed_fifos:
            closed = self.store.closed_changed
            left = deadline - loop.time()
            if left <= 0:
                log.warning("container %s: its stopped logger is still being read after %.0fs; "
                            "docker logs shows what is stored so far", self.request.container_id[:12], DRAIN_WAIT)
                return True
            try:
                self.waiting.set()
                await asyncio.wait_for(closed.wait(), min(left, FOLLOW_POLL))
            except TimeoutError:
                if self._peer_gone():
                    return False
        return True

    async def _history_start(self, clog: ContainerLog, snapshot: Position) -> Position:
        tail = self.request.tail
        if tail == 0:
            return snapshot
        if tail < 0:
            oldest = max((index for index, _ in chain(clog.folder)), default=0)
            return clog.generation - oldest, 0
        generation, end = snapshot
        remaining = tail
        while True:
            f = await self._open(clog, generation)
            if f is None:
                return generation + 1, 0
            pos, found = tail_in(f, end if generation == snapshot[0] else _size(f), remaining)
            if found < 0:
                return generation, pos
            remaining -= found
            if remaining == 0 or pos > 0:
                return generation, pos
            generation -= 1

    async def _follow(self, clog: ContainerLog, pos: Position) -> None:
        waiting_for = set(self.request.open_fifos)
        while True:
            changed = clog.changed
            if pos != (clog.generation, clog.size):
                pos, stop = await self._send(clog, pos, None)
                if stop:
                    return
                continue
            if waiting_for <= self.store.closed_fifos:
                return
            if self.request.until_ns and time.time_ns() > self.request.until_ns:
                return
            try:
                self.waiting.set()
                await asyncio.wait_for(changed.wait(), FOLLOW_POLL)
            except TimeoutError:
                if self._peer_gone():
                    return

    async def _send(self, clog: ContainerLog, pos: Position, stop_at: Position | None) -> tuple[Position, bool]:
        """Send records from ``pos`` up to ``stop_at`` (or all that is stored now); return (position, until hit)."""
        generation, offset = pos
        while True:
            last = stop_at[0] if stop_at else clog.generation
            f = await self._open(clog, generation)
            if f is None:
                if generation >= last:
                    return (generation, offset), False
                log.warning("container %s: a rotated file was deleted before it could be read; skipping it",
                            clog.container_id[:12])
                generation, offset = generation + 1, 0
                continue
            if stop_at and generation == stop_at[0]:
                end = stop_at[1]
            elif generation == clog.generation:
                end = clog.size
            else:
                end = _size(f)
            offset, stop = await self._send_range(f, offset, end)
            if stop:
                return (generation, offset), True
            if generation >= last:
                return (generation, offset), False
            generation, offset = generation + 1, 0

    async def _open(self, clog: ContainerLog, generation: int) -> BinaryIO | None:
        """The file of ``generation``, kept open while the stream is on it (it may be renamed or unlinked)."""
        if self.handle and self.handle[0] == generation:
            return self.handle[1]
        self._release()
        found = open_generation(clog.folder, clog.generation, generation)
        if isinstance(found, Path):
            try:
                found = await asyncio.get_running_loop().run_in_executor(None, open_segment, found, self.scratch)
            except FileNotFoundError:
                return None  # rotated out (max-file) while it was being expanded
        if found is not None:
            self.handle = (generation, found)
        return found

    def _release(self) -> None:
        if self.handle:
            self.handle[1].close()
            self.handle = None

    async def _send_range(self, f: BinaryIO, pos: int, end: int) -> tuple[int, bool]:
        """Send the records in [pos, end) of ``f``; return the new offset and whether ``until`` was reached."""
        loop = asyncio.get_running_loop()
        while pos < end:
            f.seek(pos)
            data = f.read(min(CHUNK, end - pos))
            out, used, stop = self._frames(data)
            if used == 0 and not stop:
                # No whole record fits although one always does (MAX_FRAME < CHUNK): a bad length.
                log.warning("%s: corrupt record at offset %d; skipping the rest of this file", f.name, pos)
                return end, False
            if out:
                await loop.sock_sendall(self.sock, out)
            pos += used
            if stop:
                return pos, True
        return pos, False

    def _frames(self, data: bytes) -> tuple[bytearray, int, bool]:
        """Frames for the whole records in ``data``: (frames, bytes of records consumed, until reached)."""
        out = bytearray()
        pos = 0  # after the last record taken
        since = self.request.since_ns
        until = self.request.until_ns
        filtered = self.since_pending or until
        for start, end in record_spans(data):
            if end - start > MAX_RECORD:
                break  # a corrupt length: _send_range decides what to do
            body = start + HEADER_SIZE
            if data[body] == MARKER_FIRST_BYTE and is_marker(data[body : end - HEADER_SIZE]):
                pos = end
                continue
            if filtered:
                t = LogEntry.FromString(data[body : end - HEADER_SIZE]).time_nano
                if self.since_pending:
                    if t < since:
                        pos = end
                        continue
                    self.since_pending = False
                if until and t > until:
                    return out, pos, True
                filtered = self.since_pending or until
            out += data[start : end - HEADER_SIZE]
            self.sent += 1
            pos = end
        return out, pos, False

    def _peer_gone(self) -> bool:
        try:
            return self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True


def _size(f: BinaryIO) -> int:
    return os.fstat(f.fileno()).st_size
