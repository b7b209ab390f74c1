"""The control channel: one SOCK_SEQPACKET socketpair between the supervisor and each child, carrying the messages
of ``proto/messages.py`` (orders and file descriptors down, reports up).

Receiving, decoding and refusing a bad message is the same at both ends, and every child reports the same way, so it
is written once, here (``proto`` is the one package every process may import).
"""

from __future__ import annotations

import array
import logging
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

from proto.housekeeping import ReportSender
from proto.messages import MAX_CONTROL_MESSAGE, Message, MessageError, decode, stats_report


class ChannelClosed(Exception):
    """The other end closed the channel, or it broke: the supervisor (or the child) is gone."""


def receive(sock: socket.socket, on_bad: Callable[[MessageError], None],
            max_fds: int = 0) -> Iterator[tuple[Message, list[int]]]:
    """Every message waiting on ``sock`` now, decoded, with the descriptors it carried (at most ``max_fds``; the
    receiver owns them). One that does not decode is handed to ``on_bad`` and its descriptors closed: bad input never
    ends the channel. Raises ChannelClosed when the other end is gone."""
    while True:
        fds: list[int] = []
        try:
            if max_fds:
                data, fds = _recv_fds(sock, max_fds)
            else:
                data = sock.recv(MAX_CONTROL_MESSAGE, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError as exc:
            raise ChannelClosed(f"control channel failed: {exc}") from exc
        if not data and not fds:
            raise ChannelClosed("control channel closed by the other end")
        try:
            msg = decode(data)
        except MessageError as exc:
            for fd in fds:
                os.close(fd)
            on_bad(exc)
            continue
        yield msg, fds


class ControlChannel:
    """A child's end of its control channel: what the supervisor sends, and the child's reports (``ChildStats``, then
    its ``StatsPart``s), numbered so that the supervisor never mixes the parts of two reports."""

    def __init__(self, sock: socket.socket, role: str, log: logging.Logger) -> None:
        self.sock = sock
        self.role = role
        self.reports = ReportSender(sock, log)
        self.report_no = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self, on_bad: Callable[[MessageError], None],
                max_fds: int = 0) -> Iterator[tuple[Message, list[int]]]:
        return receive(self.sock, on_bad, max_fds)

    def report(self, counters: dict[str, Any], per_container: dict[str, Any] | None = None,
               outputs: list[Any] | None = None) -> bool:
        """Send one report without blocking (see ReportSender); False when some of it waits or was dropped."""
        counters["reports_dropped_total"] = self.reports.dropped_total
        datagrams = stats_report(self.role, counters, self.report_no, per_container, outputs)
        self.report_no += 1
        return self.reports.send(datagrams)


def _recv_fds(sock: socket.socket, max_fds: int) -> tuple[bytes, list[int]]:
    """socket.recv_fds without blocking (Python 3.11's drops its ``flags``)."""
    fds = array.array("i")
    data, ancdata, _flags, _addr = sock.recvmsg(MAX_CONTROL_MESSAGE, socket.CMSG_LEN(max_fds * fds.itemsize),
                                                socket.MSG_DONTWAIT)
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
    return data, list(fds)
