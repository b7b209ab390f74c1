"""Rotation and compression of a container's files, and reading across them (localstore/segments.py)."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

from localstore.container_log import StoreOptions
from localstore.paths import container_dir
from localstore.segments import chain
from localstore.store import LocalStore
from proto.entry_pb2 import LogEntry
from proto.framing import generation_record
from tests.localstore.readlogs_peer import DEADLINE, Peer, serve
from tests.localstore.records import CID, record, request, times

LINE = 100  # bytes per stored line in these tests: records are a little bigger


def entry(t: int, size: int = LINE) -> LogEntry:
    return LogEntry(source="stdout", time_nano=t, line=(b"%06d " % t).ljust(size - 1, b"x") + b"\n")


def add(store: LocalStore, first: int, count: int, size: int = LINE) -> None:
    """Append ``count`` lines with times first..first+count-1, one batch per line (as a slow container)."""
    for t in range(first, first + count):
        store.append(CID, record(entry(t, size)), 1)


def rotating_store(tmp_path: Path, max_size: int, max_file: int, compress: bool = False) -> LocalStore:
    store = LocalStore(tmp_path)
    store.logger_started(CID, "f1", {}, StoreOptions(max_size, max_file, compress))
    return store


def files(tmp_path: Path) -> list[str]:
    return [path.name for _, path in chain(container_dir(tmp_path, CID))]


def record_size(size: int = LINE) -> int:
    return len(record(entry(1, size)))


def mark_size(tmp_path: Path) -> int:
    """Bytes of the generation marker every file starts with (the same for all files of one test)."""
    clog = LocalStore(tmp_path).get(CID)
    return len(generation_record(clog.generation, clog.first_generation))


def test_rotates_at_max_size_and_keeps_max_file(tmp_path: Path) -> None:
    mark = mark_size(tmp_path)
    store = rotating_store(tmp_path, max_size=mark + 10 * record_size(), max_file=3)
    add(store, 1, 95)
    assert files(tmp_path) == ["container.log", "container.log.1", "container.log.2"]
    folder = container_dir(tmp_path, CID)
    for name in ("container.log.1", "container.log.2"):
        assert (folder / name).stat().st_size == mark + 10 * record_size()
    # 95 lines: 9 rotations; the two rotated files and the current one keep lines 71..95.
    assert store.logs[CID].rotations == 9
    assert times(serve(store, request())) == list(range(71, 96))


def test_one_big_batch_is_cut_at_record_boundaries(tmp_path: Path) -> None:
    mark = mark_size(tmp_path)
    store = rotating_store(tmp_path, max_size=mark + 10 * record_size(), max_file=10)
    batch = b"".join(record(entry(t)) for t in range(1, 36))
    store.append(CID, batch, 35)
    folder = container_dir(tmp_path, CID)
    sizes = [(folder / name).stat().st_size - mark for name in files(tmp_path)]
    assert sizes == [5 * record_size(), 10 * record_size(), 10 * record_size(), 10 * record_size()]
    assert times(serve(store, request())) == list(range(1, 36))


def test_a_record_larger_than_max_size_ends_its_file(tmp_path: Path) -> None:
    # As Docker's drivers: a file exceeds max-size by at most one record, and no record is ever cut.
    store = rotating_store(tmp_path, max_size=500, max_file=5)
    add(store, 1, 1, size=100)
    add(store, 2, 1, size=2000)
    add(store, 3, 1, size=100)
    folder = container_dir(tmp_path, CID)
    mark = mark_size(tmp_path)
    assert [(folder / n).stat().st_size for n in files(tmp_path)] == [
        mark + record_size(100), mark + record_size(100) + record_size(2000)]
    assert times(serve(store, request())) == [1, 2, 3]


def test_max_file_one_drops_the_old_content(tmp_path: Path) -> None:
    store = rotating_store(tmp_path, max_size=10 * record_size(), max_file=1)
    add(store, 1, 25)
    assert files(tmp_path) == ["container.log"]
    assert times(serve(store, request())) == list(range(21, 26))


def test_compress_gzips_rotated_files_and_they_read_back(tmp_path: Path) -> None:
    mark = mark_size(tmp_path)
    store = rotating_store(tmp_path, max_size=mark + 10 * record_size(), max_file=4, compress=True)
    add(store, 1, 35)  # no event loop here: compression runs inline
    assert files(tmp_path) == ["container.log", "container.log.1.gz", "container.log.2.gz", "container.log.3.gz"]
    folder = container_dir(tmp_path, CID)
    with gzip.open(folder / "container.log.1.gz") as f:
        assert len(f.read()) == mark + 10 * record_size()
    assert times(serve(store, request())) == list(range(1, 36))
    assert times(serve(store, request(tail=12))) == list(range(24, 36))
    assert times(serve(store, request(since=15, until=22))) == list(range(15, 23))


def test_tail_walks_back_across_rotated_files(tmp_path: Path) -> None:
    store = rotating_store(tmp_path, max_size=10 * record_size(), max_file=5)
    add(store, 1, 45)
    assert times(serve(store, request(tail=1))) == [45]
    assert times(serve(store, request(tail=5))) == list(range(41, 46))
    assert times(serve(store, request(tail=17))) == list(range(29, 46))
    assert times(serve(store, request(tail=1000))) == list(range(1, 46))


def test_follow_across_many_rotations_loses_and_repeats_nothing(tmp_path: Path) -> None:
    store = rotating_store(tmp_path, max_size=10 * record_size(), max_file=2, compress=True)
    add(store, 1, 5)

    async def live(store: LocalStore, task: asyncio.Task[None], peer: Peer) -> None:
        await peer.until_count(5)
        for first in range(6, 200, 7):  # several rotations between two reads of the follower
            add(store, first, 7)
            await peer.until_count(first + 6)
        store.logger_closed(CID, "f1", lines=1)
        await asyncio.wait_for(task, DEADLINE)

    assert times(serve(store, request(follow=True, fifos=("f1",)), live)) == list(range(1, 202))


def test_follow_with_max_file_one_reads_the_old_inode_to_its_end(tmp_path: Path) -> None:
    store = rotating_store(tmp_path, max_size=10 * record_size(), max_file=1)
    add(store, 1, 3)

    async def live(store: LocalStore, task: asyncio.Task[None], peer: Peer) -> None:
        await peer.until_count(3)
        add(store, 4, 30)  # the follower's file is unlinked twice meanwhile
        store.logger_closed(CID, "f1", lines=1)
        await asyncio.wait_for(task, DEADLINE)

    got = times(serve(store, request(follow=True, fifos=("f1",)), live))
    # Lines 4..10 were in the inode the follower held; 11..30 lived in files that max-file=1 deleted before the
    # follower got there (as with Docker's drivers, and logged); 31..33 are in the current file.
    assert got == [*range(1, 11), 31, 32, 33]


def test_destroy_logs_on_stop_deletes_the_folder_but_not_for_a_temporary_logger(tmp_path: Path) -> None:
    from localstore.store import StoreSettings

    store = LocalStore(tmp_path, StoreSettings(destroy_logs_on_stop=True))
    other = "f" * 64
    store.logger_started(CID, "run1", {}, StoreOptions())
    store.logger_started(other, "run2", {}, StoreOptions())
    add(store, 1, 3)
    store.append(other, record(entry(1)), 1)
    folder = container_dir(tmp_path, CID)
    # docker logs on the running container's neighbour: a temporary logger that never carries a line
    store.logger_started(CID, "temp", {}, StoreOptions())
    store.logger_closed(CID, "temp", lines=0)
    assert folder.exists()
    store.logger_closed(CID, "run1", lines=3)
    assert not folder.exists()
    assert container_dir(tmp_path, other).exists()
    assert store.counters.destroyed_total == 1


def test_retention_deletes_only_long_stopped_containers(tmp_path: Path) -> None:
    import os
    import time

    from localstore.store import StoreSettings

    store = LocalStore(tmp_path, StoreSettings(retain_stopped_for=3600))
    running, stopped_long, stopped_recently = "a" * 64, "b" * 64, "c" * 64
    for cid in (running, stopped_long, stopped_recently):
        store.logger_started(cid, f"fifo-{cid[0]}", {}, StoreOptions())
        store.append(cid, record(entry(1)), 1)
    store.logger_closed(stopped_long, "fifo-b", lines=1)
    store.logger_closed(stopped_recently, "fifo-c", lines=1)
    now = time.time()
    old = now - 2 * 3600
    for path in container_dir(tmp_path, stopped_long).iterdir():
        os.utime(path, (old, old))
    for path in container_dir(tmp_path, running).iterdir():
        os.utime(path, (old, old))  # quiet, but its logger is open: kept
    store.expire(now)
    assert store.counters.expired_total == 0, "nothing is judged before the supervisor named the running loggers"
    store.loggers_synced = True
    store.expire(now)
    assert not container_dir(tmp_path, stopped_long).exists()
    assert container_dir(tmp_path, stopped_recently).exists()
    assert container_dir(tmp_path, running).exists()
    assert store.counters.expired_total == 1
