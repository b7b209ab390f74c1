"""Print the package-to-package import matrix of the tree as a markdown table.

    python scripts/import_matrix.py            # the matrix of the working tree
    python scripts/import_matrix.py ROOT       # the matrix of another checkout (e.g. a `git worktree add`)

A cell counts the modules of the row's package that import the column's package (every import statement, at
module level or inside a function; ``proto.entry_pb2`` counts as ``proto``). The rules themselves are the
import-linter contracts in pyproject.toml (``lint-imports``); this table is for reading, not for checking.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGES = ("supervisor", "workers", "shipper", "localstore", "proto", "testkit", "bench", "tests")


def imported_packages(source: str) -> set[str]:
    """The top-level names this module imports (absolute imports only: the tree uses no relative ones)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def matrix(root: Path) -> dict[str, dict[str, int]]:
    """``counts[a][b]``: how many modules of package ``a`` import package ``b`` (``a != b``)."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            for target in imported_packages(path.read_text()) & set(PACKAGES) - {package}:
                counts[package][target] += 1
    return counts


def table(root: Path) -> str:
    present = [p for p in PACKAGES if (root / p).is_dir()]
    counts = matrix(root)
    rows = ["| importer \\ imported | " + " | ".join(present) + " |", "|---" * (len(present) + 1) + "|"]
    for a in present:
        cells = ["·" if a == b else str(counts[a][b] or "") for b in present]
        rows.append(f"| **{a}** | " + " | ".join(cells) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent))
