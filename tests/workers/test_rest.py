"""A quiet reader's rest after a batch leaves: it ends on the window's next tick of the machine's monotonic clock, so
every quiet reader sends at the same moment and the local store and the supervisor wake once for all of them; what
the read at the tick finds leaves at once; at a rate that would fill the pipe or a big batch first, it ends sooner."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest

from testkit.plugin import wait_until
from workers.main import MIN_PAUSE, ReaderProcess, ReaderSpec

WINDOW = 1.0


@pytest.fixture
def reader() -> Iterator[ReaderProcess]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    r, w = os.pipe()
    try:
        yield ReaderProcess(ReaderSpec("c" * 64, "/run/f" + "1" * 63, r, ours, ("ipc:///nowhere",),
                                       quiet_wait=WINDOW))
    finally:
        for fd in (r, w):
            os.close(fd)
        ours.close()
        theirs.close()


def test_the_rest_ends_on_the_windows_tick_and_its_batch_leaves_then(reader: ReaderProcess) -> None:
    reader.pipe_size = 1 << 20
    reader.rate = 100 * 100  # 100 lines/s of 100 B: the pipe and the early-send size are far off
    before = time.monotonic()
    reader._rest_after_quiet_batch(size=10_000)
    end = reader.fifo_resume_at
    assert before < end <= before + WINDOW + MIN_PAUSE + 0.05
    assert min(end % WINDOW, WINDOW - end % WINDOW) < 1e-6, f"the rest ends at {end}, not on a tick"
    assert reader.rest_from is not None
    # what the read at the tick finds is due then: the batch counts from a window before it
    reader.batcher.added(3, reader.rest_from)
    assert reader.batcher.due(end)
    assert not reader.batcher.due(end - 0.01)


def test_a_rate_that_would_half_fill_the_pipe_first_ends_the_rest_sooner_and_off_the_tick(
        reader: ReaderProcess) -> None:
    reader.pipe_size = 64 * 1024  # F_SETPIPE_SZ refused: the default pipe
    reader.rate = 200 * 1024  # quiet (an early batch takes more than the window) but half the pipe in 0.16 s
    wait_until(lambda: 0.05 < time.monotonic() % WINDOW < WINDOW / 2, message="the next tick 0.5 s away or more")
    before = time.monotonic()
    reader._rest_after_quiet_batch(size=10_000)
    after = time.monotonic()
    assert before + 0.16 <= reader.fifo_resume_at <= after + 0.16
    # that batch is a new one: it stays open for its window from the rest's start
    assert reader.rest_from is not None and before <= reader.rest_from <= after


def test_no_rest_while_followed_or_after_a_big_batch(reader: ReaderProcess) -> None:
    reader._rest_after_quiet_batch(size=reader.batcher.min_bytes)
    assert reader.rest_from is None and reader.fifo_resume_at == 0.0
    reader.batcher.max_wait = reader.spec.follow_wait
    reader._rest_after_quiet_batch(size=100)
    assert reader.rest_from is None and reader.fifo_resume_at == 0.0


def test_a_big_read_at_a_quiet_rate_still_rests(reader: ReaderProcess) -> None:
    """25 lines/s of 4 KiB: the read at each tick finds 100 KB, more than a 'busy' read, yet the rate is quiet."""
    reader.pipe_size = 1 << 20
    reader.busy = True
    reader.rate = 25 * 4096
    reader._rest_after_quiet_batch(size=25 * 4096)
    assert reader.rest_from is not None and reader.fifo_resume_at > 0


def test_a_rate_that_fills_an_early_batch_within_the_window_does_not_rest(reader: ReaderProcess) -> None:
    reader.rate = reader.batcher.min_bytes / WINDOW
    reader._rest_after_quiet_batch(size=100)
    assert reader.rest_from is None and reader.fifo_resume_at == 0.0
