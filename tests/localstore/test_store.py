"""Unit tests for localstore/store.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localstore.container_log import ContainerLog, StoreOptions
from localstore.paths import INFO_NAME, LOG_NAME, container_dir
from localstore.recovery import last_good_end
from localstore.store import LocalStore
from proto.entry_pb2 import LogEntry
from proto.framing import encode_record, generation_record

CID = "0123456789abcdef" * 4


def rec(line: bytes, t: int = 1, source: str = "stdout") -> bytes:
    return encode_record(LogEntry(source=source, time_nano=t, line=line).SerializeToString())


INTACT = [rec(b"first\n", 1), rec(b"\n", 2, "stderr"), rec(b"a somewhat longer third line\n", 3)]


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def lge(path: Path) -> int:
    return last_good_end(path, path.stat().st_size)


# --- last_good_end ------------------------------------------------------------------------------------------


def test_last_good_end_intact(tmp_path: Path) -> None:
    data = b"".join(INTACT)
    assert lge(write(tmp_path / "f", data)) == len(data)


def test_last_good_end_single_record(tmp_path: Path) -> None:
    assert lge(write(tmp_path / "f", INTACT[0])) == len(INTACT[0])


def test_last_good_end_empty(tmp_path: Path) -> None:
    assert lge(write(tmp_path / "f", b"")) == 0


def test_last_good_end_size_limits_what_is_looked_at(tmp_path: Path) -> None:
    path = write(tmp_path / "f", b"".join(INTACT))
    assert last_good_end(path, len(INTACT[0])) == len(INTACT[0])


@pytest.mark.parametrize("prefix_records", [0, 1, 2])
def test_last_good_end_torn_last_record_every_cut(tmp_path: Path, prefix_records: int) -> None:
    prefix = b"".join(INTACT[:prefix_records])
    last = INTACT[2]
    wrong = {}
    for k in range(1, len(last)):
        path = write(tmp_path / "f", prefix + last[:k])
        got = lge(path)
        if got != len(prefix):
            wrong[k] = got
    assert wrong == {}


def test_last_good_end_torn_record_with_nul_bytes_in_its_line(tmp_path: Path) -> None:
    """A line of NUL bytes (binary output) torn before its trailing length must still be cut off."""
    prefix = b"".join(INTACT)
    last = rec(b"\x00" * 8, 4)
    wrong = {}
    for k in range(1, len(last)):
        got = lge(write(tmp_path / "f", prefix + last[:k]))
        if got != len(prefix):
            wrong[k] = got
    assert wrong == {}


@pytest.mark.parametrize(
    "garbage", [b"\xff", b"\xff" * 7, b"junk appended!", b"\x00\x00\x00\x05abc", b"\xde\xad\xbe\xef" * 20]
)
def test_last_good_end_garbage_appended(tmp_path: Path, garbage: bytes) -> None:
    data = b"".join(INTACT)
    assert lge(write(tmp_path / "f", data + garbage)) == len(data)


def test_last_good_end_only_garbage(tmp_path: Path) -> None:
    assert lge(write(tmp_path / "f", b"\xff" * 20)) == 0


# --- ContainerLog ---------------------------------------------------------------------------------------------


def test_open_truncates_a_torn_tail_and_appends_after_it(tmp_path: Path) -> None:
    good = b"".join(INTACT[:2])
    folder = tmp_path / "c"
    write(folder / LOG_NAME, good + INTACT[2][:-3])
    clog = ContainerLog(CID, folder)
    try:
        clog.open()
        assert clog.size == len(good)
        assert (folder / LOG_NAME).stat().st_size == len(good)
        clog.append(INTACT[2])
        assert clog.size == len(good) + len(INTACT[2])
        assert (folder / LOG_NAME).read_bytes() == good + INTACT[2]
        assert lge(folder / LOG_NAME) == clog.size
    finally:
        clog.close()
    assert clog.fd == -1


def test_open_creates_folder_and_file(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b"
    clog = ContainerLog(CID, folder)
    try:
        clog.append(INTACT[0])  # opens on first use
        assert clog.path == folder / LOG_NAME
        mark = generation_record(clog.generation, clog.first_generation)
        assert clog.path.read_bytes() == mark + INTACT[0]
        assert clog.size == len(mark) + len(INTACT[0])
    finally:
        clog.close()


def test_open_keeps_an_intact_file(tmp_path: Path) -> None:
    data = b"".join(INTACT)
    folder = tmp_path / "c"
    write(folder / LOG_NAME, data)
    clog = ContainerLog(CID, folder)
    try:
        clog.open()
        assert clog.size == len(data)
        clog.append(INTACT[0])
        assert (folder / LOG_NAME).read_bytes() == data + INTACT[0]
    finally:
        clog.close()


def test_append_replaces_and_sets_changed_event(tmp_path: Path) -> None:
    clog = ContainerLog(CID, tmp_path / "c")
    try:
        before = clog.changed
        assert not before.is_set()
        clog.append(INTACT[0])
        assert before.is_set()
        assert clog.changed is not before
        assert not clog.changed.is_set()
    finally:
        clog.close()


def test_close_twice_is_harmless(tmp_path: Path) -> None:
    clog = ContainerLog(CID, tmp_path / "c")
    clog.open()
    clog.close()
    clog.close()
    assert clog.fd == -1


# --- LocalStore -----------------------------------------------------------------------------------------------


def test_append_counts_and_writes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    try:
        store.append(CID, INTACT[0] + INTACT[1], 2)
        store.append(CID, INTACT[2], 1)
        assert store.counters.records_total == 3
        assert store.counters.bytes_total == sum(map(len, INTACT))
        assert store.counters.write_errors_total == 0
        path = container_dir(tmp_path, CID) / LOG_NAME
        assert path == tmp_path / "containers" / CID / LOG_NAME
        clog = store.get(CID)
        mark = generation_record(clog.generation, clog.first_generation)
        assert path.read_bytes() == mark + b"".join(INTACT)
        assert clog.size == len(mark) + sum(map(len, INTACT))
    finally:
        store.close()


def test_append_write_error_is_counted_then_recovers(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    folder = container_dir(tmp_path, CID)
    write(folder, b"a file where the folder should be")
    try:
        store.append(CID, INTACT[0], 1)
        assert store.counters.write_errors_total == 1
        assert store.counters.records_total == 0
        assert store.counters.bytes_total == 0
        assert CID in store.failing
        folder.unlink()
        store.append(CID, INTACT[1], 1)
        assert CID not in store.failing
        assert store.counters.records_total == 1
        clog = store.get(CID)
        assert (folder / LOG_NAME).read_bytes() == generation_record(clog.generation, clog.generation) + INTACT[1]
    finally:
        store.close()


BAD_IDS = ["../x", "0" * 63, "0" * 65, "A" * 64, "../" + "0" * 61, "", "0" * 63 + "/", "g" * 64]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_store_refuses_non_container_ids(tmp_path: Path, bad: str) -> None:
    store = LocalStore(tmp_path / "data")
    with pytest.raises(ValueError, match="not a container id"):
        store.get(bad)
    with pytest.raises(ValueError):
        store.append(bad, INTACT[0], 1)
    with pytest.raises(ValueError):
        store.existing(bad)
    with pytest.raises(ValueError):
        store.logger_started(bad, "f", {}, StoreOptions())
    assert store.logs == {}
    assert list(tmp_path.rglob("*")) == []


def test_logger_started_and_closed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    info = {"ContainerID": CID, "Config": {"mode": "blocking"}}
    store.closed_fifos.add("fifo1")  # a FIFO that starts (again) is no longer closed
    store.logger_started(CID, "fifo1", info, StoreOptions())
    clog = store.get(CID)
    assert clog.open_fifos == {"fifo1"}
    assert "fifo1" not in store.closed_fifos
    assert json.loads((clog.folder / INFO_NAME).read_text()) == info
    assert not (clog.folder / (INFO_NAME + ".tmp")).exists()
    event = clog.changed
    store.logger_closed(CID, "fifo1", lines=1)
    assert "fifo1" in store.closed_fifos
    assert clog.open_fifos == set()
    assert event.is_set()


def test_logger_started_rewrites_info_only_when_it_changed(tmp_path: Path) -> None:
    """dockerd starts a logger with the same Info for every `docker logs` of a stopped container: no durable
    rewrite (two fsyncs ahead of the read) each time."""
    store = LocalStore(tmp_path)
    info = {"ContainerID": CID, "ContainerName": "/web"}
    store.logger_started(CID, "fifo1", info, StoreOptions())
    path = store.get(CID).folder / INFO_NAME
    first = path.stat().st_ino
    store.logger_started(CID, "fifo2", dict(info), StoreOptions())
    assert path.stat().st_ino == first, "the same Info is not written again"
    store.logger_started(CID, "fifo3", {**info, "ContainerName": "/renamed"}, StoreOptions())
    assert path.stat().st_ino != first and json.loads(path.read_text())["ContainerName"] == "/renamed"


def test_existing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    assert store.existing(CID) is None
    assert store.logs == {}
    write(container_dir(tmp_path, CID) / LOG_NAME, b"".join(INTACT) + b"\x00\x00\x01")
    clog = store.existing(CID)
    assert clog is not None
    assert clog.size == sum(map(len, INTACT))
    assert store.existing(CID) is clog
