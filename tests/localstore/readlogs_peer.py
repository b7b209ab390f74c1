"""A ReadLogsStream run against dockerd's side of a real socketpair (Peer), for the local store's tests."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

from localstore.readlogs import ReadLogsStream
from localstore.store import LocalStore
from proto.entry_pb2 import LogEntry
from proto.framing import FrameSplitter
from proto.messages import ReadRequest

DEADLINE = 5.0


class Peer:
    """dockerd's side of the socketpair: collects frames."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.task: asyncio.Task[None] | None = None
        self.stream: ReadLogsStream | None = None
        self.splitter = FrameSplitter()
        self.entries: list[LogEntry] = []
        self.raw = bytearray()
        self.eof = False

    async def _recv(self) -> None:
        chunk = await asyncio.get_running_loop().sock_recv(self.sock, 65536)
        if not chunk:
            self.eof = True
            return
        self.raw += chunk
        self.entries += [LogEntry.FromString(b) for b in self.splitter.feed(chunk)]

    def take_available(self) -> list[LogEntry]:
        """Read, without waiting, whatever the stream has sent so far; returns every entry received."""
        while not self.eof:
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                break
            if not chunk:
                self.eof = True
                break
            self.raw += chunk
            self.entries += [LogEntry.FromString(b) for b in self.splitter.feed(chunk)]
        return self.entries

    async def until_count(self, n: int) -> list[LogEntry]:
        async def loop() -> None:
            while len(self.entries) < n and not self.eof:
                await self._recv()

        await asyncio.wait_for(loop(), DEADLINE)
        if len(self.entries) < n and self.task is not None and self.task.done() and self.task.exception():
            raise self.task.exception()  # type: ignore[misc]
        assert len(self.entries) >= n, f"stream ended after {len(self.entries)} entries, expected {n}"
        return self.entries

    async def until_eof(self) -> list[LogEntry]:
        async def loop() -> None:
            while not self.eof:
                await self._recv()

        await asyncio.wait_for(loop(), DEADLINE)
        assert self.splitter.pending == 0, "stream ended inside a frame"
        return self.entries


Scenario = Callable[[LocalStore, "asyncio.Task[None]", Peer], Awaitable[None]]


def serve(store: LocalStore, req: ReadRequest, scenario: Scenario | None = None) -> list[LogEntry]:
    """Run one ReadLogsStream; ``scenario`` acts while it runs. Returns every entry the peer got."""

    async def main() -> list[LogEntry]:
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        theirs.setblocking(False)
        peer = Peer(theirs)
        try:
            peer.stream = ReadLogsStream(store, req, ours)
            task = asyncio.create_task(peer.stream.run())
            peer.task = task
            # When the stream ends (however), close its end like localstore.main does: the peer sees EOF.
            task.add_done_callback(lambda _: ours.close())

            async def finish() -> None:
                await asyncio.wait_for(task, DEADLINE)

            if scenario is None:
                await asyncio.gather(finish(), peer.until_eof())
                return peer.entries
            await scenario(store, task, peer)
            await finish()
            if theirs.fileno() >= 0:
                await peer.until_eof()
            return peer.entries
        finally:
            ours.close()
            theirs.close()

    try:
        return asyncio.run(main())
    finally:
        store.close()


async def stream_started(peer: Peer) -> None:
    """Wait until the stream has sent its history and waits: later appends are then live lines."""
    assert peer.stream is not None
    await asyncio.wait_for(peer.stream.waiting.wait(), DEADLINE)
