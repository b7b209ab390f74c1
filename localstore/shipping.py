"""FetchServer: the shipper pulls a container's stored records from the local store, position by position.

The local store keeps every line; the shipper only holds what it is sending. So when Elasticsearch is slow or
down the readers and the store go on, the shipper simply falls behind, and it catches up later from its cursor
(``Ack``-ed positions, persisted with the container's files). Nothing is pushed at the shipper, so nothing
piles up in it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import zmq

from localstore.generations import oldest_index
from localstore.segments import existing_rotated, open_segment
from localstore.store import ContainerLog, LocalStore
from proto.framing import HEADER, HEADER_SIZE
from proto.messages import Fetch, Records

log = logging.getLogger("elp.localstore")

LONG_POLL = 1.0
LONG_POLL_MAX = 5.0
Position = tuple[int, int]


class FetchServer:
    """Answers ``Fetch`` on a ROUTER socket; a fetch with nothing to read waits for the next append."""

    def __init__(self, store: LocalStore, router: zmq.Socket, recheck: Callable[[], object]) -> None:
        self.store = store
        self.router = router
        self.recheck = recheck  # a send can consume the edge of ZeroMQ's FD: the caller looks again
        self.scratch = store.data_dir / "tmp"
        self.handles: dict[str, tuple[int, BinaryIO]] = {}
        self.waiting: dict[str, asyncio.Task[None]] = {}

    def handle(self, identity: bytes, fetch: Fetch) -> None:
        old = self.waiting.pop(fetch.container_id, None)
        if old is not None:
            old.cancel()
        if not self._answer(identity, fetch):
            task = asyncio.create_task(self._wait(identity, fetch))
            self.waiting[fetch.container_id] = task
            task.add_done_callback(lambda _: self._forget(fetch.container_id, task))

    def _forget(self, container_id: str, task: asyncio.Task[None]) -> None:
        if self.waiting.get(container_id) is task:
            del self.waiting[container_id]

    async def _wait(self, identity: bytes, fetch: Fetch) -> None:
        deadline = asyncio.get_running_loop().time() + LONG_POLL_MAX
        while True:
            clog = self.store.get(fetch.container_id)
            try:
                await asyncio.wait_for(clog.changed.wait(), LONG_POLL)
            except TimeoutError:
                pass
            # Answer empty at the deadline: a fetch must never wait for ever, or a shipper whose reply was lost
            # (this store died) would wait with it.
            if self._answer(identity, fetch, force=asyncio.get_running_loop().time() >= deadline):
                return

    def _answer(self, identity: bytes, fetch: Fetch, force: bool = False) -> bool:
        """Send what there is from the fetch's position; False when there is nothing yet (and more may come)."""
        clog = self.store.get(fetch.container_id)
        if fetch.generation >= 0:
            start = (fetch.generation, fetch.offset)
        elif clog.shipped is not None:
            start = clog.shipped
        else:
            start = (clog.generation - oldest_index(clog.folder), 0)  # nothing shipped yet: the oldest line
        records, first, nxt, skipped = self.read(clog, start, fetch.max_bytes)
        stopped = not clog.open_fifos and nxt >= clog.end
        if not records and not skipped and not stopped and not force:
            return False
        if skipped:
            log.error("container %s: %d rotated files were deleted before their lines reached Elasticsearch",
                      clog.container_id[:12], skipped)
        reply = Records(clog.container_id, first[0], first[1], nxt[0], nxt[1], records, skipped, stopped)
        self.router.send_multipart([identity, reply.encode()], copy=False)
        self.recheck()
        return True

    def read(self, clog: ContainerLog, start: Position, max_bytes: int) -> tuple[bytes, Position, Position, int]:
        """Whole records from ``start``, at most ``max_bytes`` (at least one), all from one file.

        Returns the records, the position of the first of them (later than ``start`` when files were skipped or
        a file ended), the position after the last, and how many deleted files were skipped.
        """
        generation, offset = start
        skipped = 0
        if generation < clog.first_generation:
            # A cursor of an earlier incarnation of the container (its folder was deleted; see generations.py):
            # this one ships from its own first line, and the earlier one's files are not lost ones.
            generation, offset = clog.first_generation, 0
        oldest = clog.generation - oldest_index(clog.folder)
        if generation < oldest:  # rotated away (max-file) before they were shipped: counted, and skipped at once
            skipped, generation, offset = oldest - generation, oldest, 0
        while True:
            if (generation, offset) >= clog.end:
                here = min((generation, offset), clog.end)
                return b"", here, here, skipped
            f = self._open(clog, generation)
            if f is None:
                skipped += 1
                generation, offset = generation + 1, 0
                continue
            end = clog.size if generation == clog.generation else os.fstat(f.fileno()).st_size
            if offset >= end:
                generation, offset = generation + 1, 0
                continue
            f.seek(offset)
            data = f.read(min(max_bytes, end - offset))
            cut = _whole_records(data)
            if cut == 0:  # one record bigger than max_bytes: send it alone
                (n,) = HEADER.unpack_from(data)
                f.seek(offset)
                data = f.read(n + 2 * HEADER_SIZE)
                cut = len(data)
            return data[:cut], (generation, offset), (generation, offset + cut), skipped

    def _open(self, clog: ContainerLog, generation: int) -> BinaryIO | None:
        cached = self.handles.get(clog.container_id)
        if cached and cached[0] == generation:
            return cached[1]
        if cached:
            cached[1].close()
            del self.handles[clog.container_id]
        index = clog.generation - generation
        path: Path | None = existing_rotated(clog.folder, index) if index >= 0 else None
        if path is None:
            return None
        try:
            f = open_segment(path, self.scratch)
        except FileNotFoundError:  # gzipped meanwhile
            path = existing_rotated(clog.folder, index)
            if path is None:
                return None
            f = open_segment(path, self.scratch)
        self.handles[clog.container_id] = (generation, f)
        return f

    def release(self, container_id: str) -> None:
        """The store forgot the container: close the file we were reading it from."""
        cached = self.handles.pop(container_id, None)
        if cached:
            cached[1].close()

    def close(self) -> None:
        for task in self.waiting.values():
            task.cancel()
        for _, f in self.handles.values():
            f.close()
        self.handles.clear()


def _whole_records(data: bytes) -> int:
    pos, size = 0, len(data)
    while pos + 2 * HEADER_SIZE <= size:
        (n,) = HEADER.unpack_from(data, pos)
        end = pos + n + 2 * HEADER_SIZE
        if end > size:
            break
        pos = end
    return pos
