"""R2: SIGKILL of each process kind under load; lost and duplicated lines per kill, in the store and in Elasticsearch.

Several containers write numbered lines at a steady rate and ship to an ``EsStandin`` while one kind of process is
killed again and again. Afterwards every container's lines are read back through ReadLogs (what ``docker logs``
shows) and from the stand-in, and compared with what the writers wrote:

* local store, shipper: nothing lost, nothing twice (readers keep unconfirmed batches and re-send them; the store
  recognises re-sent batches; the shipper's ``_id`` is deterministic, so a re-sent document is a 409).
* reader: what the killed reader had read but not got confirmed is gone (a FIFO cannot be re-read). It must be
  counted: ``lines_lost_in_crashes`` is the reader's ``unconfirmed_lines`` at its last report (at most a second
  old), so it may differ from the real loss by what the reader read or got confirmed after that report.
* supervisor: in Docker the plugin's PID 1 dying takes the whole PID namespace with it (the kernel SIGKILLs every
  other process in it), and dockerd starts the plugin again with the same mounts, keeping the FIFOs' write ends
  open and the containers writing; it never repeats StartLogging. Here: SIGKILL the supervisor, then the rest of its
  process group, then ``start_plugin`` again on the same folders. What the readers held is lost; nothing is twice.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from testkit.dockerd_driver import FakeLogger, PacedWriter
from testkit.plugin import RunningPlugin, start_plugin, wait_until
from tests.es_standin import EsStandin
from tests.reliability.conftest import FigureTable, scale

KILLS = scale(3, 10)
CONTAINERS = scale(3, 4)
RATE = 500  # lines per second per container: steady load that leaves the 2-core CI machine some air
CHUNK = 25  # lines per write() (a container's output arrives in bursts too)
INDEX = "logs-docker-default"
# A killed reader held at most what it read since its batches were last confirmed. With confirmations every few
# tens of ms that is a small fraction of a second of writing; a second's worth is the documented bound.
READER_HOLD_BOUND = RATE


@dataclass
class Writer(PacedWriter):
    """One container writing ``c<n> seq <i>`` lines at RATE lines/s until stopped."""

    number: int = 0


def load_writer(number: int, logger: FakeLogger) -> Writer:
    return Writer(logger, RATE, lambda i: b"c%d seq %07d" % (number, i), CHUNK, number=number)


@dataclass
class Rig:
    """The plugin under load: writers, the stand-in, and the plugin (replaced when the supervisor is killed)."""

    base: Path
    es: EsStandin
    plugin: RunningPlugin
    writers: list[Writer]

    def stored(self, w: Writer) -> list[int]:
        prefix = b"c%d seq " % w.number
        numbers = []
        for e in self.plugin.client.read_logs(w.logger.info, timeout=60):
            assert e.line.startswith(prefix) and e.line.endswith(b"\n"), e.line
            numbers.append(int(e.line[len(prefix):-1]))
        return numbers

    def shipped(self) -> dict[int, Counter[int]]:
        found: dict[int, Counter[int]] = {w.number: Counter() for w in self.writers}
        for doc in self.es.docs(INDEX):
            container, _, number = doc["message"].partition(" seq ")
            found[int(container[1:])][int(number)] += 1
        return found

    def records_total(self) -> int:
        return int(self.plugin.stats()["localstore"].get("records_total", 0))


@pytest.fixture
def rig(short_tmp: Path) -> Iterator[Rig]:
    with EsStandin() as es:
        plugin = start_plugin(short_tmp)
        config = {"hosts": es.url, "flush_interval": "100ms"}
        writers = [load_writer(n, plugin.logger(config=config, name=f"load-{n}")) for n in range(CONTAINERS)]
        made = Rig(short_tmp, es, plugin, writers)
        try:
            for w in writers:
                assert not w.logger.start().get("Err")
                w.start()
            yield made
        finally:
            for w in writers:
                w.stop.set()
            kill_plugin_group(made.plugin)
            for w in writers:
                w.logger.close()


def kill_plugin_group(plugin: RunningPlugin) -> None:
    """What the kernel does when a PID namespace's init dies: SIGKILL for the init, then for all the others."""
    pgid = plugin.proc.pid
    members = [p for p in psutil.process_iter(["pid"]) if _pgid(p.pid) == pgid]
    if plugin.proc.poll() is None:
        os.kill(plugin.proc.pid, signal.SIGKILL)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    plugin.proc.wait(10)
    psutil.wait_procs(members, timeout=10)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def pid_changes(pid_of: Callable[[], int | None], old: int) -> Callable[[], bool]:
    return lambda: pid_of() not in (None, old)


