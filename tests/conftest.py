"""Shared fixtures: the real supervisor in a short temporary folder (started by testkit.plugin), a simulated
reboot, a small disk."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.dockerd_driver import FakeLogger
from testkit.plugin import RunningPlugin, start_plugin
from tests.es_standin import EsStandin


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
def destroying_plugin(short_tmp: Path) -> Iterator[RunningPlugin]:
    """The real plugin with DESTROY_LOGS_ON_STOP on."""
    plugin = start_plugin(short_tmp, env={"DESTROY_LOGS_ON_STOP": "true"})
    try:
        yield plugin
    finally:
        assert plugin.stop() == 0


@pytest.fixture
def es() -> Iterator[EsStandin]:
    """An Elasticsearch stand-in on 127.0.0.1 (tests/es_standin.py)."""
    with EsStandin() as standin:
        yield standin


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
