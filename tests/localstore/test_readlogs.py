"""Unit tests for localstore/readlogs.py: tail_start and ReadLogsStream over a real socketpair."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from localstore.container_log import StoreOptions
from localstore.paths import LOG_NAME, container_dir
from localstore.readlogs import CHUNK, tail_start
from localstore.store import LocalStore
from proto.entry_pb2 import LogEntry
from proto.framing import HEADER_SIZE, encode_frame, marker_record
from tests.localstore.readlogs_peer import DEADLINE, Peer, serve, stream_started
from tests.localstore.records import CID, record, request, stored, times


def fill(store: LocalStore, times: list[int]) -> list[LogEntry]:
    entries = [stored(t) for t in times]
    if entries:
        store.append(CID, b"".join(record(e) for e in entries), len(entries))
    return entries


# --- tail_start ---------------------------------------------------------------------------------------------


def write_records(path: Path, entries: list[LogEntry]) -> list[int]:
    """Write records; return the offset where each one starts, plus the end offset."""
    offsets = [0]
    data = bytearray()
    for e in entries:
        data += record(e)
        offsets.append(len(data))
    path.write_bytes(bytes(data))
    return offsets


@pytest.fixture
def five(tmp_path: Path) -> tuple[Path, list[int]]:
    path = tmp_path / "f"
    return path, write_records(path, [stored(t, b"x" * t) for t in range(1, 6)])


def test_tail_zero_is_the_end(five: tuple[Path, list[int]]) -> None:
    path, offs = five
    assert tail_start(path, offs[-1], 0) == offs[-1]


@pytest.mark.parametrize("tail", [1, 2, 3, 4, 5])
def test_tail_n(five: tuple[Path, list[int]], tail: int) -> None:
    path, offs = five
    assert tail_start(path, offs[-1], tail) == offs[5 - tail]


@pytest.mark.parametrize("tail", [6, 100, 2**31])
def test_tail_more_than_exists(five: tuple[Path, list[int]], tail: int) -> None:
    path, offs = five
    assert tail_start(path, offs[-1], tail) == 0


@pytest.mark.parametrize("tail", [-1, -2, -1000])
def test_tail_negative_is_everything(five: tuple[Path, list[int]], tail: int) -> None:
    path, offs = five
    assert tail_start(path, offs[-1], tail) == 0


def test_tail_counts_back_from_end_not_file_size(five: tuple[Path, list[int]]) -> None:
    path, offs = five
    assert tail_start(path, offs[3], 1) == offs[2]
    assert tail_start(path, offs[3], 3) == 0
    assert tail_start(path, 0, 3) == 0


def test_tail_on_a_file_bigger_than_one_read_block(tmp_path: Path) -> None:
    path = tmp_path / "big"
    entries = [stored(i, bytes([65 + i % 26]) * (16 * 1024 + i)) for i in range(100)]
    offs = write_records(path, entries)
    assert offs[-1] > CHUNK
    for tail in (1, 60, 64, 65, 66, 99, 100, 101):
        assert tail_start(path, offs[-1], tail) == offs[max(0, 100 - tail)], tail



def test_tail_across_read_blocks_with_markers(tmp_path: Path) -> None:
    """The walk back reads growing blocks; a batch marker cut by a block's start is read whole (read in part it
    would count as a line), and markers never count."""
    for shift in range(0, 60, 7):  # moves where the blocks' starts fall
        path = tmp_path / f"mixed-{shift}"
        data = bytearray(record(stored(0, b"s" * (1 + shift))))
        starts = []  # offset of each real record after the first, in file order
        for i in range(6000):
            starts.append(len(data))
            data += record(stored(i, bytes([65 + i % 26]) * (30 + i % 9)))
            data += marker_record("fifo", i + 1)
        path.write_bytes(bytes(data))
        for tail in (1, 700, 1500, 2500, 4000, 6000):
            assert tail_start(path, len(data), tail) == starts[6000 - tail], (shift, tail)


# --- ReadLogsStream -----------------------------------------------------------------------------------------


def test_history_sends_stored_entries_as_frames(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    entries = fill(store, [10, 20, 30])
    entries.append(stored(40, b"partial chunk, no newline"))
    store.append(CID, record(entries[-1]), 1)

    async def raw_check(_: LocalStore, task: asyncio.Task[None], peer: Peer) -> None:
        await peer.until_count(4)
        await asyncio.wait_for(task, DEADLINE)
        # Frames are exactly the stored records without their trailing length: bytes go out unchanged.
        assert bytes(peer.raw) == b"".join(encode_frame(e) for e in entries)

    assert serve(store, request(), raw_check) == entries


def test_unknown_container_sends_nothing(tmp_path: Path) -> None:
    assert serve(LocalStore(tmp_path), request()) == []


@pytest.mark.parametrize(
    ("tail", "expected"), [(-1, [10, 20, 30, 40]), (0, []), (1, [40]), (3, [20, 30, 40]), (9, [10, 20, 30, 40])]
)
def test_history_tail(tmp_path: Path, tail: int, expected: list[int]) -> None:
    store = LocalStore(tmp_path)
    fill(store, [10, 20, 30, 40])
    assert times(serve(store, request(tail=tail))) == expected


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        (0, [10, 30, 20, 40]),
        (1, [10, 30, 20, 40]),
        (10, [10, 30, 20, 40]),  # inclusive
        (11, [30, 20, 40]),
        (25, [30, 20, 40]),  # once at or after since, no more filtering: 20 stays
        (30, [30, 20, 40]),
        (35, [40]),
        (41, []),
    ],
)
def test_history_since(tmp_path: Path, since: int, expected: list[int]) -> None:
    store = LocalStore(tmp_path)
    fill(store, [10, 30, 20, 40])
    assert times(serve(store, request(since=since))) == expected


@pytest.mark.parametrize(
    ("until", "expected"),
    [
        (0, [10, 20, 30, 15]),  # no bound
        (5, []),
        (10, [10]),  # inclusive
        (20, [10, 20]),  # stops at 30: 15 after it is not sent
        (29, [10, 20]),
        (30, [10, 20, 30, 15]),
    ],
)
def test_history_until(tmp_path: Path, until: int, expected: list[int]) -> None:
    store = LocalStore(tmp_path)
    fill(store, [10, 20, 30, 15])
    assert times(serve(store, request(until=until))) == expected


def test_history_tail_first_then_since_and_until(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    fill(store, [10, 20, 30, 40, 50, 60])
    assert times(serve(store, request(tail=4, since=15))) == [30, 40, 50, 60]
    store = LocalStore(tmp_path)
    assert times(serve(store, request(tail=4, since=45, until=55))) == [50]
    store = LocalStore(tmp_path)
    assert times(serve(store, request(tail=2, until=45))) == []


def test_history_large_enough_for_several_reads(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    entries = [stored(i, b"%d" % i + b"y" * 16000 + b"\n") for i in range(150)]
    store.append(CID, b"".join(record(e) for e in entries), len(entries))
    got = serve(store, request(since=5, until=140))
    assert times(got) == list(range(5, 141))
    assert got == entries[5:141]


def test_history_from_before_a_restart(tmp_path: Path) -> None:
    old = LocalStore(tmp_path)
    fill(old, [1, 2, 3])
    old.close()
    # Torn tail left by a crash: not sent.
    path = container_dir(tmp_path, CID) / LOG_NAME
    path.write_bytes(path.read_bytes() + record(stored(4))[:-HEADER_SIZE])
    assert times(serve(LocalStore(tmp_path), request())) == [1, 2, 3]


def test_history_after_restart_once_the_container_logs_again(tmp_path: Path) -> None:
    """Plugin restarted, container started again (LoggerStarted), docker logs before its first new line."""
    old = LocalStore(tmp_path)
    fill(old, [1, 2, 3])
    old.close()
    store = LocalStore(tmp_path)
    store.logger_started(CID, "fifo-new", {"ContainerID": CID}, StoreOptions())
    assert times(serve(store, request())) == [1, 2, 3]


def test_follow_ends_when_every_fifo_waited_for_closed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    fill(store, [1, 2, 3])
    store.logger_started(CID, "f1", {}, StoreOptions())
    store.logger_started(CID, "f2", {}, StoreOptions())

    async def live(store: LocalStore, task: asyncio.Task[None], peer: Peer) -> None:
        assert times(await peer.until_count(2)) == [2, 3]
        fill(store, [4])
        assert times(await peer.until_count(3)) == [2, 3, 4]
        store.logger_closed(CID, "f1", lines=1)
        fill(store, [5, 6])  # f2 still open: still following
        assert times(await peer.until_count(5)) == [2, 3, 4, 5, 6]
        assert not task.done()
        store.logger_closed(CID, "f2", lines=1)
        await asyncio.wait_for(task, DEADLINE)

    assert times(serve(store, request(tail=2, follow=True, fifos=("f1", "f2")), live)) == [2, 3, 4, 5, 6]


def test_follow_sends_lines_written_after_close_was_announced_before_ending(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    fill(store, [1])
    store.logger_started(CID, "f1", {}, StoreOptions())

    async def live(store: LocalStore, task: asyncio.Task[None], peer: Peer) -> None:
        await peer.until_count(1)
        fill(store, [2, 3])
        store.logger_closed(CID, "f1", lines=1)
        await asyncio.wait_for(task, DEADLINE)

    assert times(serve(store, request(follow=True, fifos=("f1",)), live)) == [1, 2, 3]


def test_follow_with_tail_zero_sends_only_new_lines(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    fill(store, [1, 2])
    store.logger_started(CID, "f1", {}, StoreOptions())

    async def live(store: LocalStore, task: asyncio.Task[None], peer: Peer) -> None:
        await stream_started(peer)
        fill(store, [3])
        await peer.until_count(1)
        store.logger_closed(CID, "f1", lines=1)

    assert times(serve(store, request(tail=0, follow=True, fifos=("f1",)), live)) == [3]


def test_follow_of_fifos_already_closed_ends_after_history(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    fill(store, [1, 2])
    store.logger_started(CID, "f1", {}, StoreOptions())
    store.logger_closed(CID, "f1", lines=1)
    assert times(serve(store, request(follow=True, fifos=("f1",)))) == [1, 2]


def test_follow_ends_when_the_peer_closes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    fill(store, [1])
    store.logger_started(CID, "f1", {}, StoreOptions())

    async def go_away(store: LocalStore, task: asyncio.Task[None], peer: Peer) -> None:
        await peer.until_count(1)
        peer.sock.close()
        await asyncio.wait_for(task, DEADLINE)
        assert store.closed_fifos == set()  # it ended because of the peer, not because the logger closed

    assert times(serve(store, request(follow=True, fifos=("f1",)), go_away)) == [1]


def test_follow_stops_at_first_live_entry_after_until(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    fill(store, [10])
    store.logger_started(CID, "f1", {}, StoreOptions())
    until = 2**62  # far future, so the wall clock does not end it

    async def live(store: LocalStore, task: asyncio.Task[None], peer: Peer) -> None:
        await peer.until_count(1)
        fill(store, [20, until + 1, 30])
        await asyncio.wait_for(task, DEADLINE)

    assert times(serve(store, request(until=until, follow=True, fifos=("f1",)), live)) == [10, 20]


def test_follow_since_filter_carries_into_live_entries(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    fill(store, [1, 2])
    store.logger_started(CID, "f1", {}, StoreOptions())

    async def live(store: LocalStore, task: asyncio.Task[None], peer: Peer) -> None:
        await stream_started(peer)
        fill(store, [3, 50, 4])
        await peer.until_count(2)
        store.logger_closed(CID, "f1", lines=1)

    assert times(serve(store, request(since=10, follow=True, fifos=("f1",)), live)) == [50, 4]


def test_follow_on_a_container_that_has_not_logged_yet(tmp_path: Path) -> None:
    """docker run -d ...; docker logs -f ... before the container printed anything: wait for its lines."""
    store = LocalStore(tmp_path)
    store.logger_started(CID, "f1", {"ContainerID": CID}, StoreOptions())

    async def live(store: LocalStore, task: asyncio.Task[None], peer: Peer) -> None:
        await stream_started(peer)
        fill(store, [7])
        await peer.until_count(1)
        store.logger_closed(CID, "f1", lines=1)

    assert times(serve(store, request(follow=True, fifos=("f1",)), live)) == [7]


def test_read_of_a_container_that_has_not_logged_yet(tmp_path: Path) -> None:
    """Started, nothing printed, docker logs (no follow): an empty answer, not an error."""
    store = LocalStore(tmp_path)
    store.logger_started(CID, "f1", {"ContainerID": CID}, StoreOptions())
    assert serve(store, request()) == []


def test_follow_on_an_unknown_container_whose_fifo_closed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.closed_fifos.add("f1")
    assert serve(store, request(follow=True, fifos=("f1",))) == []


def test_follow_on_an_unknown_container(tmp_path: Path) -> None:
    """A follow request may arrive before anything is stored; it waits for the first lines."""
    store = LocalStore(tmp_path)

    async def live(store: LocalStore, task: asyncio.Task[None], peer: Peer) -> None:
        await stream_started(peer)
        store.logger_started(CID, "f1", {}, StoreOptions())
        fill(store, [8])
        await peer.until_count(1)
        store.logger_closed(CID, "f1", lines=1)

    assert times(serve(store, request(follow=True, fifos=("f1",)), live)) == [8]


def test_history_waits_for_a_draining_logger_to_store_its_last_lines(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.logger_started(CID, "stopped", {}, StoreOptions())
    fill(store, [1])

    async def drain(store: LocalStore, task: asyncio.Task[None], peer: Peer) -> None:
        await stream_started(peer)
        # Nothing sent while the logger still drains: not a byte has reached the peer's socket.
        assert not task.done() and peer.take_available() == [] and peer.raw == b"" and not peer.eof
        fill(store, [2, 3])
        store.logger_closed(CID, "stopped", lines=3)
        await asyncio.wait_for(task, DEADLINE)

    assert times(serve(store, request(draining=("stopped",)), drain)) == [1, 2, 3]
