"""The reader process: one FIFO in, batches out, until EOF or SIGTERM."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass

import zmq

from proto.control import ChannelClosed, ControlChannel
from proto.messages import ExitCode, Followers, LoggerClosed, MessageError
from workers.batcher import Batcher
from workers.decoder import FrameDecoder
from workers.delivery import BatchSender

log = logging.getLogger("elp.reader")

READ_SIZE = 1 << 20
PIPE_SIZE = 1 << 20
STATS_INTERVAL = 1.0
# A report is due every STATS_INTERVAL, give or take STATS_SLACK: any wake-up from STATS_SLACK before that with no
# batch in flight sends it, and only STATS_SLACK after it does the reader wake up for it alone. So a quiet reader's
# report rides on a batch's wake-up instead of costing one more (reports stay 0.5 to 1.5 s apart; the heartbeat
# allows 10 s).
STATS_SLACK = 0.5
# A read this big means the container is writing fast: read again at once.
BUSY_READ = 64 * 1024
# Pausing reads for less than this saves nothing.
MIN_PAUSE = 0.005
# Bound for batches the local store has not confirmed yet. Beyond it, while the store keeps confirming (it is only
# slower than the container: a slow disk), the reader stops reading and the container waits, as with json-file on
# a slow disk; once the store has confirmed nothing for a while (stuck), the oldest batch is dropped and counted
# instead: a dead consumer must never block the container. See workers/delivery.py.
PENDING_MAX_BYTES = 64 << 20
# Above this much unconfirmed, an acknowledgement wakes the reader at once (to free memory early).
ACK_WAKE_BYTES = 4 << 20
CLOSE_DEADLINE_MS = 5000
HOLD_BACK_CHECK = 0.1
# How long a batch stays open. Each batch costs a few wake-ups across the reader, the local store and the shipper,
# whatever its size; so a batch of at least EARLY_BYTES leaves after FOLLOW_WAIT (a busy container's lines are
# never held long), a smaller one gathers a quiet container's lines for up to QUIET_WAIT, and while a
# `docker logs` reads the container every batch leaves after FOLLOW_WAIT.
QUIET_WAIT = 1.0
FOLLOW_WAIT = 0.05
EARLY_BYTES = 256 * 1024


@dataclass(frozen=True)
class ReaderSpec:
    """Everything a reader needs, fixed when the supervisor forks it."""

    container_id: str
    fifo_path: str
    fifo_fd: int
    control: socket.socket
    endpoints: tuple[str, ...]
    quiet_wait: float = QUIET_WAIT
    follow_wait: float = FOLLOW_WAIT
    followed: bool = False
    # Sequence numbers start here: each incarnation of a logger's reader gets its own range (2**SEQ_SHIFT wide),
    # so the local store never takes a respawned reader's new batches for re-sent old ones.
    seq_base: int = 0


class ReaderProcess:
    """Drains one FIFO: read, cut, decode, batch, send (DEALER); reports its counters to the supervisor."""

    def __init__(self, spec: ReaderSpec) -> None:
        self.spec = spec
        self.booted = False  # True once its main loop runs: a failure before is a boot failure (spawn.run_child)
        self.decoder = FrameDecoder()
        self.batcher = Batcher(spec.container_id, os.path.basename(spec.fifo_path),
                               max_wait=spec.follow_wait if spec.followed else spec.quiet_wait,
                               short_wait=spec.follow_wait, min_bytes=EARLY_BYTES, next_seq=spec.seq_base)
        self.sender: BatchSender
        self.stopping = False
        self.eof = False
        self.parent = os.getppid()
        self.corrupt_logged = False
        self.busy = False
        self.pipe_size = 64 * 1024
        self.last_read_at = 0.0
        self.fifo_resume_at = 0.0
        self.read_bytes = 0
        # While the FIFO rests after a quiet batch left, where the batch its rest ends with counts from (see
        # _rest_after_quiet_batch); None otherwise.
        self.rest_from: float | None = None
        self.rate = 0.0  # bytes/s the container wrote over the last interval between two reads
        self.wakeups = 0  # turns of the main loop: what a quiet container costs (stats: wakeups_total)
        self.control = ControlChannel(spec.control, "reader", log)

    def run(self) -> ExitCode:
        ctx = zmq.Context(io_threads=1)
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.SNDHWM, 16)
        dealer.setsockopt(zmq.LINGER, 0)  # nothing is lost by closing: unconfirmed batches are accounted for
        for endpoint in self.spec.endpoints:
            dealer.connect(endpoint)
        self.sender = BatchSender(dealer, self.spec.container_id, PENDING_MAX_BYTES)
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._handle_term)
        signal.signal(signal.SIGINT, self._handle_term)
        fd = self.spec.fifo_fd
        os.set_blocking(fd, False)
        try:
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass  # above /proc/sys/fs/pipe-max-size: the default 64 KiB pipe still works
        self.pipe_size = fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)
        self.booted = True
        try:
            self._loop(dealer, wake_r)
        finally:
            dealer.close()
            ctx.term()
        return ExitCode.DONE

    def _handle_term(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _loop(self, dealer: zmq.Socket, wake_r: int) -> None:
        fd = self.spec.fifo_fd
        poller = zmq.Poller()
        poller.register(wake_r, zmq.POLLIN)
        control = self.spec.control
        poller.register(control, zmq.POLLIN)
        sender = self.sender
        next_stats = time.monotonic()
        watching_fifo = False
        while True:
            self.wakeups += 1
            now = time.monotonic()
            held_back = sender.holding_back(now)
            want_fifo = now >= self.fifo_resume_at and not self.stopping and not held_back
            if want_fifo != watching_fifo:
                if want_fifo:
                    poller.register(fd, zmq.POLLIN)
                else:
                    poller.unregister(fd)
                watching_fifo = want_fifo
            # Acknowledgements are taken at every wake-up (sender.receive below); one wakes the reader only when it
            # makes room (held back) or the sender holds much: otherwise a quiet container's every batch would
            # cost a wake-up more, for nothing.
            wake_on_ack = held_back or sender.held_bytes >= ACK_WAKE_BYTES
            poller.register(dealer, (zmq.POLLIN if wake_on_ack else 0) | (zmq.POLLOUT if sender.wants_to_send else 0))
            left = self.batcher.time_left(now)
            timeout = min(next_stats + STATS_SLACK - now, left if left is not None else STATS_INTERVAL)
            if not want_fifo and not self.stopping:
                timeout = min(timeout, self.fifo_resume_at - now)
            if held_back:
                timeout = min(timeout, HOLD_BACK_CHECK)  # acknowledgements wake us; this only bounds the wait
            if self.stopping:
                timeout = 0
            events = dict(poller.poll(max(0, int(timeout * 1000) + (1 if timeout > 0 else 0))))
            if wake_r in events:
                _drain(wake_r)
            if control.fileno() in events and not self._read_control():
                poller.unregister(control)  # the supervisor is gone: the getppid check above ends the loop
            sender.receive()
            now = time.monotonic()
            # Report when nothing is in flight (a batch just sent would count as unconfirmed, and a reader killed
            # now would be charged for lines the store has: lines_lost_in_crashes), or once overdue. Taken before
            # the read, when the last batch's acknowledgement is in: a quiet reader's one wake-up per batch carries
            # its report too.
            if now >= next_stats + STATS_SLACK or (now >= next_stats - STATS_SLACK and not sender.unacked):
                self._send_stats()
                next_stats = now + STATS_INTERVAL
                if os.getppid() != self.parent:
                    log.warning("supervisor gone; reader of %s exits", self.spec.container_id[:12])
                    self.stopping = True
            # The FIFO's pause ended (the timeout that woke us): read now rather than turn once more to poll it.
            resumed = not watching_fifo and not held_back and time.monotonic() >= self.fifo_resume_at
            if events.get(fd) or resumed or self.batcher.due(time.monotonic()) or self.stopping:
                was_empty = not self.batcher.count
                self._read_available()
                self._plan_next_read(opened=was_empty and self.batcher.count > 0)
            if self.batcher.due(time.monotonic()) or self.eof or self.stopping:
                size = len(self.batcher.records)
                self._queue_batch()
                self._rest_after_quiet_batch(size)
            sender.resend_if_stalled()
            sender.send()
            if self.eof or self.stopping:
                break
        if self.eof:
            closed = LoggerClosed(self.spec.container_id, self.batcher.fifo, self.decoder.counters.lines,
                                  self.decoder.discarded_frames)
            sender.queue(closed.frames(), self.batcher.next_seq, 0, closing=True)
        self._flush(dealer)
        self._send_stats()
        counters = self.decoder.counters
        log.info(
            "reader of %s done (%s): %d lines, %d bytes, %d frames discarded, %d batches dropped",
            self.spec.container_id[:12],
            "eof" if self.eof else "stopped",
            counters.lines,
            counters.bytes,
            self.decoder.discarded_frames,
            sender.dropped_batches,
        )

    def _read_available(self) -> None:
        """Read until the pipe is empty (or the batch is full), feeding the batcher."""
        fd = self.spec.fifo_fd
        batcher = self.batcher
        self.busy = False
        self.read_bytes = 0
        while True:
            try:
                chunk = os.read(fd, READ_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            if not chunk:
                self.eof = True
                lost = self.decoder.finish()
                if lost:
                    log.warning(
                        "container %s: stream ended inside a frame; %d bytes discarded",
                        self.spec.container_id[:12],
                        lost,
                    )
                return
            self.read_bytes += len(chunk)
            n = self.decoder.feed(chunk, batcher.records)
            # After a rest the batch counts from rest_from: what waited in the pipe leaves on time (see below).
            batcher.added(n, self.rest_from)
            self._log_corruption_once()
            if len(batcher.records) >= batcher.max_bytes:
                self._queue_batch()
                self.busy = True
                return  # send it, and take acknowledgements, before reading on
            if len(chunk) < BUSY_READ:
                return
            self.busy = True

    def _read_control(self) -> bool:
        """Apply what the supervisor sent; False once its end is closed."""
        try:
            for msg, _ in self.control.receive(self._bad_control):
                self._apply_control(msg)
        except ChannelClosed:
            return False
        return True

    def _bad_control(self, exc: MessageError) -> None:
        log.error("reader of %s: bad control message ignored: %s", self.spec.container_id[:12], exc)

    def _apply_control(self, msg: object) -> None:
        if isinstance(msg, Followers):
            self.batcher.max_wait = self.spec.follow_wait if msg.count > 0 else self.spec.quiet_wait
            if msg.count > 0:
                # Someone reads the logs now: what the FIFO and the open batch hold goes to the store at once.
                self.fifo_resume_at = 0.0
                self.rest_from = None
                self._read_available()
                self._queue_batch()

    def _plan_next_read(self, opened: bool) -> None:
        """Coalesce reads: while a batch is open, leave the FIFO alone for as long as the pipe can take what the
        container writes meanwhile (and no longer than the batch takes to be big enough to leave early), so a
        quiet container costs one wake-up per batch instead of one per line, and a busy one is never left blocked
        on a full pipe."""
        now = time.monotonic()
        rested, self.rest_from = self.rest_from is not None, None
        interval = max(now - self.last_read_at, 0.001)
        rate = self.rate = self.read_bytes / interval
        self.last_read_at = now
        left = self.batcher.time_left(now)
        if self.busy or left is None:
            self.fifo_resume_at = 0.0
            return
        pause = left
        if rate > 0:
            # Not past the point where the pipe could fill, nor where the batch grows big enough to leave early.
            pause = min(pause, (self.pipe_size / 2) / rate, self.batcher.missing_for_short_wait() / rate)
        if opened and not rested:
            # The first lines after a quiet spell say nothing of the rate to come (a burst may follow): look again
            # soon, then pause by the rate measured over that moment. After a rest (below) the rate was measured
            # over the rest already.
            pause = min(pause, self.spec.follow_wait)
        self.fifo_resume_at = now + pause if pause >= MIN_PAUSE else 0.0

    def _log_corruption_once(self) -> None:
        if not self.corrupt_logged and self.decoder.discarded_frames:
            self.corrupt_logged = True
            log.error(
                "container %s: corrupt log stream from dockerd (%d frames, %d bytes discarded so far); "
                "reading goes on, the stats show the running count",
                self.spec.container_id[:12],
                self.decoder.discarded_frames,
                self.decoder.discarded_bytes,
            )

    def _rest_after_quiet_batch(self, size: int) -> None:
        """A quiet batch just left at its deadline: leave the FIFO alone until the window's next tick (at most a
        window; no longer than the pipe, at the rate just seen, takes to half fill, or the next batch to grow big
        enough to leave early), then read what came meanwhile and send it at once: a line waited at most the window,
        as in a batch, and a quiet container costs one wake-up per batch. Reading the next line as it came and
        sending it a window later costs a wake-up more (two, with the burst check of _plan_next_read). A rest that
        reads nothing leaves the FIFO watched again: an idle container does not wake. Not while followed (the window
        is FOLLOW_WAIT itself) nor when busy (read again at once)."""
        batcher = self.batcher
        # Busy is a rate that fills an early batch within the window, not a big read: a rest gathers a window of
        # lines in the pipe, so 64 KiB/s or more (25 lines/s of 4 KiB) would read as busy at every tick.
        busy = self.rate * batcher.max_wait >= batcher.min_bytes
        if (busy or self.eof or self.stopping or batcher.max_wait <= self.spec.follow_wait
                or size >= batcher.min_bytes):
            return
        now = time.monotonic()
        # The rest ends on a multiple of the window (the monotonic clock is the machine's): every quiet reader with
        # that window then sends at the same moment, and the local store and the supervisor take their batches and
        # reports in one wake-up each, not one per reader.
        tick = -now % batcher.max_wait
        if tick < MIN_PAUSE:
            tick += batcher.max_wait  # too close to rest for: the next one (a few ms over the window)
        pause = tick
        if self.rate > 0:
            pause = min(pause, (self.pipe_size / 2) / self.rate, batcher.min_bytes / self.rate)
        if pause < MIN_PAUSE:
            return
        self.fifo_resume_at = now + pause
        # What the read at the tick finds leaves at once (a batch counted from a window before the tick); one cut
        # short by the rate stays open for its window from now, as any batch.
        self.rest_from = now + tick - batcher.max_wait if pause == tick else now

    def _queue_batch(self) -> None:
        batch = self.batcher.take()
        if batch is not None:
            self.sender.queue(batch.frames(), batch.seq + batch.count, batch.count)

    def _flush(self, dealer: zmq.Socket) -> None:
        """At exit: give the local store a bounded time to confirm what is left."""
        sender = self.sender
        deadline = time.monotonic() + CLOSE_DEADLINE_MS / 1000
        while not sender.done and time.monotonic() < deadline:
            sender.resend_if_stalled()
            sender.send()
            if dealer.poll(100, zmq.POLLIN):
                sender.receive()
        if not sender.done:
            log.error("container %s: %d lines could not be confirmed stored before the reader exited",
                      self.spec.container_id[:12], sender.unconfirmed_lines)

    def _send_stats(self) -> None:
        c = self.decoder.counters
        self.control.report(
            {
                "lines_total": c.lines,
                "bytes_total": c.bytes,
                "partial_chunks_total": c.partial_chunks,
                "frames_discarded_total": self.decoder.discarded_frames,
                "bytes_discarded_total": self.decoder.discarded_bytes,
                "batches_dropped_total": self.sender.dropped_batches,
                "lines_dropped_total": self.sender.dropped_lines,
                "resends_total": self.sender.resends,
                "unconfirmed_bytes": self.sender.held_bytes,
                "unconfirmed_lines": self.sender.unconfirmed_lines + self.batcher.count,
                "batch_window_ms": round(self.batcher.max_wait * 1000),
                "wakeups_total": self.wakeups,
            },
        )


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
