"""BatchSender: holds back while the store confirms, drops (counted) only once the store is stuck."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import zmq

from workers.delivery import STUCK_AFTER, BatchSender

CID = "c" * 64


@pytest.fixture
def dealer() -> Iterator[zmq.Socket]:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)  # connected to nothing: sends stay queued, like a store that is not reading
    sock.setsockopt(zmq.LINGER, 0)
    yield sock
    sock.close()
    ctx.term()


def test_over_the_bound_with_a_live_store_it_holds_back_and_drops_nothing(dealer: zmq.Socket) -> None:
    sender = BatchSender(dealer, CID, max_bytes=100)
    for seq in range(3):
        sender.queue([b"x" * 60], seq_end=seq + 1, lines=1)
    now = time.monotonic()
    assert sender.held_bytes == 180 and sender.dropped_batches == 0
    assert sender.holding_back(now) and not sender.stuck(now)


def test_a_stuck_store_makes_it_drop_the_oldest_and_count(dealer: zmq.Socket) -> None:
    sender = BatchSender(dealer, CID, max_bytes=100)
    sender.queue([b"x" * 60], seq_end=1, lines=7)
    for out in sender.pending:
        out.queued_at -= STUCK_AFTER + 1  # waited that long with no confirmation
    assert sender.stuck(time.monotonic()) and not sender.holding_back(time.monotonic())
    sender.queue([b"y" * 60], seq_end=2, lines=1)
    assert sender.dropped_batches == 1 and sender.dropped_lines == 7 and sender.held_bytes == 60


def test_a_long_idle_reader_is_not_taken_for_a_stuck_store(dealer: zmq.Socket) -> None:
    sender = BatchSender(dealer, CID, max_bytes=100)
    sender.last_progress -= 3600  # the last confirmation was an hour ago: the container was quiet
    for seq in range(3):
        sender.queue([b"x" * 60], seq_end=seq + 1, lines=1)
    assert sender.dropped_batches == 0 and sender.holding_back(time.monotonic())
