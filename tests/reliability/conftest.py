"""The reliability suite: faults, bad input and load, each test adding its figures to one table.

Every test here is marked ``reliability`` and ``slow``. CI runs the short variant (the default); ``make
reliability`` sets ``ELP_RELIABILITY=full`` for the long one (5-minute outage, 10-minute start/stop loop, ...).
Tests pick their sizes with ``scale(short, full)``.

The table is printed at the end of the session and written to ``build/reliability-figures.md``: one row per
figure, with what was measured and the goal, so a run's output is the suite's report.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
FULL = os.environ.get("ELP_RELIABILITY") == "full"
REPORT = ROOT / "build" / "reliability-figures.md"
T = TypeVar("T")


def scale(short: T, full: T) -> T:
    """The short variant's size in CI, the full one under ``make reliability``."""
    return full if FULL else short


@dataclass
class Figure:
    key: str  # "R1", "R2", ...
    what: str
    measured: str
    goal: str
    met: bool


@dataclass
class FigureTable:
    rows: list[Figure] = field(default_factory=list)

    def add(self, key: str, what: str, measured: object, goal: str, met: bool) -> None:
        """One row of the report; add it before asserting, so a failing run still reports what it saw."""
        self.rows.append(Figure(key, what, str(measured), goal, met))

    def markdown(self) -> str:
        variant = "full (ELP_RELIABILITY=full)" if FULL else "short (CI)"
        lines = [f"Reliability figures, {variant} variant", "",
                 "| | figure | measured | goal | met |", "|---|---|---|---|---|"]
        for row in sorted(self.rows, key=lambda r: r.key):
            lines.append(f"| {row.key} | {row.what} | {row.measured} | {row.goal} | {'yes' if row.met else 'NO'} |")
        return "\n".join(lines) + "\n"


_TABLE = FigureTable()


@pytest.fixture(scope="session")
def figures() -> Iterator[FigureTable]:
    yield _TABLE


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.reliability)
            item.add_marker(pytest.mark.slow)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _TABLE.rows:
        return
    text = _TABLE.markdown()
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(text)
    terminalreporter.write_sep("=", "reliability figures")
    terminalreporter.write_line(text)
    terminalreporter.write_line(f"(written to {REPORT.relative_to(ROOT)})")
