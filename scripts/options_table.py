"""Print the README's tables of log options and plugin settings from their declarations.

    python scripts/options_table.py            # print the tables
    python scripts/options_table.py --check    # exit 1 if README.md does not hold them as printed
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from supervisor.elastic_names import ACCEPTED_NO_EFFECT, ALIASES, NOT_SUPPORTED  # noqa: E402
from supervisor.logopts import OPTIONS  # noqa: E402
from supervisor.settings import SETTINGS  # noqa: E402

BEGIN, END = "<!-- options:begin -->", "<!-- options:end -->"


def _default(value: object) -> str:
    if value is None or value == ():
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return f"`{value}`"


def tables() -> str:
    rows = ["| log-opt | default | meaning |", "|---|---|---|"]
    rows += [f"| `{o.name}` | {_default(o.default)} | {o.doc}{' (secret: never logged)' if o.secret else ''} |"
             for o in OPTIONS]
    rows += ["", "| plugin setting (`docker plugin set`) | default | meaning |", "|---|---|---|"]
    rows += [f"| `{s.name}` | `{s.default}` | {s.doc} |" for s in SETTINGS]
    rows += ["", "| Elastic's log-opt | here | (docs/migrating-from-elastic.md) |", "|---|---|---|"]
    rows += [f"| `{alias}` | `{ours}` | the same option |" for alias, ours in ALIASES.items()]
    rows += ["| `output.elasticsearch.protocol`, `output.elasticsearch.path` | `hosts` | "
             "applied to each host given without a scheme / a path |"]
    rows += [f"| `{name}` | (none) | accepted, no effect: {why} |" for name, (_, why) in ACCEPTED_NO_EFFECT.items()]
    rows += [f"| `{name}` | (none) | refused: {why} |" for name, why in NOT_SUPPORTED.items()]
    return "\n".join([BEGIN, *rows, END])


def main() -> int:
    text = tables()
    if "--check" not in sys.argv:
        print(text)
        return 0
    readme = (ROOT / "README.md").read_text()
    if text not in readme:
        print("README.md's option tables are stale: run python scripts/options_table.py and paste them")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
