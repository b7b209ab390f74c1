"""R3 restarts with running containers (a real dockerd and the plugin built from this tree): the plugin disabled and
enabled, the plugin's processes SIGKILLed, and dockerd itself stopped and started on its data-root. After each, the
container's logs continue, every line stored before is still there in order, and nothing is stored twice.

Each container writes numbered lines ``<incarnation> <i>`` to stdout and the same line to ``/w`` in its own file
system: ``/w`` is the truth of what was written, so a line lost in the gap is counted, not guessed.

Where lines can be lost while the plugin is down: dockerd opens each logger FIFO read-write (moby's
``openPluginStream``, "to avoid broken pipe errors on plugin failure"), so its copier never gets EPIPE. With no
plugin reading, its writes fill the FIFO (64 KiB) and then block, the container's stdout pipe fills behind it, and
in the default blocking mode the container blocks until a plugin re-attaches and drains the FIFO: nothing is
dropped, the container only waits (measured below by holding the plugin down until the container stalls). What a
killed plugin can lose is what its reader had already read out of the FIFO and not yet got confirmed stored (a
FIFO cannot be re-read); a graceful stop (disable) drains the readers first. In ``mode=non-blocking`` dockerd's
ring buffer would drop lines instead (R8). Every line dockerd's copier fails to write is logged by dockerd
("Error writing log message", with the line): those are counted apart, as dockerd's, from any loss of ours.

The dockerd restart is a plain one (SIGTERM, then start on the same work dir), without ``--live-restore``: that is
what scripts/docker-engine.sh runs and the common setup. dockerd stops the containers (their copiers drain into
the plugin), shuts the plugin down, and at start re-enables the plugin and restarts the ``--restart always``
container, which gets a new StartLogging. With live-restore the containers and the plugin would keep running
instead; the shared engine is not switched to it here.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psutil
import pytest

from testkit.plugin import wait_until
from tests.docker_fixtures import SCRIPTS, DockerEngine, Plugin, run_script
from tests.reliability.conftest import FigureTable

Line = tuple[int, int]  # (incarnation, number)

# Numbered lines to stdout and to /w; /n counts the container's starts. TERM ends it at once (PID 1 ignores
# signals it has no handler for, which would make every stop wait for the kill).
WRITER = """trap 'exit 0' TERM
n=$(( $(cat /n 2>/dev/null || echo 0) + 1 )); echo $n > /n
i=0
while true; do echo "$n $i"; echo "$n $i" >> /w; i=$((i+1)); PAUSE; done
"""
PACED = "usleep 10000"  # a line every 10 ms
FLAT_OUT = ":"  # as fast as the shell goes (thousands of lines/s): fills the pipes quickly
_LINE = re.compile(r"^(\d+) (\d+)$")
_DROPPED = re.compile(r'Error writing log message.*message="(\d+) (\d+)"')
_AFTER = 50  # lines that must show up after a restart


@pytest.fixture
def containers(docker_engine: DockerEngine) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    if made:
        docker_engine.docker("rm", "-f", *made, timeout=120)


def new_container(names: list[str]) -> str:
    name = f"elp-r3-{uuid.uuid4().hex[:8]}"
    names.append(name)
    return name


def parse_lines(text: str) -> list[Line]:
    found = (_LINE.match(line) for line in text.splitlines())
    return [(int(m.group(1)), int(m.group(2))) for m in found if m]


def logged(engine: DockerEngine, name: str) -> list[Line]:
    proc = engine.docker("logs", name, timeout=60)
    return parse_lines(proc.stdout) if proc.returncode == 0 else []


def written(engine: DockerEngine, name: str) -> list[Line]:
    """What the container wrote (its /w), also once it stopped."""
    proc = subprocess.run(["docker", "cp", f"{name}:/w", "-"], env=engine.env, capture_output=True, timeout=60,
                          check=True)
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        member = tar.extractfile("w")
        assert member is not None
        return parse_lines(member.read().decode())


def start_writer(engine: DockerEngine, plugin: Plugin, image: str, name: str, *extra: str,
                 pause: str = PACED) -> None:
    engine.docker("run", "-d", "--name", name, *extra, "--log-driver", plugin.driver, image, "sh", "-c",
                  WRITER.replace("PAUSE", pause), timeout=60, check=True)
    wait_until(lambda: len(logged(engine, name)) >= _AFTER, 60, interval=0.2, message="the container to log")


def last_logged(engine: DockerEngine, name: str) -> Line | None:
    lines = parse_lines(engine.docker("logs", "--tail", "1", name, timeout=60).stdout)
    return lines[-1] if lines else None


def wait_for_new_lines(engine: DockerEngine, name: str, after: Line) -> None:
    """Until docker logs reaches ``_AFTER`` lines past ``after`` (the final check counts them all)."""
    target = (after[0], after[1] + _AFTER)
    wait_until(lambda: (last_logged(engine, name) or (0, 0)) >= target, 90, interval=0.2,
               message=f"docker logs to reach {target}")


def dockerd_drops(engine: DockerEngine, since: int) -> set[Line]:
    """Lines dockerd's copier could not write to the plugin, from its log after byte ``since``."""
    with open(engine.workdir / "dockerd.log", "rb") as log:
        log.seek(since)
        text = log.read().decode(errors="replace")
    return {(int(m.group(1)), int(m.group(2))) for m in _DROPPED.finditer(text)}


