"""Supervisor: the plugin's main process, and the master of its children (the part gunicorn calls the arbiter).

Start-up binds the plugin socket before anything slow (dockerd gives up after ~9.5 s), then forks the local
store and the shipper and re-attaches the FIFOs remembered from a previous run. Then a one-second tick (reap,
respawn what is due, watch heartbeats) runs beside the HTTP API until SIGTERM, and shutdown mirrors start-up: stop
listening, let the readers drain and exit, then the services, then SIGKILL whatever is left at the deadline.
Docker's loggers (StartLogging, FIFOs, followers) are kept in ``supervisor/loggers.py``; this module forks, reaps
and respawns the processes they and the services need.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from localstore.main import LocalStoreProcess
from localstore.store import StoreSettings
from proto.control import ChannelClosed, receive
from proto.housekeeping import Periodic
from proto.messages import (
    ChildStats,
    ExitCode,
    Message,
    MessageError,
    StatsPart,
)
from proto.paths import localstore_endpoint
from proto.shards import ONLY, Shard, shard_of
from shipper.main import ShipperProcess, load_agent_id
from supervisor.children import Child, Role, Slot, describe_exit
from supervisor.datadir_marker import check_data_dir
from supervisor.loggers import FifoLogger, Loggers
from supervisor.outbox import Outbox
from supervisor.permissions import private_data_dir
from supervisor.readhandoff import ReadHandoffs
from supervisor.settings import PluginSettings
from supervisor.spawn import fork_child, run_child
from supervisor.stats import protobuf_backend
from supervisor.watchdog import Watchdog

log = logging.getLogger("elp.supervisor")

TICK = 1.0
READERS_DEADLINE = 2.5
SERVICES_DEADLINE = 1.5


@dataclass(frozen=True)
class ServeConfig:
    socket_path: Path
    data_dir: Path
    fifo_dir: Path
    settings: PluginSettings = field(default_factory=PluginSettings)


@dataclass
class Service(Slot):
    """A shared child (the local store, a shipper) that must always run."""

    role: Role
    shard: Shard = ONLY  # a shipper's share of the containers (SHIPPERS)

    @property
    def name(self) -> str:
        return service_name(self.role, self.shard)


def service_name(role: Role, shard: Shard) -> str:
    """A service's key in ``Supervisor.services``, its children's ``key`` and its log tag: ``shipper-1`` of several
    shippers, else the role's name."""
    return f"{role}-{shard.index}" if shard.count > 1 else role.value


