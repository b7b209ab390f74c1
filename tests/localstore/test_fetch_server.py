"""localstore/fetch_server.py: the shipper's fetches, over a real ROUTER/DEALER pair, and what they keep open."""

from __future__ import annotations

import asyncio
import os
import threading
import tracemalloc
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

import localstore.fetch_server as fetch_server
from localstore.container_log import StoreOptions
from localstore.fetch_server import FetchServer
from localstore.recovery import last_good_end
from localstore.store import LocalStore
from proto.framing import is_marker
from proto.messages import Fetch, Records, decode
from tests.localstore.records import CID, bodies, record, stored

OTHERS = [f"{i:064x}" for i in range(1, 4)]


class Pair:
    """A FetchServer on a ROUTER, and the shipper's DEALER."""

    def __init__(self, store: LocalStore) -> None:
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.bind("inproc://fetch")
        self.dealer = self.ctx.socket(zmq.DEALER)
        self.dealer.connect("inproc://fetch")
        self.server = FetchServer(store, self.router, lambda: None)

    async def fetch(self, container_id: str, generation: int, offset: int = 0) -> Records:
        self.dealer.send(Fetch(container_id, generation, offset, 1 << 20).encode())
        identity, raw = self.router.recv_multipart()
        self.server.handle(identity, decode(raw))  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not self.dealer.poll(0):
            assert loop.time() < deadline, "no answer to the fetch"
            await asyncio.sleep(0.01)  # not a sync: lets the server's tasks run while we poll the socket
        reply = decode(self.dealer.recv())
        assert isinstance(reply, Records)
        return reply

    def close(self) -> None:
        self.server.close()
        self.dealer.close(0)
        self.router.close(0)
        self.ctx.term()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    store = LocalStore(tmp_path)
    yield store
    store.close()


@pytest.fixture
def pair(store: LocalStore) -> Iterator[Pair]:
    pair = Pair(store)
    yield pair
    pair.close()


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 30))


def lines(records: bytes) -> int:
    return sum(not is_marker(body) for _, body in bodies(records))


def compressed(store: LocalStore, container_id: str) -> int:
    """Log enough to gzip a few rotated files (outside an event loop: inline); the generation of the oldest."""
    store.logger_started(container_id, "f-" + container_id[-4:], {}, StoreOptions(max_size=300, max_file=4,
                                                                                   compress=True))
    for t in range(40):
        store.append(container_id, record(stored(t)), 1)
    clog = store.get(container_id)
    assert (clog.folder / "container.log.3.gz").exists()
    return clog.generation - 3


def scratch_files(store: LocalStore) -> int:
    scratch = str(store.data_dir / "tmp")
    return sum(os.readlink(f"/proc/self/fd/{fd}").startswith(scratch) for fd in os.listdir("/proc/self/fd")
               if os.path.exists(f"/proc/self/fd/{fd}"))


def test_gzipped_files_are_expanded_off_the_event_loop(store: LocalStore, pair: Pair,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    oldest = compressed(store, CID)
    run(_expanded_off_the_loop(pair, oldest, monkeypatch))


async def _expanded_off_the_loop(pair: Pair, oldest: int, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[str] = []
    real = fetch_server.open_segment

    def watched(path: Path, scratch: Path):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread().name)
        return real(path, scratch)

    monkeypatch.setattr(fetch_server, "open_segment", watched)
    reply = await pair.fetch(CID, oldest)
    assert (reply.generation, reply.offset) == (oldest, 0) and lines(reply.records) > 0
    assert threads and threading.main_thread().name not in threads


def test_expanded_scratch_files_are_bounded(store: LocalStore, pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_server, "MAX_EXPANDED", 2)
    oldest = {container_id: compressed(store, container_id) for container_id in OTHERS}
    run(_bounded(store, pair, oldest))


async def _bounded(store: LocalStore, pair: Pair, oldest: dict[str, int]) -> None:
    before = scratch_files(store)
    for container_id, generation in oldest.items():
        reply = await pair.fetch(container_id, generation)
        assert lines(reply.records) > 0
    assert scratch_files(store) - before == 2


def test_a_destroyed_container_leaves_no_file_open(store: LocalStore, pair: Pair) -> None:
    compressed(store, CID)
    other = OTHERS[0]
    run(_destroyed(store, pair, compressed(store, other)))


async def _destroyed(store: LocalStore, pair: Pair, other_oldest: int) -> None:
    await pair.fetch(CID, store.get(CID).generation)  # the current, plain file
    plain = pair.server.handles[CID][1]
    store.destroy(CID, "a test")
    assert plain.closed and CID not in pair.server.handles
    other = OTHERS[0]
    await pair.fetch(other, other_oldest)  # an expanded scratch copy
    scratch = pair.server.handles[other][1]
    store.destroy(other, "a test")
    assert scratch.closed and other not in pair.server.handles


def test_the_slow_path_of_last_good_end_streams_the_file(tmp_path: Path) -> None:
    path = tmp_path / "big"
    body = record(stored(1, b"x" * 1000 + b"\n"))
    with open(path, "wb") as f:
        for _ in range(16_000):  # 16 MB of records
            f.write(body)
        f.write(body[:-3])  # torn: the fast path gives up and walks the file
    size = path.stat().st_size
    tracemalloc.start()
    try:
        assert last_good_end(path, size) == 16_000 * len(body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"{peak} bytes held for a {size}-byte file"


def test_no_container_is_called_stopped_before_the_running_loggers_are_known(tmp_path: Path) -> None:
    # After a restart of the local store the supervisor names the running loggers again (LoggersSynced ends the
    # list). Until then a running container has no open FIFO here: calling it stopped would make the shipper
    # forget it, and its shipping config with it.
    first = LocalStore(tmp_path)
    first.logger_started(CID, "run1", {}, StoreOptions())
    for t in range(3):
        first.append(CID, record(stored(t)), 1)
    end = first.get(CID).end
    first.close()
    restarted = LocalStore(tmp_path)
    pair = Pair(restarted)
    try:
        before = asyncio.run(pair.fetch(CID, -1))
        assert (before.next_generation, before.next_offset) == end and lines(before.records) == 3
        assert not before.stopped
        restarted.loggers_synced = True  # the supervisor named them all, and this container is not among them
        after = asyncio.run(pair.fetch(CID, -1))
        assert after.stopped
    finally:
        pair.close()
        restarted.close()


def test_a_fetch_at_the_end_of_a_gzipped_file_gets_the_next_gzipped_one(store: LocalStore, pair: Pair) -> None:
    # The shipper's position is often the end of a file that was current when it read it and is gzipped now. The
    # fetch server must learn that file's end and then expand the next one: expanding one file at a time per
    # container, it used to give up each for the other and answer nothing, for ever.
    oldest = compressed(store, CID)
    run(_next_gzipped(pair, oldest))


async def _next_gzipped(pair: Pair, oldest: int) -> None:
    first = await pair.fetch(CID, oldest)
    assert lines(first.records) > 0 and first.next_generation == oldest
    second = await pair.fetch(CID, first.next_generation, first.next_offset)
    assert lines(second.records) > 0 and second.generation == oldest + 1
