"""Installed the way every Docker plugin is (issue 14): `make push` to a real registry (Debian's docker-registry on
127.0.0.1), `docker plugin rm`, `docker plugin install --grant-all-permissions`, and a container logging through it.
The build goes through the default BASE_IMAGE, which these machines cannot pull: build-plugin.sh must build the local
Debian base by itself and say so."""

from __future__ import annotations

from pathlib import Path

from tests.docker_fixtures import LOCAL_BASE_IMAGE
from tests.e2e.conftest import DockerEngine, new_name, wait_until
from tests.e2e.registry_kit import Registry, install_plugin, push_plugin, registry, remove_containers_and_plugin  # noqa: F401 - registry is a fixture
from tests.es_standin import EsStandin

DEFAULT_BASE_IMAGE = "python:3.11-slim-bookworm"


def test_push_install_and_log(docker_engine: DockerEngine, busybox_image: str, registry: Registry,  # noqa: F811
                              names: list[str], tmp_path: Path) -> None:
    ref = registry.ref("elp:1.0")
    # Without the local base in the engine, the default base must be pulled or replaced by the local one.
    docker_engine.docker("image", "rm", "-f", LOCAL_BASE_IMAGE, DEFAULT_BASE_IMAGE, timeout=60)
    built = push_plugin(docker_engine, ref)
    if docker_engine.docker("image", "inspect", DEFAULT_BASE_IMAGE).returncode != 0:
        said = [line for line in built.stderr.splitlines() if f"cannot pull {DEFAULT_BASE_IMAGE}" in line]
        assert len(said) == 1 and f"building the local Debian base {LOCAL_BASE_IMAGE}" in said[0], built.stderr
    assert docker_engine.docker("plugin", "inspect", ref).returncode != 0, "the local copy must be gone"

    install_plugin(docker_engine, ref, tmp_path / "data")
    try:
        with EsStandin() as es:  # on the host's 127.0.0.1: the plugin uses the host network
            name = new_name(names)
            run = docker_engine.docker("run", "--name", name, "--log-driver", ref, "--log-opt", f"hosts={es.url}",
                                       "--log-opt", "flush_interval=200ms", busybox_image, "seq", "1", "500",
                                       timeout=120)
            assert run.returncode == 0, run.stderr
            logs = docker_engine.docker("logs", name, timeout=60)
            assert logs.stdout == "".join(f"{i}\n" for i in range(1, 501)), logs.stderr
            wait_until(lambda: len(es.docs("logs-docker-default")) >= 500, 60, message="500 documents")
            assert sorted(int(d["message"]) for d in es.docs("logs-docker-default")) == list(range(1, 501))
        installed = docker_engine.docker("plugin", "inspect", "-f", "{{.PluginReference}}", ref, check=True)
        assert installed.stdout.strip() == ref
    finally:
        remove_containers_and_plugin(docker_engine, names, ref)
