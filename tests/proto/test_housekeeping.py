"""proto/housekeeping.py: periodic steps that survive their errors, and reports that never kill their sender."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import pytest

from proto.housekeeping import Periodic, ReportSender

log = logging.getLogger("test.housekeeping")


def test_a_failing_step_is_logged_once_counted_and_the_others_go_on(caplog: pytest.LogCaptureFixture) -> None:
    ran: list[str] = []
    broken = {"on": True}

    def flaky() -> None:
        ran.append("flaky")
        if broken["on"]:
            raise OSError(90, "Message too long")

    tasks = Periodic(log, 1.0)
    tasks.add("sending stats", flaky)
    tasks.add("saving cursors", lambda: ran.append("save"))
    with caplog.at_level(logging.INFO, logger=log.name):
        for turn in range(3):
            tasks.run_due(float(turn))
    assert ran == ["flaky", "save"] * 3, "the step after the failing one ran at every turn"
    assert tasks.errors_total == 3
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "sending stats failed" in errors[0].getMessage() and errors[0].exc_info
    broken["on"] = False
    tasks.run_due(3.0)
    tasks.run_due(4.0)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "sending stats works again after 3 failed attempts"]


def test_a_different_error_is_logged_again(caplog: pytest.LogCaptureFixture) -> None:
    errors = iter([ValueError("a"), ValueError("a"), KeyError("b")])

    def step() -> None:
        raise next(errors)

    tasks = Periodic(log, 1.0)
    tasks.add("step", step)
    with caplog.at_level(logging.ERROR, logger=log.name):
        for turn in range(3):
            tasks.run_due(float(turn))
    assert len(caplog.records) == 2 and tasks.errors_total == 3


def test_steps_keep_their_own_interval() -> None:
    ran: list[tuple[str, float]] = []
    tasks = Periodic(log, 1.0)
    tasks.add("every tick", lambda: ran.append(("tick", now)))
    tasks.add("every 5", lambda: ran.append(("five", now)), 5.0)
    for now in (0.0, 1.0, 2.0, 5.0, 6.0, 10.0):
        tasks.run_due(now)
    assert [t for name, t in ran if name == "five"] == [0.0, 5.0, 10.0]
    assert len([t for name, t in ran if name == "tick"]) == 6


def test_a_report_too_big_for_the_socket_is_counted_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b:
        sender = ReportSender(a, log)
        with caplog.at_level(logging.ERROR, logger=log.name):
            assert not sender.send([b"x" * (1 << 20)])  # EMSGSIZE
            assert not sender.send([b"x" * (1 << 20)])
        assert sender.dropped_total == 2 and len(caplog.records) == 1
        assert sender.send([b"small", b"report"])
        assert b.recv(100) == b"small" and b.recv(100) == b"report"


def test_what_the_socket_cannot_take_waits_and_a_newer_report_replaces_it() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b:
        sender = ReportSender(a, log)
        sent = 0
        while sender.send([b"x" * 60_000]):
            sent += 1
        assert sent > 0 and len(sender.pending) == 1 and sender.dropped_total == 0
        assert not sender.send([b"new", b"report"])  # still no room: the waiting report is replaced and counted
        assert sender.dropped_total == 1 and list(sender.pending) == [b"new", b"report"]
        for _ in range(sent):
            b.recv(1 << 20)
        assert sender.flush() and not sender.pending
        assert b.recv(100) == b"new" and b.recv(100) == b"report"
        b.close()
        assert not sender.send([b"y"]) and sender.closed


def test_in_an_event_loop_the_rest_of_a_report_goes_when_the_socket_has_room() -> None:
    asyncio.run(_rest_of_a_report_goes_when_the_socket_has_room())


async def _rest_of_a_report_goes_when_the_socket_has_room() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b:
        b.setblocking(False)
        report = [bytes([n]) * 60_000 for n in range(10)]  # far more than the socket holds
        sender = ReportSender(a, log)
        assert not sender.send(report)
        got: list[bytes] = []
        loop = asyncio.get_running_loop()
        while len(got) < len(report):
            readable = asyncio.Event()
            loop.add_reader(b.fileno(), readable.set)
            await asyncio.wait_for(readable.wait(), 5)
            loop.remove_reader(b.fileno())
            with contextlib.suppress(BlockingIOError):
                while True:
                    got.append(b.recv(1 << 20))
        assert got == report and sender.dropped_total == 0 and sender.waiting is None