class Supervisor:
    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        count = config.settings.shippers
        services = [Service(Role.LOCALSTORE, respawn_at=0.0)]
        services += [Service(Role.SHIPPER, Shard(index, count), respawn_at=0.0) for index in range(count)]
        self.services: dict[str, Service] = {svc.name: svc for svc in services}
        self.agent_id = ""  # the shippers' agent.id: read (or made) once, before the first shipper starts
        self.by_pid: dict[int, Child] = {}
        self.stop_event = asyncio.Event()
        self.stopping = False
        self.announcing: Service | None = None  # set while a restarted service is told the running loggers
        self.started_at = time.monotonic()
        self.loggers = Loggers(self, config.data_dir, config.fifo_dir)
        self.reads = ReadHandoffs(lambda container_id: self.loggers.follow(container_id, -1))  # ReadLogs streams
        # The tick's steps: a bug or an OS error in one is logged and retried, and never ends the plugin (PID 1).
        self.housekeeping = Periodic(log, TICK)
        self.housekeeping.add("reaping children", self.reap_children)
        self.housekeeping.add("starting children", self.manage_children)
        self.watchdog = Watchdog()
        self.housekeeping.add("watching heartbeats", lambda: self.watchdog.check(self.by_pid.values(), self._on_report))

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
        check_data_dir(self.config.data_dir, self.config.fifo_dir)
        self._check_ipc_path()
        self.agent_id = load_agent_id(self.config.data_dir)
        metrics_runner = await self._serve_metrics()
        self.manage_children()
        self.loggers.reattach()
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
        readers = self.loggers.readers()
        log.info("stopping: %d readers to drain", len(readers))
        await site.stop()
        await self._stop_children(readers, READERS_DEADLINE)
        services = [svc.child for svc in self.services.values() if svc.child]
        await self._stop_children(services, SERVICES_DEADLINE)
        for child in list(self.by_pid.values()):
            log.warning("%s (pid %d) did not stop in time; killing it", child.role, child.pid)
            _kill(child.pid, signal.SIGKILL)
        await self._wait_children(list(self.by_pid.values()), 1.0)
        await runner.cleanup()
        self.loggers.close_all()
        self.config.socket_path.unlink(missing_ok=True)
        log.info("stopped")

    async def _stop_children(self, children: list[Child], deadline: float) -> None:
        for child in children:
            _kill(child.pid, signal.SIGTERM)
        await self._wait_children(children, deadline)

    async def _wait_children(self, children: list[Child], deadline: float) -> None:
        end = time.monotonic() + deadline
        while any(c.pid in self.by_pid for c in children) and time.monotonic() < end:
            self.reap_children()
            await asyncio.sleep(0.02)

    # --- children ------------------------------------------------------------------------------------

    def spawn_child(self, role: Role, key: str, target: Any, extra_fds: tuple[int, ...] = ()) -> Child:
        """Fork a child running ``target(control_socket)``; watch its exit and its reports. A service's key is its
        name (``shipper-1``), which tags its log lines."""
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        name = role.value if role is Role.READER else key
        pid = fork_child(name, (child_end.fileno(), *extra_fds), lambda: target(child_end))
        child_end.close()
        parent_end.setblocking(False)
        child = Child(role, key, pid, parent_end, os.pidfd_open(pid))
        if role is not Role.READER:
            child.outbox = Outbox(parent_end, name)
        self.by_pid[pid] = child
        loop = asyncio.get_running_loop()
        loop.add_reader(child.pidfd, self.reap_children)
        loop.add_reader(parent_end.fileno(), self._on_report, child)
        return child

    def manage_children(self) -> None:
        """Start every service and reader that should run and whose back-off has passed."""
        if self.stopping:
            return
        now = time.monotonic()
        for svc in self.services.values():
            if svc.due(now):
                svc.started(self.spawn_service(svc))
                self._reannounce(svc)
        for fifo_logger in self.loggers.active.values():
            if fifo_logger.due(now):
                fifo_logger.started(self.spawn_reader(fifo_logger))

    def _reannounce(self, svc: Service) -> None:
        """A (re)started service learns every running logger; a shipper only those of its share (``send_to``
        routes each ShipContainer to its shipper, and drops here what belongs to the others, which have them)."""
        self.announcing = svc
        try:
            self.loggers.reannounce(svc.role)
        finally:
            self.announcing = None

    def spawn_service(self, svc: Service) -> Child:
        role, shard, name = svc.role, svc.shard, svc.name
        data_dir = self.config.data_dir
        settings = self.config.settings
        store_settings = StoreSettings(settings.destroy_logs_on_stop, settings.retain_stopped_for)
        agent_id = self.agent_id

        def run_service(control: socket.socket) -> ExitCode:
            import uvloop

            loop = uvloop.new_event_loop()
            asyncio.set_event_loop(loop)
            if role is Role.LOCALSTORE:
                return run_child(role, lambda: LocalStoreProcess(data_dir, control, store_settings),
                                 lambda store: loop.run_until_complete(store.run()))
            return run_child(name, lambda: ShipperProcess(data_dir, control, shard, agent_id),
                             lambda shipper: loop.run_until_complete(shipper.run()))

        child = self.spawn_child(role, name, run_service)
        log.info("%s started (pid %d)", name, child.pid)
        return child

    def spawn_reader(self, fifo_logger: FifoLogger) -> Child:
        target = self.loggers.reader_target(fifo_logger)
        child = self.spawn_child(Role.READER, fifo_logger.fifo_path, target, (fifo_logger.fd,))
        log.debug("reader for container %s started (pid %d)", fifo_logger.container_id[:12], child.pid)
        return child

    def reap_children(self) -> None:
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
            self.reap_child(child, status)
            if not self.stopping:
                # Respawn now (or when its back-off ends), not at the next tick.
                loop.call_soon(self.manage_children)

    def reap_child(self, child: Child, status: int) -> None:
        """One child was reaped: schedule its successor, if one should follow."""
        code = os.waitstatus_to_exitcode(status)
        if child.role is Role.READER:
            delay = self.loggers.reader_exited(child, code, self.stopping)
            if delay is not None:
                asyncio.get_running_loop().call_later(delay, self.manage_children)
            return
        svc = self.services[child.key]
        svc.child = None
        if self.stopping:
            return
        # A service that cannot start (ExitCode.BOOT_FAILED) is retried with back-off too, not halted on as gunicorn
        # does: without the local store no container could start logging, and every FIFO would go unread until the
        # container blocks on it. The causes (a full or read-only disk, no descriptor left) are mostly fixed
        # without a restart of the plugin, and the back-off (capped at 30 s) keeps the retries cheap.
        delay = svc.schedule_respawn(child.uptime)
        asyncio.get_running_loop().call_later(delay, self.manage_children)
        log.error("%s (pid %d) %s; restart %d in %.1fs", svc.name, child.pid, describe_exit(code, child),
                  svc.restarts, delay)

    def _on_report(self, child: Child) -> None:
        def bad(exc: MessageError) -> None:
            log.warning("%s (pid %d) sent a bad report: %s", child.role, child.pid, exc)

        try:
            for msg, _ in receive(child.control, bad):
                if isinstance(msg, ChildStats):
                    child.report(dict(msg.counters))
                elif isinstance(msg, StatsPart):
                    child.report_part(msg.report, msg.last, msg.per_container, msg.outputs)
        except ChannelClosed:
            pass  # it exited: the pidfd wakes the reaper

    def send_to_localstore(self, msg: Message, fds: tuple[int, ...] = ()) -> bool:
        return self.send_to(Role.LOCALSTORE, msg, fds)

    def send_to(self, role: Role, msg: Message, fds: tuple[int, ...] = ()) -> bool:
        """A control message to a service; False when it is not running (it resyncs when it starts). A message for
        the shippers goes to the one whose share holds its container: always the same one, so that only one
        process ever fetches and acknowledges a container (exactly-once depends on it)."""
        container_id = getattr(msg, "container_id", None)
        svc = self.service_of(role, container_id if isinstance(container_id, str) else "")
        if self.announcing is not None and self.announcing.role is role and svc is not self.announcing:
            return False  # a restarted shipper is being told its share: the other shippers have theirs
        child = svc.child
        if child is None or child.outbox is None:
            return False
        what = type(msg).__name__ + (f" of container {container_id[:12]}" if isinstance(container_id, str) else "")
        return child.outbox.send(msg.encode(), fds, what)

    def service_of(self, role: Role, container_id: str = "") -> Service:
        """The service of ``role`` that serves a container: the local store, or the container's shipper."""
        if role is Role.SHIPPER:
            count = self.config.settings.shippers
            return self.services[service_name(role, Shard(shard_of(container_id, count), count))]
        return self.services[role.value]

    def shippers(self) -> list[Service]:
        """The shipper services, in the order of their index."""
        return [svc for svc in self.services.values() if svc.role is Role.SHIPPER]


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
