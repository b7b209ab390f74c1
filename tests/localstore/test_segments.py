"""localstore/segments.py: opening the file of a generation (the one place ReadLogs and the fetch server do it)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

import localstore.segments as segments
from localstore.segments import open_generation, rotated_path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    rotated_path(tmp_path, 0).write_bytes(b"current")
    rotated_path(tmp_path, 1).write_bytes(b"previous")
    with gzip.open(rotated_path(tmp_path, 2, compressed=True), "wb") as f:
        f.write(b"oldest")
    return tmp_path


def test_a_plain_generation_is_opened_and_a_gzipped_one_named(folder: Path) -> None:
    for generation, content in [(10, b"current"), (9, b"previous")]:
        f = open_generation(folder, 10, generation)
        assert not isinstance(f, Path) and f is not None
        with f:
            assert f.read() == content
    assert open_generation(folder, 10, 8) == rotated_path(folder, 2, compressed=True)


def test_a_generation_not_there_is_none(folder: Path) -> None:
    assert open_generation(folder, 10, 7) is None  # rotated away
    assert open_generation(folder, 10, 11) is None  # not written yet


def test_a_plain_file_gzipped_between_lookup_and_open_is_found_as_gz(folder: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    gone = folder / "container.log.5"  # what the lookup saw: the gzip job replaced it before the open
    looked: list[int] = []

    def lookup(where: Path, index: int) -> Path | None:
        looked.append(index)
        return gone if len(looked) == 1 else rotated_path(where, 2, compressed=True)

    monkeypatch.setattr(segments, "existing_rotated", lookup)
    assert open_generation(folder, 10, 8) == rotated_path(folder, 2, compressed=True)
    assert looked == [2, 2]
