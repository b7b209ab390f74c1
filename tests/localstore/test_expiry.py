"""LocalStore.expire(): bounded work per call, so the store's loop keeps answering (and reporting its heartbeat)
while many stopped containers are deleted."""

from __future__ import annotations

import os
import time
from pathlib import Path

from localstore.container_log import StoreOptions
from localstore.paths import container_dir
from localstore.store import LocalStore, StoreSettings


def stopped_long_ago(store: LocalStore, tmp_path: Path, n: int) -> str:
    cid = f"{n:064x}"
    store.logger_started(cid, f"fifo-{n}", {}, StoreOptions())
    store.logger_closed(cid, f"fifo-{n}", lines=0)
    old = time.time() - 7200
    for path in container_dir(tmp_path, cid).iterdir():
        os.utime(path, (old, old))
    return cid


def test_expiry_stops_at_its_budget_and_goes_on_at_the_next_call(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, StoreSettings(retain_stopped_for=3600))
    store.loggers_synced = True
    ids = [stopped_long_ago(store, tmp_path, n) for n in range(5)]
    rounds = 0
    while not store.expire(time.time(), budget=0.0):  # no budget: one folder per call
        rounds += 1
        assert store.counters.expired_total == rounds
    assert store.counters.expired_total == 5 and rounds == 5, "one per call, then a call that finds nothing left"
    assert not any(container_dir(tmp_path, cid).exists() for cid in ids)
    assert store.expire(time.time())  # nothing left


def test_expiry_with_time_to_spare_deletes_everything_due_at_once(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, StoreSettings(retain_stopped_for=3600))
    store.loggers_synced = True
    for n in range(5):
        stopped_long_ago(store, tmp_path, n)
    assert store.expire(time.time())
    assert store.counters.expired_total == 5
