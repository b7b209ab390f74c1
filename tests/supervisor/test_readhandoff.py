"""ReadLogs handed to the local store (supervisor/readhandoff.py): no byte of the body passes the supervisor, the end
of a stream is noticed however it ends, and the number of streams is bounded and counted."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from proto.messages import ReadRequest
from supervisor import readhandoff
from supervisor.readhandoff import RESPONSE_HEAD, ReadHandoffs
from testkit.dockerd_driver import FakeLogger, entry
from testkit.plugin import RunningPlugin, wait_until
from workers.main import FOLLOW_WAIT, QUIET_WAIT


def stored(plugin: RunningPlugin, n: int) -> None:
    wait_until(lambda: plugin.stats()["localstore"]["records_total"] >= n, message=f"{n} records stored")


def follow_in_background(plugin: RunningPlugin, lg: FakeLogger) -> tuple[list[bytes], list[BaseException],
                                                                          threading.Thread]:
    got: list[bytes] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            got.extend(e.line for e in plugin.client.read_logs(lg.info, follow=True, timeout=30))
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return got, errors, thread


@contextmanager
def stopped(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_follower_gets_new_lines_while_the_supervisor_is_stopped(plugin: RunningPlugin) -> None:
    """The local store writes into dockerd's connection itself: a relay in the supervisor would pass nothing."""
    lg = plugin.logger()
    lg.start()
    lg.write(entry(b"before"))
    stored(plugin, 1)
    got, errors, follower = follow_in_background(plugin, lg)
    wait_until(lambda: got == [b"before\n"], message="the history")
    with stopped(plugin.proc.pid):
        lg.write(entry(b"while the supervisor sleeps"))
        wait_until(lambda: len(got) == 2, 10, message="the live line, past a stopped supervisor")
    lg.stop()
    follower.join(10)
    assert not follower.is_alive() and not errors
    assert got == [b"before\n", b"while the supervisor sleeps\n"]


def window_ms(plugin: RunningPlugin, lg: FakeLogger) -> object:
    readers = [r for r in plugin.stats()["readers"] if r["container_id"] == lg.container_id]
    return readers[0].get("batch_window_ms") if readers else None


def test_a_follower_that_leaves_is_no_longer_counted(plugin: RunningPlugin) -> None:
    """The supervisor never sees the stream's bytes; the store's end of the pipe tells it the stream ended."""
    lg = plugin.logger()
    lg.start()
    lg.write(entry(b"one"))
    wait_until(lambda: window_ms(plugin, lg) == round(QUIET_WAIT * 1000), message="a quiet reader")
    stream = plugin.client.read_logs(lg.info, follow=True, timeout=30)
    assert next(stream).line == b"one\n"
    assert plugin.stats()["supervisor"]["read_streams"] == 1
    wait_until(lambda: window_ms(plugin, lg) == round(FOLLOW_WAIT * 1000), message="the reader told of the follower")
    stream.close()  # docker logs -f interrupted: dockerd closes the connection
    wait_until(lambda: plugin.stats()["supervisor"]["read_streams"] == 0, message="the stream's end noticed")
    wait_until(lambda: window_ms(plugin, lg) == round(QUIET_WAIT * 1000), message="the reader told it is alone")
    assert plugin.stats()["supervisor"]["read_streams_total"] == 1
    lg.stop()


def test_a_local_store_killed_mid_stream_ends_the_read_cleanly(plugin: RunningPlugin) -> None:
    lg = plugin.logger()
    lg.start()
    lg.write(*(entry(b"line %d" % i) for i in range(100)))
    stored(plugin, 100)
    got, errors, follower = follow_in_background(plugin, lg)
    wait_until(lambda: len(got) == 100, message="the history")
    os.kill(plugin.stats()["localstore"]["pid"], signal.SIGKILL)
    follower.join(10)
    # A whole response: the body ends at EOF after the last whole frame (the read helper fails inside a frame).
    assert not follower.is_alive() and not errors
    assert got == [b"line %d\n" % i for i in range(100)]
    wait_until(lambda: plugin.stats()["supervisor"]["read_streams"] == 0, message="the stream's end noticed")
    wait_until(lambda: plugin.stats()["localstore"]["restarts"] == 1, message="the store respawned")
    wait_until(lambda: len(list(plugin.client.read_logs(lg.info, tail=3))) == 3, message="reads served again")
    lg.stop()


# --- the bound, in process: a real connection's transport, the store's side a real unix socket -------------------


def test_reads_beyond_the_bound_are_refused_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readhandoff, "MAX_READS", 1)
    ended: list[str] = []
    read = ReadRequest("a" * 64, 0, 0, 100, False, [], [])
    store_side, supervisor_side = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    dockerd, plugin_side = socket.socketpair()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ended_event = asyncio.Event()
        handoffs = ReadHandoffs(lambda container_id: (ended.append(container_id), ended_event.set()))
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, plugin_side)
        dockerd.setblocking(False)

        async def received() -> bytes:
            return await asyncio.wait_for(loop.sock_recv(dockerd, 4096), 5)

        def send(msg: ReadRequest, fds: tuple[int, ...]) -> bool:
            socket.send_fds(supervisor_side, [msg.encode()], list(fds))
            return True

        assert not handoffs.full()
        assert handoffs.hand_over(transport, read, send)
        _, fds, _, _ = socket.recv_fds(store_side, 1 << 16, 2)
        connection, done = socket.socket(fileno=fds[0]), fds[1]
        assert await received() == RESPONSE_HEAD
        connection.sendall(b"the store's frames")
        assert await received() == b"the store's frames"
        assert handoffs.full() and handoffs.full()
        assert handoffs.refused_total == 2 and handoffs.total == 1, "refused beyond the bound, and counted"
        connection.close()  # the supervisor's own descriptor is gone: dockerd sees the end
        assert await received() == b""
        os.close(done)
        await asyncio.wait_for(ended_event.wait(), 5)
        assert ended == [read.container_id] and not handoffs.active and not handoffs.full()

    try:
        asyncio.run(main())
    finally:
        for s in (store_side, supervisor_side, dockerd, plugin_side):
            s.close()


def test_a_store_that_cannot_take_the_read_ends_it_empty() -> None:
    ended: list[str] = []
    handoffs = ReadHandoffs(ended.append)
    dockerd, plugin_side = socket.socketpair()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, plugin_side)
        assert handoffs.hand_over(transport, ReadRequest("b" * 64, 0, 0, -1, False, [], []), lambda m, f: False)
        dockerd.setblocking(False)
        assert await asyncio.wait_for(loop.sock_recv(dockerd, 4096), 5) == RESPONSE_HEAD
        assert await asyncio.wait_for(loop.sock_recv(dockerd, 4096), 5) == b"", "a whole, empty response"

    try:
        asyncio.run(main())
        assert ended == ["b" * 64] and not handoffs.active
    finally:
        dockerd.close()
        plugin_side.close()
