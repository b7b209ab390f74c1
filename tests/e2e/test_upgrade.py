"""`docker plugin upgrade` while a container logs through the plugin (issue 14).

dockerd puts a logging plugin's FIFOs at ScopedPath("/run/docker/logging")/<id> (daemon/logger/plugin.go), which is
inside the plugin's rootfs unless the path is under the plugin's PropagatedMount; an upgrade swaps the rootfs
(plugin/manager_linux.go upgradePlugin: rootfs renamed to rootfs-old, the new one put in place, the old deleted). The
plugin declares PropagatedMount /run/docker/logging, so the FIFOs live in <plugin dir>/propagated-mount, survive the
swap, and the upgraded plugin re-attaches to them.

An upgrade also replaces the plugin's whole Config, and `docker plugin set data.source=...` is stored in
Config.Mounts (plugin/v2/plugin.go Set), unlike the env settings (Settings.Env, kept): the data mount falls back to
config.json's default, so the safe procedure sets it again before enabling. See docs/architecture.md, "Upgrading
the plugin"."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.e2e.conftest import DockerEngine, new_name, wait_until
from tests.e2e.registry_kit import (  # noqa: F401 - registry is a fixture
    Registry,
    install_plugin,
    push_again,
    push_plugin,
    registry,
    remove_containers_and_plugin,
)

# 20 lines a second, numbered, forever (the container's own pacing, not a synchronisation).
COUNTER = "i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done"


def data_source(engine: DockerEngine, plugin: str) -> str:
    mounts = json.loads(engine.docker("plugin", "inspect", "-f", "{{json .Config.Mounts}}", plugin,
                                      check=True).stdout)
    return str(next(m["Source"] for m in mounts if m["Name"] == "data"))


def numbers(engine: DockerEngine, name: str) -> list[int]:
    logs = engine.docker("logs", name, timeout=60)
    assert logs.returncode == 0, logs.stderr
    return [int(line) for line in logs.stdout.splitlines()]


def test_upgrade_keeps_every_line_of_a_running_container(docker_engine: DockerEngine, busybox_image: str,
                                                         registry: Registry,  # noqa: F811
                                                         names: list[str], tmp_path: Path) -> None:
    old, new = registry.ref("elp-up:1"), registry.ref("elp-up:2")
    push_plugin(docker_engine, old)
    push_again(docker_engine, new)
    data = tmp_path / "data"
    install_plugin(docker_engine, old, data)
    try:
        name = new_name(names)
        docker_engine.docker("run", "-d", "--name", name, "--log-driver", old, busybox_image, "sh", "-c", COUNTER,
                             timeout=60, check=True)
        wait_until(lambda: len(numbers(docker_engine, name)) >= 40, 30, message="40 lines before the upgrade")
        before = numbers(docker_engine, name)

        t0 = time.monotonic()
        docker_engine.docker("plugin", "disable", "-f", old, timeout=60, check=True)
        docker_engine.docker("plugin", "upgrade", "--grant-all-permissions", "--skip-remote-check", old, new,
                             timeout=300, check=True)
        assert data_source(docker_engine, old) == "/var/lib/docker", "Docker resets mount settings on upgrade"
        docker_engine.docker("plugin", "set", old, f"data.source={data}", check=True)
        docker_engine.docker("plugin", "enable", "--timeout", "0", old, timeout=120, check=True)
        down = time.monotonic() - t0
        print(f"disable -f + upgrade + set + enable: {down:.1f} s")  # the figure the README quotes

        # The stored history is served again at once, and what the container writes from now on is stored.
        after = numbers(docker_engine, name)
        assert after[:len(before)] == before
        wait_until(lambda: numbers(docker_engine, name)[-1] >= after[-1] + 40, 30,
                   message=f"40 new lines after the upgrade (plugin down {down:.1f} s)")
        running = docker_engine.docker("inspect", "-f", "{{.State.Running}}", name, check=True).stdout.strip()
        assert running == "true"
        docker_engine.docker("stop", "-t", "1", name, timeout=60, check=True)
        got = numbers(docker_engine, name)
        assert got == list(range(1, len(got) + 1)), "every line, once, in order, across the upgrade"
        reference = docker_engine.docker("plugin", "inspect", "-f", "{{.PluginReference}}", old, check=True)
        assert reference.stdout.strip() == new
    finally:
        remove_containers_and_plugin(docker_engine, names, old)
