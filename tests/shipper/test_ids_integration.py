"""Documents' ids through the real supervisor and the Elasticsearch stand-in: the same id for the same line whatever
restarts, never the same id for another line (localstore/generations.py, shipper/feed.py doc_id)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunningPlugin, start_plugin, wait_until
from tests.dockerd_driver import FakeLogger, entry
from tests.es_standin import EsStandin

INDEX = "logs-docker-default"


@pytest.fixture
def es() -> Iterator[EsStandin]:
    with EsStandin() as standin:
        yield standin


@pytest.fixture
def destroying_plugin(short_tmp: Path) -> Iterator[RunningPlugin]:
    plugin = start_plugin(short_tmp, env={"DESTROY_LOGS_ON_STOP": "true"})
    try:
        yield plugin
    finally:
        assert plugin.stop() == 0


def messages(es: EsStandin) -> Counter[str]:
    return Counter(d["message"] for d in es.docs(INDEX))


def test_a_container_started_again_after_destroy_ships_every_new_line(destroying_plugin: RunningPlugin,
                                                                     es: EsStandin) -> None:
    # The reproduced loss: its folder deleted on stop, the same container (same id) started again logged lines of
    # the same lengths at the same positions, and Elasticsearch answered 409 to every one of them.
    plugin = destroying_plugin
    first = plugin.logger(config={"hosts": es.url})
    first.start()
    first.write(*(entry(b"first %03d" % i) for i in range(200)))
    wait_until(lambda: es.count(INDEX) >= 200, 20, message="the first run's 200 documents")
    first.stop()
    folder = plugin.data_dir / "containers" / first.container_id
    wait_until(lambda: not folder.exists(), 20, message="the container's folder to be deleted")
    again = FakeLogger(plugin.client, plugin.fifo_dir, container_id=first.container_id, config=first.config)
    again.start()
    again.write(*(entry(b"again %03d" % i) for i in range(200)))
    wait_until(lambda: es.count(INDEX) >= 400, 20, message="the second run's 200 documents too")
    counts = messages(es)
    assert len(counts) == 400 and max(counts.values()) == 1
    assert es.duplicates_rejected == 0
    again.stop()
