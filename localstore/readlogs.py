"""ReadLogsStream: one ``docker logs`` request, served from a container's stored records.

The records on disk are ``[N][LogEntry][N]`` and a ReadLogs response is ``[N][LogEntry]`` frames, so serving
is slicing: the stored entries already end complete lines with ``"\\n"``. Order of operations follows Docker's
own file drivers: take the last ``tail`` records, then skip records before ``since`` (until the first one at or
after it), stop at the first record after ``until``; then, when following, go on with new records from exactly
where the history ended until the container's loggers closed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path

from localstore.store import ContainerLog, LocalStore
from proto.entry_pb2 import LogEntry
from proto.framing import HEADER, HEADER_SIZE, MAX_FRAME
from proto.messages import ReadRequest

log = logging.getLogger("elp.localstore")

CHUNK = 1 << 20
FOLLOW_POLL = 0.5


def tail_start(path: Path, end: int, tail: int) -> int:
    """Offset of the first of the last ``tail`` records before ``end`` (all when ``tail`` < 0)."""
    if tail < 0:
        return 0
    pos = end
    with open(path, "rb") as f:
        block_start, block = end, b""
        while tail > 0 and pos >= 2 * HEADER_SIZE:
            if pos - HEADER_SIZE < block_start:
                block_start = max(0, pos - CHUNK)
                f.seek(block_start)
                block = f.read(pos - block_start)
            (n,) = HEADER.unpack_from(block, pos - HEADER_SIZE - block_start)
            start = pos - n - 2 * HEADER_SIZE
            if n > MAX_FRAME or start < 0:
                log.warning("%s: corrupt record before offset %d; tail starts there", path, pos)
                break
            pos = start
            tail -= 1
    return pos


class ReadLogsStream:
    """Writes one request's frames into ``sock`` (the supervisor relays them to dockerd)."""

    def __init__(self, store: LocalStore, request: ReadRequest, sock: socket.socket) -> None:
        self.store = store
        self.request = request
        self.sock = sock
        self.since_pending = request.since_ns > 0
        self.sent = 0

    async def run(self) -> None:
        req = self.request
        clog = self.store.existing(req.container_id)
        if clog is None and req.follow:
            clog = self.store.get(req.container_id)
        if clog is None:
            return
        end = clog.size
        pos = tail_start(clog.path, end, req.tail) if end else 0
        pos, stop = await self._send_range(clog, pos, end)
        if stop or not req.follow:
            return
        await self._follow(clog, pos)

    async def _follow(self, clog: ContainerLog, pos: int) -> None:
        waiting_for = set(self.request.open_fifos)
        while True:
            changed = clog.changed
            if clog.size > pos:
                pos, stop = await self._send_range(clog, pos, clog.size)
                if stop:
                    return
                continue
            if waiting_for <= self.store.closed_fifos:
                return
            if self.request.until_ns and time.time_ns() > self.request.until_ns:
                return
            try:
                await asyncio.wait_for(changed.wait(), FOLLOW_POLL)
            except TimeoutError:
                if self._peer_gone():
                    return

    async def _send_range(self, clog: ContainerLog, pos: int, end: int) -> tuple[int, bool]:
        """Send records in [pos, end); return the new position and whether the stream must stop (until)."""
        loop = asyncio.get_running_loop()
        with open(clog.path, "rb") as f:
            while pos < end:
                f.seek(pos)
                data = f.read(min(CHUNK, end - pos))
                out, used, stop = self._frames(data)
                if used == 0 and not stop:
                    # No whole record fits although one always does (MAX_FRAME < CHUNK): a bad length.
                    log.warning("%s: corrupt record at offset %d; skipping the rest of this read", clog.path, pos)
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
        pos = 0
        size = len(data)
        unpack_from = HEADER.unpack_from
        since = self.request.since_ns
        until = self.request.until_ns
        filtered = self.since_pending or until
        while pos + 2 * HEADER_SIZE <= size:
            (n,) = unpack_from(data, pos)
            end = pos + n + 2 * HEADER_SIZE
            if n > MAX_FRAME or end > size:
                break
            if filtered:
                t = LogEntry.FromString(data[pos + HEADER_SIZE : end - HEADER_SIZE]).time_nano
                if self.since_pending:
                    if t < since:
                        pos = end
                        continue
                    self.since_pending = False
                if until and t > until:
                    return out, pos, True
                filtered = self.since_pending or until
            out += data[pos : end - HEADER_SIZE]
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
