"""A container folder's ``state.json``: its generations (see generations.py), shipping cursor and ``ships``.

Generations are kept with the files too, so ``state.json`` is only a summary: whatever is wrong in it (torn by a
power cut, emptied, wrongly typed) is reported once by the caller and rebuilt from the files, never read as 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from proto.framing import Position
from proto.statefile import StateFileError, read_json, write_json

STATE_NAME = "state.json"


@dataclass
class SavedState:
    generations: tuple[int, int] | None = None  # (current, first); files from before first_generation have 0
    shipped: Position | None = None
    ships: bool = False
    problems: list[str] = field(default_factory=list)  # what was ignored, and why


def _position(value: object) -> Position | None:
    if isinstance(value, list) and len(value) == 2 and all(type(v) is int and v >= 0 for v in value):
        return value[0], value[1]
    return None


def read_state(folder: Path) -> SavedState:
    path = folder / STATE_NAME
    try:
        data = read_json(path)
    except StateFileError as exc:
        return SavedState(problems=[str(exc)])  # names the file
    if data is None:
        return SavedState()
    state = SavedState(ships=data.get("ships") is True)
    generation, first = data.get("generation"), data.get("first_generation", 0)
    if type(generation) is int and type(first) is int and 0 <= first <= generation:
        state.generations = generation, first
    else:
        state.problems.append(f"{path}: bad generations {str(generation)[:40]!r}, {str(first)[:40]!r}")
    shipped = data.get("shipped")
    state.shipped = _position(shipped)
    if shipped is not None and state.shipped is None:
        state.problems.append(f"{path}: bad shipping cursor {str(shipped)[:40]!r}")
    if not isinstance(data.get("ships", False), bool):
        state.problems.append(f"{path}: bad ships {str(data['ships'])[:40]!r}")
    return state


def write_state(folder: Path, generation: int, first: int, ships: bool, shipped: Position | None,
                durable: bool = True) -> None:
    write_json(folder / STATE_NAME, {"generation": generation, "first_generation": first, "ships": ships,
                                     "shipped": list(shipped) if shipped else None}, durable=durable)
