"""The local store's batch ROUTER holds only a few batches of each reader in its memory."""

from __future__ import annotations

import time
from pathlib import Path

import zmq

from localstore.main import bind_data_router

READER_SNDHWM = 16  # workers/main.py: the reader's DEALER
BATCH = b"x" * (256 << 10)


def test_a_store_that_does_not_take_its_batches_holds_a_few_of_each_reader(short_tmp: Path) -> None:
    """A store slower than its readers must not gather their batches in its own receive queue: beyond a few, the
    readers keep them (bounded, counted) and hold the container back. Counted here: the batches one reader could
    hand to ZeroMQ while the store took none (its pipe, the store's queue, the socket buffers between)."""
    ctx = zmq.Context(io_threads=1)
    endpoint = f"ipc://{short_tmp}/data"
    router = bind_data_router(ctx, endpoint)
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.SNDHWM, READER_SNDHWM)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(endpoint)
    try:
        sent, last_change = 0, time.monotonic()
        deadline = last_change + 30
        # ZeroMQ's I/O threads move batches on in the background: count until nothing more is taken for 1 s.
        while time.monotonic() - last_change < 1.0 and time.monotonic() < deadline:
            try:
                dealer.send_multipart([b"header", BATCH], zmq.NOBLOCK)
            except zmq.Again:
                zmq.select([], [dealer], [], 0.05)  # wake when the pipe has room again, or after 50 ms
                continue
            sent += 1
            last_change = time.monotonic()
        # The reader's own 16, the store's few, and what the kernel's socket buffers keep (a batch or two).
        assert READER_SNDHWM <= sent <= READER_SNDHWM + 8, sent
    finally:
        dealer.close()
        router.close()
        ctx.term()
