"""Positions (so documents' ids) are never reused for another line (localstore/generations.py)."""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

import localstore.generations as generations
from localstore.container_log import StoreOptions
from localstore.fetch_server import FetchServer
from localstore.generations import FLOOR_NAME, generations_on_disk
from localstore.paths import LOG_NAME, container_dir
from localstore.state import STATE_NAME
from localstore.store import LocalStore, StoreSettings
from proto.framing import HEADER, HEADER_SIZE, encode_record, generation_of, is_marker, marker_of
from tests.conftest import simulate_reboot
from tests.localstore.records import CID, bodies, record, stored

Position = tuple[int, int]


def add(store: LocalStore, first: int, count: int) -> None:
    for t in range(first, first + count):
        store.append(CID, record(stored(t)), 1)


def line_positions(store: LocalStore) -> list[Position]:
    """The position of every line (markers skipped) in the container's files, oldest first, as the shipper sees
    them: these are what the documents' ids are made of."""
    clog = store.get(CID)
    out = []
    for generation in range(clog.generation - 20, clog.generation + 1):
        index = clog.generation - generation
        path = clog.folder / (LOG_NAME if index == 0 else f"{LOG_NAME}.{index}")
        if not path.exists():
            continue
        out += [(generation, pos) for pos, body in bodies(path.read_bytes()) if not is_marker(body)]
    return out


@pytest.fixture
def fetches(tmp_path: Path) -> Iterator[tuple[LocalStore, FetchServer]]:
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    store = LocalStore(tmp_path, StoreSettings(destroy_logs_on_stop=True))
    server = FetchServer(store, router, lambda: None)
    try:
        yield store, server
    finally:
        server.close()
        store.close()
        router.close(0)
        ctx.term()


def test_a_container_started_again_after_its_folder_was_deleted_never_reuses_a_position(tmp_path: Path) -> None:
    # The reproduced loss: DESTROY_LOGS_ON_STOP, the same container started again, every new line answered 409.
    store = LocalStore(tmp_path, StoreSettings(destroy_logs_on_stop=True))
    store.logger_started(CID, "run1", {}, StoreOptions(max_size=300))
    add(store, 1, 40)  # a few rotations
    before = line_positions(store)
    store.logger_closed(CID, "run1", lines=40)
    assert not container_dir(tmp_path, CID).exists()
    store.logger_started(CID, "run2", {}, StoreOptions(max_size=300))
    add(store, 1, 40)
    after = line_positions(store)
    assert len(after) == len(before) and min(after) > max(before)


def test_the_floor_survives_a_restart_and_a_clock_that_went_back(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path, StoreSettings(destroy_logs_on_stop=True))
    store.logger_started(CID, "run1", {}, StoreOptions())
    add(store, 1, 3)
    last = store.get(CID).generation
    store.logger_closed(CID, "run1", lines=3)
    assert int((tmp_path / FLOOR_NAME).read_text()) == last + 1
    monkeypatch.setattr(generations, "clock_generation", lambda: 5)  # the clock was set back years
    restarted = LocalStore(tmp_path)
    assert restarted.get(CID).first_generation == last + 1


def test_a_fresh_folder_starts_from_the_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generations, "clock_generation", lambda: 1_700_000_000_000_000)
    clog = LocalStore(tmp_path).get(CID)
    assert clog.generation == clog.first_generation == 1_700_000_000_000_000


@pytest.mark.parametrize("state", [None, b"", b'{"generation": 3, "shi', b"[1, 2]",
                                   b'{"generation": "x", "first_generation": -4, "shipped": "far", "ships": 1}'])
