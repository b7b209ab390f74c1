"""ProcessSampler: USS (smaps, slow) is read within a time budget per collection and reused for a while."""

from __future__ import annotations

import os

import pytest

from supervisor import stats
from supervisor.stats import ProcessSampler


def test_uss_is_read_within_the_budget_and_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    sampler = ProcessSampler()
    monkeypatch.setattr(stats, "USS_BUDGET", 0.0)
    sampler.begin()
    first = sampler.sample(os.getpid(), uss=True)
    assert first["rss_bytes"] > 0 and "uss_bytes" not in first  # no budget left: no smaps read

    monkeypatch.setattr(stats, "USS_BUDGET", 10.0)
    sampler.begin()
    second = sampler.sample(os.getpid(), uss=True)
    assert second["uss_bytes"] > 0

    monkeypatch.setattr(stats, "USS_BUDGET", 0.0)
    sampler.begin()
    third = sampler.sample(os.getpid(), uss=True)
    assert third["uss_bytes"] == second["uss_bytes"]  # reused within USS_TTL, even with no budget


def test_a_stale_uss_figure_is_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    sampler = ProcessSampler()
    sampler.begin()
    assert sampler.sample(os.getpid(), uss=True)["uss_bytes"] > 0
    sampler.uss[os.getpid()] = (1.0, sampler.uss[os.getpid()][1] - stats.USS_TTL)  # as if sampled long ago
    sampler.begin()
    assert sampler.sample(os.getpid(), uss=True)["uss_bytes"] > 1.0


def test_uss_of_a_gone_process_is_forgotten() -> None:
    sampler = ProcessSampler()
    sampler.begin()
    sampler.sample(os.getpid(), uss=True)
    sampler.prune(set())
    assert sampler.uss == {} and sampler.procs == {}
