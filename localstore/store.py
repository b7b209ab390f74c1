"""ContainerLog: one container's append-only record file, and the LocalStore that holds them all."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localstore.paths import INFO_NAME, LOG_NAME, container_dir
from proto.framing import HEADER, HEADER_SIZE, MAX_FRAME

log = logging.getLogger("elp.localstore")


def last_good_end(path: Path, size: int) -> int:
    """Offset just after the last intact record of a file of ``size`` bytes.

    A crash can leave a torn record at the end. The fast path checks the final record's two length fields; if
    they disagree, the file is walked from the start and cut after the last record whose lengths match.
    """
    if size == 0:
        return 0
    with open(path, "rb") as f:
        if size >= 2 * HEADER_SIZE:
            f.seek(size - HEADER_SIZE)
            (n,) = HEADER.unpack(f.read(HEADER_SIZE))
            start = size - n - 2 * HEADER_SIZE
            if start >= 0 and n <= MAX_FRAME:
                f.seek(start)
                head = f.read(HEADER_SIZE)
                if len(head) == HEADER_SIZE and HEADER.unpack(head)[0] == n:
                    return size
        f.seek(0)
        data = f.read(size)
    pos = 0
    while pos + 2 * HEADER_SIZE <= size:
        (n,) = HEADER.unpack_from(data, pos)
        end = pos + n + 2 * HEADER_SIZE
        if n > MAX_FRAME or end > size or HEADER.unpack_from(data, end - HEADER_SIZE)[0] != n:
            break
        pos = end
    return pos


@dataclass
class ContainerLog:
    """One container's log file: appended by batches, read by any number of ReadLogs streams.

    ``changed`` is replaced on every append, so a follower that took the current event before reading the
    size cannot miss a write.
    """

    container_id: str
    folder: Path
    fd: int = -1
    size: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    open_fifos: set[str] = field(default_factory=set)

    @property
    def path(self) -> Path:
        return self.folder / LOG_NAME

    def open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
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
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.size = good

    def append(self, records: bytes) -> None:
        if self.fd < 0:
            self.open()
        view = memoryview(records)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        self.size += len(records)
        self.notify()

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass
class StoreCounters:
    bytes_total: int = 0
    records_total: int = 0
    write_errors_total: int = 0
    read_streams: int = 0
    read_streams_total: int = 0


class LocalStore:
    """All containers' files under ``<data dir>/containers/<container id>/``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.logs: dict[str, ContainerLog] = {}
        # FIFOs whose reader said LoggerClosed (or that the supervisor declared gone): followers of a container
        # end once every FIFO they wait for is in here. Pruned as containers restart.
        self.closed_fifos: set[str] = set()
        self.counters = StoreCounters()
        self.failing: dict[str, str] = {}

    def get(self, container_id: str) -> ContainerLog:
        clog = self.logs.get(container_id)
        if clog is None:
            clog = ContainerLog(container_id, container_dir(self.data_dir, container_id))
            self.logs[container_id] = clog
        return clog

    def append(self, container_id: str, records: bytes, count: int) -> None:
        clog = self.get(container_id)
        try:
            clog.append(records)
        except OSError as exc:
            self.counters.write_errors_total += 1
            if self.failing.get(container_id) != exc.strerror:
                self.failing[container_id] = exc.strerror or str(exc)
                log.error("container %s: cannot write %s: %s", container_id[:12], clog.path, exc)
            clog.close()
            return
        if self.failing.pop(container_id, None) is not None:
            log.info("container %s: writing to %s again", container_id[:12], clog.path)
        self.counters.bytes_total += len(records)
        self.counters.records_total += count

    def logger_started(self, container_id: str, fifo: str, info: dict[str, Any]) -> None:
        clog = self.get(container_id)
        clog.open_fifos.add(fifo)
        self.closed_fifos.discard(fifo)
        try:
            clog.folder.mkdir(parents=True, exist_ok=True)
            tmp = clog.folder / (INFO_NAME + ".tmp")
            tmp.write_text(json.dumps(info, sort_keys=True))
            os.replace(tmp, clog.folder / INFO_NAME)
        except OSError as exc:
            log.error("container %s: cannot write %s: %s", container_id[:12], clog.folder / INFO_NAME, exc)

    def logger_closed(self, container_id: str, fifo: str) -> None:
        self.closed_fifos.add(fifo)
        clog = self.logs.get(container_id)
        if clog is not None:
            clog.open_fifos.discard(fifo)
            clog.notify()

    def existing(self, container_id: str) -> ContainerLog | None:
        """The container's log if anything was ever stored for it (also from before a restart)."""
        clog = self.logs.get(container_id)
        if clog is not None:
            return clog
        folder = container_dir(self.data_dir, container_id)
        if not (folder / LOG_NAME).exists():
            return None
        clog = self.get(container_id)
        clog.size = last_good_end(clog.path, (folder / LOG_NAME).stat().st_size)
        return clog

    def close(self) -> None:
        for clog in self.logs.values():
            clog.close()
