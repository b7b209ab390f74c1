"""ContainerLog.append: a marker and a batch's records in one writev, whole or not at all."""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from localstore.container_log import ContainerLog, StoreOptions
from proto.framing import generation_record, marker_record
from tests.localstore.records import CID, record, stored

RECORDS = b"".join(record(stored(t)) for t in range(20))
HEAD = marker_record("fifo", 20)


def new_log(tmp_path: Path, max_size: int = 0) -> ContainerLog:
    return ContainerLog(CID, tmp_path / CID, StoreOptions(max_size=max_size, max_file=3))


def test_head_and_records_land_byte_exact_even_when_writev_writes_a_little_at_a_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.writev
    calls = []

    def short_writev(fd: int, buffers: Sequence[bytes | memoryview]) -> int:
        calls.append(len(buffers))
        return real(fd, [bytes(memoryview(buffers[0])[:7])])  # the kernel may stop anywhere

    clog = new_log(tmp_path)
    clog.open()
    monkeypatch.setattr(os, "writev", short_writev)
    clog.append(memoryview(RECORDS), head=HEAD)
    clog.close()
    assert clog.path.read_bytes() == generation_record(0, 0) + HEAD + RECORDS
    assert clog.size == clog.path.stat().st_size
    assert 2 in calls  # the head and the records were handed over together


def test_a_write_error_part_way_takes_back_what_was_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.writev
    clog = new_log(tmp_path)
    clog.open()
    before = clog.path.read_bytes()

    def full_after_some(fd: int, buffers: Sequence[bytes | memoryview]) -> int:
        if clog.size > len(before):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, [bytes(memoryview(buffers[0])[:50])])

    monkeypatch.setattr(os, "writev", full_after_some)
    with pytest.raises(OSError):
        clog.append(RECORDS, head=HEAD)
    assert clog.path.read_bytes() == before and clog.size == len(before)


def test_with_a_rotation_on_the_way_the_head_stays_in_front_of_its_records(tmp_path: Path) -> None:
    mark = len(generation_record(0, 0))
    clog = new_log(tmp_path, max_size=mark + len(HEAD) + len(RECORDS) // 2)
    clog.append(RECORDS, head=HEAD)
    clog.close()
    assert clog.rotations == 1
    older = (clog.folder / "container.log.1").read_bytes()[mark:]
    newer = clog.path.read_bytes()[len(generation_record(1, 0)):]
    assert older.startswith(HEAD) and older + newer == HEAD + RECORDS
