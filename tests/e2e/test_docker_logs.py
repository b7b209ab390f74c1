"""`docker run --log-driver` and every `docker logs` option, through the real plugin on a real dockerd."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from supervisor.statscli import fetch_stats
from tests.e2e.conftest import ROOT, DockerEngine, Plugin, follower, new_name, wait_until


def run(engine: DockerEngine, plugin: Plugin, image: str, name: str, script: str,
        *extra: str) -> subprocess.CompletedProcess[str]:
    return engine.docker("run", "--name", name, "--log-driver", plugin.driver, *extra, image, "sh", "-c", script,
                         timeout=120)


def logs(engine: DockerEngine, name: str, *opts: str) -> subprocess.CompletedProcess[str]:
    result = engine.docker("logs", *opts, name, timeout=60)
    assert result.returncode == 0, result.stderr
    return result


def test_tail_counts_from_the_end(docker_engine: DockerEngine, plugin: Plugin, busybox_image: str,
                                  names: list[str]) -> None:
    name = new_name(names)
    assert run(docker_engine, plugin, busybox_image, name, "seq 1 500").returncode == 0
    assert logs(docker_engine, name).stdout == "".join(f"{i}\n" for i in range(1, 501))
    assert logs(docker_engine, name, "--tail", "3").stdout == "498\n499\n500\n"
    assert logs(docker_engine, name, "--tail", "0").stdout == ""
    assert logs(docker_engine, name, "--tail", "all").stdout.count("\n") == 500


def test_timestamps_since_and_until(docker_engine: DockerEngine, plugin: Plugin, busybox_image: str,
                                    names: list[str]) -> None:
    name = new_name(names)
    assert run(docker_engine, plugin, busybox_image, name, "echo a; echo b; echo c; echo d").returncode == 0
    stamped = logs(docker_engine, name, "-t").stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["a", "b", "c", "d"]
    stamps = [line.split(" ", 1)[0] for line in stamped]
    for stamp in stamps:  # RFC 3339 with nanoseconds: the plugin kept dockerd's time_nano
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(Z|[+-]\d\d:\d\d)", stamp), stamp
    assert stamps == sorted(stamps)
    if stamps[1] != stamps[2]:
        assert logs(docker_engine, name, "--since", stamps[2]).stdout == "c\nd\n"
        assert logs(docker_engine, name, "--until", stamps[1]).stdout == "a\nb\n"
    now = datetime.now().astimezone().isoformat()
    assert logs(docker_engine, name, "--since", now).stdout == ""


def test_follow_streams_live_and_ends_with_the_container(docker_engine: DockerEngine, plugin: Plugin,
                                                        busybox_image: str, names: list[str],
                                                        tmp_path: Path) -> None:
    name = new_name(names)
    trigger = tmp_path / "trigger"
    trigger.mkdir()
    script = "echo first; while [ ! -f /t/go ]; do sleep 0.05; done; echo second >&2; echo third"
    started = docker_engine.docker("run", "-d", "--name", name, "--log-driver", plugin.driver,
                                   "-v", f"{trigger}:/t", busybox_image, "sh", "-c", script, timeout=60)
    assert started.returncode == 0, started.stderr
    with follower(docker_engine, name) as follow:
        assert follow.stdout is not None
        assert follow.stdout.readline() == "first\n"
        state = docker_engine.docker("inspect", "-f", "{{.State.Running}}", name, check=True).stdout.strip()
        assert state == "true", "the first line must arrive while the container still runs"
        (trigger / "go").write_text("")
        out, err = follow.communicate(timeout=30)
    assert follow.returncode == 0
    assert out == "third\n"
    assert err == "second\n"


def test_stdout_and_stderr_stay_apart(docker_engine: DockerEngine, plugin: Plugin, busybox_image: str,
                                      names: list[str]) -> None:
    name = new_name(names)
    script = "for i in 1 2 3; do echo out$i; echo err$i >&2; done"
    assert run(docker_engine, plugin, busybox_image, name, script).returncode == 0
    result = logs(docker_engine, name)
    assert result.stdout == "out1\nout2\nout3\n"
    assert result.stderr == "err1\nerr2\nerr3\n"


def test_100_kib_line_comes_back_whole(docker_engine: DockerEngine, plugin: Plugin, busybox_image: str,
                                       names: list[str]) -> None:
    name = new_name(names)
    script = "head -c 102400 /dev/zero | tr '\\0' a; echo; echo after"
    assert run(docker_engine, plugin, busybox_image, name, script).returncode == 0
    assert logs(docker_engine, name).stdout == "a" * 102400 + "\nafter\n"
    assert logs(docker_engine, name, "--tail", "1").stdout == "after\n"


def test_three_containers_at_once(docker_engine: DockerEngine, plugin: Plugin, busybox_image: str,
                                  names: list[str]) -> None:
    batch = [new_name(names) for _ in range(3)]
    for i, name in enumerate(batch):
        started = docker_engine.docker("run", "-d", "--name", name, "--log-driver", plugin.driver, busybox_image,
                                       "sh", "-c", f"seq 1 2000 | sed 's/^/c{i} /'", timeout=60)
        assert started.returncode == 0, started.stderr
    codes = docker_engine.docker("wait", *batch, timeout=120, check=True).stdout.split()
    assert codes == ["0", "0", "0"]
    for i, name in enumerate(batch):
        assert logs(docker_engine, name).stdout == "".join(f"c{i} {n}\n" for n in range(1, 2001))
        cid = docker_engine.docker("inspect", "-f", "{{.Id}}", name, check=True).stdout.strip()
        wait_until(plugin.container_log(cid).is_file, message="the container's own store file")


def test_restart_keeps_history(docker_engine: DockerEngine, plugin: Plugin, busybox_image: str,
                               names: list[str]) -> None:
    name = new_name(names)
    assert run(docker_engine, plugin, busybox_image, name, "echo run").returncode == 0
    assert docker_engine.docker("start", "-a", name, timeout=60).returncode == 0
    assert logs(docker_engine, name).stdout == "run\nrun\n"


def test_invalid_log_opt_fails_docker_run_naming_it(docker_engine: DockerEngine, plugin: Plugin,
                                                    busybox_image: str, names: list[str]) -> None:
    name = new_name(names)
    result = run(docker_engine, plugin, busybox_image, name, "echo never", "--log-opt", "no-such-opt=1")
    assert result.returncode != 0
    assert "no-such-opt" in result.stderr
    result = run(docker_engine, plugin, busybox_image, new_name(names), "echo never", "--log-opt", "max-file=x")
    assert result.returncode != 0
    assert "max-file" in result.stderr


def test_stats_through_the_plugin_socket_on_the_host(docker_engine: DockerEngine, plugin: Plugin) -> None:
    plugin_id = docker_engine.docker("plugin", "inspect", "-f", "{{.Id}}", plugin.name, check=True).stdout.strip()
    socket_path = Path(f"/run/docker/plugins/{plugin_id}/elp.sock")
    data = fetch_stats(socket_path)
    assert data["supervisor"]["protobuf"] == "upb", "the plugin must decode with protobuf's C backend"
    assert data["localstore"]["pid"] > 0
    table = subprocess.run([sys.executable, "-m", "supervisor", "stats", "--socket", str(socket_path)],
                           capture_output=True, text=True, timeout=30, check=True, cwd=ROOT).stdout
    assert table.startswith("supervisor  pid")
