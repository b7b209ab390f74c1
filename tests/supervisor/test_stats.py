"""ProcessSampler: USS (smaps, slow) is read within a time budget per collection, never-read and oldest first."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from supervisor import stats
from supervisor.stats import ProcessSampler


@pytest.fixture
def pids() -> Iterator[list[int]]:
    procs = [subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
             for _ in range(3)]
    yield [p.pid for p in procs]
    for p in procs:
        p.kill()
        p.communicate()


def entries(sampler: ProcessSampler, pids: list[int]) -> list[dict[str, Any]]:
    return [{"pid": pid, **sampler.sample(pid)} for pid in pids]


def test_no_budget_reads_one_figure_per_call_and_every_process_gets_its_turn(
        monkeypatch: pytest.MonkeyPatch, pids: list[int]) -> None:
    monkeypatch.setattr(stats, "USS_BUDGET", 0.0)  # no budget: still one read per call
    sampler = ProcessSampler()
    seen = []
    for _ in range(3):
        got = entries(sampler, pids)
        sampler.add_uss(got)
        assert all(e["rss_bytes"] > 0 for e in got)
        seen.append(sum("uss_bytes" in e for e in got))
    assert seen == [1, 2, 3]  # the never-read ones go first


def test_the_oldest_figure_is_refreshed_first(monkeypatch: pytest.MonkeyPatch, pids: list[int]) -> None:
    sampler = ProcessSampler()
    sampler.add_uss(entries(sampler, pids))  # a full budget: all three read
    assert set(sampler.uss) == set(pids)
    monkeypatch.setattr(stats, "USS_BUDGET", 0.0)
    before = dict(sampler.uss)
    oldest = min(pids, key=lambda pid: before[pid][0])
    sampler.add_uss(entries(sampler, pids))
    assert [pid for pid in pids if sampler.uss[pid] != before[pid]] == [oldest]


def test_a_gone_process_is_forgotten(pids: list[int]) -> None:
    sampler = ProcessSampler()
    sampler.add_uss(entries(sampler, pids))
    sampler.prune({pids[0]})
    assert set(sampler.uss) == set(sampler.procs) == {pids[0]}
