"""BatchSender: hands a reader's batches to the local store, keeping each until the store confirms it.

ZeroMQ forgets whatever sat in a dead peer's buffers, so delivery is explicit: every batch (and the final
``LoggerClosed``) stays here until a ``Stored`` acknowledgement covers it, and everything unacknowledged is sent
again when acknowledgements stop coming (the local store died and was respawned). The store recognises batches it
already wrote, so a resend never stores a line twice. Memory is bounded: beyond ``max_bytes`` the oldest batch is
dropped and counted; the FIFO is never left unread because of a slow or dead store.
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


@dataclass
class Outgoing:
    message: bytes
    seq_end: int
    lines: int
    closing: bool = False
    sent_at: float = 0.0


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
        self.last_ack = time.monotonic()

    @property
    def wants_to_send(self) -> bool:
        return bool(self.pending)

    @property
    def unconfirmed_lines(self) -> int:
        return sum(o.lines for o in self.pending) + sum(o.lines for o in self.unacked)

    def queue(self, message: bytes, seq_end: int, lines: int, closing: bool = False) -> None:
        self.pending.append(Outgoing(message, seq_end, lines, closing))
        self.held_bytes += len(message)
        while self.held_bytes > self.max_bytes and len(self.pending) + len(self.unacked) > 1:
            victim = self.unacked.popleft() if self.unacked else self.pending.popleft()
            self.held_bytes -= len(victim.message)
            self.dropped_batches += 1
            self.dropped_lines += victim.lines
            if self.dropped_batches == 1:
                log.error("container %s: the local store is not confirming batches; dropping the oldest to keep "
                          "the container running (lines_dropped_total in stats)", self.container_id[:12])

    def send(self) -> None:
        """Send what is pending, as far as ZeroMQ takes it now."""
        now = time.monotonic()
        while self.pending:
            out = self.pending[0]
            try:
                self.socket.send(out.message, zmq.NOBLOCK, copy=False)
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
        self.last_ack = time.monotonic()
        while self.unacked:
            first = self.unacked[0]
            if (not msg.closed) if first.closing else first.seq_end > msg.seq_end:
                break
            self.unacked.popleft()
            self.held_bytes -= len(first.message)
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
