"""SIGKILL of each process kind under load: nothing lost, nothing twice (except what a killed reader had read)."""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from collections.abc import Callable

from testkit.dockerd_driver import FakeLogger, entry
from testkit.plugin import RunningPlugin, wait_until
from tests.es_standin import EsStandin

LINES = 6000


def write_in_background(lg: FakeLogger) -> threading.Thread:
    def write() -> None:
        for chunk in range(0, LINES, 100):
            lg.write(*(entry(b"seq %06d" % i) for i in range(chunk, chunk + 100)))

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def kill_repeatedly(plugin: RunningPlugin, pid_of: Callable[[], int | None], times: int,
                    writer: threading.Thread) -> None:
    for _ in range(times):
        pid = wait_until(pid_of, message="the process to run")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda old=pid: pid_of() not in (None, old), message="its replacement")
    writer.join(60)


def stored_lines(plugin: RunningPlugin, lg: FakeLogger) -> list[bytes]:
    return [e.line for e in plugin.client.read_logs(lg.info, timeout=30)]


def test_killing_the_local_store_loses_and_duplicates_nothing(plugin: RunningPlugin) -> None:
    with EsStandin() as es:
        lg = plugin.logger(config={"hosts": es.url, "flush_interval": "100ms"})
        lg.start()
        writer = write_in_background(lg)
        kill_repeatedly(plugin, lambda: plugin.stats()["localstore"]["pid"], 3, writer)
        lg.stop()
        expected = [b"seq %06d\n" % i for i in range(LINES)]
        wait_until(lambda: stored_lines(plugin, lg) == expected, 30, message="every line stored once, in order")
        wait_until(lambda: len(es.docs("logs-docker-default")) >= LINES, 60, message="every line shipped")
        counts = Counter(d["message"] for d in es.docs("logs-docker-default"))
        assert len(counts) == LINES and max(counts.values()) == 1
        assert plugin.stats()["localstore"]["restarts"] == 3


def test_killing_the_shipper_loses_and_duplicates_nothing(plugin: RunningPlugin) -> None:
    with EsStandin() as es:
        lg = plugin.logger(config={"hosts": es.url, "flush_interval": "100ms"})
        lg.start()
        writer = write_in_background(lg)
        kill_repeatedly(plugin, lambda: plugin.stats()["shipper"]["pid"], 3, writer)
        lg.stop()
        wait_until(lambda: len(es.docs("logs-docker-default")) >= LINES, 60, message="every line shipped")
        counts = Counter(d["message"] for d in es.docs("logs-docker-default"))
        assert set(counts) == {f"seq {i:06d}" for i in range(LINES)} and max(counts.values()) == 1


def test_killing_a_reader_loses_at_most_what_it_held(plugin: RunningPlugin) -> None:
    lg = plugin.logger()
    lg.start()

    def reader_pid() -> int | None:
        readers = plugin.stats()["readers"]
        return readers[0]["pid"] if readers and readers[0]["state"] == "running" else None

    def write(first: int, count: int) -> None:
        lg.write(*(entry(b"seq %06d" % i) for i in range(first, first + count)))

    def stored() -> int:
        return int(plugin.stats()["localstore"].get("records_total", 0))

    write(0, 2000)
    wait_until(lambda: stored() >= 2000, message="the first lines stored")
    idle = wait_until(reader_pid, message="a reader")
    os.kill(idle, signal.SIGKILL)  # it holds nothing: nothing may be lost
    wait_until(lambda: reader_pid() not in (None, idle), message="a new reader")
    write(2000, 2000)
    busy = wait_until(reader_pid, message="the reader")
    os.kill(busy, signal.SIGKILL)  # in the middle of a burst: what it held is lost, and counted
    wait_until(lambda: reader_pid() not in (None, busy), message="another reader")
    write(4000, 2000)
    lg.stop()
    wait_until(lambda: not plugin.stats()["readers"], message="the reader to finish")
    numbers = [int(line[4:10]) for line in stored_lines(plugin, lg)]
    assert numbers == sorted(set(numbers)), "in order and never twice"
    assert numbers[:2000] == list(range(2000)), "the idle reader's death cost nothing"
    assert numbers[-2000:] == list(range(4000, 6000)), "the respawned reader got everything after"
    lost = 6000 - len(numbers)
    assert lost <= 2000
    assert "lines it held are lost" in plugin.log_text()
