"""R12: state files damaged at start-up, and a power cut, under running containers that ship.

The plugin (the real supervisor and a fake dockerd) is SIGKILLed as a whole, as by a power cut, with loggers
running; what is on disk is then damaged the way a crash or a power cut leaves it, and the plugin is started again
on the same data dir. The containers log on. Every line written must be in Elasticsearch exactly once, the
running loggers must be re-attached (a container in blocking mode would hang otherwise), and every damaged file
must be reported once.

* damaged state files: a ``loggers/`` record cut short and another emptied, ``state.json`` cut short and of the
  wrong type, ``seq-floor`` empty, ``agent-id`` garbage, a ``shipper/`` config cut short, a half-written ``.tmp``;
* a power cut: every state file is written through fsync (proto/statefile.py) and survives (the ``loggers/``
  records are not fsynced: a real power cut also ends their FIFOs' writer, which the fake dockerd outlives here,
  so they are kept whole to let it write on); the container files
  are not synced, so each loses its tail (cut in the middle of a record) although the shipper had sent those
  lines: the lines logged after the restart must not take their places, and so their ids.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

from testkit.dockerd_driver import FakeLogger, entry
from testkit.plugin import RunningPlugin, start_plugin, wait_until
from tests.conftest import simulate_reboot
from tests.es_standin import EsStandin
from tests.reliability.conftest import FigureTable, scale

INDEX = "logs-docker-default"
LINES = scale(300, 3000)  # per container and run



def power_cut(plugin: RunningPlugin) -> None:
    """Every process of the plugin dies at once, nothing flushed or closed."""
    os.killpg(plugin.proc.pid, signal.SIGKILL)
    plugin.proc.wait(10)


def write(loggers: list[FakeLogger], run: int) -> None:
    for k, lg in enumerate(loggers):
        lg.write(*(entry(b"c%d run%d %05d" % (k, run, i)) for i in range(LINES)))


def expected(containers: int, runs: int) -> set[str]:
    return {f"c{k} run{run} {i:05d}" for k in range(containers) for run in range(runs) for i in range(LINES)}


def settle(es: EsStandin, want: int) -> None:
    """Every wanted line in Elasticsearch, and no bulk request still open (a late duplicate would show)."""
    wait_until(lambda: es.count(INDEX) >= want and all(r.status is not None for r in es.bulk_requests), 60,
               message=f"{want} documents")


def outcome(es: EsStandin, want: set[str]) -> tuple[int, int]:
    counts = Counter(d["message"] for d in es.docs(INDEX))
    return len(want - set(counts)), sum(n - 1 for n in counts.values() if n > 1)


def cut(path: Path, keep: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(keep)


def shipped_then_cut(plugin: RunningPlugin, es: EsStandin) -> list[FakeLogger]:
    """Two shipping loggers whose first lines are all in Elasticsearch, then a power cut of the whole plugin."""
    loggers = [plugin.logger(name=f"c{k}", config={"hosts": es.url}) for k in range(2)]
    for lg in loggers:
        assert lg.start() == {"_status": 200}
    write(loggers, 0)
    settle(es, 2 * LINES)
    power_cut(plugin)
    return loggers


def test_damaged_state_files_at_start_up(short_tmp: Path, es: EsStandin, figures: FigureTable) -> None:
    plugin = start_plugin(short_tmp)
    try:
        loggers = shipped_then_cut(plugin, es)
        data = plugin.data_dir
        records = {lg.container_id: data / "loggers" / f"{lg.path.name}.json" for lg in loggers}
        first, second = (lg.container_id for lg in loggers)
        damaged = {
            records[first]: records[first].read_bytes().split(b'"ContainerName"')[0],  # the Info cut short
            records[second]: b"",
            data / "containers" / first / "state.json": b'{"generation": 1',
            data / "containers" / second / "state.json": b"[]",
            data / "seq-floor": b"",
            data / "agent-id": b"\0\0\0\0",
            data / "shipper" / f"{first}.json": b'{"info": {"Conta',
        }
        for path, content in damaged.items():
            assert path.exists(), path
            path.write_bytes(content)
        (data / "containers" / first / "state.json.tmp").write_bytes(b'{"gen')
        plugin = start_plugin(short_tmp)
        wait_until(lambda: len(plugin.stats()["readers"]) == 2, 20, message="both loggers re-attached")
        write(loggers, 1)
        settle(es, 4 * LINES)
        lost, dup = outcome(es, expected(2, 2))
        log_text = plugin.log_text()
        said = {path: log_text.count(str(path)) for path in damaged}
        figures.add("R12", "damaged state files at start-up (7 files, 2 running loggers)",
                    f"{lost} lost, {dup} duplicates of {4 * LINES}; loggers re-attached; damage reported "
                    f"{min(said.values())}-{max(said.values())}x per file", "0 lost, 0 duplicates, each said once",
                    lost == 0 and dup == 0 and set(said.values()) == {1})
        assert (lost, dup) == (0, 0)
        assert said == dict.fromkeys(damaged, 1), f"every damaged file is reported, once: {said}\n{log_text}"
        for lg in loggers:
            lg.stop()
    finally:
        plugin.stop()


def test_power_cut_drops_the_unsynced_tails(short_tmp: Path, es: EsStandin, figures: FigureTable) -> None:
    plugin = start_plugin(short_tmp)
    try:
        loggers = shipped_then_cut(plugin, es)
        dropped = 0
        for lg in loggers:
            path = plugin.data_dir / "containers" / lg.container_id / "container.log"
            size = path.stat().st_size
            keep = size * 2 // 3 + 5  # the page cache's last third never reached the disk, a record torn
            cut(path, keep)
            dropped += size - keep
        for tmp in plugin.data_dir.rglob("*.tmp"):
            tmp.unlink()  # never synced, never renamed
        simulate_reboot(plugin.data_dir)
        plugin = start_plugin(short_tmp)
        write(loggers, 1)
        settle(es, 4 * LINES)
        lost, dup = outcome(es, expected(2, 2))
        figures.add("R12", "power cut: container files lose their unsynced tails (already shipped)",
                    f"{lost} lost, {dup} duplicates of {4 * LINES} ({dropped} bytes cut)", "0 lost, 0 duplicates",
                    lost == 0 and dup == 0)
        assert (lost, dup) == (0, 0)
        for lg in loggers:
            lg.stop()
    finally:
        plugin.stop()
