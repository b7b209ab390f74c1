"""Reports of any size cross the control socketpair: cut into StatsParts by the children, put together by the
supervisor. One datagram for everything failed with EMSGSIZE from about 1,450 containers and killed the reporting
loop (and every other housekeeping step of the local store and the shipper with it)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from proto.messages import MAX_STATS_MESSAGE, ChildStats, StatsPart, decode, stats_report
from shipper.bulk import BulkShipper
from shipper.feed import ContainerFeed
from shipper.main import REASON_CHARS, REASONS_SHOWN, ShipperProcess
from supervisor.children import Child, Role
from supervisor.logopts import parse_log_options


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    child_end, parent_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    parent_end.setblocking(False)
    with child_end, parent_end:
        yield child_end, parent_end


def receive(parent_end: socket.socket, child: Child) -> int:
    """What the supervisor's _on_report does with each datagram; returns the largest datagram seen."""
    largest = 0
    while True:
        try:
            data = parent_end.recv(1 << 20)
        except BlockingIOError:
            return largest
        largest = max(largest, len(data))
        msg = decode(data)
        if isinstance(msg, ChildStats):
            child.report(dict(msg.counters))
        else:
            assert isinstance(msg, StatsPart)
            child.report_part(msg.report, msg.last, msg.per_container, msg.outputs)


def cid(n: int) -> str:
    return f"{n:064x}"


def test_a_report_of_5000_containers_arrives_whole_in_bounded_datagrams(pair: tuple[socket.socket, socket.socket]
                                                                         ) -> None:
    child_end, parent_end = pair
    child = Child(Role.LOCALSTORE, "localstore", os.getpid(), parent_end, -1)
    per_container = {cid(n): {"bytes_total": 10**12 + n, "records_total": 10**9, "rotations_total": 3,
                              "compressing": 0} for n in range(5000)}
    datagrams = stats_report("localstore", {"records_total": 7}, 1, per_container)
    assert len(datagrams) > 5
    for data in datagrams:  # the socket buffer holds a few at a time, as the supervisor drains it
        child_end.send(data)
        assert receive(parent_end, child) <= MAX_STATS_MESSAGE
    assert child.counters == {"records_total": 7}
    assert child.per_container == per_container


def test_a_report_cut_short_is_dropped_whole_and_the_next_replaces_it(pair: tuple[socket.socket, socket.socket]
                                                                       ) -> None:
    child_end, parent_end = pair
    child = Child(Role.LOCALSTORE, "localstore", os.getpid(), parent_end, -1)
    old = {cid(n): {"records_total": 1} for n in range(2000)}
    new = {cid(n): {"records_total": 2} for n in range(1000, 3000)}
    for data in stats_report("localstore", {}, 1, old):
        child_end.send(data)
        receive(parent_end, child)
    assert child.per_container == old
    cut = stats_report("localstore", {}, 2, new)
    for data in cut[:2]:  # the rest did not fit the socket
        child_end.send(data)
        receive(parent_end, child)
    assert child.per_container == old, "no mix of two reports"
    for data in stats_report("localstore", {}, 3, new):
        child_end.send(data)
        receive(parent_end, child)
    assert child.per_container == new


def test_the_shipper_reports_thousands_of_containers_and_endless_failure_reasons(
        tmp_path: Path, pair: tuple[socket.socket, socket.socket]) -> None:
    child_end, parent_end = pair
    shipper = ShipperProcess(tmp_path, child_end)
    options = parse_log_options({"hosts": "http://127.0.0.1:9"}).values
    bulk = BulkShipper("http://127.0.0.1:9", None, options, lambda doc: None)  # type: ignore[arg-type]
    for n in range(10_000):  # Elasticsearch writes the reasons: each its own, and long
        bulk.failed_reasons[f"mapper_parsing_exception: field [f{n}] " + "x" * 1000] += 1 + n % 7
    bulk.last_error = "e" * 100_000
    shipper.outputs[("key", ())] = bulk  # type: ignore[index]
    for n in range(3000):
        shipper.feeds[cid(n)] = ContainerFeed(cid(n), None)  # type: ignore[arg-type]
    child = Child(Role.SHIPPER, "shipper", os.getpid(), parent_end, -1)
    shipper._send_stats()
    largest = receive(parent_end, child)
    while shipper.control.reports.pending:  # the socket holds a few datagrams: the rest goes as the supervisor reads
        shipper.control.reports.flush()
        largest = max(largest, receive(parent_end, child))
    assert largest <= MAX_STATS_MESSAGE
    assert set(child.per_container) == {cid(n) for n in range(3000)}
    [output] = child.outputs
    reasons = output["failed_by_reason"]
    assert len(reasons) == REASONS_SHOWN + 1 and max(map(len, reasons)) <= REASON_CHARS
    assert sum(reasons.values()) == sum(bulk.failed_reasons.values()), "every failure still counted"
    assert len(output["last_error"]) <= 500
    assert child.counters["failed_total"] == 0 and "per_container" not in child.counters
