"""A quiet container costs one wake-up of its reader per batch (its report rides along), not one per line,
per acknowledgement or per report (P9: 100 quiet containers are mostly wake-ups)."""

from __future__ import annotations

import time
from typing import Any

from testkit.dockerd_driver import FakeLogger, entry
from testkit.plugin import RunningPlugin, wait_until
from workers.main import QUIET_WAIT

RATE = 50  # lines/s: a quiet container
SECONDS = 6.0


def reader_stats(plugin: RunningPlugin, lg: FakeLogger) -> dict[str, Any] | None:
    readers = [r for r in plugin.stats()["readers"] if r["container_id"] == lg.container_id]
    return readers[0] if readers else None


def test_a_quiet_reader_wakes_a_few_times_per_batch_not_per_line_or_acknowledgement(plugin: RunningPlugin) -> None:
    lg = plugin.logger()
    assert lg.start() == {"_status": 200}
    lg.write(entry(b"first"))
    first = wait_until(lambda: (s := reader_stats(plugin, lg)) and "wakeups_total" in s and s,
                       message="the reader's first report")
    start, written = time.monotonic(), 1
    while (elapsed := time.monotonic() - start) < SECONDS:
        for _ in range(int(elapsed * RATE) + 1 - written):
            lg.write(entry(b"line %d" % written))
            written += 1
        time.sleep(0.005)  # paces the writer  # not a sync
    last = wait_until(lambda: (s := reader_stats(plugin, lg)) and s["lines_total"] == written and s,
                      message="a report after every line")
    wakeups = last["wakeups_total"] - first["wakeups_total"]
    batches = SECONDS / QUIET_WAIT
    # Per batch: the wake-up that reads what came over the last window and sends it at once (its report rides
    # along), and no other: 1 (7 for 6 batches here). Before, the FIFO rested only 50 ms after a batch left, and the
    # read that ended the rest opened the next batch, sent at a wake-up of its own a window later (2 per batch: 13);
    # before that, each acknowledgement and each report woke the reader too (36).
    assert wakeups <= 1.5 * batches + 2, f"{wakeups} wake-ups for about {batches:.0f} batches"
