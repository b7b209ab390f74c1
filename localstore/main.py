"""The local store process: take the readers' batches (ROUTER), append them, answer ReadLogs, report stats."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import zmq

from localstore.container_log import StoreOptions
from localstore.fetch_server import FetchServer
from localstore.readlogs import ReadLogsStream
from localstore.store import LocalStore, StoreSettings
from proto.control import ChannelClosed, ControlChannel
from proto.housekeeping import Periodic
from proto.messages import (
    MAX_CONTROL_MESSAGE,
    MAX_DATA_MESSAGE,
    Ack,
    Batch,
    ExitCode,
    Fetch,
    LoggerClosed,
    LoggersSynced,
    LoggerStarted,
    Message,
    MessageError,
    ReadRequest,
    Stored,
    decode_frames,
)
from proto.paths import fetch_endpoint, ipc_dir, is_container_id, localstore_endpoint

log = logging.getLogger("elp.localstore")

STATS_INTERVAL = 1.0
# How many batches of one reader may wait in our ZeroMQ receive queue before its own bounded queue (and then the
# container) waits instead. Kept small: that queue is in our memory, once per reader (up to 1 MiB a batch), and a
# batch waits behind every other reader's. At 64, 1000 busy containers on 2 cores took this process to 1.8 GiB
# with 0.6 GiB stored, and a batch waited over the readers' 5 s "store stuck" limit, so they dropped batches
# (bench/outage_memory.py, unpaced).
RCVHWM = 4
# Messages handled per wake-up of a socket before the loop serves ReadLogs streams, control and timers again.
TAKE_PER_TURN = 64
# Closed FIFOs are remembered this long for followers that asked just before the close.
CLOSED_FIFO_TTL = 600.0
DRAIN_QUIET_MS = 100
EXPIRY_INTERVAL = 60.0
# Shipping cursors are saved this often (and at exit). A cursor lost in a crash costs only a re-send of what
# Elasticsearch already has, which the deterministic _id turns into 409s; a state.json write per container and
# second was a tenth of a core with 100 containers.
CURSOR_SAVE_INTERVAL = 5.0


class LocalStoreProcess:
    """Owns the files; one asyncio loop serves the data path, the control path and every ReadLogs stream."""

    def __init__(self, data_dir: Path, control: socket.socket, settings: StoreSettings) -> None:
        self.data_dir = data_dir
        self.control = ControlChannel(control, "localstore", log)
        self.store = LocalStore(data_dir, settings)
        self.store.start()
        self.stop = asyncio.Event()
        self.booted = False  # True once its main loop runs: a failure before is a boot failure (spawn.run_child)
        self.streams: set[asyncio.Task[None]] = set()
        self.bad_messages = 0
        self.closed_at: dict[str, float] = {}
        self.data_router: zmq.Socket
        self.fetch_router: zmq.Socket
        self.fetches: FetchServer
        self.housekeeping = self._housekeeping()  # run beside the main loop; see the section below
        self.next_expiry = 0.0

    async def run(self) -> ExitCode:
        """The main loop: the event loop serves batches (data ROUTER), fetches (fetch ROUTER), the supervisor's
        messages (control socketpair) and every ReadLogs stream (a task each); housekeeping runs beside them. Until
        SIGTERM; then what the readers handed over is stored before the files close."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop.set)
        loop.add_signal_handler(signal.SIGINT, self.stop.set)
        ctx = zmq.Context(io_threads=1)
        self._bind(ctx)
        self.fetches = FetchServer(self.store, self.fetch_router, lambda: loop.call_soon(self._on_fetch))
        self.control.sock.setblocking(False)
        # ZeroMQ's FDs are edge-triggered: every wake-up drains until EVENTS has no POLLIN left.
        zmq_readers = {int(self.fetch_router.getsockopt(zmq.FD)): self._on_fetch,
                       int(self.data_router.getsockopt(zmq.FD)): self._on_data}
        for fd, on_readable in zmq_readers.items():
            loop.add_reader(fd, on_readable)
            loop.call_soon(on_readable)
        loop.add_reader(self.control.fileno(), self._on_control)
        self.booted = True
        housekeeping = asyncio.create_task(self.housekeeping.run())

        await self.stop.wait()

        for fd in zmq_readers:
            loop.remove_reader(fd)
        await self._shut_down(housekeeping)
        self.data_router.close()
        self.fetch_router.close()
        ctx.term()
        return ExitCode.DONE

    def _bind(self, ctx: zmq.Context[zmq.Socket]) -> None:
        """The readers' batches come to one ROUTER, the shipper's fetches to another."""
        ipc_dir(self.data_dir).mkdir(parents=True, exist_ok=True)
        self.data_router = bind_data_router(ctx, localstore_endpoint(self.data_dir))
        fetch_router = ctx.socket(zmq.ROUTER)
        fetch_router.setsockopt(zmq.MAXMSGSIZE, MAX_CONTROL_MESSAGE)
        fetch_router.setsockopt(zmq.LINGER, 0)
        fetch_router.setsockopt(zmq.ROUTER_MANDATORY, 0)
        fetch_router.bind(fetch_endpoint(self.data_dir))
        self.fetch_router = fetch_router

    async def _shut_down(self, housekeeping: asyncio.Task[None]) -> None:
        """Store every batch still on its way, save the cursors, end the streams, send the last report."""
        self._drain_all()
        self.fetches.close()
        self.store.save_cursors()
        housekeeping.cancel()
        for task in list(self.streams):
            task.cancel()
        await asyncio.gather(housekeeping, *self.streams, return_exceptions=True)
        asyncio.get_running_loop().remove_reader(self.control.fileno())
        self._send_stats()
        self.store.close()
        self.store.stopped()

    def _on_data(self) -> None:
        self._take(self.data_router, self._handle_data, self._on_data)

    def _on_fetch(self) -> None:
        self._take(self.fetch_router, self._handle_shipping, self._on_fetch)

    def _take(self, sock: zmq.Socket, handle: Callable[[bytes, Message], None], again: Callable[[], None]) -> None:
        """Handle what a ROUTER socket holds, a bounded number at a time (ZeroMQ's FD is edge-triggered, so
        each wake-up drains until EVENTS shows nothing)."""
        for _ in range(TAKE_PER_TURN):
            if not int(sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                return
            # Not copied out of ZeroMQ: a batch's records go from its frame to the file (ContainerLog.append).
            frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            if len(frames) < 2:
                self._bad_message(MessageError(f"message with {len(frames)} frames"))
                continue
            try:
                msg = decode_frames([f.buffer for f in frames[1:]])
            except MessageError as exc:
                self._bad_message(exc)
                continue
            handle(frames[0].bytes, msg)
        # Still more: yield to ReadLogs streams and control messages, then carry on.
        asyncio.get_running_loop().call_soon(again)

    def _handle_shipping(self, identity: bytes, msg: Message) -> None:
        if isinstance(msg, Fetch) and is_container_id(msg.container_id):
            # The supervisor sends LoggerStarted to us before it tells the shipper to ship, and the shipper fetches
            # only after that: take what the control channel holds first, or a fetch overtaking the LoggerStarted
            # finds a container without open loggers, gets "stopped", and the shipper forgets it for good.
            self._on_control()
            self.fetches.handle(identity, msg)
        elif isinstance(msg, Ack) and is_container_id(msg.container_id):
            self.store.acked(msg.container_id, (msg.generation, msg.offset))
        else:
            self._bad_message(MessageError(f"unexpected {type(msg).__name__} on the shipping path"))

    def _drain_all(self) -> None:
        """At shutdown: store every batch the readers handed over. The readers have exited by now, but their
        last batches may still be on the way through ZeroMQ's I/O thread: wait until it stays quiet."""
        while self.data_router.poll(DRAIN_QUIET_MS):
            self._take(self.data_router, self._handle_data, lambda: None)

    def _handle_data(self, identity: bytes, msg: Message) -> None:
        if isinstance(msg, Batch) and is_container_id(msg.container_id):
            if not self.store.append_batch(msg.container_id, msg.fifo, msg.seq, msg.records, msg.count):
                return
            reply = Stored(msg.fifo, msg.seq + msg.count, False)
        elif isinstance(msg, LoggerClosed) and is_container_id(msg.container_id):
            self._closed(msg.container_id, msg.fifo, msg.lines)
            reply = Stored(msg.fifo, msg.lines, True)
        else:
            self._bad_message(MessageError(f"unexpected {type(msg).__name__} on the data path"))
            return
        try:
            self.data_router.send_multipart([identity, reply.encode()], zmq.NOBLOCK)
        except zmq.Again:
            pass  # the reader sends the batch again and gets the acknowledgement then
        # A send can consume the FD's edge for a message that just arrived; _on_data loops on EVENTS anyway.

    def _closed(self, container_id: str, fifo: str, lines: int) -> None:
        self.store.logger_closed(container_id, fifo, lines)
        self.closed_at[fifo] = time.monotonic()

    def _bad_message(self, exc: Exception) -> None:
        self.bad_messages += 1
        if self.bad_messages == 1:
            log.error("dropped a malformed message (%s); later ones are only counted in stats", exc)

    def _on_control(self) -> None:
        try:
            for msg, fds in self.control.receive(self._bad_message, max_fds=4):
                self._dispatch_control(msg, fds)
        except ChannelClosed as exc:
            log.warning("%s from the supervisor; stopping", exc)
            self.stop.set()

    def _dispatch_control(self, msg: object, fds: list[int]) -> None:
        if isinstance(msg, ReadRequest) and len(fds) == 2 and is_container_id(msg.container_id):
            # dockerd's connection (the supervisor wrote the response head), and a pipe to close when done.
            sock = socket.socket(fileno=fds[0])
            sock.setblocking(False)
            task = asyncio.create_task(self._serve_read(msg, sock, fds[1]))
            self.streams.add(task)
            task.add_done_callback(self.streams.discard)
            return
        for fd in fds:
            os.close(fd)
        if isinstance(msg, LoggerStarted) and is_container_id(msg.container_id):
            options = StoreOptions(msg.max_size, msg.max_file, msg.compress)
            self.store.logger_started(msg.container_id, msg.fifo, msg.info, options, msg.ships)
        elif isinstance(msg, LoggerClosed) and is_container_id(msg.container_id):
            # From the supervisor, for a logger that closed before it carried a line (no reader was forked).
            self._closed(msg.container_id, msg.fifo, msg.lines)
        elif isinstance(msg, LoggersSynced):
            if not self.store.loggers_synced:
                log.info("the supervisor named its %d running loggers; RETAIN_STOPPED_FOR may judge the others",
                         msg.loggers)
            self.store.loggers_synced = True
        else:
            self._bad_message(MessageError(f"unexpected {type(msg).__name__} on the control path"))

    async def _serve_read(self, request: ReadRequest, sock: socket.socket, done: int) -> None:
        self.store.counters.read_streams += 1
        self.store.counters.read_streams_total += 1
        stream = ReadLogsStream(self.store, request, sock)
        try:
            await stream.run()
        except (BrokenPipeError, ConnectionResetError):
            pass  # docker logs went away
        except Exception:
            log.exception("ReadLogs for container %s failed", request.container_id[:12])
        finally:
            self.store.counters.read_streams -= 1
            _end_response(sock)
            os.close(done)  # tells the supervisor the stream ended

    # --- housekeeping: what the store does on its own, beside the main loop ----------------------------------------

    def _housekeeping(self) -> Periodic:
        """Every step on its own: one that fails (a full disk, a bug) is logged and tried again, and never stops
        reports, cursor saves, deletions or expiry."""
        tasks = Periodic(log, STATS_INTERVAL)
        tasks.add("reporting stats", self._send_stats)
        tasks.add("forgetting closed FIFOs", self._prune_closed)
        tasks.add("saving shipping cursors", self.store.save_cursors, CURSOR_SAVE_INTERVAL)
        tasks.add("looking for missed messages", self._backstop)
        tasks.add("DESTROY_LOGS_ON_STOP deadlines", self._destroy_due)
        tasks.add("releasing idle containers", self._release_idle)
        tasks.add("RETAIN_STOPPED_FOR expiry", self._expire)
        return tasks

    def _backstop(self) -> None:
        """For a missed edge of ZeroMQ's edge-triggered FDs."""
        self._on_data()
        self._on_fetch()

    def _destroy_due(self) -> None:
        now = time.monotonic()
        for clog in list(self.store.logs.values()):
            self.store.destroy_if_due(clog, now)

    def _release_idle(self) -> None:
        for container_id in self.store.release_idle():
            self.fetches.forget(container_id)

    def _expire(self) -> None:
        """Every EXPIRY_INTERVAL, from the moment the supervisor named the running loggers (LoggersSynced)."""
        if self.store.loggers_synced and time.monotonic() >= self.next_expiry:
            done = self.store.expire(time.time())
            # Stopped at its time budget: carry on at the next tick.
            self.next_expiry = time.monotonic() + (EXPIRY_INTERVAL if done else STATS_INTERVAL)

    def _prune_closed(self) -> None:
        horizon = time.monotonic() - CLOSED_FIFO_TTL
        for fifo in [f for f, at in self.closed_at.items() if at < horizon]:
            del self.closed_at[fifo]
            self.store.closed_fifos.discard(fifo)

    def _send_stats(self) -> None:
        c = self.store.counters
        try:
            disk = os.statvfs(self.data_dir)
            free = disk.f_bavail * disk.f_frsize
        except OSError:
            free = -1
        self.control.report(
            {
                "bytes_total": c.bytes_total,
                "records_total": c.records_total,
                "batches_total": c.batches_total,
                "write_errors_total": c.write_errors_total,
                "containers": len(self.store.logs),
                "read_streams": c.read_streams,
                "read_streams_total": c.read_streams_total,
                "bad_messages_total": self.bad_messages,
                "records_dropped_total": c.records_dropped_total,
                "out_of_order_refused_total": c.out_of_order_refused_total,
                "destroyed_total": c.destroyed_total,
                "expired_total": c.expired_total,
                "rotations_total": self.store.rotations_total(),
                "compressing": sum(clog.compressing for clog in self.store.logs.values()),
                "disk_free_bytes": free,
                "housekeeping_errors_total": self.housekeeping.errors_total,
            },
            self.store.per_container(),
        )


def bind_data_router(ctx: zmq.Context[zmq.Socket], endpoint: str) -> zmq.Socket:
    """The ROUTER the readers' batches come to."""
    data_router = ctx.socket(zmq.ROUTER)
    data_router.setsockopt(zmq.RCVHWM, RCVHWM)
    data_router.setsockopt(zmq.MAXMSGSIZE, MAX_DATA_MESSAGE)
    data_router.setsockopt(zmq.LINGER, 0)
    data_router.bind(endpoint)
    return data_router


def _end_response(sock: socket.socket) -> None:
    """The body is close-delimited: a FIN ends it, even while a child forked just now still holds a copy."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # dockerd already left
    sock.close()
