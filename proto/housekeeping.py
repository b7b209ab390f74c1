"""What every process does beside its real work: periodic steps that survive their own errors, and reports up the
control socketpair that never block and never kill the sender.

Here rather than in one process's package because every process uses it and ``proto`` is the one package they all
may import.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass
class _Step:
    name: str
    action: Callable[[], object]
    every: float
    due: float = 0.0
    failures: int = 0
    failing: str | None = None  # the error last logged, while the step keeps failing with it


class Periodic:
    """Named steps, each run every ``every`` seconds (checked every ``tick``). A step that raises is logged once with
    its traceback and counted, and tried again at its next turn; the other steps, and later turns, go on. Logged
    again only when the error changes; a step that works again after failing says so once."""

    def __init__(self, log: logging.Logger, tick: float) -> None:
        self.log = log
        self.tick = tick
        self.steps: list[_Step] = []
        self.errors_total = 0

    def add(self, name: str, action: Callable[[], object], every: float | None = None) -> None:
        self.steps.append(_Step(name, action, self.tick if every is None else every))

    def run_due(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for step in self.steps:
            if now >= step.due:
                step.due = now + step.every
                self._run(step)

    def _run(self, step: _Step) -> None:
        try:
            step.action()
        except Exception as exc:
            self.errors_total += 1
            step.failures += 1
            what = f"{type(exc).__name__}: {exc}"
            if what != step.failing:
                step.failing = what
                self.log.error("%s failed (%s); it is tried again every %gs, the same error is only counted",
                               step.name, what, step.every, exc_info=True)
            return
        if step.failing is not None:
            self.log.warning("%s works again after %d failed attempts", step.name, step.failures)
            step.failing = None
            step.failures = 0

    async def run(self) -> None:
        """Forever (until cancelled): the due steps, then a tick's sleep."""
        while True:
            self.run_due()
            await asyncio.sleep(self.tick)


class ReportSender:
    """A child's reports to the supervisor, sent without blocking. What the socket cannot take now (a big report is
    several datagrams; the socket holds about three) waits, and goes as soon as the socket has room again (in an
    asyncio child; else at the next report). A report still waiting when the next one comes is replaced by it, and
    its datagrams counted as dropped: the next report carries the same totals. Any other error is logged once per
    kind and counted; none reaches the caller."""

    def __init__(self, control: socket.socket, log: logging.Logger) -> None:
        self.control = control
        self.log = log
        self.dropped_total = 0
        self.logged: set[str] = set()
        self.closed = False
        self.pending: deque[bytes] = deque()
        self.waiting: asyncio.AbstractEventLoop | None = None

    def send(self, datagrams: Iterable[bytes]) -> bool:
        """Send one report's datagrams in order; False when some of them wait (or were dropped)."""
        self.dropped_total += len(self.pending)
        self.pending = deque(datagrams)
        return self.flush()

    def flush(self) -> bool:
        sent_all = True
        while self.pending and not self.closed:
            data = self.pending[0]
            try:
                self.control.send(data, socket.MSG_DONTWAIT)
            except BlockingIOError:
                self._wait_for_room()
                return False
            except (BrokenPipeError, ConnectionResetError):
                self.closed = True  # the supervisor is gone; the child notices on its control channel
            except OSError as exc:
                self.dropped_total += 1
                sent_all = False
                what = f"{type(exc).__name__} {exc.errno}"
                if what not in self.logged:
                    self.logged.add(what)
                    self.log.error("cannot send a report of %d bytes to the supervisor: %s; such reports are only "
                                   "counted (reports_dropped_total)", len(data), exc)
            self.pending.popleft()
        self.pending.clear()
        self._stop_waiting()
        return sent_all and not self.closed

    def _wait_for_room(self) -> None:
        if self.waiting is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop (the reader): what waits goes with the next report
        loop.add_writer(self.control.fileno(), self.flush)
        self.waiting = loop

    def _stop_waiting(self) -> None:
        if self.waiting is not None:
            self.waiting.remove_writer(self.control.fileno())
            self.waiting = None