def grows(value: Callable[[], int], by: int = 0) -> Callable[[], bool]:
    """A condition: ``value`` went above what it is now, plus ``by``."""
    start = value()
    return lambda: value() > start + by


def finish(rig: Rig) -> None:
    """The containers stop; every reader drains to EOF; every stored line reaches the stand-in."""
    for w in rig.writers:
        w.finish()
    for w in rig.writers:
        assert not w.logger.stop().get("Err")
    wait_until(lambda: not rig.plugin.stats()["readers"], 60, message="every reader to reach EOF")

    def all_shipped() -> bool:
        shipped = rig.shipped()
        return all(set(shipped[w.number]) >= set(rig.stored(w)) for w in rig.writers)

    wait_until(all_shipped, 120, interval=0.5, message="every stored line to reach Elasticsearch")


@dataclass
class Tally:
    lost_store: int
    dup_store: int
    lost_es: int
    dup_es: int
    missing: dict[int, list[int]]  # per container, the line numbers absent from the store

    def per_kill(self) -> str:
        return (f"per kill: store {self.lost_store / KILLS:.1f} lost, {self.dup_store / KILLS:.1f} dup; "
                f"ES {self.lost_es / KILLS:.1f} lost, {self.dup_es / KILLS:.1f} dup "
                f"(totals over {KILLS} kills: {self.lost_store}/{self.dup_store}, {self.lost_es}/{self.dup_es})")


def tally(rig: Rig) -> Tally:
    shipped = rig.shipped()
    lost_store = dup_store = lost_es = dup_es = 0
    missing = {}
    for w in rig.writers:
        stored = rig.stored(w)
        assert stored == sorted(stored), f"container {w.number}: lines out of order in the store"
        counts = Counter(stored)
        dup_store += sum(n - 1 for n in counts.values())
        missing[w.number] = sorted(set(range(w.written)) - set(counts))
        lost_store += len(missing[w.number])
        assert set(counts) <= set(range(w.written)), "the store holds lines nobody wrote"
        got = shipped[w.number]
        dup_es += sum(n - 1 for n in got.values())
        lost_es += len(set(range(w.written)) - set(got))
    total = sum(w.written for w in rig.writers)
    assert total >= KILLS * CONTAINERS * CHUNK, "the load was too small to mean anything"
    return Tally(lost_store, dup_store, lost_es, dup_es, missing)


def add_rows(figures: FigureTable, kind: str, t: Tally, total: int, goal_lost: str, met_lost: bool) -> None:
    figures.add("R2", f"SIGKILL {kind} x{KILLS}, {CONTAINERS} containers at {RATE} lines/s each ({total} lines)",
                t.per_kill(), f"lost: {goal_lost}; dup: 0", met_lost and t.dup_store == 0 and t.dup_es == 0)


# --- local store and shipper: nothing lost, nothing twice -----------------------------------------------------


def kill_service(rig: Rig, role: str, progress: Callable[[], int]) -> None:
    """Kill ``role`` KILLS times, each time once its replacement has moved the load on."""
    def pid() -> int | None:
        value = rig.plugin.stats()[role]["pid"]
        return int(value) if value else None

    for _ in range(KILLS):
        moved = grows(progress)
        old = wait_until(pid, 20, message=f"the {role} to run")
        assert old is not None
        wait_until(moved, 60, message=f"the {role} to make progress under load")
        os.kill(old, signal.SIGKILL)
        # The back-off grows 0, 0.5, 1, 2... s: the deadline covers the full variant's tenth restart (30 s).
        wait_until(pid_changes(pid, old), 45, message=f"a new {role}")
    assert rig.plugin.stats()[role]["restarts"] == KILLS


