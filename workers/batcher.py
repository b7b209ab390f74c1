"""Batcher: groups a reader's records so that the processes downstream wake per batch, not per line."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from proto.messages import Batch


@dataclass
class Batcher:
    """Collects records until ``max_bytes`` is reached, or the oldest one waited ``max_wait`` seconds, or
    ``short_wait`` once ``min_bytes`` are in: a busy container's batches leave within ``short_wait``, a quiet one's
    gather for up to ``max_wait`` (each batch costs wake-ups in three processes, whatever its size)."""

    container_id: str
    fifo: str
    max_bytes: int = 1 << 20
    max_wait: float = 0.05
    short_wait: float = 0.05
    min_bytes: int = 16 * 1024
    records: bytearray = field(default_factory=bytearray)
    count: int = 0
    next_seq: int = 0
    started_at: float = 0.0

    def added(self, n: int, now: float | None = None) -> None:
        """Note that ``n`` records were appended to ``records``."""
        if n and not self.count:
            self.started_at = time.monotonic() if now is None else now
        self.count += n

    def wait(self) -> float:
        """How long the current batch may stay open, given what it holds."""
        return min(self.short_wait, self.max_wait) if len(self.records) >= self.min_bytes else self.max_wait

    def missing_for_short_wait(self) -> int:
        """Bytes still to come before the batch may leave after ``short_wait``."""
        return max(0, self.min_bytes - len(self.records))

    def due(self, now: float) -> bool:
        return self.count > 0 and (len(self.records) >= self.max_bytes or now - self.started_at >= self.wait())

    def time_left(self, now: float) -> float | None:
        """Seconds until the current batch is due; None when there is nothing to send."""
        if not self.count:
            return None
        return max(0.0, self.started_at + self.wait() - now)

    def take(self) -> Batch | None:
        """The current batch, ready to send; None when empty."""
        if not self.count:
            return None
        # The buffer itself leaves with the batch (no copy); the next batch grows a new one.
        batch = Batch(self.container_id, self.fifo, self.next_seq, self.count, self.records)
        self.next_seq += self.count
        self.records = bytearray()
        self.count = 0
        return batch
