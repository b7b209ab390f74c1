"""scripts/import_matrix.py: a module counts once per package it imports, in a function too (the rules themselves
are checked by lint-imports)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from testkit.plugin import ROOT


def _run(root: Path) -> str:
    result = subprocess.run([sys.executable, "scripts/import_matrix.py", str(root)], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    return result.stdout


def _row(table: str, package: str) -> list[str]:
    line = next(line for line in table.splitlines() if line.startswith(f"| **{package}** |"))
    return [cell.strip() for cell in line.strip("|").split("|")[1:]]


def test_counts_modules_importing_another_package_at_any_depth(tmp_path: Path) -> None:
    (tmp_path / "proto").mkdir()
    (tmp_path / "proto" / "messages.py").write_text("X = 1\n")
    (tmp_path / "shipper").mkdir()
    (tmp_path / "shipper" / "a.py").write_text("from proto.messages import X\nimport proto\n")
    in_function = "def f():\n    from supervisor import logopts\n    import proto.framing\n"
    (tmp_path / "shipper" / "b.py").write_text(in_function)
    (tmp_path / "shipper" / "c.py").write_text("from shipper import a\nimport json\n")
    (tmp_path / "supervisor").mkdir()
    table = _run(tmp_path)
    header = [cell.strip() for cell in table.splitlines()[0].strip("|").split("|")[1:]]
    assert header == ["supervisor", "shipper", "proto"]  # only the packages present, in the fixed order
    assert _row(table, "shipper") == ["1", "·", "2"]  # a.py and b.py import proto; b.py, in a function, supervisor
    assert _row(table, "proto") == ["", "", "·"]

