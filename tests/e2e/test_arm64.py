"""arm64 (issue 14): `make push ARCH=arm64` (scripts/build-plugin.sh with PUSH=1 ARCH=arm64) builds an arm64
plugin on this amd64 machine (aarch64 wheels from `pip download --platform`, the arm64 Debian base from
debootstrap + qemu-user-static) and pushes it. The arm64 rootfs's Python, run under qemu, imports every installed
package and uses protobuf's upb backend; installed from the registry, the plugin (all of it emulated) serves
StartLogging and ReadLogs.

Needs qemu-user-static and binfmt_misc (scripts/qemu-binfmt.sh registers them; .ci/run installs the package)."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

import pytest

from tests.docker_fixtures import ROOT, SCRIPTS, run_script, unavailable
from tests.e2e.conftest import DockerEngine, new_name
from tests.e2e.registry_kit import Registry, install_plugin, registry, remove_containers_and_plugin  # noqa: F401 - registry is a fixture

ROOTFS = ROOT / "build" / "plugin-arm64" / "rootfs"

# Run inside the arm64 rootfs: every installed distribution's top-level modules import, on aarch64, with upb.
CHECK = r"""
import importlib, importlib.metadata as md, os, platform
site = "/opt/elp/site"
mods = set()
for dist in md.distributions(path=[site]):
    for f in dist.files or ():
        p = f.parts
        if p[0].endswith((".dist-info", ".data")) or p[0] in ("..", "bin", "__pycache__"):
            continue
        if len(p) == 1:  # a top-level module: x.py, _x.cpython-311-aarch64-linux-gnu.so
            if f.name.endswith(".py") or ".so" in f.name:
                mods.add(f.name.split(".")[0])
            continue
        # the shallowest package holding the file (google/protobuf/...: a namespace, then a package)
        for depth in range(1, len(p)):
            if os.path.exists(os.path.join(site, *p[:depth], "__init__.py")):
                mods.add(".".join(p[:depth]))
                break
mods = {m for m in mods if not m.startswith("_") and m.split(".")[0] not in ("tests", "bench", "testkit")}
for name in sorted(mods):
    importlib.import_module(name)
from google.protobuf.internal import api_implementation
print(platform.machine(), api_implementation.Type(), " ".join(sorted(mods)))
"""


@pytest.fixture(scope="module")
def arm64_binfmt() -> None:
    if platform.machine() != "x86_64":
        pytest.skip("the arm64 cross-build test runs on amd64 machines")
    registered = subprocess.run([str(SCRIPTS / "qemu-binfmt.sh"), "arm64"], capture_output=True, text=True,
                                check=False)
    if registered.returncode != 0:
        unavailable(f"cannot run arm64 binaries under qemu here: {registered.stderr.strip()}")


def test_arm64_plugin_builds_imports_and_logs(docker_engine: DockerEngine, busybox_image: str,
                                              arm64_binfmt: None, registry: Registry,  # noqa: F811
                                              names: list[str], tmp_path: Path) -> None:
    ref = registry.ref("elp:arm64")
    t0 = time.monotonic()
    env = {**docker_engine.env, "PLUGIN_NAME": ref, "PUSH": "1", "ARCH": "arm64"}
    env.pop("BASE_IMAGE", None)
    # What `make push` runs (make itself would first refresh the virtualenv).
    built = run_script([str(SCRIPTS / "build-plugin.sh")], env, timeout=1500)
    assert built.returncode == 0, f"build-plugin.sh ARCH=arm64 exited {built.returncode}:\n{built.stderr[-6000:]}"
    print(f"arm64 build + push: {time.monotonic() - t0:.0f} s")  # the figure the README quotes
    docker_engine.docker("plugin", "rm", "-f", ref, timeout=60, check=True)

    wheels = {p.name for p in (ROOT / "build" / "wheels" / "arm64").glob("*.whl")}
    native = [w for w in wheels if "aarch64" in w]
    assert native and not [w for w in wheels if "x86_64" in w], sorted(wheels)
    checked = subprocess.run(["chroot", str(ROOTFS), "/usr/bin/python3", "-c", CHECK], capture_output=True,
                             text=True, timeout=600, check=False, env={**os.environ, "PYTHONPATH": "/opt/elp/site"})
    assert checked.returncode == 0, checked.stderr[-4000:]
    machine, backend, modules = checked.stdout.split(maxsplit=2)
    assert (machine, backend) == ("aarch64", "upb"), checked.stdout
    for expected in ("supervisor", "workers", "shipper", "localstore", "proto", "zmq", "uvloop", "re2",
                     "google.protobuf", "msgpack", "orjson", "psutil", "aiohttp", "elasticsearch", "prometheus_client"):
        assert expected in modules.split(), modules

    install_plugin(docker_engine, ref, tmp_path / "data")
    try:
        name = new_name(names)
        run = docker_engine.docker("run", "--name", name, "--log-driver", ref, busybox_image, "seq", "1", "100",
                                   timeout=300)
        assert run.returncode == 0, run.stderr  # StartLogging answered by the emulated plugin
        logs = docker_engine.docker("logs", name, timeout=120)  # ReadLogs
        assert logs.stdout == "".join(f"{i}\n" for i in range(1, 101)), logs.stderr
    finally:
        remove_containers_and_plugin(docker_engine, names, ref)