def log_size(engine: DockerEngine) -> int:
    return os.path.getsize(engine.workdir / "dockerd.log")


@dataclass
class Outcome:
    before: list[Line]  # docker logs just before the restart
    final: list[Line]  # docker logs once the container stopped
    wrote: list[Line]  # the container's /w
    dropped_by_dockerd: set[Line]

    @property
    def lost(self) -> list[Line]:
        have = set(self.final)
        return [line for line in self.wrote if line not in have]

    @property
    def lost_by_us(self) -> list[Line]:
        return [line for line in self.lost if line not in self.dropped_by_dockerd]

    @property
    def duplicates(self) -> int:
        return len(self.final) - len(set(self.final))

    @property
    def after(self) -> int:
        return sum(1 for line in self.final if line > self.before[-1])

    def describe(self) -> str:
        return (f"{len(self.before)} lines before, {self.after} after, {len(self.lost)} lost in the gap "
                f"({len(self.dropped_by_dockerd & set(self.lost))} dropped by dockerd's copier, "
                f"{len(self.lost_by_us)} by the plugin), {self.duplicates} duplicates")

    def check_history(self) -> None:
        assert self.duplicates == 0, "a line stored twice"
        assert self.final == sorted(self.final), "lines out of order"
        assert self.final[:len(self.before)] == self.before, "history from before the restart changed"
        assert self.after >= _AFTER, "logs did not continue after the restart"
        # Every line docker logs shows was written (the last of a run may be on stdout and not yet in /w).
        last_of_run = {n: i for n, i in self.final}
        assert all(last_of_run[n] == i for n, i in set(self.final) - set(self.wrote))


def finish(engine: DockerEngine, name: str, before: list[Line], since: int) -> Outcome:
    engine.docker("stop", "-t", "5", name, timeout=60, check=True)
    # After a stop, dockerd closed the FIFO: the plugin stores the rest and docker logs waits for it.
    return Outcome(before, logged(engine, name), written(engine, name), dockerd_drops(engine, since))


# --- the plugin restarted under running containers ------------------------------------------------------------


def is_plugin_process(proc: psutil.Process | None) -> bool:
    if proc is None:
        return False
    try:
        return proc.cmdline()[:4] == ["python3", "-m", "supervisor", "serve"]
    except psutil.Error:
        return False


