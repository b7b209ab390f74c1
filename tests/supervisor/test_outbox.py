"""supervisor/outbox.py: control messages to a service arrive all and in order however full its socket is."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

import pytest

from supervisor import outbox
from supervisor.outbox import Outbox


def test_messages_beyond_what_the_socket_holds_wait_and_arrive_in_order_with_their_descriptors() -> None:
    async def main() -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        theirs.setblocking(False)
        r, w = os.pipe()
        with ours, theirs:
            box = Outbox(ours, "localstore")
            messages = [b"%04d" % n + b"x" * 2000 for n in range(300)]  # about 50 fit the socket
            for n, data in enumerate(messages):
                assert box.send(data, (r,) if n == 299 else (), f"message {n}")
            os.close(r)  # the caller closes its descriptor at once; the queued copy stays open
            assert box.queue and box.writing
            got: list[bytes] = []
            fds: list[int] = []
            loop = asyncio.get_running_loop()
            while len(got) < len(messages):
                readable = asyncio.Event()
                loop.add_reader(theirs.fileno(), readable.set)
                await asyncio.wait_for(readable.wait(), 5)
                loop.remove_reader(theirs.fileno())
                with contextlib.suppress(BlockingIOError):
                    while True:
                        data, more, _, _ = socket.recv_fds(theirs, 1 << 16, 1)
                        got.append(data)
                        fds.extend(more)
            assert got == messages and not box.queue and box.queued_bytes == 0 and not box.writing
            [fd] = fds
            os.write(w, b"ok")
            assert os.read(fd, 2) == b"ok"  # the descriptor that travelled with the last message works
            os.close(fd)
            os.close(w)

    asyncio.run(main())


def test_the_queue_is_bounded_and_a_refused_message_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        with ours, theirs:
            box = Outbox(ours, "localstore")
            sent = 0
            while box.send(b"x" * 60_000, (), "filler"):
                sent += 1
            assert box.dropped_total == 1 and box.queued_bytes <= outbox.OUTBOX_MAX_BYTES
            box.close()
            assert not box.queue and not box.writing

    monkeypatch.setattr(outbox, "OUTBOX_MAX_BYTES", 1 << 20)
    asyncio.run(main())
