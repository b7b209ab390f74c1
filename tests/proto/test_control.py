"""The control channel's shared ends (proto/control.py), on a real socketpair."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator

import pytest

from proto.control import ChannelClosed, ControlChannel, receive
from proto.messages import ChildStats, Followers, MessageError, StatsPart, decode

log = logging.getLogger("test.control")


def no_bad_message(exc: MessageError) -> None:
    pytest.fail(f"unexpected bad message: {exc}")


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    yield a, b
    a.close()
    b.close()


def test_a_bad_message_is_handed_over_with_its_descriptors_closed_and_the_next_one_still_comes(
        pair: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = pair
    r, w = os.pipe()
    socket.send_fds(sender, [b"\x92not a message"], [r])
    os.close(r)
    sender.send(Followers(2).encode())
    open_before = len(os.listdir("/proc/self/fd"))
    bad: list[MessageError] = []
    got = list(receive(receiver, bad.append, max_fds=4))
    assert len(bad) == 1
    assert [msg for msg, _ in got] == [Followers(2)]
    assert len(os.listdir("/proc/self/fd")) == open_before, "the descriptor it carried was not left open"
    with pytest.raises(BrokenPipeError):  # no read end is left anywhere
        os.write(w, b"x")
    os.close(w)


def test_descriptors_of_a_good_message_go_to_the_receiver(pair: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = pair
    r, w = os.pipe()
    socket.send_fds(sender, [Followers(1).encode()], [r])
    os.close(r)
    [(msg, fds)] = list(receive(receiver, no_bad_message, max_fds=4))
    assert msg == Followers(1) and len(fds) == 1
    os.write(w, b"x")
    assert os.read(fds[0], 1) == b"x"
    os.close(fds[0])
    os.close(w)


def test_a_closed_channel_raises(pair: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = pair
    sender.send(Followers(0).encode())
    sender.close()
    received = []
    with pytest.raises(ChannelClosed):
        for msg, _ in receive(receiver, no_bad_message):
            received.append(msg)
    assert received == [Followers(0)], "what came before the close is delivered first"


def test_nothing_waiting_ends_without_blocking(pair: tuple[socket.socket, socket.socket]) -> None:
    _, receiver = pair
    assert list(receive(receiver, no_bad_message)) == []


def test_reports_are_numbered_and_carry_the_dropped_count(pair: tuple[socket.socket, socket.socket]) -> None:
    child_end, parent_end = pair
    channel = ControlChannel(child_end, "localstore", log)
    assert channel.report({"records_total": 1}, {"c": {"n": 1}})
    assert channel.report({"records_total": 2}, {"c": {"n": 2}})
    messages = [decode(parent_end.recv(1 << 17)) for _ in range(4)]
    assert [type(m) for m in messages] == [ChildStats, StatsPart, ChildStats, StatsPart]
    head = messages[2]
    assert isinstance(head, ChildStats) and head.counters == {"records_total": 2, "reports_dropped_total": 0}
    parts = [m for m in messages if isinstance(m, StatsPart)]
    assert [p.report for p in parts] == [0, 1]