def test_a_lost_or_corrupt_state_json_is_rebuilt_from_the_files(tmp_path: Path, state: bytes | None,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    store = LocalStore(tmp_path)
    store.logger_started(CID, "run1", {}, StoreOptions(max_size=300, max_file=3))
    add(store, 1, 40)
    clog = store.get(CID)
    expected = (clog.generation, clog.first_generation)
    before = line_positions(store)
    store.close()
    path = clog.folder / STATE_NAME
    if state is None:
        path.unlink()
    else:
        path.write_bytes(state)
    with caplog.at_level(logging.WARNING, "elp.localstore"):
        restarted = LocalStore(tmp_path)
        again = restarted.get(CID)
    assert (again.generation, again.first_generation) == expected
    assert line_positions(restarted) == before  # every stored line keeps its id
    assert again.shipped is None  # the cursor is gone: shipping replays from the oldest line (409s)
    saved = json.loads(path.read_text())
    assert (saved["generation"], saved["first_generation"]) == expected
    if state:  # unreadable content is said once
        assert len([r for r in caplog.records if STATE_NAME in r.getMessage()]) == 1
    restarted.logger_started(CID, "run2", {}, StoreOptions(max_size=300, max_file=3))
    add(restarted, 100, 40)
    assert min(p for p in line_positions(restarted) if p not in before) > max(before)


def test_a_crash_between_the_rename_and_the_new_file_keeps_generations(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.logger_started(CID, "run1", {}, StoreOptions(max_size=300, max_file=3))
    add(store, 1, 20)
    clog = store.get(CID)
    generation = clog.generation
    store.close()
    folder = clog.folder
    (folder / STATE_NAME).unlink()
    (folder / f"{LOG_NAME}.2").unlink()
    (folder / f"{LOG_NAME}.1").rename(folder / f"{LOG_NAME}.2")
    (folder / LOG_NAME).rename(folder / f"{LOG_NAME}.1")  # rotated, then the store died before the new file
    assert generations_on_disk(folder) == (generation + 1, clog.first_generation)
    (folder / LOG_NAME).touch()  # or died right after creating it, still empty
    assert generations_on_disk(folder) == (generation + 1, clog.first_generation)


def test_every_file_starts_with_its_generation(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.logger_started(CID, "run1", {}, StoreOptions(max_size=300, max_file=4, compress=True))
    add(store, 1, 40)
    clog = store.get(CID)
    first_records = []
    for name in [LOG_NAME, f"{LOG_NAME}.1.gz", f"{LOG_NAME}.2.gz"]:
        path = clog.folder / name
        with (gzip.open(path) if name.endswith(".gz") else open(path, "rb")) as f:
            (n,) = HEADER.unpack(f.read(HEADER_SIZE))
            body = f.read(n)
        assert marker_of(body) is None  # never taken for a logger's batch marker
        first_records.append(generation_of(body))
    assert first_records == [(clog.generation - i, clog.first_generation) for i in range(3)]


def test_a_folder_from_before_markers_keeps_its_generations(tmp_path: Path) -> None:
    folder = container_dir(tmp_path, CID)
    folder.mkdir(parents=True)
    (folder / LOG_NAME).write_bytes(record(stored(5)))
    (folder / f"{LOG_NAME}.1").write_bytes(record(stored(4)))
    (folder / STATE_NAME).write_text(json.dumps({"generation": 3, "ships": True, "shipped": [2, 0]}))
    clog = LocalStore(tmp_path).get(CID)
    assert (clog.generation, clog.first_generation, clog.shipped, clog.ships) == (3, 0, (2, 0), True)


def test_a_folder_from_before_markers_without_state_json_never_goes_negative(tmp_path: Path) -> None:
    folder = container_dir(tmp_path, CID)
    folder.mkdir(parents=True)
    for index in range(3):
        (folder / (LOG_NAME if index == 0 else f"{LOG_NAME}.{index}")).write_bytes(record(stored(10 - index)))
    store = LocalStore(tmp_path)
    clog = store.get(CID)
    assert clog.first_generation == clog.generation - 2 > 0
    assert (json.loads((folder / STATE_NAME).read_text())["generation"]) == clog.generation


def test_a_cursor_of_an_earlier_incarnation_ships_the_new_one_from_its_first_line(
        fetches: tuple[LocalStore, FetchServer]) -> None:
    store, server = fetches
    store.logger_started(CID, "run1", {}, StoreOptions())
    add(store, 1, 5)
    old_end = store.get(CID).end
    store.logger_closed(CID, "run1", lines=5)  # deleted (DESTROY_LOGS_ON_STOP; nothing ships)
    store.logger_started(CID, "run2", {}, StoreOptions())
    add(store, 100, 2)
    clog = store.get(CID)
    records, first, nxt, skipped = server.read(clog, old_end, 1 << 20)
    assert skipped == 0  # not a loss
    assert first == (clog.first_generation, 0) and nxt == clog.end
    lines = [r for r in _bodies(records) if not is_marker(r)]
    assert len(lines) == 2


def test_files_rotated_away_before_shipping_are_counted_once_each(fetches: tuple[LocalStore, FetchServer]) -> None:
    store, server = fetches
    store.logger_started(CID, "run1", {}, StoreOptions(max_size=300, max_file=2))
    add(store, 1, 60)
    clog = store.get(CID)
    _, first, _, skipped = server.read(clog, (clog.first_generation, 0), 1 << 20)
    assert skipped == clog.generation - 1 - clog.first_generation
    assert first == (clog.generation - 1, 0)


def _bodies(records: bytes) -> list[bytes]:
    return [body for _, body in bodies(records)]


def test_encode_helpers_agree() -> None:
    assert generation_of(encode_record(stored(1).SerializeToString())[HEADER_SIZE:-HEADER_SIZE]) is None


def test_after_an_unclean_stop_a_file_that_lost_its_tail_never_gives_its_positions_again(tmp_path: Path) -> None:
    # A power cut: the file lost its unsynced tail, but the shipper had read those lines and Elasticsearch has
    # them under their positions. New lines must not take those positions.
    store = LocalStore(tmp_path)
    store.start()
    store.logger_started(CID, "run1", {}, StoreOptions())
    assert store.append_batch(CID, "run1", 1 << 40, b"".join(record(stored(t)) for t in range(10)), 10)
    shipped = line_positions(store)
    store.close()  # no stopped(): the machine died
    simulate_reboot(tmp_path)
    path = container_dir(tmp_path, CID) / LOG_NAME
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2 + 3)  # the tail never reached the disk, a record torn
    restarted = LocalStore(tmp_path)
    restarted.start()
    assert restarted.unclean
    # the reader sends its unconfirmed batch again, then new lines
    assert restarted.append_batch(CID, "run1", 1 << 40, b"".join(record(stored(t)) for t in range(10)), 10)
    assert restarted.append_batch(CID, "run1", (1 << 40) + 10, record(stored(99)), 1)
    after = [p for p in line_positions(restarted) if p not in shipped]
    assert after and min(after) > max(shipped)
    restarted.close()
    restarted.stopped()
    clean = LocalStore(tmp_path)
    clean.start()
    assert not clean.unclean
    generation = clean.get(CID).generation
    clean.append(CID, record(stored(100)), 1)
    assert clean.get(CID).generation == generation  # a clean restart goes on in the same file


def test_a_crash_of_the_store_alone_goes_on_in_the_same_file(tmp_path: Path) -> None:
    # The kernel kept every write of a store that was only killed (same boot): no new file, which would cost
    # every container a rotated file (all of its lines with max-file=1).
    store = LocalStore(tmp_path)
    store.start()
    store.logger_started(CID, "run1", {}, StoreOptions(max_file=1))
    assert store.append_batch(CID, "run1", 1 << 40, b"".join(record(stored(t)) for t in range(10)), 10)
    before = line_positions(store)
    generation = store.get(CID).generation
    store.close()  # no stopped(): SIGKILL
    restarted = LocalStore(tmp_path)
    restarted.start()
    assert not restarted.unclean
    restarted.logger_started(CID, "run2", {}, StoreOptions(max_file=1))
    assert restarted.append_batch(CID, "run2", 1 << 41, record(stored(11)), 1)
    assert restarted.get(CID).generation == generation
    assert line_positions(restarted)[: len(before)] == before  # the first ten lines are still there
    restarted.close()


def test_a_batch_stored_just_before_the_new_file_is_recognised_when_sent_again(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.start()
    store.logger_started(CID, "run1", {}, StoreOptions())
    assert store.append_batch(CID, "run1", 1 << 40, record(stored(1)), 1)
    store.close()
    simulate_reboot(tmp_path)
    restarted = LocalStore(tmp_path)
    restarted.start()  # unclean: the next append, another logger's, starts a new file
    assert restarted.unclean
    assert restarted.append_batch(CID, "run2", 1 << 41, record(stored(2)), 1)
    restarted.close()
    simulate_reboot(tmp_path)
    again = LocalStore(tmp_path)  # the machine died again: run1's last marker is in the file before
    again.start()
    assert again.append_batch(CID, "run1", 1 << 40, record(stored(1)), 1)
    assert again.counters.duplicates_skipped_total == 1


def test_shipping_cursors_are_saved_without_stalling_on_the_disk(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import proto.statefile as statefile

    store = LocalStore(tmp_path)
    store.logger_started(CID, "run1", {}, StoreOptions(), ships=True)
    add(store, 1, 3)
    store.acked(CID, store.get(CID).end)
    synced: list[int] = []
    monkeypatch.setattr(statefile.os, "fsync", synced.append)
    store.save_cursors()
    assert synced == []  # a lost cursor only costs a replay answered 409
    assert LocalStore(tmp_path).get(CID).shipped == store.get(CID).end


def test_a_store_that_cannot_write_its_running_marker_still_starts(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "data").write_text("a file where the data dir should be")
    store = LocalStore(tmp_path / "data")
    with caplog.at_level(logging.ERROR, "elp.localstore"):
        store.start()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not store.unclean and len(errors) == 1 and "localstore.running" in errors[0].getMessage()
