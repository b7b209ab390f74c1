"""R10: SIGSTOP of each child kind under load: the supervisor's heartbeat watchdog kills the hung child and the
crash path respawns it. Measured: how long until a new process runs (healed), and the lines lost and duplicated.

The load and its accounting are R2's (tests/reliability/test_kills.py): several containers write numbered lines
and ship to an ``EsStandin``; afterwards everything is read back from the store and the stand-in.

* local store, shipper: 0 lost, 0 duplicates (readers keep unconfirmed batches and re-send them; the shipper
  re-fetches from the store). Readers keep reporting while the store is stopped, so none of them is killed.
* reader: what the stopped reader had read but not got confirmed is lost, as in a crash, and counted in
  ``lines_lost_in_crashes``. Its container's writes wait in the pipe meanwhile (blocking mode).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from testkit.dockerd_driver import FakeLogger, entry
from testkit.plugin import wait_until
from tests.reliability import test_kills
from tests.reliability.conftest import FigureTable, scale
from tests.reliability.test_kills import (
    CONTAINERS,
    INDEX,
    RATE,
    READER_HOLD_BOUND,
    Rig,
    finish,
    grows,
    reader_of,
    tally,
)

rig = test_kills.rig  # R2's fixture: the plugin under load

STOPS = scale(1, 3)
HEAL_BOUND = 15.0  # seconds from SIGSTOP to a new process: 10 s without a report, then the tick and the fork


@dataclass
class Stop:
    healed_s: float
    counted: int = 0  # readers: the increase of lines_lost_in_crashes


def stop_until_replaced(pid_of: Callable[[], int | None]) -> Stop:
    """SIGSTOP the process; return once another one runs in its place (the stopped one is left to the watchdog)."""
    pid = wait_until(pid_of, 20, message="the process to run")
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    began = time.monotonic()
    try:
        wait_until(lambda: pid_of() not in (None, pid), HEAL_BOUND + 15, interval=0.1, message="a new process")
    finally:
        try:
            os.kill(pid, signal.SIGCONT)  # without the watchdog, do not leave it stopped behind the test
        except ProcessLookupError:
            pass
    return Stop(time.monotonic() - began)


def service_pid(rig: Rig, role: str) -> Callable[[], int | None]:
    def pid() -> int | None:
        value = rig.plugin.stats()[role]["pid"]
        return int(value) if value else None

    return pid


def heal_text(stops: list[Stop]) -> str:
    return "healed in " + ", ".join(f"{s.healed_s:.1f}s" for s in stops)


def reader_restarts(rig: Rig) -> int:
    return sum(int(r["restarts"]) for r in rig.plugin.stats()["readers"])


def start_quiet(rig: Rig) -> FakeLogger:
    """A container with a reader that has nothing to do: it must not be taken for hung."""
    quiet = rig.plugin.logger(name="quiet")
    assert not quiet.start().get("Err")
    quiet.write(entry(b"one line"))
    wait_until(lambda: (reader_of_logger(rig, quiet) or {}).get("lines_total") == 1, message="the quiet reader")
    return quiet


def reader_of_logger(rig: Rig, lg: FakeLogger) -> dict[str, Any] | None:
    return next((r for r in rig.plugin.stats()["readers"] if r["container_id"] == lg.container_id), None)


def stop_service(rig: Rig, role: str, progress: Callable[[], int]) -> list[Stop]:
    stops = []
    for _ in range(STOPS):
        wait_until(grows(progress), 60, message=f"the {role} to make progress under load")
        stops.append(stop_until_replaced(service_pid(rig, role)))
    wait_until(grows(progress), 60, message=f"the new {role} to make progress")
    return stops


def check_service(rig: Rig, figures: FigureTable, role: str, stops: list[Stop], quiet: FakeLogger) -> None:
    """``role`` as in /stats ("localstore", "shipper")."""
    assert reader_restarts(rig) == 0, "a reader was killed while the service was stopped"
    quiet_reader = reader_of_logger(rig, quiet)
    assert quiet_reader is not None and quiet_reader["state"] == "running"
    assert not quiet.stop().get("Err")
    finish(rig)
    t = tally(rig)
    total = sum(w.written for w in rig.writers)
    healed = max(s.healed_s for s in stops) <= HEAL_BOUND
    name = "local store" if role == "localstore" else role
    figures.add("R10", f"SIGSTOP {name} x{STOPS}, {CONTAINERS} containers at {RATE} lines/s each ({total} lines)",
                f"{heal_text(stops)}; store {t.lost_store} lost, {t.dup_store} dup; ES {t.lost_es} lost, "
                f"{t.dup_es} dup", f"healed <= {HEAL_BOUND:.0f}s; 0 lost, 0 dup",
                healed and (t.lost_store, t.dup_store, t.lost_es, t.dup_es) == (0, 0, 0, 0))
    assert (t.lost_store, t.dup_store, t.lost_es, t.dup_es) == (0, 0, 0, 0), t
    assert healed, heal_text(stops)
    assert rig.plugin.stats()[role]["restarts"] == STOPS
    assert rig.plugin.stats()["supervisor"]["hung_killed_total"] == STOPS


def test_a_stopped_local_store_is_replaced_and_nothing_is_lost(rig: Rig, figures: FigureTable) -> None:
    quiet = start_quiet(rig)
    check_service(rig, figures, "localstore", stop_service(rig, "localstore", rig.records_total), quiet)


def test_a_stopped_shipper_is_replaced_and_nothing_is_lost(rig: Rig, figures: FigureTable) -> None:
    quiet = start_quiet(rig)
    check_service(rig, figures, "shipper", stop_service(rig, "shipper", lambda: len(rig.es.stored(INDEX))), quiet)


def test_a_stopped_reader_is_replaced_and_its_loss_counted(rig: Rig, figures: FigureTable) -> None:
    stops = []
    for i in range(STOPS):
        w = rig.writers[i % len(rig.writers)]

        def pid(w: object = w) -> int | None:
            reader = reader_of(rig, w)  # type: ignore[arg-type]
            return int(reader["pid"]) if reader and reader["pid"] and reader["state"] == "running" else None

        before = reader_of(rig, w)
        assert before is not None
        stop = stop_until_replaced(pid)
        after = reader_of(rig, w)
        assert after is not None
        stop.counted = int(after["lines_lost_in_crashes"]) - int(before["lines_lost_in_crashes"])
        stops.append(stop)
        wait_until(grows(rig.records_total, RATE // 4), 30, message="the new reader to store again")
    finish(rig)
    t = tally(rig)
    lost = sum(len(m) for m in t.missing.values())
    counted = sum(s.counted for s in stops)
    healed = max(s.healed_s for s in stops) <= HEAL_BOUND
    # A stopped reader reads nothing more, so its last report (at most a second before the stop) counts exactly what
    # it held, give or take what it read or got confirmed in that second.
    close = abs(lost - counted) <= STOPS * READER_HOLD_BOUND
    figures.add("R10", f"SIGSTOP reader x{STOPS} (rotating over {CONTAINERS} containers at {RATE} lines/s each)",
                f"{heal_text(stops)}; lost {lost}, counted {counted} (lines_lost_in_crashes); store dup "
                f"{t.dup_store}, ES lost {t.lost_es} dup {t.dup_es}",
                f"healed <= {HEAL_BOUND:.0f}s; lost <= {READER_HOLD_BOUND}/stop and counted; dup 0",
                healed and close and lost <= STOPS * READER_HOLD_BOUND and t.dup_store == t.dup_es == 0)
    assert t.dup_store == 0 and t.dup_es == 0, t
    assert t.lost_es == t.lost_store, "Elasticsearch lacks lines that the store has"
    assert healed, heal_text(stops)
    assert lost <= STOPS * READER_HOLD_BOUND and close, (lost, counted)
    assert "hung (no report for" in rig.plugin.log_text()
