"""ContainerLog: one container's append-only record files, rotated by its log options.

Appends come from the local store's loop, one batch at a time; rotation renames the chain (segments.py) and gzips
the file it closed in a worker thread, so neither waits for the disk beyond one write.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from localstore.generations import GenerationFloor, has_files, restore_generations
from localstore.paths import LOG_NAME
from localstore.recovery import last_good_end
from localstore.segments import gzip_copy, rotated_path, shift_chain
from localstore.state import STATE_NAME, read_state, write_state
from proto.framing import generation_record, record_boundary_after

log = logging.getLogger("elp.localstore")


@dataclass(frozen=True)
class StoreOptions:
    """How a container's files rotate (its ``max-size``, ``max-file`` and ``compress`` log options)."""

    max_size: int = 10_000_000
    max_file: int = 5
    compress: bool = False


@dataclass
class ContainerLog:
    """One container's files: appended by batches, read by any number of ReadLogs streams.

    ``changed`` is replaced on every append and rotation, so a follower that took the current event before
    looking at the size cannot miss a write. ``generation`` grows by one at each rotation (see segments.py) and
    starts at ``first_generation``, which no earlier incarnation of the container reached (see generations.py).
    """

    container_id: str
    folder: Path
    options: StoreOptions = field(default_factory=StoreOptions)
    fd: int = -1
    size: int = 0
    generation: int = 0
    first_generation: int = 0
    rotations: int = 0
    compressing: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    open_fifos: set[str] = field(default_factory=set)
    bytes_total: int = 0
    records_total: int = 0
    # Shipping: whether the container's lines go to Elasticsearch, and the position up to which they did.
    ships: bool = False
    shipped: tuple[int, int] | None = None
    shipped_saved: tuple[int, int] | None = None
    destroy_pending_since: float | None = None

    @property
    def path(self) -> Path:
        return self.folder / LOG_NAME

    @property
    def end(self) -> tuple[int, int]:
        return self.generation, self.size

    def load_state(self, floor: GenerationFloor) -> None:
        """Generation and shipping cursor persist across restarts, so positions keep meaning the same lines.

        The files' generation markers are the truth for generations; ``state.json`` adds the shipping cursor. A
        missing or bad ``state.json`` of a folder with files is rebuilt (and saved) from the files; a bad one is
        logged once.
        """
        state = read_state(self.folder)
        self.shipped = self.shipped_saved = state.shipped
        self.ships = state.ships
        self.generation, self.first_generation = restore_generations(self.folder, state, floor)
        if state.problems:
            log.warning("container %s: %s; rebuilt from its files%s", self.container_id[:12],
                        "; ".join(state.problems),
                        "" if self.shipped else " (shipping starts again from its oldest line: Elasticsearch "
                        "answers 409 to what it has)")
        if state.generations != (self.generation, self.first_generation) and has_files(self.folder):
            try:
                self.save_state()
            except OSError as exc:
                log.error("container %s: cannot rebuild %s: %s", self.container_id[:12], STATE_NAME, exc)

    def save_state(self, durable: bool = True) -> None:
        """``durable=False`` for the shipping cursor alone, saved every few seconds for every shipping container:
        two fsyncs each would stall the loop on a busy disk, and a cursor lost in a power cut only costs a replay
        that Elasticsearch answers with 409 (generations are in the files, state.json is rebuilt from them)."""
        write_state(self.folder, self.generation, self.first_generation, self.ships, self.shipped, durable)
        self.shipped_saved = self.shipped

    def open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob(".gzip-*.tmp"):  # a gzip job cut short by a crash
            stale.unlink(missing_ok=True)
        path = self.path
        size = path.stat().st_size if path.exists() else 0
        good = last_good_end(path, size)
        if good != size:
            log.warning(
                "container %s: %d bytes of a torn record at the end of %s removed (crash recovery)",
                self.container_id[:12],
                size - good,
                path,
            )
            os.truncate(path, good)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.size = good
        if good == 0:
            self._start_file()

    def _start_file(self) -> None:
        """A new file begins with its generation marker, so its records' positions never depend on state.json."""
        self._write(memoryview(generation_record(self.generation, self.first_generation)))

    def append(self, records: bytes | bytearray | memoryview, head: bytes = b"") -> None:
        """Append whole records (``head``'s, then ``records``'), rotating on the way so a file exceeds max-size by at
        most one record. Without a rotation on the way, one ``writev`` of both: no joined copy."""
        if self.fd < 0:
            self.open()
        limit = self.options.max_size
        total = len(head) + len(records)
        if not limit or self.size + total <= limit:
            self._writev(head, memoryview(records))
            self.notify()
            return
        view = memoryview(head + records) if head else memoryview(records)
        while view:
            if limit and self.size >= limit:
                self.rotate()
            cut = len(view)
            if limit and self.size + cut > limit:
                cut = record_boundary_after(view, max(1, limit - self.size))
            self._write(view[:cut])
            view = view[cut:]
        self.notify()

    def _write(self, view: memoryview) -> None:
        self._writev(b"", view)

    def _writev(self, head: bytes, view: memoryview) -> None:
        """Write ``head`` then ``view`` at the end of the file, all of it or (on an error) nothing."""
        start = self.size
        try:
            parts = [memoryview(head), view] if head else [view]
            while parts:
                written = os.writev(self.fd, parts)
                self.size += written
                while parts and written >= len(parts[0]):
                    written -= len(parts[0])
                    parts.pop(0)
                if parts:
                    parts[0] = parts[0][written:]
        except OSError:
            # Disk full part-way: take back what was written. Left there, the torn record would be read by ReadLogs
            # and fetched by the shipper (clog.size covered it) until the next append cut it off.
            if self.size != start:
                try:
                    os.ftruncate(self.fd, start)
                    self.size = start
                except OSError:
                    pass  # the next open() cuts the torn record off
            raise

    def rotate(self) -> None:
        opts = self.options
        os.close(self.fd)
        self.fd = -1
        compress_src = None
        if opts.max_file <= 1:
            self.path.unlink(missing_ok=True)  # readers that hold it open keep reading the old inode
        else:
            if opts.compress:
                compress_src = open(self.path, "rb")  # noqa: SIM115 - handed to the gzip job, which closes it
            shift_chain(self.folder, opts.max_file)
        self.generation += 1
        self.rotations += 1
        self.save_state()
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.size = 0
        self._start_file()
        if compress_src is not None:
            self._compress_later(self.generation - 1, compress_src)
        self.notify()

    def _compress_later(self, generation: int, src: BinaryIO) -> None:
        """Gzip the file of ``generation`` in a worker thread; appends and rotations never wait for it."""
        self.compressing += 1
        tmp = self.folder / f".gzip-{generation}.tmp"
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a unit test): compress right here
            self._compressed(generation, src, tmp, None)
            return
        future = loop.run_in_executor(None, gzip_copy, src, tmp)
        future.add_done_callback(lambda f: self._compressed(generation, src, tmp, f))

    def _compressed(self, generation: int, src: BinaryIO, tmp: Path, future: asyncio.Future[None] | None) -> None:
        """On the loop: put the ``.gz`` where that generation's file is *now*, then drop the plain file."""
        self.compressing -= 1
        try:
            if future is None:
                gzip_copy(src, tmp)
            else:
                future.result()
            index = self.generation - generation
            plain = rotated_path(self.folder, index)
            if index >= self.options.max_file or not plain.exists():
                tmp.unlink(missing_ok=True)  # rotated out while it was being compressed
                return
            os.replace(tmp, rotated_path(self.folder, index, compressed=True))
            plain.unlink()
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            log.error("container %s: cannot compress generation %d: %s (kept uncompressed)",
                      self.container_id[:12], generation, exc)

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
