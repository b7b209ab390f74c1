"""The README's option tables are generated from the declarations; they must not drift."""

from __future__ import annotations

import subprocess
import sys

from testkit.plugin import ROOT


def test_readme_tables_match_declarations() -> None:
    result = subprocess.run([sys.executable, "scripts/options_table.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
