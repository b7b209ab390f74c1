"""Docker's loggers, as the supervisor keeps them: one per StartLogging, from its FIFO to its reader.

Start and stop logging, watching a FIFO until its first data, the `docker logs` followers each reader is told
about, re-attaching a previous run's loggers, and the sequence range every reader incarnation gets. Forking,
reaping and respawning the readers is the master's job (``supervisor/arbiter.py``); this module says what to fork.
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import logging
import os
import select
import socket
import stat
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from proto.messages import (
    SEQ_SHIFT,
    ExitCode,
    Followers,
    LoggerClosed,
    LoggersSynced,
    LoggerStarted,
    Message,
    ShipContainer,
)
from proto.paths import is_container_id, localstore_endpoint
from proto.statefile import StateFileError, read_bytes, write_text
from shipper.documents import kept_info
from shipper.encoder import validate_documents
from shipper.output import validate_output
from supervisor.children import Child, Role, Slot, describe_exit
from supervisor.container_options import container_options, tag_inputs
from supervisor.logopts import LogOptions
from supervisor.registry import LoggerRecord, LoggerRegistry
from supervisor.spawn import run_child
from workers.main import QUIET_WAIT, ReaderProcess, ReaderSpec

log = logging.getLogger("elp.supervisor")

SEQ_FLOOR_NAME = "seq-floor"
SEQ_FLOOR_AHEAD = 64  # seconds' worth of reader sequence ranges reserved per write of the floor file
# A logger whose FIFO stays silent after StopLogging (dockerd never opened its end) gets a reader after this.
QUIET_STOP_GRACE = 2.0


class StartError(ValueError):
    """StartLogging refused; the text goes back to dockerd as ``Err``."""


@dataclass
class FifoLogger(Slot):
    """One StartLogging: a FIFO, the container it belongs to, and (in its slot) the reader draining it."""

    fifo_path: str
    container_id: str
    info: dict[str, Any]
    options: LogOptions
    fd: int
    stopping: bool = False
    seq_base: int = 0
    lines_lost: int = 0
    # True while no reader was forked yet: the supervisor watches the FIFO and forks one on its first data.
    watching: bool = False

    @property
    def fifo_name(self) -> str:
        return os.path.basename(self.fifo_path)


class Master(Protocol):
    """What the loggers need of the process master."""

    stopping: bool

    def spawn_reader(self, fifo_logger: FifoLogger) -> Child: ...

    def send_to(self, role: Role, msg: Message, fds: tuple[int, ...] = ()) -> bool: ...


class SequenceRanges:
    """A fresh range of sequence numbers for every reader incarnation, also across plugin restarts: the local store
    must never take a new reader's batches for re-sent ones of an earlier reader of the same FIFO.

    Ranges start at the current second since the epoch in the high bits. That alone fails when a killed plugin is
    back within the second its readers started in, so a floor is persisted ahead of the ranges handed out (one small
    write per SEQ_FLOOR_AHEAD seconds): the next run starts above everything this one may have used.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.floor = 0
        try:
            data = read_bytes(path)
            if data is not None:
                if not data.strip().isdigit():
                    raise StateFileError(f"{path}: not a sequence number")
                self.floor = int(data)
        except StateFileError as exc:
            # The previous run reserved at most SEQ_FLOOR_AHEAD seconds past its clock: start past that.
            self.floor = (int(time.time()) + SEQ_FLOOR_AHEAD) << SEQ_SHIFT
            log.error("%s; sequence ranges start %ds ahead of the clock instead", exc, SEQ_FLOOR_AHEAD)
        self.reserved = self.floor

    def next_base(self, previous: int) -> int:
        base = max(int(time.time()) << SEQ_SHIFT, previous + (1 << SEQ_SHIFT), self.floor)
        if base >= self.reserved:
            self.reserved = base + (SEQ_FLOOR_AHEAD << SEQ_SHIFT)
            try:
                write_text(self.path, str(self.reserved))
            except OSError as exc:  # disk full: ranges still follow the clock, as before the floor existed
                log.error("cannot save %s: %s", self.path, exc)
        return base


