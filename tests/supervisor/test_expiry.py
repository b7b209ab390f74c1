"""RETAIN_STOPPED_FOR never deletes a running container's files, also right after the local store or the whole
plugin started again: the store judges nothing before the supervisor named every running logger (LoggersSynced).
Before, a (re)started store ran its first expiry before the LoggerStarted of the running loggers arrived, and a
quiet running container looked stopped."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from testkit.dockerd_driver import FakeLogger, entry
from testkit.plugin import RunningPlugin, start_plugin, wait_until

RETAIN = "10m"
# Running containers that never wrote a line. After a store restart they must be more than the control socketpair
# holds LoggerStarted messages at once (about 170 of these): the store's first expiry comes while some are still
# on their way (before, those were lost with EAGAIN, and expired). A restarted plugin re-attaches each with a
# reader (a fork each): fewer there, where the first expiry came before any of them was announced.
QUIET_STORE_RESTART = 300
QUIET_PLUGIN_RESTART = 60


def folder(plugin: RunningPlugin, lg: FakeLogger) -> Path:
    return plugin.data_dir / "containers" / lg.container_id


def age(path: Path, seconds: float) -> None:
    """The container was quiet for ``seconds``: every file in its folder last changed then."""
    then = time.time() - seconds
    for item in path.iterdir():
        os.utime(item, (then, then))


def store_pid(plugin: RunningPlugin) -> int | None:
    pid = plugin.stats()["localstore"]["pid"]
    return int(pid) if pid else None


def start_quiet(plugin: RunningPlugin, n: int) -> FakeLogger:
    """A running container that never wrote a line (FakeLogger.start without its Capabilities call)."""
    lg = plugin.logger(name=f"quiet-{n}")
    os.mkfifo(lg.path, 0o700)
    lg.fd = os.open(lg.path, os.O_RDWR)
    assert not plugin.client.call("/LogDriver.StartLogging", {"File": str(lg.path), "Info": lg.info}).get("Err")
    return lg


def restart_store(plugin: RunningPlugin) -> RunningPlugin:
    old = wait_until(lambda: store_pid(plugin), message="the local store")
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: store_pid(plugin) not in (None, old), 20, message="a new local store")
    return plugin


def restart_plugin(plugin: RunningPlugin) -> RunningPlugin:
    """dockerd restarts a dead plugin on the same folders; the FIFOs stay open on the containers' side."""
    os.killpg(plugin.proc.pid, signal.SIGKILL)
    plugin.proc.wait(10)
    return start_plugin(plugin.data_dir.parent, env={"RETAIN_STOPPED_FOR": RETAIN})


@pytest.mark.parametrize(("restart", "quiet_count"), [(restart_store, QUIET_STORE_RESTART),
                                                      (restart_plugin, QUIET_PLUGIN_RESTART)],
                         ids=["local store", "whole plugin"])
def test_a_quiet_running_container_survives_expiry_after_a_restart(short_tmp: Path, restart: object,
                                                                   quiet_count: int) -> None:
    plugin = start_plugin(short_tmp, env={"RETAIN_STOPPED_FOR": RETAIN})
    quiet: list[FakeLogger] = []
    try:
        running, stopped = plugin.logger(name="running"), plugin.logger(name="stopped")
        for lg in (running, stopped):
            assert not lg.start().get("Err")
            lg.write(entry(b"first line"))
        quiet = [start_quiet(plugin, n) for n in range(quiet_count)]
        wait_until(lambda: plugin.stats()["localstore"]["records_total"] == 2, message="both lines stored")
        assert not stopped.stop().get("Err")
        wait_until(lambda: stopped.container_id not in {r["container_id"] for r in plugin.stats()["readers"]},
                   message="the stopped container's reader to end")
        wait_until(lambda: all(folder(plugin, lg).exists() for lg in quiet), message="the quiet containers' info")
        for lg in (running, stopped, *quiet):
            age(folder(plugin, lg), 3600)  # all quiet for an hour, far longer than RETAIN_STOPPED_FOR
        assert callable(restart)
        plugin = restart(plugin)
        # The new store's expiry ran: it deleted the really stopped container.
        wait_until(lambda: not folder(plugin, stopped).exists(), 20, message="the stopped container to expire")
        assert folder(plugin, running).exists(), "the running container's files were deleted"
        deleted = [lg.name for lg in quiet if not folder(plugin, lg).exists()]
        assert not deleted, f"{len(deleted)} running containers' files deleted, e.g. {deleted[:3]}"
        wait_until(lambda: plugin.stats()["localstore"]["expired_total"] >= 1, message="the expiry counted")
        # Exactly one: a running container deleted and then given a new info.json by its late LoggerStarted
        # would still have a folder.
        assert plugin.stats()["localstore"]["expired_total"] == 1
        assert plugin.stats()["localstore"]["control_dropped_total"] == 0
        running.write(entry(b"second line"))
        wait_until(lambda: [e.line for e in plugin.client.read_logs(running.info, timeout=10)]
                   == [b"first line\n", b"second line\n"], message="both lines of the running container")
        running.stop()
    finally:
        plugin.stop()
        for lg in quiet:
            lg.close()