def plugin_processes() -> list[psutil.Process]:
    """The plugin's supervisor (its PID 1, started by containerd's shim) and every process forked under it."""
    for proc in psutil.process_iter():
        try:
            if is_plugin_process(proc) and not is_plugin_process(proc.parent()):
                return [proc, *proc.children(recursive=True)]
        except psutil.Error:
            continue
    return []


def supervisor_pid() -> int | None:
    found = plugin_processes()
    return found[0].pid if found else None


def kill_plugin(engine: DockerEngine, plugin: Plugin, name: str) -> str:
    victims = plugin_processes()
    assert victims, "no plugin processes found"
    old = victims[0].pid
    for proc in victims:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_until(lambda: supervisor_pid() not in (None, old), 60, interval=0.1, message="dockerd to restart the plugin")
    return f"{len(victims)} processes killed"


def disable_enable(engine: DockerEngine, plugin: Plugin, name: str) -> str:
    engine.docker("plugin", "disable", "-f", plugin.name, timeout=60, check=True)
    enable(engine, plugin)
    return "plugin down for the time of an enable"


def disable_until_blocked(engine: DockerEngine, plugin: Plugin, name: str) -> str:
    """Hold the plugin down until the container stalls: dockerd buffers in the FIFO, then blocks, never drops."""
    engine.docker("plugin", "disable", "-f", plugin.name, timeout=60, check=True)
    counts: list[int] = []

    def stalled() -> bool:
        counts.append(count_written(engine, name))
        return len(counts) >= 2 and counts[-1] == counts[-2]

    wait_until(stalled, 120, interval=0.5, message="the container to block on its full stdout pipe")
    enable(engine, plugin)
    return f"the container blocked after writing {counts[-1]} lines"


def enable(engine: DockerEngine, plugin: Plugin) -> None:
    # --timeout 0 as the fixture enabled it (the default 30 s would cut `docker logs -f` in later tests).
    engine.docker("plugin", "enable", "--timeout", "0", plugin.name, timeout=60, check=True)


def count_written(engine: DockerEngine, name: str) -> int:
    proc = engine.docker("exec", name, "wc", "-l", "/w", timeout=30, check=True)
    return int(proc.stdout.split()[0])


@dataclass(frozen=True)
class Restart:
    do: Callable[[DockerEngine, Plugin, str], str]  # restarts the plugin; says what happened
    pause: str  # the writer's pace


RESTARTS = {
    "disable -f, enable": Restart(disable_enable, PACED),
    "SIGKILL of every plugin process": Restart(kill_plugin, PACED),
    "disabled until the container blocks, enable": Restart(disable_until_blocked, FLAT_OUT),
}


@pytest.mark.parametrize("how", list(RESTARTS))
def test_plugin_restart_under_running_containers(how: str, docker_engine: DockerEngine, docker_plugin: Plugin,
                                                 busybox_image: str, containers: list[str],
                                                 figures: FigureTable) -> None:
    restart = RESTARTS[how]
    name = new_container(containers)
    since = log_size(docker_engine)
    start_writer(docker_engine, docker_plugin, busybox_image, name, pause=restart.pause)
    before = logged(docker_engine, name)
    started = time.monotonic()
    try:
        what = restart.do(docker_engine, docker_plugin, name)
    finally:
        ensure_plugin_enabled(docker_engine, docker_plugin)
    what += f", restart took {time.monotonic() - started:.1f} s"
    wait_for_new_lines(docker_engine, name, before[-1])
    running = docker_engine.docker("inspect", "-f", "{{.State.Running}}", name, check=True).stdout.strip()
    outcome = finish(docker_engine, name, before, since)
    figures.add("R3", f"plugin restart ({how}), {'10 ms' if restart.pause == PACED else 'no'} pause between lines",
                f"{outcome.describe()}; {what}",
                "history intact, logs continue, 0 duplicates; 0 lost unless killed (then counted)",
                outcome.duplicates == 0 and outcome.after >= _AFTER and running == "true"
                and (restart.do is kill_plugin or not outcome.lost))
    assert running == "true", "the container must keep running through the plugin's restart"
    outcome.check_history()
    if restart.do is not kill_plugin:
        # A graceful stop drains the readers, and dockerd buffers (or blocks) while no plugin reads: no loss.
        assert not outcome.lost, f"lines lost: {outcome.lost[:20]}"


