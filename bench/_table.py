"""The one table ``make bench`` prints: every benchmark reports each figure through ``report``.

``report`` prints the row in the benchmark's own output and, when ``ELP_BENCH_FIGURES`` names a file, appends it
there as one JSON line; ``make bench`` sets it, runs every benchmark and then prints them all as one table:

    python -m bench._table FILE
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HEADER = ("figure", "ours", "reference", "ratio", "goal")


def row(figure: str, ours: str, ref: str, ratio: str, goal: str) -> str:
    return f"  {figure:<52} {ours:>12} {ref:>12} {ratio:>7}  {goal}"


def header() -> None:
    print(row(*HEADER))


def report(key: str, figure: str, ours: str, ref: str = "-", ratio: str = "-", goal: str = "-") -> None:
    """Print one figure; ``key`` is the issue's name for it (P1..P9, or "scaling")."""
    print(row(f"{key} {figure}", ours, ref, ratio, goal), flush=True)
    target = os.environ.get("ELP_BENCH_FIGURES")
    if target:
        with open(target, "a") as f:
            f.write(json.dumps({"key": key, "figure": figure, "ours": ours, "reference": ref, "ratio": ratio,
                                "goal": goal}) + "\n")


def markdown(rows: list[dict[str, str]]) -> str:
    lines = ["| | figure | ours | reference | ratio | goal |", "|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r["key"]):  # stable: each benchmark's own order
        lines.append(f"| {r['key']} | {r['figure']} | {r['ours']} | {r['reference']} | {r['ratio']} | {r['goal']} |")
    return "\n".join(lines)


def main() -> None:
    path = Path(sys.argv[1])
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    print(markdown(rows) if rows else f"no figures in {path}")


if __name__ == "__main__":
    main()
