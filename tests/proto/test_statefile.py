"""proto/statefile.py: atomic, durable state files, and damaged ones told apart from missing ones."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from proto import statefile
from proto.statefile import StateFileError, read_bytes, read_json, write_json, write_text


def test_write_then_read_back(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    write_json(path, {"a": [1, 2]})
    assert read_json(path) == {"a": [1, 2]}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]  # no .tmp left behind


def test_a_stale_tmp_of_a_crash_gets_the_right_mode(tmp_path: Path) -> None:
    (tmp_path / "s.json.tmp").write_text("half")
    os.chmod(tmp_path / "s.json.tmp", 0o644)
    write_text(tmp_path / "s.json", "new", mode=0o600)
    assert stat.S_IMODE((tmp_path / "s.json").stat().st_mode) == 0o600


def test_the_file_and_its_folder_are_flushed_before_it_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(statefile.os, "fsync", fsync)
    write_json(tmp_path / "s.json", {})
    assert synced == [str(tmp_path / "s.json.tmp"), str(tmp_path)]


def test_a_failed_write_keeps_the_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.json"
    write_json(path, {"old": 1})

    def no_space(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(statefile.os, "write", no_space)
    with pytest.raises(OSError):
        write_json(path, {"new": 2})
    monkeypatch.undo()
    assert read_json(path) == {"old": 1}


def test_missing_is_none(tmp_path: Path) -> None:
    assert read_json(tmp_path / "nope.json") is None
    assert read_bytes(tmp_path / "nope") is None


@pytest.mark.parametrize(("content", "problem"), [
    (b"", "empty"), (b"\0\0\0\0", "not valid JSON"), (b'{"generation": 12', "not valid JSON"),
    (b"  \n", "empty"), (b"[1, 2]", "a JSON list where a dict belongs"), (b"\xff\xfe", "not valid JSON"),
])
def test_damaged_files_are_errors_naming_the_file(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(StateFileError, match=problem) as caught:
        read_json(path)
    assert str(path) in str(caught.value)


def test_a_hint_written_often_skips_the_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    monkeypatch.setattr(statefile.os, "fsync", synced.append)
    write_json(tmp_path / "cursor.json", {"shipped": [1, 2]}, durable=False)
    assert synced == [] and read_json(tmp_path / "cursor.json") == {"shipped": [1, 2]}
