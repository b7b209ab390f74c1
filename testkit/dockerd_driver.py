"""A test driver that talks to the plugin exactly as dockerd does.

It makes the FIFO and holds it read-write (as dockerd does, so a reader never sees EPIPE), POSTs StartLogging
with an ``Info`` object shaped like dockerd's, writes ``[length][LogEntry]`` frames, POSTs StopLogging, closes
its end, and reads ``/LogDriver.ReadLogs`` streams back into ``LogEntry`` objects.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proto.entry_pb2 import LogEntry
from proto.framing import encode_frame
from supervisor.statscli import UnixHTTPConnection

ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass
class PluginClient:
    socket_path: Path
    timeout: float = 10.0

    def request(self, path: str, body: bytes | None, method: str = "POST") -> tuple[int, bytes]:
        conn = UnixHTTPConnection(self.socket_path, self.timeout)
        try:
            # dockerd sends no Content-Type and ends the JSON body with a newline.
            conn.request(method, path, body=body or b"",
                         headers={"Accept": "application/vnd.docker.plugins.v1.2+json"})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def call(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        status, data = self.request(path, json.dumps(body).encode() + b"\n" if body is not None else None)
        reply: dict[str, Any] = json.loads(data)
        reply["_status"] = status
        return reply

    def read_logs(self, info: dict[str, Any], *, tail: int = -1, follow: bool = False,
                  since: str = ZERO_TIME, until: str = ZERO_TIME, timeout: float | None = None) -> Iterator[LogEntry]:
        """Stream ReadLogs; yields entries until the plugin ends the response."""
        conn = UnixHTTPConnection(self.socket_path, timeout or self.timeout)
        body = {"Info": info, "Config": {"Since": since, "Until": until, "Tail": tail, "Follow": follow}}
        try:
            conn.request("POST", "/LogDriver.ReadLogs", body=json.dumps(body).encode() + b"\n")
            resp = conn.getresponse()
            if resp.status != 200:
                raise AssertionError(f"ReadLogs answered {resp.status}: {resp.read()!r}")
            while True:
                head = _read_exact(resp, 4)
                if head is None:
                    return
                (n,) = struct.unpack(">I", head)
                body_bytes = _read_exact(resp, n)
                if body_bytes is None:
                    raise AssertionError("ReadLogs stream ended inside a frame")
                yield LogEntry.FromString(body_bytes)
        finally:
            conn.close()


def _read_exact(resp: http.client.HTTPResponse, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = resp.read(n - len(data))
        if not chunk:
            return data or None
        data += chunk
    return data


def new_container_id() -> str:
    return secrets.token_hex(32)


def make_info(container_id: str, name: str = "web-1", config: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "Config": config or {},
        "ContainerID": container_id,
        "ContainerName": "/" + name,
        "ContainerEntrypoint": "/bin/sh",
        "ContainerArgs": ["-c", "echo hi"],
        "ContainerImageID": "sha256:" + "ab" * 32,
        "ContainerImageName": "test/busybox:latest",
        "ContainerCreated": "2024-05-01T10:20:30.123456789Z",
        "ContainerEnv": ["PATH=/bin"],
        "ContainerLabels": {"com.example.team": "web"},
        "LogPath": "",
        "DaemonName": "docker",
    }


def entry(line: bytes, source: str = "stdout", time_nano: int = 0, partial_id: str = "",
          ordinal: int = 0, last: bool = False) -> LogEntry:
    e = LogEntry(source=source, time_nano=time_nano or _now_ns(), line=line)
    if partial_id:
        e.partial = True
        e.partial_log_metadata.id = partial_id
        e.partial_log_metadata.ordinal = ordinal
        e.partial_log_metadata.last = last
    return e


MAX_LINE = 16 * 1024  # dockerd splits longer lines into partial entries of this size


def split_line(line: bytes, ts: int) -> list[LogEntry]:
    """What dockerd sends for a line over 16 KiB: partial chunks sharing an id, the last one marked."""
    pid = secrets.token_hex(32)
    parts = [line[i : i + MAX_LINE] for i in range(0, len(line), MAX_LINE)]
    return [entry(p, time_nano=ts, partial_id=pid, ordinal=i + 1, last=i == len(parts) - 1)
            for i, p in enumerate(parts)]


def _now_ns() -> int:
    import time

    return time.time_ns()


@dataclass
class FakeLogger:
    """One dockerd logger instance: a FIFO, its Info, and the write end dockerd holds."""

    client: PluginClient
    fifo_dir: Path
    container_id: str = field(default_factory=new_container_id)
    name: str = "web-1"
    config: dict[str, str] = field(default_factory=dict)
    path: Path = field(init=False)
    fd: int = -1

    def __post_init__(self) -> None:
        self.path = self.fifo_dir / secrets.token_hex(32)

    @property
    def info(self) -> dict[str, Any]:
        return make_info(self.container_id, self.name, self.config)

    def start(self) -> dict[str, Any]:
        assert self.client.call("/LogDriver.Capabilities") == {"Cap": {"ReadLogs": True}, "_status": 200}
        os.mkfifo(self.path, 0o700)
        self.fd = os.open(self.path, os.O_RDWR)
        reply = self.client.call("/LogDriver.StartLogging", {"File": str(self.path), "Info": self.info})
        if reply.get("Err"):
            self.close()
        return reply

    def write(self, *entries: LogEntry) -> None:
        data = b"".join(encode_frame(e) for e in entries)
        self.write_raw(data)

    def write_raw(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def stop(self) -> dict[str, Any]:
        """StopLogging, then close the write end and remove the FIFO, in dockerd's order."""
        reply = self.client.call("/LogDriver.StopLogging", {"File": str(self.path)})
        self.close()
        return reply

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.path.unlink(missing_ok=True)


def numbered(i: int) -> bytes:
    return b"line %07d" % i


@dataclass
class PacedWriter:
    """A container writing ``line(i)`` for i = 0, 1, ... at ``rate`` lines/s, ``chunk`` lines a write, in a thread
    until ``finish()``; ``written`` counts what went into the FIFO."""

    logger: FakeLogger
    rate: float
    line: Callable[[int], bytes] = numbered
    chunk: int = 20
    written: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        began = time.monotonic()
        while not self.stop.is_set():
            self.logger.write(*(entry(self.line(i)) for i in range(self.written, self.written + self.chunk)))
            self.written += self.chunk
            # Pacing the load, not synchronisation: the next chunk is due when the rate says so.
            self.stop.wait(max(0.0, began + self.written / self.rate - time.monotonic()))

    def finish(self) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(30)
        assert not self.thread.is_alive(), "a writer blocked: the FIFO was not drained"