def test_killing_the_local_store_loses_and_duplicates_nothing(rig: Rig, figures: FigureTable) -> None:
    kill_service(rig, "localstore", rig.records_total)
    finish(rig)
    t = tally(rig)
    add_rows(figures, "local store", t, sum(w.written for w in rig.writers), "0", t.lost_store == t.lost_es == 0)
    assert (t.lost_store, t.dup_store, t.lost_es, t.dup_es) == (0, 0, 0, 0), t


def test_killing_the_shipper_loses_and_duplicates_nothing(rig: Rig, figures: FigureTable) -> None:
    kill_service(rig, "shipper", lambda: len(rig.es.stored(INDEX)))
    finish(rig)
    t = tally(rig)
    add_rows(figures, "shipper", t, sum(w.written for w in rig.writers), "0", t.lost_store == t.lost_es == 0)
    assert (t.lost_store, t.dup_store, t.lost_es, t.dup_es) == (0, 0, 0, 0), t


# --- reader: what it held is lost, and counted ----------------------------------------------------------------


@dataclass
class ReaderKill:
    container: int
    written_at_kill: int  # every lost line was written before the kill
    counted: int  # the increase of lines_lost_in_crashes
    window: float  # seconds between the poll before the report we synchronised on and the kill


def reader_of(rig: Rig, w: Writer) -> dict[str, Any] | None:
    for reader in rig.plugin.stats()["readers"]:
        if reader["container_id"] == w.logger.container_id:
            return dict(reader)
    return None


def kill_reader_after_report(rig: Rig, w: Writer) -> ReaderKill:
    """Kill a reader just after it reported, so its last report is as fresh as it can be, and note the count."""
    def running() -> dict[str, Any] | None:
        reader = reader_of(rig, w)
        return reader if reader and reader["state"] == "running" else None

    first = wait_until(running, 20, message="the reader to run")
    assert first is not None
    lost_before = int(first["lines_lost_in_crashes"])
    pid = int(first["pid"])
    seen = first["lines_total"]
    began = polled_at = time.monotonic()
    while True:
        now = time.monotonic()
        reader = reader_of(rig, w)
        assert reader is not None and reader["pid"] == pid, "the reader changed under the test"
        if reader["lines_total"] != seen:
            break
        seen, polled_at = reader["lines_total"], now
        assert now - began < 5, "the reader stopped reporting"
    os.kill(pid, signal.SIGKILL)
    kill = ReaderKill(w.number, w.written, 0, time.monotonic() - polled_at)
    def replacement() -> dict[str, Any] | None:
        reader = reader_of(rig, w)
        return reader if reader and reader["pid"] not in (None, pid) else None

    replaced = wait_until(replacement, 20, message="a new reader")
    assert replaced is not None
    kill.counted = int(replaced["lines_lost_in_crashes"]) - lost_before
    return kill


def attribute_gaps(missing: list[int], kills: list[ReaderKill]) -> list[int]:
    """Lines lost by each kill of one container. A killed reader's unconfirmed lines are the tail of what it read,
    so each kill leaves at most one contiguous gap, before the writer's position at the kill."""
    gaps: list[tuple[int, int]] = []
    for n in missing:
        if gaps and gaps[-1][1] == n - 1:
            gaps[-1] = (gaps[-1][0], n)
        else:
            gaps.append((n, n))
    lost = [0] * len(kills)
    k = 0
    for start, end in gaps:
        while k < len(kills) and kills[k].written_at_kill <= end:
            k += 1
        assert k < len(kills), f"lines {start}..{end} lost with no kill to explain them"
        lost[k] = end - start + 1
        k += 1
    return lost


