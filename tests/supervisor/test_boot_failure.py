"""A child that cannot start leaves with ExitCode.BOOT_FAILED, said so in the log, and is retried with back-off until
the cause is gone (supervisor/spawn.py: run_child; the decision not to halt is in arbiter.py: reap_child)."""

from __future__ import annotations

import os
import shutil
import signal

from testkit.dockerd_driver import entry
from testkit.plugin import RunningPlugin, wait_until


def test_a_local_store_that_cannot_bind_boot_fails_and_is_retried_until_it_can(plugin: RunningPlugin) -> None:
    endpoint = plugin.data_dir / "ipc" / "localstore"
    old_pid = plugin.stats()["localstore"]["pid"]
    # The running store keeps its bound socket; its successor finds a folder in the way and cannot bind.
    endpoint.unlink()
    endpoint.mkdir()
    (endpoint / "in-the-way").write_bytes(b"")
    os.kill(old_pid, signal.SIGKILL)
    wait_until(lambda: plugin.log_text().count("could not start (boot failed") >= 2, 20,
               message="the store's successors to fail at boot, twice")
    log_text = plugin.log_text()
    assert "localstore could not start" in log_text, "the cause is logged in the child"
    assert plugin.stats()["localstore"]["restarts"] >= 2
    shutil.rmtree(endpoint)

    def running_again() -> bool:
        store = plugin.stats()["localstore"]
        return store["pid"] not in (None, old_pid) and "records_total" in store

    wait_until(running_again, 30, message="a store started once the way was clear")
    lg = plugin.logger()
    lg.start()
    lg.write(entry(b"after the boot failures"))
    lg.stop()
    wait_until(lambda: [e.line for e in plugin.client.read_logs(lg.info, timeout=10)] == [b"after the boot failures\n"],
               20, message="the line stored by the new store")
