"""RETAIN_STOPPED_FOR through a real dockerd: the files of a container stopped for longer than the setting go, those
of a running container stay however quiet it is."""

from __future__ import annotations

import time
from pathlib import Path

from tests.e2e.conftest import PLUGIN_NAME, DockerEngine, Plugin, new_name, wait_until

RETAIN = 3.0  # seconds
# The local store looks for expired containers when it starts and then once a minute (EXPIRY_INTERVAL).
EXPIRY_PASS = 60.0


def set_retention(engine: DockerEngine, value: str) -> None:
    """Plugin settings change only while the plugin is disabled."""
    engine.docker("plugin", "disable", "-f", PLUGIN_NAME, timeout=60, check=True)
    engine.docker("plugin", "set", PLUGIN_NAME, f"RETAIN_STOPPED_FOR={value}", check=True)
    engine.docker("plugin", "enable", "--timeout", "0", PLUGIN_NAME, timeout=60, check=True)


def container_id(engine: DockerEngine, name: str) -> str:
    return engine.docker("inspect", "-f", "{{.Id}}", name, check=True).stdout.strip()


def newest_mtime(folder: Path) -> float:
    return max(p.stat().st_mtime for p in folder.iterdir())


def test_retain_stopped_for_deletes_stopped_containers_only(docker_engine: DockerEngine, plugin: Plugin,
                                                            busybox_image: str, names: list[str]) -> None:
    set_retention(docker_engine, f"{RETAIN:.0f}s")
    try:
        running, stopped = new_name(names), new_name(names)
        started = docker_engine.docker("run", "-d", "--name", running, "--log-driver", plugin.driver,
                                       busybox_image, "sh", "-c", "echo still running; sleep 600", timeout=60)
        assert started.returncode == 0, started.stderr
        # docker logs has the reader store the line it may still hold: from here on the running container's files
        # are never written again, and are older than the stopped container's.
        assert docker_engine.docker("logs", running, timeout=30).stdout == "still running\n"
        run = docker_engine.docker("run", "--name", stopped, "--log-driver", plugin.driver, busybox_image,
                                   "sh", "-c", "echo short-lived", timeout=60)
        assert run.returncode == 0, run.stderr
        store = plugin.store_dir / "containers"
        gone, kept = store / container_id(docker_engine, stopped), store / container_id(docker_engine, running)
        assert (gone / "container.log").exists()
        kept_mtime = newest_mtime(kept)
        assert kept_mtime <= newest_mtime(gone)

        wait_until(lambda: not gone.exists(), EXPIRY_PASS + 30, interval=0.5,
                   message=f"the files of a container stopped for over {RETAIN}s to be deleted")
        # The same pass judged the running container, whose files are older still: they stay.
        assert time.time() - kept_mtime > RETAIN
        assert (kept / "container.log").exists()
        assert docker_engine.docker("logs", running, timeout=30).stdout == "still running\n"
        log = docker_engine.plugin_log(last=200)
        assert f"container {gone.name[:12]}: deleted its local logs" in log and "RETAIN_STOPPED_FOR" in log
        assert f"container {kept.name[:12]}: deleted" not in log
    finally:
        for name in names:
            docker_engine.docker("rm", "-f", name, timeout=60)
        set_retention(docker_engine, "0")
