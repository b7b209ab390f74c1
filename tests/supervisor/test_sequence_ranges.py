"""Reader sequence ranges never repeat, also when the plugin is back within the second its readers started in."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from proto.messages import SEQ_SHIFT
from supervisor.loggers import SEQ_FLOOR_NAME, SequenceRanges


def test_a_restarted_plugin_starts_above_every_range_the_previous_run_handed_out(tmp_path: Path) -> None:
    first_run = SequenceRanges(tmp_path / SEQ_FLOOR_NAME)
    bases = [first_run.next_base(0)]
    for _ in range(5):  # a reader respawned several times within the same second
        bases.append(first_run.next_base(bases[-1]))
    second_run = SequenceRanges(tmp_path / SEQ_FLOOR_NAME)  # the same second, the same data dir
    after_restart = second_run.next_base(0)
    assert after_restart > max(bases)
    assert all(b % (1 << SEQ_SHIFT) == 0 for b in [*bases, after_restart]), "the store tells incarnations apart"
    assert len(set(bases)) == len(bases)


def test_an_unwritable_floor_falls_back_to_the_clock(tmp_path: Path) -> None:
    ranges = SequenceRanges(tmp_path / "missing" / SEQ_FLOOR_NAME)
    first = ranges.next_base(0)
    assert ranges.next_base(first) > first


def test_a_damaged_floor_is_said_and_ranges_start_past_what_it_may_have_reserved(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / SEQ_FLOOR_NAME
    first_run = SequenceRanges(path)
    bases = [first_run.next_base(0)]
    for _ in range(5):
        bases.append(first_run.next_base(bases[-1]))
    path.write_bytes(b"")  # a power cut before the floor reached the disk
    with caplog.at_level(logging.ERROR, "elp.supervisor"):
        after = SequenceRanges(path).next_base(0)
    assert after > max(bases)
    assert len(caplog.records) == 1 and str(path) in caplog.records[0].getMessage()
