"""Smoke test: a container logs through the real plugin on a real dockerd, and `docker logs` reads it back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import DockerEngine, Plugin, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def container_name(docker_engine: DockerEngine) -> Iterator[str]:
    name = f"elp-smoke-{uuid.uuid4().hex[:8]}"
    yield name
    docker_engine.docker("rm", "-f", name, timeout=60)


def test_run_then_docker_logs(docker_engine: DockerEngine, plugin: Plugin, busybox_image: str,
                              container_name: str) -> None:
    run = docker_engine.docker("run", "--name", container_name, "--log-driver", plugin.driver, busybox_image,
                               "sh", "-c", "echo hello; echo err >&2", timeout=60)
    assert run.returncode == 0, run.stderr
    container_id = docker_engine.docker("inspect", "-f", "{{.Id}}", container_name, check=True).stdout.strip()

    # The container has exited: dockerd asks the plugin (temporary logger + ReadLogs) for its output.
    logs = docker_engine.docker("logs", container_name, timeout=30)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == "hello\n"
    assert logs.stderr == "err\n"

    store_file = plugin.container_log(container_id)
    wait_until(store_file.is_file, timeout=10, message=f"{store_file} to exist")
    assert store_file.stat().st_size > 0


def test_tail_and_unterminated_last_line(docker_engine: DockerEngine, plugin: Plugin, busybox_image: str,
                                         container_name: str) -> None:
    script = "for i in 1 2 3 4 5; do echo line $i; done; printf 'no newline'"
    run = docker_engine.docker("run", "--name", container_name, "--log-driver", plugin.driver, busybox_image,
                               "sh", "-c", script, timeout=60)
    assert run.returncode == 0, run.stderr

    logs = docker_engine.docker("logs", container_name, timeout=30)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == "line 1\nline 2\nline 3\nline 4\nline 5\nno newline"

    tail = docker_engine.docker("logs", "--tail", "2", container_name, timeout=30)
    assert tail.returncode == 0, tail.stderr
    assert tail.stdout == "line 5\nno newline"
