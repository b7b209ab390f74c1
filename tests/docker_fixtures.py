"""Docker fixtures (a pytest plugin loaded by tests/conftest.py): a private dockerd, the local test images and
the plugin built from this tree, shared by tests/e2e and tests/reliability.

Everything is session-scoped (setting up costs about a minute, most of it `docker plugin create`):

* ``docker_engine``: a private dockerd, every path under ``/tmp/elp-e2e-*`` (scripts/docker-engine.sh);
* ``busybox_image``: ``test/busybox``, imported from busybox-static (scripts/make-images.sh);
* ``docker_plugin``: scripts/build-plugin.sh on the working tree, over the debootstrap base image (no registry),
  with the ``data`` mount's source set to a folder of the work dir, enabled with ``--timeout 0``.

Needs root and dockerd (docker.io), and must be alone: only one engine using plugins may run on a machine
(plugin sockets always live in the host's /run/docker/plugins/<id>/). Without those the tests are skipped,
unless ``ELP_REQUIRE_E2E=1`` (set by .ci/run), which turns every such skip into a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testkit.plugin import wait_until  # noqa: F401 - re-exported for the docker tests

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
REQUIRE_E2E = os.environ.get("ELP_REQUIRE_E2E") == "1"
PLUGIN_NAME = "elastic-logging-plugin:latest"
# The name containers use with --log-driver (the plugin name without its :latest tag).
LOG_DRIVER = "elastic-logging-plugin"
BUSYBOX_IMAGE = "test/busybox"
# The plugin's base image: the local debootstrap one (scripts/make-images.sh) unless told otherwise.
LOCAL_BASE_IMAGE = "elastic-logging-plugin/base:bookworm"
BASE_IMAGE = os.environ.get("ELP_E2E_BASE_IMAGE", LOCAL_BASE_IMAGE)


def unavailable(reason: str) -> None:
    """Skip, or fail when the e2e tests are required (CI)."""
    if REQUIRE_E2E:
        pytest.fail(f"e2e tests required (ELP_REQUIRE_E2E=1) but {reason}", pytrace=False)
    pytest.skip(reason)


def run_script(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL, cwd=ROOT)


@dataclass
class DockerEngine:
    """A running private dockerd and a docker CLI helper bound to it."""

    workdir: Path

    @property
    def host(self) -> str:
        return f"unix://{self.workdir}/docker.sock"

    @property
    def env(self) -> dict[str, str]:
        """The environment for docker CLI commands and our scripts."""
        return {**os.environ, "DOCKER_HOST": self.host}

    def docker(self, *args: str, timeout: float = 60, check: bool = False,
               input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``docker ARGS...`` against this engine; stdout and stderr are captured as text."""
        proc = subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True,
                              errors="replace", timeout=timeout, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {proc.returncode}\n"
                                 f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def dockerd_log(self) -> str:
        try:
            return (self.workdir / "dockerd.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def plugin_log(self, last: int = 60) -> str:
        """The last lines dockerd logged for plugins (the plugin's stderr lands there, ``plugin=<id>``)."""
        lines = [line for line in self.dockerd_log().splitlines() if "plugin=" in line]
        return "\n".join(lines[-last:])


@dataclass
class Plugin:
    """The enabled plugin; ``data_source`` is what the plugin sees as /var/lib/docker."""

    engine: DockerEngine
    name: str
    driver: str
    data_source: Path

    @property
    def store_dir(self) -> Path:
        """The data dir (/var/lib/docker/elastic-logging-plugin in the plugin), seen from the host."""
        return self.data_source / "elastic-logging-plugin"

    def container_log(self, container_id: str) -> Path:
        return self.store_dir / "containers" / container_id / "container.log"


_ENGINE: DockerEngine | None = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failure of a test using the engine, attach what the plugin logged (its stderr is in dockerd's log)."""
    report = yield
    if report.failed and _ENGINE is not None and "docker_engine" in getattr(item, "fixturenames", ()):
        report.sections.append(("plugin lines of dockerd.log", _ENGINE.plugin_log()))
    return report


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    global _ENGINE
    if os.geteuid() != 0:
        unavailable("the e2e tests need root (they run a private dockerd)")
    if shutil.which("dockerd") is None:
        unavailable("dockerd is not installed (apt-get install docker.io)")
    others = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True, check=False).stdout.split()
    if others:
        unavailable(f"another dockerd is running (pid {', '.join(others)}); only one plugin-using engine "
                    "may run at a time")
    workdir = Path(tempfile.mkdtemp(prefix="elp-e2e-", dir="/tmp"))  # short: unix socket paths
    engine = DockerEngine(workdir)
    script = str(SCRIPTS / "docker-engine.sh")
    started = run_script([script, "start", str(workdir)], engine.env, timeout=300)
    try:
        if started.returncode != 0:
            pytest.fail(f"could not start dockerd:\n{started.stderr}\n--- dockerd.log ---\n"
                        f"{engine.dockerd_log()[-4000:]}", pytrace=False)
        _ENGINE = engine
        yield engine
    finally:
        _ENGINE = None
        run_script([script, "stop", str(workdir)], engine.env, timeout=120)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def busybox_image(docker_engine: DockerEngine) -> str:
    made = run_script([str(SCRIPTS / "make-images.sh"), "busybox"], docker_engine.env, timeout=300)
    if made.returncode != 0:
        pytest.fail(f"could not make {BUSYBOX_IMAGE}:\n{made.stderr}", pytrace=False)
    return BUSYBOX_IMAGE


@pytest.fixture(scope="session")
def docker_plugin(docker_engine: DockerEngine) -> Iterator[Plugin]:
    env = {**docker_engine.env, "BASE_IMAGE": BASE_IMAGE, "PLUGIN_NAME": PLUGIN_NAME}
    if BASE_IMAGE == LOCAL_BASE_IMAGE:
        made = run_script([str(SCRIPTS / "make-images.sh"), "base"], env, timeout=600)
        if made.returncode != 0:
            pytest.fail(f"could not make {BASE_IMAGE}:\n{made.stderr}", pytrace=False)
    data_source = docker_engine.workdir / "plugin-data"
    data_source.mkdir()
    built = run_script([str(SCRIPTS / "build-plugin.sh"), f"data.source={data_source}"], env, timeout=900)
    if built.returncode != 0:
        pytest.fail(f"build-plugin.sh failed (exit {built.returncode}):\n{built.stderr[-6000:]}\n"
                    f"--- plugin lines of dockerd.log ---\n{docker_engine.plugin_log()}", pytrace=False)
    try:
        yield Plugin(docker_engine, PLUGIN_NAME, LOG_DRIVER, data_source)
    finally:
        docker_engine.docker("plugin", "disable", "-f", PLUGIN_NAME, timeout=60)
        docker_engine.docker("plugin", "rm", "-f", PLUGIN_NAME, timeout=60)


@pytest.fixture
def names(docker_engine: DockerEngine) -> Iterator[list[str]]:
    """Container names for one test (see ``new_name``), removed afterwards."""
    made: list[str] = []
    yield made
    for name in made:
        docker_engine.docker("rm", "-f", name, timeout=60)


def new_name(names: list[str]) -> str:
    name = f"elp-e2e-{uuid.uuid4().hex[:8]}"
    names.append(name)
    return name


@contextlib.contextmanager
def follower(engine: DockerEngine, name: str) -> Iterator[subprocess.Popen[str]]:
    """`docker logs -f NAME` running; killed and reaped (pipes closed) however the test ends."""
    proc = subprocess.Popen(["docker", "logs", "-f", name], env=engine.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.communicate()
