"""Unit tests for workers/batcher.py."""

from __future__ import annotations

import time

from proto.messages import Batch
from workers.batcher import Batcher

CID = "a" * 64
FIFO = "/run/docker/logging/" + "b" * 64


def test_empty_batcher() -> None:
    b = Batcher(CID, FIFO)
    assert not b.due(1e9)
    assert b.time_left(0.0) is None
    assert b.take() is None
    assert b.next_seq == 0


def test_added_zero_starts_nothing() -> None:
    b = Batcher(CID, FIFO, max_wait=1.0)
    b.added(0, now=5.0)
    assert b.count == 0
    assert not b.due(100.0)
    assert b.time_left(100.0) is None


def test_due_by_bytes() -> None:
    b = Batcher(CID, FIFO, max_bytes=10, max_wait=100.0)
    b.records += b"12345"
    b.added(1, now=0.0)
    assert not b.due(0.0)
    b.records += b"67890"
    b.added(1, now=0.0)
    assert b.due(0.0)


def test_due_by_time_counts_from_first_record() -> None:
    b = Batcher(CID, FIFO, max_bytes=1 << 20, max_wait=0.05)
    b.records += b"x"
    b.added(1, now=10.0)
    b.records += b"y"
    b.added(1, now=10.04)  # a later add does not restart the clock
    assert not b.due(10.049)
    assert b.due(10.05)
    assert b.due(11.0)


def test_time_left() -> None:
    b = Batcher(CID, FIFO, max_wait=0.5)
    b.records += b"x"
    b.added(1, now=100.0)
    assert b.time_left(100.0) == 0.5
    left = b.time_left(100.2)
    assert left is not None
    assert abs(left - 0.3) < 1e-9
    assert b.time_left(101.0) == 0.0  # never negative


def test_take_resets_and_advances_seq() -> None:
    b = Batcher(CID, FIFO, max_wait=1.0)
    b.records += b"rec1rec2"
    b.added(2, now=1.0)
    batch = b.take()
    assert batch == Batch(CID, FIFO, seq=0, count=2, records=bytearray(b"rec1rec2"))
    assert b.count == 0
    assert b.records == bytearray()
    assert b.next_seq == 2
    assert b.take() is None
    assert not b.due(1e9)

    b.records += b"rec3"
    b.added(1, now=50.0)
    assert not b.due(50.5)  # the clock restarted with the new batch
    assert b.time_left(50.0) == 1.0
    batch = b.take()
    assert batch is not None
    assert (batch.seq, batch.count, batch.records) == (2, 1, b"rec3")
    assert b.next_seq == 3


def test_taken_batch_does_not_alias_the_buffer() -> None:
    b = Batcher(CID, FIFO)
    b.records += b"abc"
    b.added(1, now=0.0)
    batch = b.take()
    b.records += b"zzz"
    assert batch is not None
    assert batch.records == b"abc"


def test_added_without_now_uses_monotonic_clock() -> None:
    b = Batcher(CID, FIFO, max_wait=3600.0)
    before = time.monotonic()
    b.records += b"x"
    b.added(1)
    after = time.monotonic()
    assert before <= b.started_at <= after
    assert not b.due(after)
    assert b.due(after + 3600.0)


def test_a_small_batch_waits_the_long_window_and_a_big_one_the_short() -> None:
    b = Batcher(CID, FIFO, max_wait=1.0, short_wait=0.05, min_bytes=100)
    b.records += b"x" * 99
    b.added(1, now=10.0)
    assert not b.due(10.5) and b.time_left(10.5) == 0.5 and b.missing_for_short_wait() == 1
    assert b.due(11.0)
    b.records += b"x"
    b.added(1, now=10.5)
    left = b.time_left(10.01)
    assert b.due(10.05) and left is not None and abs(left - 0.04) < 1e-9


def test_a_window_shorter_than_the_short_wait_wins() -> None:
    b = Batcher(CID, FIFO, max_wait=0.01, short_wait=0.05, min_bytes=1)
    b.records += b"xx"
    b.added(1, now=0.0)
    assert b.due(0.01)
