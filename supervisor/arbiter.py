"""Supervisor: the plugin's main process.

Start-up binds the plugin socket before anything slow (dockerd gives up after ~9.5 s), then forks the local
store and re-attaches the FIFOs remembered from a previous run. Then a one-second tick (reap, respawn what is due)
runs beside the HTTP API until SIGTERM, and shutdown mirrors start-up: stop listening, let the readers drain and
exit, then the local store, then SIGKILL whatever is left at the deadline.
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import logging
import os
import select
import signal
import socket
import stat
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from localstore.main import LocalStoreProcess
from localstore.store import StoreSettings
from proto.housekeeping import Periodic
from proto.messages import (
    MAX_CONTROL_MESSAGE,
    SEQ_SHIFT,
    ChildStats,
    ExitCode,
    Followers,
    LoggerClosed,
    LoggersSynced,
    LoggerStarted,
    Message,
    MessageError,
    ShipContainer,
    StatsPart,
    decode,
)
from proto.paths import is_container_id, localstore_endpoint
from proto.statefile import StateFileError, read_bytes, write_text
from shipper.documents import kept_info
from shipper.encoder import validate_documents
from shipper.main import ShipperProcess
from shipper.output import validate_output
from supervisor.children import Backoff, Child, Role
from supervisor.logopts import LogOptions, parse_log_options
from supervisor.outbox import Outbox
from supervisor.permissions import private_data_dir
from supervisor.registry import LoggerRecord, LoggerRegistry
from supervisor.settings import PluginSettings
from supervisor.spawn import fork_child
from supervisor.stats import protobuf_backend
from supervisor.watchdog import Watchdog
from workers.main import QUIET_WAIT, ReaderProcess, ReaderSpec

log = logging.getLogger("elp.supervisor")

TICK = 1.0
SEQ_FLOOR_NAME = "seq-floor"
SEQ_FLOOR_AHEAD = 64  # seconds' worth of reader sequence ranges reserved per write of the floor file
READERS_DEADLINE = 2.5
SERVICES_DEADLINE = 1.5
# A logger whose FIFO stays silent after StopLogging (dockerd never opened its end) gets a reader after this.
QUIET_STOP_GRACE = 2.0


class StartError(ValueError):
    """StartLogging refused; the text goes back to dockerd as ``Err``."""


@dataclass(frozen=True)
class ServeConfig:
    socket_path: Path
    data_dir: Path
    fifo_dir: Path
    settings: PluginSettings = field(default_factory=PluginSettings)


@dataclass
class Logger:
    """One StartLogging: a FIFO, the container it belongs to, and the reader draining it."""

    fifo_path: str
    container_id: str
    info: dict[str, Any]
    options: LogOptions
    fd: int
    child: Child | None = None
    stopping: bool = False
    restarts: int = 0
    backoff: Backoff = field(default_factory=Backoff)
    respawn_at: float | None = None
    seq_base: int = 0
    lines_lost: int = 0
    # True while no reader was forked yet: the supervisor watches the FIFO and forks one on its first data.
    watching: bool = False

    @property
    def fifo_name(self) -> str:
        return os.path.basename(self.fifo_path)


@dataclass
class Service:
    """A shared child (local store, later the shipper) that must always run."""

    role: Role
    child: Child | None = None
    restarts: int = 0
    backoff: Backoff = field(default_factory=Backoff)
    respawn_at: float | None = 0.0


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


class Supervisor:
    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.loggers: dict[str, Logger] = {}
        self.services: dict[Role, Service] = {role: Service(role) for role in (Role.LOCALSTORE, Role.SHIPPER)}
        self.by_pid: dict[int, Child] = {}
        self.registry = LoggerRegistry(config.data_dir / "loggers", config.fifo_dir, config.data_dir)
        self.stop_event = asyncio.Event()
        self.stopping = False
        self.started_at = time.monotonic()
        self.fifo_root = os.path.realpath(config.fifo_dir)
        self.sequences = SequenceRanges(config.data_dir / SEQ_FLOOR_NAME)
        # container id -> `docker logs -f` streams open on it (their readers batch for low latency meanwhile)
        self.followers: dict[str, int] = {}
        # The tick's steps: a bug or an OS error in one is logged and retried, and never ends the plugin (PID 1).
        self.housekeeping = Periodic(log, TICK)
        self.housekeeping.add("reaping children", self.reap)
        self.housekeeping.add("starting children", self.manage)
        self.watchdog = Watchdog()
        self.housekeeping.add("watching heartbeats", lambda: self.watchdog.check(self.by_pid.values(), self._on_report))
        # False until the loggers of a previous run are re-attached: only then is every running logger known.
        self.reattached = False

    # --- life cycle ------------------------------------------------------------------------------------

    async def run(self) -> int:
        from supervisor.api import make_app  # the API module needs this class; import late to avoid a cycle

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            loop.add_signal_handler(sig, self.stop_event.set)
        runner = web.AppRunner(make_app(self), handle_signals=False, handler_cancellation=True, access_log=None)
        await runner.setup()
        site = web.UnixSite(runner, str(self.config.socket_path), backlog=128, shutdown_timeout=1.0)
        self.config.socket_path.parent.mkdir(parents=True, exist_ok=True)
        self.config.socket_path.unlink(missing_ok=True)
        await site.start()
        log.info("listening on %s (data in %s)", self.config.socket_path, self.config.data_dir)
        backend = protobuf_backend()
        if backend != "upb":
            log.warning("protobuf runs its %s implementation, not upb: decoding is about 10x slower; "
                        "install protobuf's binary wheel", backend)
        private_data_dir(self.config.data_dir)
        self._check_ipc_path()
        metrics_runner = await self._serve_metrics()
        self.manage()
        self.reattach()
        self.reattached = True
        self.send_to_localstore(LoggersSynced(len(self.loggers)))
        while not self.stop_event.is_set():
            try:
                await asyncio.wait_for(self.stop_event.wait(), TICK)
            except TimeoutError:
                pass
            self.housekeeping.run_due()
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await self.shutdown(site, runner)
        return 0

    async def _serve_metrics(self) -> web.AppRunner | None:
        """METRICS_ADDR: /metrics alone on TCP for scraping (the LogDriver API never leaves the unix socket)."""
        from supervisor.api import make_metrics_app

        address = self.config.settings.metrics_addr
        if address is None:
            return None
        runner = web.AppRunner(make_metrics_app(self), handle_signals=False, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, address[0], address[1], shutdown_timeout=1.0).start()
        except OSError as exc:
            log.error("cannot serve metrics on %s:%d: %s", address[0], address[1], exc)
            await runner.cleanup()
            return None
        log.info("metrics on http://%s:%d/metrics", address[0], address[1])
        return runner

    def _check_ipc_path(self) -> None:
        endpoint = localstore_endpoint(self.config.data_dir)
        if len(endpoint) - len("ipc://") > 100:
            raise SystemExit(f"data dir {self.config.data_dir} is too long for a ZeroMQ ipc endpoint")

    async def shutdown(self, site: web.UnixSite, runner: web.AppRunner) -> None:
        self.stopping = True
        log.info("stopping: %d readers to drain", sum(1 for lg in self.loggers.values() if lg.child))
        await site.stop()
        readers = [lg.child for lg in self.loggers.values() if lg.child]
        await self._stop_children(readers, READERS_DEADLINE)
        services = [svc.child for svc in self.services.values() if svc.child]
        await self._stop_children(services, SERVICES_DEADLINE)
        for child in list(self.by_pid.values()):
            log.warning("%s (pid %d) did not stop in time; killing it", child.role, child.pid)
            _kill(child.pid, signal.SIGKILL)
        await self._wait_children(list(self.by_pid.values()), 1.0)
        await runner.cleanup()
        for lg in self.loggers.values():
            self._unwatch_fifo(lg)
            os.close(lg.fd)
        self.config.socket_path.unlink(missing_ok=True)
        log.info("stopped")

    async def _stop_children(self, children: list[Child], deadline: float) -> None:
        for child in children:
            _kill(child.pid, signal.SIGTERM)
        await self._wait_children(children, deadline)

    async def _wait_children(self, children: list[Child], deadline: float) -> None:
        end = time.monotonic() + deadline
        while any(c.pid in self.by_pid for c in children) and time.monotonic() < end:
            self.reap()
            await asyncio.sleep(0.02)

    # --- children ------------------------------------------------------------------------------------

    def _spawn(self, role: Role, key: str, target: Any, extra_fds: tuple[int, ...] = ()) -> Child:
        """Fork a child running ``target(control_socket)``; watch its exit and its reports."""
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = fork_child(role.value, (child_end.fileno(), *extra_fds), lambda: target(child_end))
        child_end.close()
        parent_end.setblocking(False)
        child = Child(role, key, pid, parent_end, os.pidfd_open(pid))
        if role is not Role.READER:
            child.outbox = Outbox(parent_end, role.value)
        self.by_pid[pid] = child
        loop = asyncio.get_running_loop()
        loop.add_reader(child.pidfd, self.reap)
        loop.add_reader(parent_end.fileno(), self._on_report, child)
        return child

    def manage(self) -> None:
        """Start every service and reader that should run and whose back-off has passed."""
        if self.stopping:
            return
        now = time.monotonic()
        for svc in self.services.values():
            if svc.child is None and svc.respawn_at is not None and now >= svc.respawn_at:
                svc.child = self._spawn_service(svc.role)
                svc.respawn_at = None
                self._sync(svc.role)
        for lg in self.loggers.values():
            if lg.child is None and lg.respawn_at is not None and now >= lg.respawn_at:
                lg.child = self._spawn_reader(lg)
                lg.respawn_at = None

    def _sync(self, role: Role) -> None:
        """A (re)started service learns every running logger, as if their StartLogging came now; the local store
        then hears that this was all of them (at start-up, once the previous run's loggers are re-attached)."""
        for lg in self.loggers.values():
            if role is Role.LOCALSTORE:
                self.send_to_localstore(_logger_started(lg))
            elif lg.options.ships:
                self.send_to(Role.SHIPPER, _ship_container(lg))
        if role is Role.LOCALSTORE and self.reattached:
            self.send_to_localstore(LoggersSynced(len(self.loggers)))

    def _spawn_service(self, role: Role) -> Child:
        data_dir = self.config.data_dir
        settings = self.config.settings
        store_settings = StoreSettings(settings.destroy_logs_on_stop, settings.retain_stopped_for)

        def run_service(control: socket.socket) -> ExitCode:
            import uvloop

            loop = uvloop.new_event_loop()
            asyncio.set_event_loop(loop)
            if role is Role.LOCALSTORE:
                return loop.run_until_complete(LocalStoreProcess(data_dir, control, store_settings).run())
            return loop.run_until_complete(ShipperProcess(data_dir, control).run())

        child = self._spawn(role, role.value, run_service)
        log.info("%s started (pid %d)", role, child.pid)
        return child

    def _spawn_reader(self, lg: Logger) -> Child:
        endpoints = (localstore_endpoint(self.config.data_dir),)

        lg.seq_base = self.sequences.next_base(lg.seq_base)
        seq_base = lg.seq_base

        quiet_wait = min(QUIET_WAIT, lg.options["flush_interval"]) if lg.options.ships else QUIET_WAIT
        followed = self.followers.get(lg.container_id, 0) > 0

        def run_reader(control: socket.socket) -> ExitCode:
            spec = ReaderSpec(lg.container_id, lg.fifo_path, lg.fd, control, endpoints, seq_base=seq_base,
                              quiet_wait=quiet_wait, followed=followed)
            return ReaderProcess(spec).run()

        child = self._spawn(Role.READER, lg.fifo_path, run_reader, (lg.fd,))
        log.debug("reader for container %s started (pid %d)", lg.container_id[:12], child.pid)
        return child

    def reap(self) -> None:
        """Collect every exited child (gunicorn's waitpid sweep) and decide what follows."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.by_pid.pop(pid, None)
            if child is None:
                log.debug("reaped orphan pid %d", pid)  # we may be PID 1
                continue
            loop = asyncio.get_running_loop()
            loop.remove_reader(child.pidfd)
            loop.remove_reader(child.control.fileno())
            self._on_report(child)  # its last words
            child.close()
            self._child_exited(child, status)
            if not self.stopping:
                # Respawn now (or when its back-off ends), not at the next tick.
                loop.call_soon(self.manage)

    def _child_exited(self, child: Child, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        if child.role is Role.READER:
            lg = self.loggers.get(child.key)
            if lg is None:
                return
            lg.child = None
            if code == ExitCode.DONE:
                if not self.stopping:
                    self._forget(lg)
                return
            delay = lg.backoff.next_delay(child.uptime)
            lg.restarts += 1
            lg.respawn_at = time.monotonic() + delay
            asyncio.get_running_loop().call_later(delay, self.manage)
            # What it had read from the FIFO but not yet got confirmed stored is gone (a FIFO cannot be re-read).
            # Its last report (at most a second old) gives the figure; lines read after it are not in it.
            lost = int(child.counters.get("unconfirmed_lines", 0))
            lg.lines_lost += lost
            log.error(
                "reader of container %s (pid %d) %s; about %d lines it held are lost; restart %d in %.1fs",
                lg.container_id[:12], child.pid, _describe(code, child), lost, lg.restarts, delay,
            )
            return
        svc = self.services[child.role]
        svc.child = None
        if self.stopping:
            return
        delay = svc.backoff.next_delay(child.uptime)
        svc.restarts += 1
        svc.respawn_at = time.monotonic() + delay
        asyncio.get_running_loop().call_later(delay, self.manage)
        log.error("%s (pid %d) %s; restart %d in %.1fs", child.role, child.pid, _describe(code, child), svc.restarts,
                  delay)

    def _on_report(self, child: Child) -> None:
        while True:
            try:
                data = child.control.recv(MAX_CONTROL_MESSAGE)
            except (BlockingIOError, OSError):
                return
            if not data:
                return
            try:
                msg = decode(data)
            except MessageError as exc:
                log.warning("%s (pid %d) sent a bad report: %s", child.role, child.pid, exc)
                continue
            if isinstance(msg, ChildStats):
                child.report(dict(msg.counters))
            elif isinstance(msg, StatsPart):
                child.report_part(msg.report, msg.last, msg.per_container, msg.outputs)

    def send_to_localstore(self, msg: Message, fds: tuple[int, ...] = ()) -> bool:
        return self.send_to(Role.LOCALSTORE, msg, fds)

    def send_to(self, role: Role, msg: Message, fds: tuple[int, ...] = ()) -> bool:
        """A control message to a service; False when it is not running (it resyncs when it starts)."""
        child = self.services[role].child
        if child is None or child.outbox is None:
            return False
        container_id = getattr(msg, "container_id", None)
        what = type(msg).__name__ + (f" of container {container_id[:12]}" if isinstance(container_id, str) else "")
        return child.outbox.send(msg.encode(), fds, what)

    # --- loggers -------------------------------------------------------------------------------------

    def start_logging(self, fifo_path: str, info: dict[str, Any], lazy: bool = True) -> None:
        """StartLogging: validate, open the FIFO, remember it, and fork its reader when data comes (at once
        when not ``lazy``)."""
        if self.stopping:
            raise StartError("the plugin is shutting down")
        container_id = info.get("ContainerID")
        if not is_container_id(container_id):
            raise StartError("Info.ContainerID must be a full container id (64 hex digits)")
        assert isinstance(container_id, str)
        options = parse_log_options(info.get("Config"))
        info = kept_info(info, options.values)  # the environment and command line often hold secrets
        if options.ships:
            validate_output(options.values)
            validate_documents(info, options.values)
        path = self._checked_fifo(fifo_path)
        if path in self.loggers:
            return
        fd = self._open_fifo(path)
        lg = Logger(path, container_id, info, options, fd)
        self.loggers[path] = lg
        self.registry.save(LoggerRecord(path, info))
        self.send_to_localstore(_logger_started(lg))
        if options.ships:
            self.send_to(Role.SHIPPER, _ship_container(lg))
        if lazy:
            self._watch_fifo(lg)
        else:
            lg.child = self._spawn_reader(lg)

    def _watch_fifo(self, lg: Logger) -> None:
        """Fork the reader when the FIFO first has data, not at StartLogging: the temporary logger dockerd opens to
        serve ``docker logs`` of a stopped container never carries a line, and its fork (a few ms of CPU on the
        request's path) would be wasted. Nothing waits meanwhile: what the container writes stays in the pipe."""
        lg.watching = True
        asyncio.get_running_loop().add_reader(lg.fd, self._fifo_woke, lg)

    def _unwatch_fifo(self, lg: Logger) -> None:
        if lg.watching:
            lg.watching = False
            asyncio.get_running_loop().remove_reader(lg.fd)

    def _fifo_woke(self, lg: Logger) -> None:
        if not lg.watching:
            return
        self._unwatch_fifo(lg)
        if self.stopping:
            return
        if _hung_up_empty(lg.fd):
            self._close_silent(lg)
        else:
            lg.child = self._spawn_reader(lg)

    def _close_silent(self, lg: Logger) -> None:
        """The writer left without a line: close the logger as its reader would have, without forking one."""
        self.send_to_localstore(LoggerClosed(lg.container_id, lg.fifo_name, 0, 0))
        self._forget(lg)

    def _wake_quiet_logger(self, lg: Logger) -> None:
        if lg.watching and self.loggers.get(lg.fifo_path) is lg:
            self._unwatch_fifo(lg)
            if not self.stopping:
                lg.child = self._spawn_reader(lg)

    def stop_logging(self, fifo_path: str) -> None:
        lg = self.loggers.get(fifo_path) if isinstance(fifo_path, str) else None
        if lg is not None:
            lg.stopping = True
            if lg.watching:
                # Normally its writer closes next and the hang-up ends it; if dockerd never opened the FIFO, no
                # hang-up comes: a reader then finds EOF and closes it the usual way.
                asyncio.get_running_loop().call_later(QUIET_STOP_GRACE, self._wake_quiet_logger, lg)

    def follow(self, container_id: str, delta: int) -> int:
        """A ReadLogs of the container started (+1) or ended (-1): tell its readers how many read; returns how many
        readers were told (on +1 they send what they hold at once)."""
        count = max(0, self.followers.get(container_id, 0) + delta)
        if count:
            self.followers[container_id] = count
        else:
            self.followers.pop(container_id, None)
        message, told = Followers(count).encode(), 0
        for lg in self.loggers.values():
            if lg.container_id == container_id and lg.child is not None:
                try:
                    lg.child.control.send(message, socket.MSG_DONTWAIT)
                    told += 1
                except OSError:
                    pass  # exiting, or busy: a respawned reader gets the count in its spec
        return told

    def open_fifos(self, container_id: str) -> list[str]:
        return [lg.fifo_name for lg in self.loggers.values() if lg.container_id == container_id]

    def draining_fifos(self, container_id: str) -> list[str]:
        """The container's loggers that got StopLogging but whose reader has not reached EOF yet."""
        return [lg.fifo_name for lg in self.loggers.values() if lg.container_id == container_id and lg.stopping]

    def _forget(self, lg: Logger) -> None:
        self._unwatch_fifo(lg)
        del self.loggers[lg.fifo_path]
        os.close(lg.fd)
        self.registry.remove(lg.fifo_path)

    def _checked_fifo(self, fifo_path: object) -> str:
        if not isinstance(fifo_path, str) or not fifo_path:
            raise StartError("File must be the path of the log FIFO")
        real = os.path.realpath(fifo_path)
        if os.path.dirname(real) != self.fifo_root:
            raise StartError(f"File {fifo_path[:200]!r} is not a FIFO in {self.config.fifo_dir}")
        try:
            mode = os.stat(real).st_mode
        except OSError as exc:
            raise StartError(f"File {fifo_path[:200]!r}: {exc.strerror}") from None
        if not stat.S_ISFIFO(mode):
            raise StartError(f"File {fifo_path[:200]!r} is not a FIFO")
        return real

    @staticmethod
    def _open_fifo(path: str) -> int:
        try:
            return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise StartError(f"cannot open {path}: {exc.strerror}") from None

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


def _logger_started(lg: Logger) -> LoggerStarted:
    opts = lg.options
    return LoggerStarted(lg.container_id, lg.fifo_name, lg.info, opts["max-size"], opts["max-file"], opts["compress"],
                         opts.ships)


def _ship_container(lg: Logger) -> ShipContainer:
    return ShipContainer(lg.container_id, lg.info, dict(lg.options.values))


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


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _describe(code: int, child: Child) -> str:
    if child.hung_for is not None:
        return f"hung (no report for {child.hung_for:.1f}s) and was killed"
    if code < 0:
        name = signal.Signals(-code).name
        return f"was killed by {name}" + (" (perhaps out of memory)" if -code == signal.SIGKILL else "")
    return f"exited with code {code}"
