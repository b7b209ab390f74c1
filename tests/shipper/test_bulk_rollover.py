"""Rollover and shipper restarts: how many lines a restart stores twice when the data stream rolled over meanwhile.

A restarted shipper resumes at the position the local store holds as acknowledged, never before it, so what it
sends again is only what was in flight (stored by Elasticsearch, not yet answered). Without a rollover those get
409; after a rollover, ``create`` checks only the new write index and they are stored a second time. Measured here:
0 when nothing is in flight, and exactly the in-flight bulk otherwise (at most ``bulk_max_size`` documents).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

from testkit.dockerd_driver import FakeLogger, entry
from testkit.plugin import RunningPlugin, wait_until
from tests.es_standin import EsStandin

INDEX = "logs-docker-default"


def kill_shipper(plugin: RunningPlugin) -> None:
    pid = plugin.stats()["shipper"]["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: plugin.stats()["shipper"]["pid"] not in (None, pid), 20, message="a new shipper")


def write(lg: FakeLogger, tag: str, n: int) -> None:
    lg.write(*(entry(b"%s %d" % (tag.encode(), i)) for i in range(n)))


def duplicates(es: EsStandin) -> int:
    return sum(n - 1 for n in Counter(d["message"] for d in es.docs(INDEX)).values())


def acknowledged_all(plugin: RunningPlugin, lines: int) -> bool:
    shipper = plugin.stats()["shipper"]
    backlog = [c["backlog_docs"] for c in shipper.get("per_container", {}).values()] or [
        r.get("shipping", {}).get("backlog_docs", 0) for r in plugin.stats()["readers"]]
    return shipper["in_flight"] == 0 and shipper["shipped_total"] >= lines and not any(backlog)


def test_a_restart_with_nothing_in_flight_stores_nothing_twice_across_a_rollover(plugin: RunningPlugin) -> None:
    with EsStandin() as es:
        lg = plugin.logger(config={"hosts": es.url, "flush_interval": "100ms"})
        assert lg.start() == {"_status": 200}
        write(lg, "before", 500)
        wait_until(lambda: acknowledged_all(plugin, 500), 30, message="500 lines shipped and acknowledged")
        es.rollover(INDEX)
        kill_shipper(plugin)
        write(lg, "after", 100)
        wait_until(lambda: es.count(INDEX) >= 600, 30, message="600 documents")
        assert len(es.backing_indices(INDEX)) == 2
        assert duplicates(es) == 0 and es.count(INDEX) == 600
        lg.stop()


def test_a_restart_with_a_bulk_in_flight_stores_that_bulk_twice_across_a_rollover(plugin: RunningPlugin) -> None:
    with EsStandin() as es:
        lg = plugin.logger(config={"hosts": es.url, "flush_interval": "100ms", "bulk_max_size": "100"})
        assert lg.start() == {"_status": 200}
        write(lg, "before", 300)
        wait_until(lambda: acknowledged_all(plugin, 300), 30, message="300 lines shipped and acknowledged")
        es.delay_next(30.0, path="_bulk")  # stored at once, answered (to a dead shipper) 30 s later
        write(lg, "in flight", 100)
        wait_until(lambda: es.count(INDEX) == 400, 20, message="the in-flight bulk stored")
        in_flight = wait_until(lambda: plugin.stats()["shipper"]["in_flight"], 5, message="the bulk in flight")
        es.rollover(INDEX)
        kill_shipper(plugin)
        wait_until(lambda: es.count(INDEX) >= 500, 30, message="the replay")
        assert in_flight == 100
        assert duplicates(es) == in_flight == 100  # the in-flight bulk, no more (bounded by bulk_max_size)
        before, after = es.backing_indices(INDEX)
        assert {d.backing_index for d in es.stored(INDEX) if d.source["message"].startswith("in flight")} == {
            before, after}
        lg.stop()