def ensure_plugin_enabled(engine: DockerEngine, plugin: Plugin) -> None:
    """The fixtures are shared: leave the plugin enabled whatever happened."""
    def enabled() -> bool:
        return engine.docker("plugin", "inspect", "-f", "{{.Enabled}}", plugin.name).stdout.strip() == "true"

    if not enabled():
        engine.docker("plugin", "enable", "--timeout", "0", plugin.name, timeout=60)
    wait_until(enabled, 60, interval=0.2, message="the plugin to be enabled")


# --- dockerd restarted ------------------------------------------------------------------------------------------


def restart_engine(engine: DockerEngine) -> None:
    script = str(SCRIPTS / "docker-engine.sh")
    stopped = run_script([script, "stop", str(engine.workdir)], engine.env, timeout=120)
    started = run_script([script, "start", str(engine.workdir)], engine.env, timeout=300)
    assert stopped.returncode == 0, stopped.stderr
    assert started.returncode == 0, f"dockerd did not start again: {started.stderr}"


def test_dockerd_restart_with_running_containers(docker_engine: DockerEngine, docker_plugin: Plugin,
                                                 busybox_image: str, containers: list[str],
                                                 figures: FigureTable) -> None:
    stopped = new_container(containers)
    docker_engine.docker("run", "--name", stopped, "--log-driver", docker_plugin.driver, busybox_image,
                         "seq", "1", "500", timeout=60, check=True)
    stopped_lines = docker_engine.docker("logs", stopped, check=True).stdout.split()
    assert stopped_lines == [str(i) for i in range(1, 501)]
    name = new_container(containers)
    since = log_size(docker_engine)
    start_writer(docker_engine, docker_plugin, busybox_image, name, "--restart", "always")
    before = logged(docker_engine, name)
    started = time.monotonic()
    try:
        restart_engine(docker_engine)
    finally:
        ensure_engine_running(docker_engine)
        ensure_plugin_enabled(docker_engine, docker_plugin)
    wait_for_new_lines(docker_engine, name, (2, -1))  # from the container's second run
    took = time.monotonic() - started
    outcome = finish(docker_engine, name, before, since)
    incarnations = sorted({n for n, _ in outcome.final})
    still = docker_engine.docker("logs", stopped, timeout=60).stdout.split()
    figures.add("R3", "dockerd restart (SIGTERM, start on the same data-root) with a --restart always container",
                f"{outcome.describe()}; incarnations {incarnations}; {took:.1f} s until it logged again; "
                f"stopped container's docker logs "
                f"{len(still)}/500 lines", "history intact, logs continue, 0 lost, 0 duplicates",
                not outcome.lost and outcome.duplicates == 0 and still == stopped_lines)
    outcome.check_history()
    assert incarnations == [1, 2], "the --restart always container logs on after dockerd's restart"
    assert not outcome.lost, f"lines lost across dockerd's restart: {outcome.lost[:20]}"
    assert still == stopped_lines, "docker logs of a container stopped before the restart"


def ensure_engine_running(engine: DockerEngine) -> None:
    """The engine is shared with the rest of the session: start it again if the restart left it down."""
    if engine.docker("version", timeout=30).returncode != 0:
        run_script([str(SCRIPTS / "docker-engine.sh"), "start", str(engine.workdir)], engine.env, timeout=300)
    wait_until(lambda: engine.docker("version", timeout=30).returncode == 0, 60, interval=0.5,
               message="dockerd to answer")
