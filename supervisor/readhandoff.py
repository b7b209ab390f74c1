"""ReadLogs without a relay: dockerd's connection is handed to the local store, which writes the frames into it.

The supervisor has parsed and validated the request (api.py). It writes the response's status line and headers
itself, a close-delimited body (``Connection: close``, no length), so that whenever the store stops (done, or
killed mid-read) dockerd's read ends at EOF like any finished response. Then the connection's descriptor goes to the
store with the ``ReadRequest`` (SCM_RIGHTS) and aiohttp's transport is aborted, which closes only our descriptor:
no byte of the body passes through this process.

The write end of a pipe travels with it. The store closes it when the stream ends, or the kernel does when the
store dies; its EOF here ends the read's bookkeeping: the count of reads (bounded by MAX_READS) and the follower
count the container's readers are told (``on_end``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from proto.messages import ReadRequest

log = logging.getLogger("elp.supervisor")

RESPONSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-json-stream\r\nConnection: close\r\n\r\n"
# Each read holds in the local store dockerd's connection, a pipe end and an open file: far below the descriptor
# limit, far above what `docker logs -f` of every container on a busy host needs.
MAX_READS = 4096


class ReadHandoffs:
    """The ReadLogs streams the local store serves now: each one's pipe, watched for EOF, and their counters."""

    def __init__(self, on_end: Callable[[str], Any]) -> None:
        self.on_end = on_end
        self.active: dict[int, str] = {}  # our end of the pipe -> container id
        self.total = 0
        self.refused_total = 0

    def full(self) -> bool:
        """True (and counted, logged once) when MAX_READS streams run: the next one is refused."""
        if len(self.active) < MAX_READS:
            return False
        self.refused_total += 1
        if self.refused_total == 1:
            log.error("%d docker logs streams are open; more are refused until some end (counted in "
                      "read_streams_refused_total)", MAX_READS)
        return True

    def hand_over(self, transport: asyncio.Transport, read: ReadRequest,
                  send: Callable[[ReadRequest, tuple[int, ...]], bool]) -> bool:
        """Write the response head on dockerd's connection and send the connection to the store. False when the
        head could not be written (dockerd left): nothing was sent. Once the head is out the response is the
        store's, also when the store cannot take it (logged, and dockerd's read ends empty)."""
        sock = transport.get_extra_info("socket")
        fd = sock.fileno()
        try:
            written = os.write(fd, RESPONSE_HEAD)
        except OSError:
            written = 0
        if written != len(RESPONSE_HEAD):  # a fresh socket takes 90 bytes at once; a short write is a gone peer
            transport.abort()
            return False
        ours, theirs = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            sent = send(read, (fd, theirs))
        finally:
            os.close(theirs)
            transport.abort()  # closes our descriptor only: the connection lives on in the store
        if not sent:
            os.close(ours)
            log.error("the local store did not take the ReadLogs of container %s; docker logs ends empty",
                      read.container_id[:12])
            self.on_end(read.container_id)
            return True
        self.active[ours] = read.container_id
        self.total += 1
        asyncio.get_running_loop().add_reader(ours, self._ended, ours)
        return True

    def _ended(self, fd: int) -> None:
        """The store closed its end of the pipe (stream over, or store gone): nothing is ever written into it."""
        asyncio.get_running_loop().remove_reader(fd)
        os.close(fd)
        container_id = self.active.pop(fd)
        self.on_end(container_id)
