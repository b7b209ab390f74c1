"""Shared fixtures: the real supervisor in its own session, and a deadline-based wait."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.dockerd_driver import FakeLogger, PluginClient

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02,
               message: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


@dataclass
class RunningPlugin:
    """The real supervisor process, started as ``python -m supervisor serve``."""

    proc: subprocess.Popen[bytes]
    socket_path: Path
    data_dir: Path
    fifo_dir: Path
    log_path: Path
    client: PluginClient

    def logger(self, **kwargs: Any) -> FakeLogger:
        return FakeLogger(self.client, self.fifo_dir, **kwargs)

    def stats(self) -> dict[str, Any]:
        status, body = self.client.request("/stats", None, method="GET")
        assert status == 200
        data: dict[str, Any] = json.loads(body)
        return data

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def start_plugin(base: Path, env: dict[str, str] | None = None) -> RunningPlugin:
    socket_path, data_dir, fifo_dir = base / "p.sock", base / "data", base / "fifos"
    fifo_dir.mkdir(parents=True, exist_ok=True)
    log_path = base / "plugin.log"
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor", "serve", "--socket", str(socket_path),
             "--data-dir", str(data_dir), "--fifo-dir", str(fifo_dir)],
            cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "LOG_LEVEL": "debug", **(env or {})},
        )
    plugin = RunningPlugin(proc, socket_path, data_dir, fifo_dir, log_path, PluginClient(socket_path))

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"plugin exited with {proc.returncode}:\n{plugin.log_text()}")
        if not socket_path.exists():
            return False
        try:
            stats = plugin.stats()
        except OSError:
            return False
        return bool(stats.get("localstore", {}).get("pid")) and "records_total" in stats["localstore"]

    wait_until(ready, 20, message="the plugin to listen and its local store to report")
    return plugin


def reader_gone(plugin: RunningPlugin, logger: FakeLogger) -> bool:
    """Whether the reader of ``logger``'s FIFO has left the supervisor's stats (it reached EOF and exited)."""
    return all(r["fifo"] != logger.path.name for r in plugin.stats()["readers"])


def simulate_reboot(data_dir: Path) -> None:
    """What a power cut leaves besides torn files: the running marker of a local store from another boot of the
    machine (the marker holds the kernel's boot id; a store that only crashed left this boot's)."""
    marker = data_dir / "localstore.running"
    assert marker.exists(), "no local store ran on this data dir"
    marker.write_bytes(b"00000000-0000-4000-8000-000000000000")


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temporary folder: unix socket and ipc paths must stay under ~100 bytes."""
    path = Path(tempfile.mkdtemp(prefix="elp-", dir="/tmp"))
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


@pytest.fixture
def plugin(short_tmp: Path) -> Iterator[RunningPlugin]:
    running = start_plugin(short_tmp)
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            running.proc.send_signal(signal.SIGTERM)
            try:
                running.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(running.proc.pid, signal.SIGKILL)
                running.proc.wait()
        else:
            # make sure no child survives a crashed supervisor
            try:
                os.killpg(running.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A base folder whose ``data`` is a 2 MiB tmpfs."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    base = Path(tempfile.mkdtemp(prefix="elp-", dir="/tmp"))
    data = base / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(data)], check=True)
    try:
        yield base
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)
        subprocess.run(["rm", "-rf", str(base)], check=False)
