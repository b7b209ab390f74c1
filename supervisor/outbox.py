"""Control messages from the supervisor to one service, delivered in order even when its socket is full.

A socketpair takes about 200 KiB of datagrams, some 50 ``LoggerStarted`` of 2 KiB: a respawned local store is
told about every running logger at once, and a non-blocking send failed (and lost the message) beyond that. What
the socket cannot take now waits here and goes as soon as the service reads.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from collections import deque

log = logging.getLogger("elp.supervisor")

# Far above what a resync needs (a LoggerStarted per running logger, at most 128 KiB each, most about 2 KiB).
OUTBOX_MAX_BYTES = 64 << 20


class Outbox:
    """One service's queue of control messages, each with the descriptors it carries (kept open while queued).
    Bounded by OUTBOX_MAX_BYTES: beyond, a message is refused, counted and logged (the service is stuck; the
    watchdog kills and respawns it, and the respawned one is told everything again)."""

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock = sock
        self.name = name
        self.queue: deque[tuple[bytes, list[int], str]] = deque()
        self.queued_bytes = 0
        self.dropped_total = 0
        self.writing = False

    def send(self, data: bytes, fds: tuple[int, ...], what: str) -> bool:
        """Queue one message (the caller keeps its own descriptors); False when it was refused."""
        if self.queued_bytes + len(data) > OUTBOX_MAX_BYTES:
            self.dropped_total += 1
            log.error("the %s reads nothing: %d bytes of control messages wait; %s refused", self.name,
                      self.queued_bytes, what)
            return False
        self.queue.append((data, [os.dup(fd) for fd in fds], what))
        self.queued_bytes += len(data)
        return self.flush()

    def flush(self) -> bool:
        """Send what the socket takes; False when the last message could not be sent for good."""
        ok = True
        while self.queue:
            data, fds, what = self.queue[0]
            try:
                socket.send_fds(self.sock, [data], fds)
            except BlockingIOError:
                self._wait_for_room()
                return ok
            except OSError as exc:
                ok = False
                self.dropped_total += 1
                if exc.errno in (errno.EPIPE, errno.ECONNRESET):
                    log.debug("the %s is gone; %s not delivered", self.name, what)
                else:
                    log.error("cannot send %s (%d bytes) to the %s: %s", what, len(data), self.name, exc)
            self._pop()
        self._stop_waiting()
        return ok

    def close(self) -> None:
        """The service is gone: what waits is dropped (its successor is told everything again)."""
        self._stop_waiting()
        while self.queue:
            self._pop()

    def _pop(self) -> None:
        data, fds, _ = self.queue.popleft()
        self.queued_bytes -= len(data)
        for fd in fds:
            os.close(fd)

    def _wait_for_room(self) -> None:
        if not self.writing:
            asyncio.get_running_loop().add_writer(self.sock.fileno(), self.flush)
            self.writing = True

    def _stop_waiting(self) -> None:
        if self.writing:
            asyncio.get_running_loop().remove_writer(self.sock.fileno())
            self.writing = False
