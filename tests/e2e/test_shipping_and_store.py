"""Through a real dockerd: shipping to Elasticsearch, rotation under `docker logs -f`, DESTROY_LOGS_ON_STOP."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tests.e2e.conftest import PLUGIN_NAME, DockerEngine, Plugin, follower, new_name, wait_until
from tests.es_standin import EsStandin


def container_id(engine: DockerEngine, name: str) -> str:
    return engine.docker("inspect", "-f", "{{.Id}}", name, check=True).stdout.strip()


def test_lines_reach_elasticsearch_once(docker_engine: DockerEngine, plugin: Plugin, busybox_image: str,
                                        names: list[str]) -> None:
    with EsStandin() as es:  # on the host's 127.0.0.1: the plugin uses the host network
        name = new_name(names)
        run = docker_engine.docker("run", "--name", name, "--log-driver", plugin.driver,
                                   "--log-opt", f"hosts={es.url}", "--log-opt", "flush_interval=200ms",
                                   busybox_image, "sh", "-c", "seq 1 3000; echo oops >&2", timeout=120)
        assert run.returncode == 0, run.stderr
        wait_until(lambda: len(es.docs("logs-docker-default")) >= 3001, 60, message="3001 documents")
        docs = es.docs("logs-docker-default")
        counts = Counter(d["message"] for d in docs)
        assert len(docs) == 3001 and max(counts.values()) == 1
        assert {str(i) for i in range(1, 3001)} | {"oops"} == set(counts)
        oops = next(d for d in docs if d["message"] == "oops")
        assert oops["stream"] == "stderr"
        assert oops["container"]["id"] == container_id(docker_engine, name)
        assert oops["container"]["name"] == name
        assert oops["container"]["image"]["name"] == busybox_image


def test_follow_across_rotations(docker_engine: DockerEngine, plugin: Plugin, busybox_image: str,
                                 names: list[str], tmp_path: Path) -> None:
    name = new_name(names)
    gate = tmp_path / "gate"
    gate.mkdir()
    script = "echo first; while [ ! -f /g/go ]; do sleep 0.05; done; seq 1 20000"
    started = docker_engine.docker("run", "-d", "--name", name, "--log-driver", plugin.driver,
                                   "--log-opt", "max-size=50k", "--log-opt", "max-file=100", "-v", f"{gate}:/g",
                                   busybox_image, "sh", "-c", script, timeout=60)
    assert started.returncode == 0, started.stderr
    with follower(docker_engine, name) as follow:
        assert follow.stdout is not None
        assert follow.stdout.readline() == "first\n"
        (gate / "go").write_text("")
        out, _ = follow.communicate(timeout=60)
    assert out == "".join(f"{i}\n" for i in range(1, 20001))
    files = list((plugin.store_dir / "containers" / container_id(docker_engine, name)).glob("container.log*"))
    assert len(files) > 5, "the follower must have crossed several rotations"


def test_destroy_logs_on_stop_via_plugin_set(docker_engine: DockerEngine, plugin: Plugin, busybox_image: str,
                                             names: list[str]) -> None:
    def set_plugin(value: str) -> None:
        docker_engine.docker("plugin", "disable", "-f", PLUGIN_NAME, timeout=60, check=True)
        docker_engine.docker("plugin", "set", PLUGIN_NAME, f"DESTROY_LOGS_ON_STOP={value}", check=True)
        docker_engine.docker("plugin", "enable", "--timeout", "0", PLUGIN_NAME, timeout=60, check=True)

    set_plugin("true")
    try:
        keep, gone = new_name(names), new_name(names)
        running = docker_engine.docker("run", "-d", "--name", keep, "--log-driver", plugin.driver, busybox_image,
                                       "sh", "-c", "echo kept; sleep 300", timeout=60)
        assert running.returncode == 0, running.stderr
        run = docker_engine.docker("run", "--name", gone, "--log-driver", plugin.driver, busybox_image,
                                   "sh", "-c", "echo short-lived", timeout=60)
        assert run.returncode == 0, run.stderr
        folder = plugin.store_dir / "containers" / container_id(docker_engine, gone)
        wait_until(lambda: not folder.exists(), 30, message="the stopped container's files to be deleted")
        kept = plugin.store_dir / "containers" / container_id(docker_engine, keep)
        # A quiet running container's line may still sit in its reader's open batch (up to a second): docker logs
        # asks the reader for it first, and the file is there once it was stored.
        assert docker_engine.docker("logs", keep, timeout=30).stdout == "kept\n"
        assert (kept / "container.log").exists()
    finally:
        for name in names:
            docker_engine.docker("rm", "-f", name, timeout=60)
        set_plugin("false")
