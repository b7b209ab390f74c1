"""Multiline events through the real supervisor, local store and shipper, and the Elasticsearch stand-in: a shipper
killed in the middle of an event rebuilds it whole, once; a quiet container's open event is sent after its timeout;
filtered lines never arrive and do not hold the acknowledgement."""

from __future__ import annotations

import os
import signal
from collections import Counter
from typing import Any

from testkit.dockerd_driver import entry
from testkit.plugin import RunningPlugin, wait_until
from tests.es_standin import EsStandin

INDEX = "logs-docker-default"
JAVA = r"^[[:space:]]+(at|\.{3})[[:space:]]+\b|^Caused by:"


def messages(es: EsStandin) -> Counter[str]:
    return Counter(d["message"] for d in es.docs(INDEX))


def shipping(plugin: RunningPlugin) -> dict[str, Any]:
    readers = plugin.stats()["readers"]
    return readers[0].get("shipping", {}) if readers else {}


def test_a_shipper_killed_in_the_middle_of_an_event_rebuilds_it_whole_and_once(plugin: RunningPlugin,
                                                                                es: EsStandin) -> None:
    lg = plugin.logger(config={"hosts": es.url, "multiline.pattern": JAVA, "multiline.timeout": "60s"})
    lg.start()
    # "err 1" opens on stderr inside the first trace; the second trace is open when the shipper dies. A restart at
    # "err 1" would send "\tat a(1)" again as a document of its own; one past "Exception 2" would lose its start.
    lg.write(entry(b"Exception 1"), entry(b"err 1", "stderr"), entry(b"\tat a(1)"), entry(b"Exception 2"))
    wait_until(lambda: messages(es) == Counter({"Exception 1\n\tat a(1)": 1}), 20, message="the first trace")
    wait_until(lambda: shipping(plugin).get("backlog_docs") == 0 and shipping(plugin).get("acked") is not None
               and shipping(plugin).get("open_events") == 2, 10, message="the shipper to acknowledge what it can")
    pid = plugin.stats()["shipper"]["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: plugin.stats()["shipper"]["pid"] not in (None, pid), 20, message="a new shipper")
    lg.write(entry(b"err 2", "stderr"), entry(b"\tat a(2)"), entry(b"\t... 3 more"), entry(b"last"))
    lg.stop()  # the container stops: its open events ("err 2", "last") are sent as they are
    expected = Counter({"Exception 1\n\tat a(1)": 1, "err 1": 1, "Exception 2\n\tat a(2)\n\t... 3 more": 1,
                        "err 2": 1, "last": 1})
    wait_until(lambda: sum(messages(es).values()) >= 5, 30, message="every event in Elasticsearch")
    assert messages(es) == expected
    multiline = {d["message"]: d.get("log", {}).get("flags") for d in es.docs(INDEX)}
    assert multiline["Exception 2\n\tat a(2)\n\t... 3 more"] == ["multiline"] and multiline["last"] is None


def test_a_quiet_container_s_open_event_is_sent_after_its_timeout(plugin: RunningPlugin, es: EsStandin) -> None:
    lg = plugin.logger(config={"hosts": es.url, "multiline.pattern": JAVA, "multiline.timeout": "1s"})
    lg.start()
    lg.write(entry(b"Exception"), entry(b"\tat a.b(C.java:1)"))
    # timeout (1 s) + the grace for lines still on their way (3 s) + a housekeeping turn (1 s), with room for load
    wait_until(lambda: messages(es) == Counter({"Exception\n\tat a.b(C.java:1)": 1}), 20,
               message="the trace sent by the timeout")
    wait_until(lambda: shipping(plugin).get("open_events") == 0, 10, message="no event left open")
    lg.stop()


def test_filtered_lines_never_arrive_and_the_acknowledgement_passes_them(plugin: RunningPlugin,
                                                                         es: EsStandin) -> None:
    lg = plugin.logger(config={"hosts": es.url, "exclude_lines": "^DEBUG"})
    lg.start()
    lg.write(*(entry(b"DEBUG %03d" % i if i % 2 else b"INFO %03d" % i) for i in range(100)))
    wait_until(lambda: es.count(INDEX) >= 50, 20, message="the INFO lines")
    wait_until(lambda: shipping(plugin).get("filtered_out_total") == 50 and shipping(plugin).get("backlog_docs") == 0,
               10, message="the DEBUG lines counted as filtered out")
    assert set(messages(es)) == {f"INFO {i:03d}" for i in range(0, 100, 2)}
    lg.stop()
