"""Hangs are healed like crashes: a child whose heartbeat (``ChildStats``, about once a second) stops is killed, and
its exit then takes the crash path (respawn with back-off; a reader's unconfirmed lines counted as lost).

A stopped process (SIGSTOP), one stuck in a syscall or a deadlocked loop all look the same from here: silence. A
slow but alive child still reports: every child sends its report from its main loop at least once a second, also
while it holds back or waits, and a CPU-starved process still runs many times within HEARTBEAT_TIMEOUT. The one
thing that could fake silence is the supervisor itself not running for a while (its loop was busy, the machine
was suspended): then nobody is judged until it has watched again for a full timeout.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Iterable

from supervisor.children import Child

log = logging.getLogger("elp.supervisor")

# No report for this long: the child is hung.
HEARTBEAT_TIMEOUT = 10.0
# Before its first report a child may still be starting (a shipper loading thousands of shipping configs).
FIRST_REPORT_GRACE = 30.0
# The supervisor's own tick came this late: it did not watch, so its view of the children is stale.
WATCH_LAG = 3.0


class Watchdog:
    def __init__(self) -> None:
        self.last_watch = time.monotonic()
        self.watching_since = self.last_watch
        self.killed_total = 0

    def check(self, children: Iterable[Child], drain: Callable[[Child], None], now: float | None = None) -> None:
        """Kill (SIGKILL) every child silent for too long. ``drain`` reads what a child sent that was not read yet
        (its reports may wait in the socket while the supervisor was busy)."""
        now = time.monotonic() if now is None else now
        if now - self.last_watch > WATCH_LAG:
            log.warning("the supervisor did not run for %.1fs; heartbeats are judged again from now", now -
                        self.last_watch)
            self.watching_since = now
        self.last_watch = now
        for child in list(children):
            if child.hung_for is not None:
                continue  # killed already; its exit is on the way
            drain(child)
            silent = now - max(child.last_report or child.started_at, self.watching_since)
            limit = HEARTBEAT_TIMEOUT if child.last_report else FIRST_REPORT_GRACE
            if silent < limit:
                continue
            child.hung_for = silent
            self.killed_total += 1
            log.error("%s (pid %d) sent no report for %.1fs (process state: %s); killing it to start it again",
                      child.role, child.pid, silent, process_state(child.pid))
            try:
                os.kill(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def process_state(pid: int) -> str:
    """The kernel's one-letter state with its meaning (T stopped, D in an uninterruptible wait...)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError, UnicodeDecodeError):
        return "unknown"
    names = {"R": "running", "S": "sleeping", "D": "uninterruptible wait", "T": "stopped", "t": "traced",
             "Z": "zombie"}
    return f"{state} ({names.get(state, 'other')})"
