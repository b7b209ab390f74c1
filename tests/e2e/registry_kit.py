"""A private Docker registry for the e2e tests: Debian's ``docker-registry`` (distribution 2.8) serving plain HTTP
on 127.0.0.1 (dockerd talks HTTP to registries in 127.0.0.0/8 without any --insecure-registry), with its own config
and storage under a temporary folder, on a free port. Also the helpers to push a built plugin and install it back."""

from __future__ import annotations

import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.docker_fixtures import ROOT, SCRIPTS, DockerEngine, run_script, unavailable, wait_until

REGISTRY_BIN = "docker-registry"


@dataclass
class Registry:
    host: str  # 127.0.0.1:<port>, the prefix of the plugin names pushed there

    def ref(self, name: str) -> str:
        return f"{self.host}/{name}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    binary = shutil.which(REGISTRY_BIN)
    if binary is None:
        unavailable("docker-registry is not installed (apt-get install docker-registry)")
    assert binary is not None
    work = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = work / "config.yml"
    config.write_text(f"""version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {work / "storage"}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
""")
    log = (work / "registry.log").open("w")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/v2/") or proc.poll() is not None, 30,
                   message="docker-registry answers on /v2/")
        if proc.poll() is not None:
            pytest.fail(f"docker-registry exited {proc.returncode}:\n{(work / 'registry.log').read_text()}",
                        pytrace=False)
        yield Registry(f"127.0.0.1:{port}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def push_plugin(engine: DockerEngine, ref: str, base_image: str | None = None) -> subprocess.CompletedProcess[str]:
    """`make push PLUGIN_NAME=ref` (scripts/build-plugin.sh with PUSH=1), then the local copy is removed."""
    env = {**engine.env, "PLUGIN_NAME": ref, "PUSH": "1"}
    env.pop("BASE_IMAGE", None)
    if base_image is not None:
        env["BASE_IMAGE"] = base_image
    built = run_script([str(SCRIPTS / "build-plugin.sh")], env, timeout=900)
    assert built.returncode == 0, f"build-plugin.sh (PUSH=1) exited {built.returncode}:\n{built.stderr[-6000:]}"
    engine.docker("plugin", "rm", "-f", ref, timeout=60, check=True)
    return built


def push_again(engine: DockerEngine, ref: str) -> None:
    """Push the plugin folder the last build left (build/plugin) under another reference."""
    engine.docker("plugin", "create", ref, str(ROOT / "build" / "plugin"), timeout=300, check=True)
    engine.docker("plugin", "push", ref, timeout=300, check=True)
    engine.docker("plugin", "rm", "-f", ref, timeout=60, check=True)


def install_plugin(engine: DockerEngine, ref: str, data_source: Path) -> None:
    """What the README says a user does, with the data folder and the timeout the tests need."""
    data_source.mkdir(parents=True, exist_ok=True)
    engine.docker("plugin", "install", "--grant-all-permissions", "--disable", ref, f"data.source={data_source}",
                  timeout=300, check=True)
    engine.docker("plugin", "enable", "--timeout", "0", ref, timeout=120, check=True)


def remove_containers_and_plugin(engine: DockerEngine, names: list[str], ref: str) -> None:
    """A test's containers first (a plugin in use cannot be removed), then the plugin it installed."""
    for name in names:
        engine.docker("rm", "-f", name, timeout=60)
    names.clear()
    engine.docker("plugin", "disable", "-f", ref, timeout=60)
    engine.docker("plugin", "rm", "-f", ref, timeout=60)
