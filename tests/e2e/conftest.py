"""Every test under tests/e2e is an e2e test; the Docker fixtures themselves live in tests/docker_fixtures.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docker_fixtures import (  # noqa: F401 - re-exported for the e2e tests
    PLUGIN_NAME,
    ROOT,
    DockerEngine,
    Plugin,
    follower,
    new_name,
    wait_until,
)

E2E_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def plugin(docker_plugin: Plugin) -> Plugin:
    """The plugin enabled in the private engine (``tests.conftest.plugin`` is the bare supervisor)."""
    return docker_plugin
