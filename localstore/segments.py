"""The files of one container: the current ``container.log`` and its rotated, maybe gzipped, predecessors.

Rotation renames like Docker's file drivers: ``container.log`` → ``container.log.1`` → … →
``container.log.<max-file - 1>`` (``.gz`` when compressed), dropping the oldest. Every file is numbered by its
*generation*, which grows by one at each rotation; the file of generation ``g`` is found at index
``current - g`` of that chain. Readers hold on to generations, not names, so a rotation (or several) during a
long ``docker logs`` never makes them lose or repeat a line.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from localstore.paths import LOG_NAME

log = logging.getLogger("elp.localstore")

GZ = ".gz"


def rotated_path(folder: Path, index: int, compressed: bool = False) -> Path:
    name = LOG_NAME if index == 0 else f"{LOG_NAME}.{index}"
    return folder / (name + (GZ if compressed else ""))


def existing_rotated(folder: Path, index: int) -> Path | None:
    """The file at ``index`` of the chain, plain or gzipped, if it exists."""
    for compressed in (False, True):
        path = rotated_path(folder, index, compressed)
        if path.exists():
            return path
    return None


def chain(folder: Path) -> Iterator[tuple[int, Path]]:
    """Every existing file of the chain, newest (index 0) first, up to the first gap."""
    index = 0
    while True:
        path = existing_rotated(folder, index)
        if path is None:
            return
        yield index, path
        index += 1


def shift_chain(folder: Path, max_file: int) -> None:
    """Make room for a new current file: drop the oldest, rename the rest one step older."""
    for compressed in (False, True):
        rotated_path(folder, max_file - 1, compressed).unlink(missing_ok=True)
    for index in range(max_file - 2, -1, -1):
        for compressed in (False, True):
            src = rotated_path(folder, index, compressed)
            if src.exists():
                os.replace(src, rotated_path(folder, index + 1, compressed))


def gzip_copy(src: BinaryIO, target: Path) -> None:
    """Gzip the whole of ``src`` into ``target``; runs in a worker thread, off the write path.

    It reads an already open file, so the rotation chain may rename or drop that file meanwhile: the caller
    decides afterwards, by generation, under which name the result belongs (or that it is no longer wanted).
    """
    with src, gzip.open(target, "wb", compresslevel=6) as dst:
        src.seek(0)
        shutil.copyfileobj(src, dst, 1 << 20)


def open_generation(folder: Path, current: int, generation: int) -> BinaryIO | Path | None:
    """The file of ``generation`` when ``current`` is the newest: an open handle when it is plain, its path when it
    is gzipped (expanding one takes a while: the caller does it off the loop, with ``open_segment``), None when it
    no longer exists. A gzip job may replace the plain file between the lookup and the open: then the ``.gz`` is
    looked up again."""
    index = current - generation
    if index < 0:
        return None
    for _ in range(2):
        path = existing_rotated(folder, index)
        if path is None or path.name.endswith(GZ):
            return path
        try:
            return open(path, "rb")
        except FileNotFoundError:
            continue
    return None


def open_segment(path: Path, scratch: Path) -> BinaryIO:
    """A seekable handle on a segment; a gzipped one is expanded into an unlinked scratch file first."""
    if path.name.endswith(GZ):
        scratch.mkdir(parents=True, exist_ok=True)
        out = tempfile.TemporaryFile(dir=scratch)  # noqa: SIM115 - returned to the caller, who closes it
        with gzip.open(path, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
        out.seek(0)
        return out
    return open(path, "rb")
