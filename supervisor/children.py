"""The supervisor's children: what runs (``Child``), the place one must run in (``Slot``: a service or a logger's
reader), and the restart back-off."""

from __future__ import annotations

import enum
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from proto.messages import ExitCode
from supervisor.outbox import Outbox

# Respawn policy: the first restart is immediate, then the delay doubles up to the cap; a child that stayed up
# for STABLE_AFTER seconds starts again from zero.
BACKOFF_FIRST = 0.0
BACKOFF_START = 0.5
BACKOFF_CAP = 30.0
STABLE_AFTER = 60.0


class Role(enum.StrEnum):
    READER = "reader"
    LOCALSTORE = "localstore"
    SHIPPER = "shipper"


@dataclass
class Backoff:
    """Delay before the next restart of one child."""

    failures: int = 0

    def next_delay(self, uptime: float) -> float:
        if uptime >= STABLE_AFTER:
            self.failures = 0
        self.failures += 1
        if self.failures == 1:
            return BACKOFF_FIRST
        return float(min(BACKOFF_CAP, BACKOFF_START * 2 ** (self.failures - 2)))


@dataclass(kw_only=True)
class Slot:
    """Where one child must run: a service, or the reader of one logger. The child running in it (None while it is
    down) and when the next one may start. Keyword-only, so the kinds of slot add their own positional fields."""

    child: Child | None = None
    restarts: int = 0
    backoff: Backoff = field(default_factory=Backoff)
    respawn_at: float | None = None  # None: nothing to start (running, or not wanted yet)

    def due(self, now: float) -> bool:
        return self.child is None and self.respawn_at is not None and now >= self.respawn_at

    def started(self, child: Child) -> None:
        self.child = child
        self.respawn_at = None

    def schedule_respawn(self, uptime: float) -> float:
        """The child died: its successor may start after the returned delay."""
        delay = self.backoff.next_delay(uptime)
        self.restarts += 1
        self.respawn_at = time.monotonic() + delay
        return delay


@dataclass
class Child:
    """One running process, and its side of the control socketpair."""

    role: Role
    key: str
    pid: int
    control: socket.socket
    pidfd: int
    started_at: float = field(default_factory=time.monotonic)
    last_report: float = 0.0
    counters: dict[str, Any] = field(default_factory=dict)
    previous: tuple[float, dict[str, Any]] = (0.0, {})
    # Figures per container and per output, from the StatsParts of the last complete report (and of the one coming).
    per_container: dict[str, Any] = field(default_factory=dict)
    outputs: list[Any] = field(default_factory=list)
    coming: tuple[int, dict[str, Any], list[Any]] | None = None
    outbox: Outbox | None = None  # a service's control messages, in order however full its socket is
    hung_for: float | None = None  # set when the watchdog killed it: seconds it had been silent

    def report(self, counters: dict[str, Any]) -> None:
        now = time.monotonic()
        if self.last_report:
            self.previous = (self.last_report, self.counters)
        self.counters = counters
        self.last_report = now

    def report_part(self, report: int, last: bool, per_container: dict[str, Any], outputs: list[Any]) -> None:
        """One StatsPart. A report's parts come in order; one cut short (the child's socket was full) is dropped
        whole when the next report begins, so the figures shown always come from one report."""
        if self.coming is None or self.coming[0] != report:
            self.coming = (report, {}, [])
        self.coming[1].update(per_container)
        self.coming[2].extend(outputs)
        if last:
            _, self.per_container, self.outputs = self.coming
            self.coming = None

    def rate(self, name: str) -> float:
        """Per-second change of a counter between the last two reports."""
        then, old = self.previous
        if not then or name not in old or name not in self.counters:
            return 0.0
        return max(0.0, (self.counters[name] - old[name]) / max(self.last_report - then, 1e-3))

    def close(self) -> None:
        if self.outbox is not None:
            self.outbox.close()
        self.control.close()
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1

    @property
    def uptime(self) -> float:
        return time.monotonic() - self.started_at


def describe_exit(code: int, child: Child) -> str:
    """How the child ended, for the log line that announces its restart."""
    if child.hung_for is not None:
        return f"hung (no report for {child.hung_for:.1f}s) and was killed"
    if code == ExitCode.BOOT_FAILED:
        return "could not start (boot failed: the cause is logged above)"
    if code < 0:
        name = signal.Signals(-code).name
        return f"was killed by {name}" + (" (perhaps out of memory)" if -code == signal.SIGKILL else "")
    return f"exited with code {code}"
