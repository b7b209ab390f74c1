"""supervisor/watchdog.py: a child silent for HEARTBEAT_TIMEOUT is killed; a starting child, and every child while
the supervisor itself did not run, get their grace."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import pytest

from supervisor.children import Child, Role
from supervisor.watchdog import FIRST_REPORT_GRACE, HEARTBEAT_TIMEOUT, Watchdog, process_state


@pytest.fixture
def child() -> Iterator[tuple[Child, subprocess.Popen[bytes]]]:
    proc = subprocess.Popen(["sleep", "60"])
    a, b = socket.socketpair()
    made = Child(Role.SHIPPER, "shipper", proc.pid, a, -1, started_at=1000.0)
    yield made, proc
    proc.kill()
    proc.wait()
    a.close()
    b.close()


def no_drain(child: Child) -> None:
    pass


def check(dog: Watchdog, c: Child, now: float) -> None:
    dog.last_watch = now - 1  # the supervisor ticked on time
    dog.check([c], no_drain, now)


def test_a_silent_child_is_killed_once(child: tuple[Child, subprocess.Popen[bytes]]) -> None:
    c, proc = child
    dog = Watchdog()
    dog.watching_since = 0.0
    c.last_report = 1000.0
    check(dog, c, 1000.0 + HEARTBEAT_TIMEOUT - 0.5)
    assert proc.poll() is None and c.hung_for is None
    check(dog, c, 1000.0 + HEARTBEAT_TIMEOUT + 0.5)
    assert proc.wait(5) == -9 and c.hung_for == pytest.approx(HEARTBEAT_TIMEOUT + 0.5)
    check(dog, c, 1000.0 + HEARTBEAT_TIMEOUT + 1.5)
    assert dog.killed_total == 1


def test_a_child_gets_longer_for_its_first_report(child: tuple[Child, subprocess.Popen[bytes]]) -> None:
    c, proc = child
    dog = Watchdog()
    dog.watching_since = 0.0
    check(dog, c, 1000.0 + HEARTBEAT_TIMEOUT + 5)
    assert proc.poll() is None
    check(dog, c, 1000.0 + FIRST_REPORT_GRACE + 0.5)
    assert proc.wait(5) == -9


def test_nobody_is_judged_for_the_time_the_supervisor_did_not_run(child: tuple[Child, subprocess.Popen[bytes]]
                                                                  ) -> None:
    c, proc = child
    dog = Watchdog()
    c.last_report = 1000.0
    dog.last_watch = 1001.0
    dog.check([c], no_drain, 1020.0)  # our own tick came 19 s late: the child's silence says nothing
    assert proc.poll() is None
    check(dog, c, 1020.0 + HEARTBEAT_TIMEOUT - 1)
    assert proc.poll() is None
    check(dog, c, 1020.0 + HEARTBEAT_TIMEOUT + 0.5)
    assert proc.wait(5) == -9


def test_a_report_waiting_in_the_socket_counts(child: tuple[Child, subprocess.Popen[bytes]]) -> None:
    c, proc = child
    dog = Watchdog()
    dog.watching_since = 0.0
    c.last_report = 1000.0
    now = 1000.0 + HEARTBEAT_TIMEOUT + 5

    def drain(ch: Child) -> None:
        ch.last_report = now - 0.5  # read only now: it was sent while the supervisor was busy

    dog.last_watch = now - 1
    dog.check([c], drain, now)
    assert proc.poll() is None


def test_the_process_state_is_named() -> None:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        assert process_state(proc.pid) in ("S (sleeping)", "R (running)")
    finally:
        proc.kill()
        proc.wait()
    assert process_state(proc.pid) == "unknown"
