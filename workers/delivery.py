"""BatchSender: hands a reader's batches to the local store, keeping each until the store confirms it.

ZeroMQ forgets whatever sat in a dead peer's buffers, so delivery is explicit: every batch (and the final
``LoggerClosed``) stays here until a ``Stored`` acknowledgement covers it, and everything unacknowledged is sent
again when acknowledgements stop coming (the local store died and was respawned). The store recognises batches it
already wrote, so a resend never stores a line twice. Memory is bounded by ``max_bytes``: beyond it, while the store
keeps confirming (only slower than the container), the reader holds back (stops reading the FIFO, and the container
waits, as it would for json-file on a slow disk: nothing is lost); once the store confirmed nothing for
``STUCK_AFTER`` seconds, the oldest batch is dropped and counted, so a stuck store never blocks the container.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass

import zmq

from proto.messages import MessageError, Stored, decode

log = logging.getLogger("elp.reader")

RESEND_AFTER = 2.0
STUCK_AFTER = 5.0
# Below this a batch is copied into ZeroMQ rather than lent: pyzmq lends a frame of 64 KiB or more (zero-copy) and
# learns that libzmq let go of it through a thread of its own, woken per message; copying a quiet container's batch
# (a window of lines, 100 KB at 25 lines/s of 4 KiB) costs less than waking that thread.
ZERO_COPY_FROM = 256 * 1024


@dataclass
class Outgoing:
    frames: list[bytes | bytearray | memoryview]  # Message.frames(): sent again as they are on a resend
    size: int
    seq_end: int
    lines: int
    closing: bool = False
    sent_at: float = 0.0
    queued_at: float = 0.0


class BatchSender:
    def __init__(self, socket: zmq.Socket, container_id: str, max_bytes: int) -> None:
        self.socket = socket
        self.container_id = container_id
        self.max_bytes = max_bytes
        self.pending: deque[Outgoing] = deque()  # not sent yet
        self.unacked: deque[Outgoing] = deque()  # sent, waiting for Stored
        self.held_bytes = 0
        self.dropped_batches = 0
        self.dropped_lines = 0
        self.resends = 0
        self.closed_acked = False
        self.last_ack = time.monotonic()  # also moved by a resend (it restarts the resend clock)
        self.last_progress = 0.0  # when the store last confirmed anything

    @property
    def wants_to_send(self) -> bool:
        return bool(self.pending)

    @property
    def unconfirmed_lines(self) -> int:
        return sum(o.lines for o in self.pending) + sum(o.lines for o in self.unacked)

    def holding_back(self, now: float) -> bool:
        """Full, and the store is alive: stop reading until acknowledgements make room."""
        return self.held_bytes >= self.max_bytes and not self.stuck(now)

    def stuck(self, now: float) -> bool:
        """The oldest batch has waited STUCK_AFTER seconds and the store confirmed nothing meanwhile."""
        oldest = self.unacked[0] if self.unacked else self.pending[0] if self.pending else None
        return oldest is not None and now - max(oldest.queued_at, self.last_progress) >= STUCK_AFTER

    def queue(self, frames: list[bytes | bytearray | memoryview], seq_end: int, lines: int,
              closing: bool = False) -> None:
        """Hold one message (``Message.frames()``) until a ``Stored`` up to ``seq_end`` (or ``closed``) covers it."""
        size = sum(len(f) for f in frames)
        self.pending.append(Outgoing(frames, size, seq_end, lines, closing, queued_at=time.monotonic()))
        self.held_bytes += size
        while (self.held_bytes > self.max_bytes and len(self.pending) + len(self.unacked) > 1
               and self.stuck(time.monotonic())):
            victim = self.unacked.popleft() if self.unacked else self.pending.popleft()
            self.held_bytes -= victim.size
            self.dropped_batches += 1
            self.dropped_lines += victim.lines
            if self.dropped_batches == 1:
                log.error("container %s: the local store confirmed nothing for %.0f s; dropping the oldest batches "
                          "to keep the container running (lines_dropped_total in stats)", self.container_id[:12],
                          STUCK_AFTER)

    def send(self) -> None:
        """Send what is pending, as far as ZeroMQ takes it now."""
        now = time.monotonic()
        while self.pending:
            out = self.pending[0]
            try:
                # All frames or none: ZeroMQ queues a multipart message whole once it took its first frame.
                self.socket.send_multipart(out.frames, zmq.NOBLOCK, copy=out.size < ZERO_COPY_FROM)
            except zmq.Again:
                return
            self.pending.popleft()
            out.sent_at = now
            self.unacked.append(out)

    def receive(self) -> None:
        """Take the acknowledgements that arrived."""
        while True:
            try:
                raw = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                msg = decode(raw)
            except MessageError:
                continue
            if isinstance(msg, Stored):
                self._acked(msg)

    def _acked(self, msg: Stored) -> None:
        self.last_ack = self.last_progress = time.monotonic()
        while self.unacked:
            first = self.unacked[0]
            if (not msg.closed) if first.closing else first.seq_end > msg.seq_end:
                break
            self.unacked.popleft()
            self.held_bytes -= first.size
            if first.closing:
                self.closed_acked = True

    def resend_if_stalled(self) -> None:
        """No acknowledgement for a while although batches are out: the store restarted; send them again."""
        now = time.monotonic()
        if self.unacked and now - self.unacked[0].sent_at > RESEND_AFTER and now - self.last_ack > RESEND_AFTER:
            self.resends += 1
            log.warning("container %s: the local store did not confirm %d batches; sending them again",
                        self.container_id[:12], len(self.unacked))
            self.pending.extendleft(reversed(self.unacked))
            self.unacked.clear()
            self.last_ack = now

    @property
    def done(self) -> bool:
        return not self.pending and not self.unacked