class Loggers:
    """Every active logger, by FIFO path."""

    def __init__(self, master: Master, data_dir: Path, fifo_dir: Path) -> None:
        self.master = master
        self.data_dir = data_dir
        self.fifo_dir = fifo_dir
        self.fifo_root = os.path.realpath(fifo_dir)
        self.active: dict[str, FifoLogger] = {}
        self.registry = LoggerRegistry(data_dir / "loggers", fifo_dir, data_dir)
        self.sequences = SequenceRanges(data_dir / SEQ_FLOOR_NAME)
        # container id -> `docker logs -f` streams open on it (their readers batch for low latency meanwhile)
        self.followers: dict[str, int] = {}
        # False until the loggers of a previous run are re-attached: only then is every running logger known.
        self.reattached = False

    # --- StartLogging / StopLogging --------------------------------------------------------------------

    def start_logging(self, fifo_path: str, info: dict[str, Any], lazy: bool = True) -> None:
        """StartLogging: validate, open the FIFO, remember it, and fork its reader when data comes (at once
        when not ``lazy``)."""
        if self.master.stopping:
            raise StartError("the plugin is shutting down")
        container_id = info.get("ContainerID")
        if not is_container_id(container_id):
            raise StartError("Info.ContainerID must be a full container id (64 hex digits)")
        assert isinstance(container_id, str)
        options = container_options(info)  # log-opts, the co.elastic.logs/ labels over them, the tag rendered
        given, info = info, kept_info(info, options.values)  # the environment and command line often hold secrets
        if options.ships:
            validate_output(options.values)
            validate_documents(info, options.values)
        path = self._checked_fifo(fifo_path)
        if path in self.active:
            return
        fd = _open_fifo(path)
        fifo_logger = FifoLogger(path, container_id, info, options, fd)
        self.active[path] = fifo_logger
        self.registry.save(LoggerRecord(path, info | tag_inputs(given)))
        self.master.send_to(Role.LOCALSTORE, _logger_started(fifo_logger))
        if options.ships:
            self.master.send_to(Role.SHIPPER, _ship_container(fifo_logger))
        if lazy:
            self._watch_fifo(fifo_logger)
        else:
            fifo_logger.started(self.master.spawn_reader(fifo_logger))

    def stop_logging(self, fifo_path: str) -> None:
        fifo_logger = self.active.get(fifo_path) if isinstance(fifo_path, str) else None
        if fifo_logger is not None:
            fifo_logger.stopping = True
            if fifo_logger.watching:
                # Normally its writer closes next and the hang-up ends it; if dockerd never opened the FIFO, no
                # hang-up comes: a reader then finds EOF and closes it the usual way.
                asyncio.get_running_loop().call_later(QUIET_STOP_GRACE, self._wake_quiet_logger, fifo_logger)

    def reattach(self) -> None:
        """Re-open the FIFOs of loggers a previous run had; forget those that are gone."""
        for record in self.registry.load():
            try:
                # At once: a FIFO whose writer left while the plugin was down would never wake a watcher.
                self.start_logging(record.fifo_path, record.info, lazy=False)
            except (StartError, ValueError) as exc:
                log.info("not re-attaching %s: %s", os.path.basename(record.fifo_path), exc)
                self.registry.remove(record.fifo_path)
                continue
            log.info("re-attached to the FIFO of container %s", record.info.get("ContainerID", "?")[:12])
        self.reattached = True
        self.master.send_to(Role.LOCALSTORE, LoggersSynced(len(self.active)))

    def reannounce(self, role: Role) -> None:
        """A (re)started service learns every running logger, as if their StartLogging came now; the local store
        then hears that this was all of them (at start-up, once the previous run's loggers are re-attached)."""
        for fifo_logger in self.active.values():
            if role is Role.LOCALSTORE:
                self.master.send_to(role, _logger_started(fifo_logger))
            elif fifo_logger.options.ships:
                self.master.send_to(role, _ship_container(fifo_logger))
        if role is Role.LOCALSTORE and self.reattached:
            self.master.send_to(role, LoggersSynced(len(self.active)))

    # --- readers ---------------------------------------------------------------------------------------

    def reader_target(self, fifo_logger: FifoLogger) -> Callable[[socket.socket], ExitCode]:
        """What a new reader of the logger runs in the child, with a sequence range of its own."""
        endpoints = (localstore_endpoint(self.data_dir),)
        fifo_logger.seq_base = self.sequences.next_base(fifo_logger.seq_base)
        seq_base = fifo_logger.seq_base
        options = fifo_logger.options
        quiet_wait = min(QUIET_WAIT, options["flush_interval"]) if options.ships else QUIET_WAIT
        followed = self.followers.get(fifo_logger.container_id, 0) > 0
        container_id, fifo_path, fd = fifo_logger.container_id, fifo_logger.fifo_path, fifo_logger.fd

        def run_reader(control: socket.socket) -> ExitCode:
            spec = ReaderSpec(container_id, fifo_path, fd, control, endpoints, seq_base=seq_base,
                              quiet_wait=quiet_wait, followed=followed)
            return run_child(Role.READER.value, lambda: ReaderProcess(spec), lambda reader: reader.run())

        return run_reader

    def reader_exited(self, child: Child, code: int, stopping: bool) -> float | None:
        """A reader was reaped; returns the delay before its respawn, None when none follows."""
        fifo_logger = self.active.get(child.key)
        if fifo_logger is None:
            return None
        fifo_logger.child = None
        if code == ExitCode.DONE:
            if not stopping:
                self.forget(fifo_logger)
            return None
        # A reader that could not start (ExitCode.BOOT_FAILED) is retried with back-off like a crashed one: given up,
        # its FIFO would go unread and the container block once the pipe is full; what the container wrote meanwhile
        # waits in the pipe, so nothing is lost once the cause (no descriptor left, memory) is gone.
        delay = fifo_logger.schedule_respawn(child.uptime)
        # What it had read from the FIFO but not yet got confirmed stored is gone (a FIFO cannot be re-read).
        # Its last report (at most a second old) gives the figure; lines read after it are not in it.
        lost = int(child.counters.get("unconfirmed_lines", 0))
        fifo_logger.lines_lost += lost
        log.error(
            "reader of container %s (pid %d) %s; about %d lines it held are lost; restart %d in %.1fs",
            fifo_logger.container_id[:12], child.pid, describe_exit(code, child), lost, fifo_logger.restarts, delay,
        )
        return delay

    def follow(self, container_id: str, delta: int) -> int:
        """A ReadLogs of the container started (+1) or ended (-1): tell its readers how many read; returns how many
        readers were told (on +1 they send what they hold at once)."""
        count = max(0, self.followers.get(container_id, 0) + delta)
        if count:
            self.followers[container_id] = count
        else:
            self.followers.pop(container_id, None)
        message, told = Followers(count).encode(), 0
        for fifo_logger in self.active.values():
            if fifo_logger.container_id == container_id and fifo_logger.child is not None:
                try:
                    fifo_logger.child.control.send(message, socket.MSG_DONTWAIT)
                    told += 1
                except OSError:
                    pass  # exiting, or busy: a respawned reader gets the count in its spec
        return told

    def open_fifos(self, container_id: str) -> list[str]:
        return [fl.fifo_name for fl in self.active.values() if fl.container_id == container_id]

    def draining_fifos(self, container_id: str) -> list[str]:
        """The container's loggers that got StopLogging but whose reader has not reached EOF yet."""
        return [fl.fifo_name for fl in self.active.values() if fl.container_id == container_id and fl.stopping]

    def readers(self) -> list[Child]:
        return [fl.child for fl in self.active.values() if fl.child]

    def close_all(self) -> None:
        """At shutdown, once the readers are gone: the FIFOs stay registered for the next run."""
        for fifo_logger in self.active.values():
            self._unwatch_fifo(fifo_logger)
            os.close(fifo_logger.fd)

    def forget(self, fifo_logger: FifoLogger) -> None:
        self._unwatch_fifo(fifo_logger)
        del self.active[fifo_logger.fifo_path]
        os.close(fifo_logger.fd)
        self.registry.remove(fifo_logger.fifo_path)

    # --- watching a FIFO until its first data ----------------------------------------------------------

    def _watch_fifo(self, fifo_logger: FifoLogger) -> None:
        """Fork the reader when the FIFO first has data, not at StartLogging: the temporary logger dockerd opens to
        serve ``docker logs`` of a stopped container never carries a line, and its fork (a few ms of CPU on the
        request's path) would be wasted. Nothing waits meanwhile: what the container writes stays in the pipe."""
        fifo_logger.watching = True
        asyncio.get_running_loop().add_reader(fifo_logger.fd, self._fifo_woke, fifo_logger)

    def _unwatch_fifo(self, fifo_logger: FifoLogger) -> None:
        if fifo_logger.watching:
            fifo_logger.watching = False
            asyncio.get_running_loop().remove_reader(fifo_logger.fd)

    def _fifo_woke(self, fifo_logger: FifoLogger) -> None:
        if not fifo_logger.watching:
            return
        self._unwatch_fifo(fifo_logger)
        if self.master.stopping:
            return
        if _hung_up_empty(fifo_logger.fd):
            self._close_silent(fifo_logger)
        else:
            fifo_logger.started(self.master.spawn_reader(fifo_logger))

    def _close_silent(self, fifo_logger: FifoLogger) -> None:
        """The writer left without a line: close the logger as its reader would have, without forking one."""
        self.master.send_to(Role.LOCALSTORE, LoggerClosed(fifo_logger.container_id, fifo_logger.fifo_name, 0, 0))
        self.forget(fifo_logger)

    def _wake_quiet_logger(self, fifo_logger: FifoLogger) -> None:
        if fifo_logger.watching and self.active.get(fifo_logger.fifo_path) is fifo_logger:
            self._unwatch_fifo(fifo_logger)
            if not self.master.stopping:
                fifo_logger.started(self.master.spawn_reader(fifo_logger))

    def _checked_fifo(self, fifo_path: object) -> str:
        if not isinstance(fifo_path, str) or not fifo_path:
            raise StartError("File must be the path of the log FIFO")
        real = os.path.realpath(fifo_path)
        if os.path.dirname(real) != self.fifo_root:
            raise StartError(f"File {fifo_path[:200]!r} is not a FIFO in {self.fifo_dir}")
        try:
            mode = os.stat(real).st_mode
        except OSError as exc:
            raise StartError(f"File {fifo_path[:200]!r}: {exc.strerror}") from None
        if not stat.S_ISFIFO(mode):
            raise StartError(f"File {fifo_path[:200]!r} is not a FIFO")
        return real


def _open_fifo(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise StartError(f"cannot open {path}: {exc.strerror}") from None


def _logger_started(fifo_logger: FifoLogger) -> LoggerStarted:
    opts = fifo_logger.options
    return LoggerStarted(fifo_logger.container_id, fifo_logger.fifo_name, fifo_logger.info, opts["max-size"],
                         opts["max-file"], opts["compress"], opts.ships)


def _ship_container(fifo_logger: FifoLogger) -> ShipContainer:
    return ShipContainer(fifo_logger.container_id, fifo_logger.info, dict(fifo_logger.options.values))


def _hung_up_empty(fd: int) -> bool:
    """Every writer of the FIFO left and it holds no data (a silent logger's end)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    events = poller.poll(0)
    if not events or not events[0][1] & select.POLLHUP:
        return False
    pending = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, pending)
    return pending[0] == 0
