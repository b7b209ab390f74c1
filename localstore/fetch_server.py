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
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import zmq

from localstore.container_log import ContainerLog
from localstore.generations import oldest_index
from localstore.segments import open_generation, open_segment
from localstore.store import LocalStore
from proto.framing import HEADER, HEADER_SIZE, Position, whole_records_end
from proto.messages import Fetch, Records

log = logging.getLogger("elp.localstore")

LONG_POLL = 1.0
LONG_POLL_MAX = 5.0
# Gzipped segments are expanded into unlinked scratch files in a worker thread, never on the loop. At most this
# many are kept expanded at once (the least recently used is closed beyond: scratch space stays bounded, about
# this many times max-size), and at most EXPANDING_AT_ONCE expand at the same time.
MAX_EXPANDED = 8
EXPANDING_AT_ONCE = 2


class Expanding(Exception):
    """The file a fetch needs is a .gz still being expanded in a worker thread: answer when it is ready."""


class FetchServer:
    """Answers ``Fetch`` on a ROUTER socket; a fetch with nothing to read waits for the next append."""

    def __init__(self, store: LocalStore, router: zmq.Socket, recheck: Callable[[], object]) -> None:
        self.store = store
        self.router = router
        self.recheck = recheck  # a send can consume the edge of ZeroMQ's FD: the caller looks again
        self.scratch = store.data_dir / "tmp"
        self.handles: dict[str, tuple[int, BinaryIO]] = {}
        self.waiting: dict[str, asyncio.Task[None]] = {}
        # container -> (generation, expansion in a worker thread); expanded handles, least recently used first
        self.expanding: dict[str, tuple[int, asyncio.Future[BinaryIO]]] = {}
        self.expanded: OrderedDict[str, None] = OrderedDict()
        self.expand_slots = threading.BoundedSemaphore(EXPANDING_AT_ONCE)
        # container -> (generation, size) of the last rotated file read to its end. A fetch from the end of a file
        # then goes straight to the next one: otherwise, with one open file or expansion per container, learning
        # a gzipped file's end and expanding the next one would each give up the other, for ever.
        self.ends: dict[str, tuple[int, int]] = {}
        store.forget_hooks.append(self.forget)

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
            job = self.expanding.get(fetch.container_id)
            try:
                # shield: a fetch replaced by the next one must not cancel the expansion it was waiting for
                await asyncio.wait_for(asyncio.shield(job[1]) if job else clog.changed.wait(), LONG_POLL)
            except Exception:  # timed out, or a failed expansion (which _open reports)
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
        try:
            records, first, nxt, skipped = self.read(clog, start, fetch.max_bytes)
        except Expanding:
            if not force:
                return False
            records, first, nxt, skipped = b"", start, start, 0
        # Before the supervisor named the running loggers (LoggersSynced, after a restart of the store) a running
        # container has no open FIFO here yet: calling it stopped would make the shipper forget it.
        stopped = self.store.loggers_synced and not clog.open_fifos and nxt >= clog.end
        if not records and not skipped and not stopped and not force:
            return False
        # Skipped (deleted) files are logged and counted by the shipper only: one message per loss.
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
            skipped = oldest - generation - self._finished(clog.container_id, generation, offset)
            generation, offset = oldest, 0
        while True:
            if (generation, offset) >= clog.end:
                here = min((generation, offset), clog.end)
                return b"", here, here, skipped
            known = self.ends.get(clog.container_id)
            if known is not None and known[0] == generation and offset >= known[1]:
                generation, offset = generation + 1, 0
                continue
            f = self._open(clog, generation)
            if f is None:
                skipped += 1
                generation, offset = generation + 1, 0
                continue
            if generation == clog.generation:
                end = clog.size
            else:
                end = os.fstat(f.fileno()).st_size
                self.ends[clog.container_id] = (generation, end)
            if offset >= end:
                generation, offset = generation + 1, 0
                continue
            f.seek(offset)
            data = f.read(min(max_bytes, end - offset))
            cut = whole_records_end(data)
            if cut == 0:  # one record bigger than max_bytes: send it alone
                (n,) = HEADER.unpack_from(data)
                f.seek(offset)
                data = f.read(n + 2 * HEADER_SIZE)
                cut = len(data)
            return data[:cut], (generation, offset), (generation, offset + cut), skipped

    def _finished(self, container_id: str, generation: int, offset: int) -> bool:
        """Whether the shipper had read all of a file that is deleted now (its end is known, or the handle it was
        read from still holds it). Such a file lost nothing. Otherwise nobody knows, and it is counted as lost."""
        known = self.ends.get(container_id)
        if known is not None and known[0] == generation:
            return offset >= known[1]
        cached = self.handles.get(container_id)
        return cached is not None and cached[0] == generation and offset >= os.fstat(cached[1].fileno()).st_size

    def _open(self, clog: ContainerLog, generation: int) -> BinaryIO | None:
        """The file of ``generation`` (None when deleted); raises Expanding while a .gz is being expanded."""
        cid = clog.container_id
        cached = self.handles.get(cid)
        if cached and cached[0] == generation:
            if cid in self.expanded:
                self.expanded.move_to_end(cid)
            return cached[1]
        job = self.expanding.get(cid)
        if job and job[0] == generation:
            if not job[1].done():
                raise Expanding
            del self.expanding[cid]
            return self._expanded(clog, generation, job[1])
        self.release(cid)
        found = open_generation(clog.folder, clog.generation, generation)
        if found is None or not isinstance(found, Path):
            if found is not None:
                self.handles[cid] = (generation, found)
            return found
        future = asyncio.get_running_loop().run_in_executor(None, self._expand, found)
        self.expanding[cid] = (generation, future)
        raise Expanding

    def _expand(self, path: Path) -> BinaryIO:
        """In a worker thread: a .gz segment expanded into an unlinked scratch file."""
        with self.expand_slots:
            return open_segment(path, self.scratch)

    def _expanded(self, clog: ContainerLog, generation: int, job: asyncio.Future[BinaryIO]) -> BinaryIO | None:
        cid = clog.container_id
        try:
            f = job.result()
        except FileNotFoundError:
            return None  # rotated away meanwhile: a skipped file
        except Exception as exc:  # a corrupt .gz (OSError, EOFError, zlib.error): bad input, not a crash
            log.error("container %s: cannot read generation %d of its files: %s; its lines are skipped",
                      cid[:12], generation, exc)
            return None
        self.handles[cid] = (generation, f)
        self.expanded[cid] = None
        while len(self.expanded) > MAX_EXPANDED:
            self.release(next(iter(self.expanded)))
        return f

    def forget(self, container_id: str) -> None:
        """The store forgot the container (released or destroyed)."""
        self.release(container_id)
        self.ends.pop(container_id, None)

    def release(self, container_id: str) -> None:
        """The store forgot the container (or its expanded file is the least recently used): close the file we
        were reading it from, and its scratch copy with it."""
        cached = self.handles.pop(container_id, None)
        self.expanded.pop(container_id, None)
        if cached:
            cached[1].close()
        job = self.expanding.pop(container_id, None)
        if job:
            job[1].add_done_callback(_close_result)

    def close(self) -> None:
        for task in self.waiting.values():
            task.cancel()
        for container_id in list(self.handles) + list(self.expanding):
            self.release(container_id)


def _close_result(job: asyncio.Future[BinaryIO]) -> None:
    """An expansion nobody wants any more: close (and so delete) its scratch file once it is done."""
    if not job.cancelled() and job.exception() is None:
        job.result().close()

