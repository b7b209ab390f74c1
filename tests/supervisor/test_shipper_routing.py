"""supervisor/arbiter.py with SHIPPERS=2: a container's ShipContainer always reaches its own shipper, and a restarted
shipper is told its own share of the running loggers only (the other shipper is not sent its share again)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from proto.control import receive
from proto.messages import ShipContainer
from proto.shards import shard_of
from supervisor.arbiter import ServeConfig, Supervisor
from supervisor.children import Child, Role
from supervisor.container_options import container_options
from supervisor.loggers import FifoLogger
from supervisor.outbox import Outbox
from supervisor.settings import PluginSettings
from testkit.dockerd_driver import make_info, new_container_id


@pytest.fixture
def sup(tmp_path: Path) -> Iterator[tuple[Supervisor, dict[str, socket.socket]]]:
    config = ServeConfig(tmp_path / "p.sock", tmp_path / "data", tmp_path / "fifos", PluginSettings(shippers=2))
    (tmp_path / "data").mkdir()
    supervisor = Supervisor(config)
    ends = {}
    for name in ("shipper-0", "shipper-1"):
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        child.setblocking(False)
        made = Child(Role.SHIPPER, name, 0, parent, -1)
        made.outbox = Outbox(parent, name)
        supervisor.services[name].started(made)
        ends[name] = child
    yield supervisor, ends
    for svc in supervisor.services.values():
        if svc.child is not None:
            svc.child.control.close()
    for end in ends.values():
        end.close()


def shipping_logger(container_id: str) -> FifoLogger:
    info = make_info(container_id, config={"hosts": "es:9200"})
    return FifoLogger(f"/fifos/{container_id}", container_id, info, container_options(info), -1)


def received(end: socket.socket) -> list[str]:
    return [msg.container_id for msg, _ in receive(end, lambda exc: None) if isinstance(msg, ShipContainer)]


def ids_of_both_shards() -> list[str]:
    ids: dict[int, list[str]] = {0: [], 1: []}
    while min(len(v) for v in ids.values()) < 2:
        cid = new_container_id()
        ids[shard_of(cid, 2)].append(cid)
    return ids[0][:2] + ids[1][:2]


def test_a_container_is_sent_to_its_own_shipper(sup: tuple[Supervisor, dict[str, socket.socket]]) -> None:
    supervisor, ends = sup
    ids = ids_of_both_shards()
    for cid in ids:
        assert supervisor.send_to(Role.SHIPPER, ShipContainer(cid, {}, {}))
    assert received(ends["shipper-0"]) == ids[:2]
    assert received(ends["shipper-1"]) == ids[2:]


def test_a_restarted_shipper_is_told_its_share_only(sup: tuple[Supervisor, dict[str, socket.socket]]) -> None:
    supervisor, ends = sup
    ids = ids_of_both_shards()
    for cid in ids:
        lg = shipping_logger(cid)
        supervisor.loggers.active[lg.fifo_path] = lg
    supervisor._reannounce(supervisor.services["shipper-1"])
    assert received(ends["shipper-1"]) == ids[2:]
    assert received(ends["shipper-0"]) == []  # it has its share already
    assert supervisor.announcing is None
    assert supervisor.send_to(Role.SHIPPER, ShipContainer(ids[0], {}, {}))  # routing as usual again
    assert received(ends["shipper-0"]) == ids[:1]
