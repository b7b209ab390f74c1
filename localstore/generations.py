"""Generations that no earlier incarnation of a container can have had, kept with the files themselves.

A position in a container's files is ``(generation, offset)``, and the shipper makes each document's ``_id`` from
the container id and the position of its first record. An id must never be given to another line: a container
started again with the same id after its folder was deleted (DESTROY_LOGS_ON_STOP, RETAIN_STOPPED_FOR, a wiped
data dir) must not start again at ``(0, 0)``, or Elasticsearch answers 409 to every new line. So:

* a fresh folder's first generation is the wall clock in microseconds, never below a floor persisted in
  ``<data dir>/generation-floor`` (raised past the last generation of every folder deleted, in case the clock
  goes back). A generation grows by one per rotation, and no container rotates once per microsecond, so an
  earlier incarnation's generations all lie below a later one's first;
* every file starts with a generation marker (``proto.framing.generation_record``: its generation and the
  folder's first generation), so the ids of the records on disk never depend on ``state.json``: a lost or corrupt
  one is rebuilt from the files and every record keeps its id (a replay still gets 409).

A position below the folder's first generation therefore comes from an earlier incarnation (a shipper's cursor
kept across the deletion): the new incarnation is shipped from its first line, and that is not a loss.
Folders from before this scheme have files without markers and a first generation of 0; they keep working.
"""

from __future__ import annotations

import gzip
import logging
import time
import zlib
from pathlib import Path

from localstore.segments import GZ, existing_rotated
from localstore.state import STATE_NAME, SavedState
from proto.framing import HEADER, HEADER_SIZE, MAX_FRAME, generation_of
from proto.statefile import StateFileError, read_bytes, write_text

log = logging.getLogger("elp.localstore")

FLOOR_NAME = "generation-floor"
# How far the chain of rotated files is searched for a marked file (max-file is far below this in practice).
MAX_CHAIN = 1000


def clock_generation() -> int:
    """The first generation of a folder created now: microseconds since the epoch (a rotation takes far longer)."""
    return time.time_ns() // 1000


def file_generation(path: Path) -> tuple[int, int] | None:
    """(generation, first generation) from the marker a file starts with; None for an empty or unmarked file."""
    try:
        with (gzip.open(path, "rb") if path.name.endswith(GZ) else open(path, "rb")) as f:
            head = f.read(HEADER_SIZE)
            if len(head) < HEADER_SIZE:
                return None
            (n,) = HEADER.unpack(head)
            if n > MAX_FRAME:
                return None
            return generation_of(f.read(n))
    except (OSError, EOFError, zlib.error):
        return None


def generations_on_disk(folder: Path) -> tuple[int, int] | None:
    """(current generation, first generation) of a folder, from the newest file that carries a marker.

    The newest file may be missing or still empty (a crash in the middle of a rotation): then the next one says
    where the chain stands. None when no file carries a marker (a fresh folder, or one from before markers).
    """
    for index in range(MAX_CHAIN):
        path = existing_rotated(folder, index)
        if path is None:
            if index == 0:
                continue
            return None
        found = file_generation(path)
        if found is not None:
            return found[0] + index, found[1]
        try:
            if path.stat().st_size > 0:
                return None  # an unmarked file with records: the folder predates markers
        except OSError:
            return None
    return None


def oldest_index(folder: Path) -> int:
    """Index of the oldest file of the chain (0 when there is at most the current file)."""
    oldest = 0
    for index in range(1, MAX_CHAIN):
        if existing_rotated(folder, index) is None:
            break
        oldest = index
    return oldest


def has_files(folder: Path) -> bool:
    return any(existing_rotated(folder, index) is not None for index in (0, 1))


def restore_generations(folder: Path, state: SavedState, floor: GenerationFloor) -> tuple[int, int]:
    """(current, first) generation of a folder: from its files' markers, else from ``state.json`` (files from
    before markers), else from the clock. What is wrong with ``state.json`` is added to ``state.problems``."""
    on_disk = generations_on_disk(folder)
    oldest = oldest_index(folder)
    if on_disk is not None:
        if state.generations is not None and state.generations != on_disk:
            state.problems.append(f"{folder / STATE_NAME}: generations {state.generations} where the files say "
                                  f"{on_disk}")
        return on_disk
    if state.generations is not None and state.generations[0] >= oldest:
        return state.generations  # no marked file yet, or files from before markers
    if has_files(folder):
        # Files from before markers and no usable state.json: their generations are unknown. New ones from the
        # clock may ship their lines again, but never give a new line an id an older line had.
        first = floor.fresh()
        state.problems.append(f"{folder / STATE_NAME}: missing or bad, and the files from before markers carry no "
                              f"generation (they start again at {first}: their lines may reach Elasticsearch "
                              f"twice)")
        return first + oldest, first
    first = floor.fresh()
    return first, first


class GenerationFloor:
    """The generation every fresh folder starts at or above: past every deleted folder's last generation."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FLOOR_NAME
        self.value = 0
        try:
            data = read_bytes(self.path)
            if data is not None:
                if not data.strip().isdigit():
                    raise StateFileError(f"{self.path}: not a generation")
                self.value = int(data)
        except StateFileError as exc:
            log.warning("%s; fresh folders start from the clock alone", exc)

    def fresh(self) -> int:
        """The first generation for a folder created now."""
        return max(clock_generation(), self.value)

    def raise_to(self, generation: int) -> None:
        """A folder whose last generation was ``generation - 1`` is being deleted."""
        if generation <= self.value:
            return
        self.value = generation
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_text(self.path, str(generation))
        except OSError as exc:  # the clock alone still keeps ids apart
            log.error("cannot save %s: %s", self.path, exc)
