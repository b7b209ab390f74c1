"""BulkShipper driven directly (no supervisor) against the Elasticsearch stand-in, on a private event loop."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from shipper.bulk import BulkShipper
from shipper.feed import PendingDoc
from shipper.output import make_client, output_config
from tests.es_standin import EsStandin

INDEX = "logs-docker-default"
CONTAINER = "c" * 64
OPTIONS: dict[str, Any] = {
    "bulk_max_size": 50, "bulk_max_bytes": 10_000_000, "flush_interval": 0.01, "compression_level": 1,
    "backoff_init": 0.01, "backoff_max": 0.05, "max_retries": -1, "dead_letter_index": None,
}


def make_docs(n: int, message: Callable[[int], str] = lambda i: f"line {i}") -> list[PendingDoc]:
    return [PendingDoc(CONTAINER, (0, i + 1), f"doc-{i}", INDEX,
                       orjson.dumps({"@timestamp": "2026-01-01T00:00:00Z", "message": message(i)}))
            for i in range(n)]


@dataclass
class Run:
    """What a run saw: the documents finished (by end position, with repeats), and the shipper at the end."""

    bulk: BulkShipper
    finished: Counter[tuple[int, int]] = field(default_factory=Counter)

    @property
    def task_alive(self) -> bool:
        return self.bulk.task is not None and not self.bulk.task.done()


def ship(es: EsStandin, docs: list[PendingDoc], until: Callable[[Run], bool], *, timeout: float = 20.0,
         client_timeout: float = 5.0, auth: dict[str, str] | None = None, **options: Any) -> Run:
    """Add ``docs`` to a fresh BulkShipper and run it until ``until(run)`` holds (AssertionError after
    ``timeout`` seconds, or when the bulk task died). ``auth``: e.g. ``{"user": .., "password": ..}``."""

    async def main() -> Run:
        client = make_client(output_config({"hosts": [es.url], "timeout": client_timeout, **(auth or {})}))
        run = Run(BulkShipper("test-output", client, {**OPTIONS, **options}, lambda d: run.finished.update([d.end])))
        run.bulk.start()
        run.bulk.add(docs)
        deadline = time.monotonic() + timeout
        try:
            while not until(run):
                if not run.task_alive:
                    raise AssertionError(f"the bulk task died: {run.bulk.task}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"timed out after {timeout}s; counters {dict(run.bulk.counters)}")
                await asyncio.sleep(0.02)  # not a sync: a poll with a deadline, as wait_until
            return run
        finally:
            assert run.bulk.task is not None
            run.bulk.task.cancel()
            await asyncio.gather(run.bulk.task, return_exceptions=True)
            await client.close()

    return asyncio.run(main())


def all_finished(n: int) -> Callable[[Run], bool]:
    return lambda run: len(run.finished) >= n and not run.bulk.queue and run.bulk.in_flight == 0
