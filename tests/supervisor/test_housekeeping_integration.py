"""The real plugin's housekeeping keeps going with many containers: a report of 2,000 containers' figures was one
datagram too big for the control socketpair (EMSGSIZE), which killed the local store's reporting loop, and with it
cursor saves, DESTROY_LOGS_ON_STOP deadlines and expiry."""

from __future__ import annotations

import os
from typing import Any

from testkit.dockerd_driver import FakeLogger, entry
from testkit.plugin import RunningPlugin, wait_until

CONTAINERS = 2000  # 1,700 quiet containers already made a report as big as the socketpair's 208 KiB buffer


def start_quickly(plugin: RunningPlugin, n: int) -> FakeLogger:
    """FakeLogger.start without its Capabilities call: the test starts many."""
    lg = plugin.logger(name=f"quiet-{n}")
    os.mkfifo(lg.path, 0o700)
    lg.fd = os.open(lg.path, os.O_RDWR)
    reply = plugin.client.call("/LogDriver.StartLogging", {"File": str(lg.path), "Info": lg.info})
    assert not reply.get("Err"), reply
    return lg


def store_figures(plugin: RunningPlugin) -> dict[str, dict[str, Any]]:
    return {r["container_id"]: r["store"] for r in plugin.stats()["readers"] if "store" in r}


def test_the_store_reports_every_container_and_goes_on_reporting(plugin: RunningPlugin) -> None:
    loggers = [start_quickly(plugin, n) for n in range(CONTAINERS)]
    try:
        wait_until(lambda: len(store_figures(plugin)) == CONTAINERS, 60, interval=0.5,
                   message=f"the store's figures of all {CONTAINERS} containers")
        busy = loggers[-1]
        busy.write(*(entry(b"line %d" % i) for i in range(10)))
        wait_until(lambda: store_figures(plugin)[busy.container_id]["records_total"] == 10, 30, interval=0.5,
                   message="its reports to go on")
        assert "reporting stats failed" not in plugin.log_text()
    finally:
        for lg in loggers:
            lg.close()
