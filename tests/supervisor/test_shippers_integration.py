"""SHIPPERS=2 on the real supervisor with the Elasticsearch stand-in: each container is shipped by one process (its
documents carry one ``agent.ephemeral_id``, which is new at each start of a shipper), every line arrives once, and
a SIGKILLed second shipper is respawned and its containers go on without loss or duplicates, still apart from the
first shipper's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proto.shards import shard_of
from testkit.dockerd_driver import FakeLogger, entry, new_container_id
from testkit.plugin import RunningPlugin, start_plugin, wait_until
from tests.es_standin import EsStandin

INDEX = "logs-docker-default"
PER_SHARD = 2


@pytest.fixture
def two_shippers(short_tmp: Path) -> Iterator[RunningPlugin]:
    running = start_plugin(short_tmp, env={"SHIPPERS": "2"})
    try:
        yield running
    finally:
        running.stop()


def loggers_of_both_shards(plugin: RunningPlugin, es: EsStandin) -> dict[int, list[FakeLogger]]:
    """PER_SHARD containers for each of the two shippers (ids drawn until each share has its count)."""
    shards: dict[int, list[FakeLogger]] = {0: [], 1: []}
    while min(len(v) for v in shards.values()) < PER_SHARD:
        container_id = new_container_id()
        shard = shards[shard_of(container_id, 2)]
        if len(shard) < PER_SHARD:
            shard.append(plugin.logger(container_id=container_id, config={"hosts": es.url}))
    return shards


def write(loggers: list[FakeLogger], tag: bytes, lines: int) -> None:
    for lg in loggers:
        lg.write(*(entry(b"%s %s %05d" % (lg.container_id[:12].encode(), tag, i)) for i in range(lines)))


def ephemeral_ids(es: EsStandin) -> dict[str, set[str]]:
    """Container id -> the agent.ephemeral_id of its documents (one per shipper incarnation that shipped it)."""
    found: dict[str, set[str]] = defaultdict(set)
    for doc in es.docs(INDEX):
        found[doc["container"]["id"]].add(doc["agent"]["ephemeral_id"])
    return found


def assert_exactly_once(es: EsStandin, expected: int) -> None:
    counts = Counter(d["message"] for d in es.docs(INDEX))
    assert len(counts) == expected
    assert max(counts.values()) == 1


def shipper(plugin: RunningPlugin, index: int) -> dict[str, Any]:
    entry_: dict[str, Any] = plugin.stats()["shippers"][index]
    assert entry_["index"] == index
    return entry_


def test_two_shippers_share_the_containers_and_ship_every_line_once(two_shippers: RunningPlugin,
                                                                   es: EsStandin) -> None:
    plugin = two_shippers
    shards = loggers_of_both_shards(plugin, es)
    loggers = [lg for shard in shards.values() for lg in shard]
    for lg in loggers:
        assert not lg.start().get("Err")
    write(loggers, b"a", 500)
    total = 500 * len(loggers)
    wait_until(lambda: es.count(INDEX) >= total, 30, message="every line in Elasticsearch")
    assert_exactly_once(es, total)
    ids = ephemeral_ids(es)
    for shard in shards.values():  # one process per container, and one per share: the shares went apart
        assert len({i for lg in shard for i in ids[lg.container_id]}) == 1
    assert ids[shards[0][0].container_id] != ids[shards[1][0].container_id]
    # The shippers report once a second: wait for the reports that count every document.
    stats = wait_until(lambda: (s := plugin.stats())["shipper"]["shipped_total"] == total and s, 10,
                       message="the shippers' reports")
    each = stats["shippers"]
    assert [e["index"] for e in each] == [0, 1] and all(e["pid"] for e in each)
    assert len({e["pid"] for e in each}) == 2
    assert [e["shipped_total"] for e in each] == [500 * PER_SHARD] * 2
    assert stats["shipper"]["pids"] == [e["pid"] for e in each]
    assert {o["shipper"] for o in stats["shipper"]["outputs"]} == {0, 1}
    status, body = plugin.client.request("/metrics", None, method="GET")
    metrics = body.decode()
    assert status == 200
    for index in (0, 1):
        assert f'elp_shipper_process_shipped_total{{shipper="{index}"}} {500.0 * PER_SHARD}' in metrics
    assert f"elp_shipper_shipped_total {float(total)}" in metrics
    table = subprocess.run([sys.executable, "-m", "supervisor", "stats", "--socket", str(plugin.socket_path)],
                           capture_output=True, text=True, timeout=30, check=True).stdout
    assert f"shipper     pid {each[0]['pid']},{each[1]['pid']}  shipped {total}" in table
    assert f"shipper-1  pid {each[1]['pid']}  shipped {500 * PER_SHARD}" in table
    for lg in loggers:
        lg.stop()


def test_a_killed_second_shipper_is_respawned_and_its_containers_go_on(two_shippers: RunningPlugin,
                                                                      es: EsStandin) -> None:
    plugin = two_shippers
    shards = loggers_of_both_shards(plugin, es)
    loggers = [lg for shard in shards.values() for lg in shard]
    for lg in loggers:
        assert not lg.start().get("Err")
    write(loggers, b"before", 300)
    wait_until(lambda: es.count(INDEX) >= 300 * len(loggers), 30, message="the first lines in Elasticsearch")
    first, second = shipper(plugin, 0), shipper(plugin, 1)
    write(loggers, b"during", 2000)  # the kill lands while these are on their way
    os.kill(second["pid"], signal.SIGKILL)
    wait_until(lambda: shipper(plugin, 1)["pid"] not in (None, second["pid"]), 20, message="a new second shipper")
    write(loggers, b"after", 300)
    total = 2600 * len(loggers)
    wait_until(lambda: es.count(INDEX) >= total, 30, message="every line in Elasticsearch")
    assert_exactly_once(es, total)
    assert shipper(plugin, 1)["restarts"] == 1
    assert shipper(plugin, 0)["pid"] == first["pid"] and shipper(plugin, 0)["restarts"] == 0
    ids = ephemeral_ids(es)
    first_ids = {i for lg in shards[0] for i in ids[lg.container_id]}
    second_ids = {i for lg in shards[1] for i in ids[lg.container_id]}
    assert len(first_ids) == 1  # the first shipper's containers were never shipped by the respawned one
    assert len(second_ids) == 2  # the second's by it before the kill and by its successor after
    assert not first_ids & second_ids
    for lg in loggers:
        lg.stop()