def test_killing_a_reader_loses_only_what_it_held_and_counts_it(rig: Rig, figures: FigureTable) -> None:
    kills: list[ReaderKill] = []
    for i in range(KILLS):
        w = rig.writers[i % len(rig.writers)]
        kills.append(kill_reader_after_report(rig, w))
        wait_until(grows(rig.records_total, RATE // 4), 30, message="the respawned reader to store again")
    finish(rig)
    t = tally(rig)
    actual: list[int] = [0] * len(kills)
    for w in rig.writers:
        mine = [k for k in kills if k.container == w.number]
        for kill, lost in zip(mine, attribute_gaps(t.missing[w.number], mine), strict=True):
            actual[kills.index(kill)] = lost
    counted = [k.counted for k in kills]
    # The count is the reader's unconfirmed lines at its last report; we killed right after a report, so the two
    # differ by at most what was read or confirmed in between: the lines written in that window, plus one batch
    # (50 ms) of lines that may have sat in the pipe before it, plus one write.
    bounds = [int(RATE * (k.window + 0.05)) + CHUNK for k in kills]
    consistent = all(abs(a - c) <= b for a, c, b in zip(actual, counted, bounds, strict=True))
    es_matches_store = t.lost_es == t.lost_store
    figures.add("R2", f"SIGKILL reader x{KILLS} (rotating over {CONTAINERS} containers at {RATE} lines/s each)",
                f"lost per kill {actual}, counted {counted} (lines_lost_in_crashes); store dup {t.dup_store}, "
                f"ES lost {t.lost_es} dup {t.dup_es}",
                f"lost <= {READER_HOLD_BOUND}/kill and counted within {max(bounds)}; dup 0",
                consistent and max(actual) <= READER_HOLD_BOUND and es_matches_store
                and t.dup_store == t.dup_es == 0)
    assert t.dup_store == 0 and t.dup_es == 0
    assert es_matches_store, "Elasticsearch lacks lines that the store has"
    assert max(actual) <= READER_HOLD_BOUND, actual
    assert consistent, f"lost {actual} vs counted {counted} (bounds {bounds})"


# --- supervisor: dockerd restarts the plugin -------------------------------------------------------------------


def restart_like_dockerd(rig: Rig) -> None:
    """PID 1 dies with its namespace; dockerd starts the plugin again on the same mounts. The FIFOs' write ends
    stay open (the writers keep writing; their pipes fill up while nobody reads)."""
    kill_plugin_group(rig.plugin)
    rig.plugin = start_plugin(rig.base)
    wait_until(lambda: len([r for r in rig.plugin.stats()["readers"] if r["pid"]]) == len(rig.writers), 20,
               message="every FIFO re-attached")


def test_killing_the_supervisor_reattaches_and_duplicates_nothing(rig: Rig, figures: FigureTable) -> None:
    for i in range(KILLS):
        if i % 2:
            # Right after a restart: the new readers must not reuse the previous incarnation's sequence numbers
            # (the store would take their batches for re-sent ones and drop them).
            wait_until(grows(rig.records_total), 20, message="the re-attached readers to store")
        else:
            wait_until(grows(rig.records_total, RATE), 30, message="load between kills")
        restart_like_dockerd(rig)
    assert "re-attached to the FIFO" in rig.plugin.log_text()
    finish(rig)
    t = tally(rig)
    holds = [len(m) for m in t.missing.values()]
    bound = KILLS * READER_HOLD_BOUND
    add_rows(figures, "supervisor (whole plugin, restarted like dockerd)", t, sum(w.written for w in rig.writers),
             f"only what the readers held (<= {READER_HOLD_BOUND}/kill/container), uncounted",
             max(holds) <= bound and t.lost_es == t.lost_store)
    assert t.dup_store == 0 and t.dup_es == 0, t
    assert t.lost_es == t.lost_store, "Elasticsearch lacks lines that the store has"
    assert max(holds) <= bound, holds

