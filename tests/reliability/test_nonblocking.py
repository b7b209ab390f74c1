"""R8, back-pressure honesty: with ``mode=non-blocking`` and a tiny ``max-buffer-size``, dockerd's ring buffer may
drop lines of a container that writes as fast as it can; that loss must be Docker's alone. Every line that reached
our FIFO (the reader's ``lines_total`` in /stats) is stored once and shipped once, and every drop/discard/lost
counter of ours stays 0.

Docker's options (daemon/logger/ring.go, ValidateLogOpts): ``mode=non-blocking`` puts a ring buffer between the
container's copier and the driver; ``max-buffer-size`` (bytes, go-units RAMInBytes: ``4k`` = 4096; default 1m) is
its size, and a message that does not fit is dropped silently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.docker_fixtures import DockerEngine, Plugin, new_name, wait_until
from tests.es_standin import EsStandin
from tests.reliability.conftest import FigureTable, scale
from tests.reliability.live_plugin import READER_LOSS_COUNTERS, LivePlugin

LINES = scale(100_000, 1_000_000)
BUFFER = "4k"
END = "END"
# seq writes as fast as busybox can; then END is repeated until the test saw it stored (a single END could itself
# be dropped by the ring), so everything the container wrote before it has passed dockerd; then the container idles
# so its reader stays in /stats until the test is done.
SCRIPT = (f"seq 1 {LINES}; until [ -f /g/ack ]; do echo {END}; usleep 50000; done; "
          "until [ -f /g/stop ]; do usleep 50000; done")


@dataclass
class Settled:
    """One /stats snapshot in which the reader, the store, Elasticsearch and `docker logs` agree."""

    reader: dict[str, Any]
    delivered: int
    stored_lines: list[str]


def docker_logs(engine: DockerEngine, name: str, *args: str) -> list[str]:
    return engine.docker("logs", *args, name, timeout=120).stdout.splitlines()


def settle(engine: DockerEngine, live: LivePlugin, es: EsStandin, name: str, container_id: str) -> Settled | None:
    """The final figures once nothing is moving: the cheap counters first, `docker logs` only when they agree."""
    stats = live.stats()
    reader = live.reader(stats, container_id)
    if reader is None or reader.get("unconfirmed_lines", 1) != 0:
        return None
    delivered = int(reader["lines_total"])
    if not delivered == live.stored(stats, container_id) == es.count():
        return None
    stored = docker_logs(engine, name)
    return Settled(reader, delivered, stored) if len(stored) == delivered else None


def json_file_reference(engine: DockerEngine, image: str, names: list[str]) -> int:
    """Lines Docker's own json-file driver keeps of the same burst with the same options: how much dockerd's ring
    drops when the driver behind it is a built-in one (a reference, beside ours, in the same run)."""
    name = new_name(names)
    run = engine.docker("run", "--name", name, "--log-driver", "json-file", "--log-opt", "mode=non-blocking",
                        "--log-opt", f"max-buffer-size={BUFFER}", image, "seq", "1", str(LINES), timeout=120)
    assert run.returncode == 0, run.stderr
    return len(docker_logs(engine, name))


def test_nonblocking_mode_loses_only_in_dockers_ring_buffer(docker_engine: DockerEngine, docker_plugin: Plugin,
                                                            busybox_image: str, names: list[str], tmp_path: Path,
                                                            figures: FigureTable) -> None:
    live = LivePlugin(docker_engine, docker_plugin)
    losses_before = live.store_and_shipper_losses(live.stats())
    gate = tmp_path / "gate"
    gate.mkdir()
    with EsStandin() as es:
        name = new_name(names)
        run = docker_engine.docker("run", "-d", "--name", name, "--log-driver", docker_plugin.driver,
                                   "--log-opt", "mode=non-blocking", "--log-opt", f"max-buffer-size={BUFFER}",
                                   "--log-opt", f"hosts={es.url}", "--log-opt", "flush_interval=200ms",
                                   "-v", f"{gate}:/g", busybox_image, "sh", "-c", SCRIPT, timeout=60)
        assert run.returncode == 0, run.stderr
        container_id = live.container_id(name)
        wait_until(lambda: docker_logs(docker_engine, name, "--tail", "1") == [END], 120, interval=0.2,
                   message="the container's END line behind all its numbered lines")
        (gate / "ack").touch()
        settled = wait_until(lambda: settle(docker_engine, live, es, name, container_id), 120, interval=0.5,
                             message="reader, store, Elasticsearch and docker logs to agree")
        assert settled is not None  # wait_until returns only a truthy value
        (gate / "stop").touch()
        docker_engine.docker("wait", name, timeout=60, check=True)
        shipped = Counter(doc["message"] for doc in es.docs())
        losses_after = live.store_and_shipper_losses(live.stats())
    reference_kept = json_file_reference(docker_engine, busybox_image, names)

    numbered = [int(line) for line in settled.stored_lines if line != END]
    ends = len(settled.stored_lines) - len(numbered)
    ours = {k: int(settled.reader.get(k, 0)) for k in READER_LOSS_COUNTERS}
    ours.update({k: v - losses_before[k] for k, v in losses_after.items()})
    ours_nonzero = {k: v for k, v in ours.items() if v}
    stored = Counter(settled.stored_lines)  # END is there several times, each number at most once
    shipped_wrong = sum(((shipped - stored) + (stored - shipped)).values())
    docker_dropped = LINES - len(numbered)
    figures.add("R8", f"lines written by the container (seq, max-buffer-size={BUFFER})", f"{LINES:,}", "—", True)
    figures.add("R8", "lines dockerd delivered to our FIFO (reader lines_total, minus END markers)",
                f"{settled.delivered - ends:,} (+{ends} END)", "—", True)
    figures.add("R8", "lines dropped by dockerd's ring buffer (Docker's loss)",
                f"{docker_dropped:,} ({docker_dropped / LINES:.1%})", "—", True)
    figures.add("R8", "reference: lines dropped by dockerd's ring with Docker's json-file driver, same burst",
                f"{LINES - reference_kept:,} ({(LINES - reference_kept) / LINES:.1%})", "—", True)
    figures.add("R8", "lines stored (`docker logs`) ÷ delivered",
                f"{len(settled.stored_lines):,} ÷ {settled.delivered:,}", "equal",
                len(settled.stored_lines) == settled.delivered)
    figures.add("R8", "documents shipped ÷ delivered (missing or duplicated: "
                f"{shipped_wrong})", f"{sum(shipped.values()):,} ÷ {settled.delivered:,}", "equal, 0 wrong",
                shipped_wrong == 0 and sum(shipped.values()) == settled.delivered)
    figures.add("R8", "our discarded/dropped/lost counters", ours_nonzero or "all 0", "all 0", not ours_nonzero)

    assert numbered == sorted(set(numbered)) and set(numbered) <= set(range(1, LINES + 1)), \
        "what dockerd delivered is stored once each, in the order written"
    assert shipped_wrong == 0 and sum(shipped.values()) == settled.delivered
    assert not ours_nonzero, ours_nonzero
