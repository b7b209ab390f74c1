"""R9: a container started again keeps every line exactly once in Elasticsearch.

A document's ``_id`` is the container and the position of its first record (localstore/generations.py): a
container started again with the same id must never reuse a position an earlier line had, or Elasticsearch
answers 409 and the new line is lost; and a line must keep its id across every restart, or a replay stores it
twice. Each case logs numbered lines, lets the plugin's housekeeping (or an operator) do its part, starts the same
container again, logs more, and counts every line in the Elasticsearch stand-in: 0 lost, 0 duplicates.

* without Docker (the real supervisor and a fake dockerd): after DESTROY_LOGS_ON_STOP deleted the folder, after
  RETAIN_STOPPED_FOR expired it, and after ``state.json`` was removed while the plugin was down;
* on a real dockerd (the plugin built from this tree): ``docker restart`` and a ``--restart always`` container that
  exits after each run, with DESTROY_LOGS_ON_STOP off and on.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from testkit.dockerd_driver import FakeLogger, entry
from testkit.plugin import RunningPlugin, start_plugin, wait_until
from tests.docker_fixtures import PLUGIN_NAME, DockerEngine, Plugin, new_name
from tests.es_standin import EsStandin
from tests.reliability.conftest import FigureTable, scale

INDEX = "logs-docker-default"
LINES = scale(200, 2000)  # per run of the container
RUNS = scale(3, 5)



def outcome(es: EsStandin, expected: set[str]) -> tuple[int, int]:
    """(lines lost, lines stored more than once) of ``expected`` in Elasticsearch."""
    counts = Counter(d["message"] for d in es.docs(INDEX))
    return len(expected - set(counts)), sum(n - 1 for n in counts.values() if n > 1)


def record(figures: FigureTable, case: str, es: EsStandin, expected: set[str]) -> None:
    lost, dup = outcome(es, expected)
    figures.add("R9", f"container started again: {case}", f"{lost} lost, {dup} duplicates of {len(expected)}",
                "0 lost, 0 duplicates", lost == 0 and dup == 0)
    assert (lost, dup) == (0, 0)


# --- without Docker --------------------------------------------------------------------------------------------

def run(plugin: RunningPlugin, es: EsStandin, container_id: str | None, tag: int, total: int) -> FakeLogger:
    """One run of the container: LINES numbered lines, shipped, then the container stops."""
    # Small files, all kept: each run rotates several times, so generations matter as much as offsets.
    config = {"hosts": es.url, "max-size": "2k", "max-file": "100"}
    lg = plugin.logger(config=config, **({"container_id": container_id} if container_id else {}))
    lg.start()
    lg.write(*(entry(b"%d %d" % (tag, i)) for i in range(LINES)))
    wait_until(lambda: es.count(INDEX) >= total, 60, message=f"{total} documents")
    lg.stop()
    return lg


def destroyed(plugin: RunningPlugin, lg: FakeLogger, base: Path, env: dict[str, str]) -> RunningPlugin:
    folder = plugin.data_dir / "containers" / lg.container_id
    wait_until(lambda: not folder.exists(), 30, message="DESTROY_LOGS_ON_STOP to delete the folder")
    return plugin


def expired(plugin: RunningPlugin, lg: FakeLogger, base: Path, env: dict[str, str]) -> RunningPlugin:
    folder = plugin.data_dir / "containers" / lg.container_id
    assert plugin.stop() == 0  # (which saves the shipping cursor: the folder's last change)
    wait_until(lambda: time.time() - max(p.stat().st_mtime for p in folder.iterdir()) > 1.2, 10,
               message="the retention time to pass")
    plugin = start_plugin(base, env)  # the local store expires folders as it starts (then once a minute)
    wait_until(lambda: not folder.exists(), 30, message="RETAIN_STOPPED_FOR to delete the folder")
    return plugin


def state_removed(plugin: RunningPlugin, lg: FakeLogger, base: Path, env: dict[str, str]) -> RunningPlugin:
    folder = plugin.data_dir / "containers" / lg.container_id
    assert plugin.stop() == 0
    (folder / "state.json").unlink(missing_ok=True)
    return start_plugin(base, env)


CASES: dict[str, tuple[dict[str, str], Callable[[RunningPlugin, FakeLogger, Path, dict[str, str]], RunningPlugin]]] = {
    "after DESTROY_LOGS_ON_STOP": ({"DESTROY_LOGS_ON_STOP": "true"}, destroyed),
    "after RETAIN_STOPPED_FOR": ({"RETAIN_STOPPED_FOR": "1s"}, expired),
    "after state.json was removed": ({}, state_removed),
}


@pytest.mark.parametrize("case", list(CASES))
def test_started_again_without_docker(case: str, short_tmp: Path, es: EsStandin, figures: FigureTable) -> None:
    env, between = CASES[case]
    plugin = start_plugin(short_tmp, env)
    try:
        container_id = None
        for tag in range(1, RUNS + 1):
            lg = run(plugin, es, container_id, tag, tag * LINES)
            container_id = lg.container_id
            if tag < RUNS:
                plugin = between(plugin, lg, short_tmp, env)
        # A replay (state.json gone) is answered 409; give a late duplicate the time to show.
        wait_until(lambda: not plugin.stats()["shipper"].get("in_flight"), 30, message="the shipper to settle")
    finally:
        plugin.stop()
    record(figures, case, es, {f"{tag} {i}" for tag in range(1, RUNS + 1) for i in range(LINES)})


# --- on a real dockerd -----------------------------------------------------------------------------------------

# Each start writes LINES numbered lines "<start> <i>" (the start counted in /n), then idles (docker restart) or
# exits (--restart always) until the last start, which idles. TERM ends it at once.
SCRIPT = """trap 'exit 0' TERM
n=$(( $(cat /n 2>/dev/null || echo 0) + 1 )); echo $n > /n
i=0; while [ $i -lt LINES ]; do echo "$n $i"; i=$((i+1)); done
if [ "$EXIT" = 1 ] && [ $n -lt RUNS ]; then exit 0; fi
while true; do sleep 1; done
"""
_LINE = re.compile(r"^(\d+) (\d+)$")


def set_destroy(engine: DockerEngine, value: str) -> None:
    engine.docker("plugin", "disable", "-f", PLUGIN_NAME, timeout=60, check=True)
    engine.docker("plugin", "set", PLUGIN_NAME, f"DESTROY_LOGS_ON_STOP={value}", check=True)
    engine.docker("plugin", "enable", "--timeout", "0", PLUGIN_NAME, timeout=60, check=True)


@pytest.mark.parametrize("destroy", ["false", "true"])
@pytest.mark.parametrize("how", ["docker restart", "--restart always"])
def test_started_again_on_dockerd(how: str, destroy: str, docker_engine: DockerEngine, docker_plugin: Plugin,
                                  busybox_image: str, names: list[str], es: EsStandin,
                                  figures: FigureTable) -> None:
    script = SCRIPT.replace("LINES", str(LINES)).replace("RUNS", str(RUNS))
    if destroy == "true":
        set_destroy(docker_engine, "true")
    try:
        name = new_name(names)
        policy = ["--restart", "always"] if how == "--restart always" else []
        started = docker_engine.docker("run", "-d", "--name", name, *policy, "-e", f"EXIT={int(bool(policy))}",
                                       "--log-driver", docker_plugin.driver, "--log-opt", f"hosts={es.url}",
                                       "--log-opt", "flush_interval=200ms", busybox_image, "sh", "-c", script,
                                       timeout=60)
        assert started.returncode == 0, started.stderr
        for n in range(1, RUNS + 1):
            wait_until(lambda n=n: es.count(INDEX) >= n * LINES, 60, message=f"run {n}'s lines in Elasticsearch")
            if not policy and n < RUNS:
                assert docker_engine.docker("restart", "-t", "5", name, timeout=60).returncode == 0
        container_id = docker_engine.docker("inspect", "-f", "{{.Id}}", name, check=True).stdout.strip()
        docker_engine.docker("stop", "-t", "5", name, timeout=60)
        if destroy == "true":
            folder = docker_plugin.store_dir / "containers" / container_id
            wait_until(lambda: not folder.exists(), 30, message="the stopped container's files to go")
    finally:
        if destroy == "true":
            set_destroy(docker_engine, "false")
    expected = {f"{n} {i}" for n in range(1, RUNS + 1) for i in range(LINES)}
    assert all(_LINE.match(d["message"]) for d in es.docs(INDEX))
    record(figures, f"{how} on dockerd, DESTROY_LOGS_ON_STOP={destroy}", es, expected)
