"""Small state files that survive a power cut: the one way every process writes and reads them.

A file is written to ``<name>.tmp`` in the same folder, flushed to disk (fsync), renamed over ``<name>``, and the
folder is flushed too, so that after a crash or a power cut the file holds either its old or its new content,
never a torn or empty one. Reading tells a missing file (``None``) from a damaged one (:class:`StateFileError`,
whose message names the file and what is wrong with it), so that a caller can log it once and rebuild the content
from what else is on disk instead of silently starting again from zero.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MAX_STATE_FILE = 16 << 20  # larger than any state file we write: anything bigger is not ours


class StateFileError(ValueError):
    """A state file exists but cannot be used; the message names the file and the problem."""


def write_bytes(path: Path, data: bytes, mode: int = 0o600, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically and durably (``mode``: the file's permissions).

    ``durable=False`` skips both fsyncs, for a file that is only a hint whose loss (or emptying by a power cut) the
    reader detects and rebuilds anyway, written too often to stall an event loop on the disk each time.
    """
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # a .tmp left by a crash keeps its old mode otherwise
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        sync_folder(path.parent)


def write_json(path: Path, value: Any, mode: int = 0o600, durable: bool = True) -> None:
    write_bytes(path, json.dumps(value, separators=(",", ":")).encode(), mode, durable)


def write_text(path: Path, text: str, mode: int = 0o600) -> None:
    write_bytes(path, text.encode(), mode)


def sync_folder(folder: Path) -> None:
    """Make a rename or unlink in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_bytes(path: Path) -> bytes | None:
    """The content of ``path``; None when it does not exist. Raises StateFileError when it is unreadable, empty or
    implausibly large."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_STATE_FILE + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if not data.strip():
        raise StateFileError(f"{path}: empty (cut short by a crash?)")
    if len(data) > MAX_STATE_FILE:
        raise StateFileError(f"{path}: larger than {MAX_STATE_FILE} bytes")
    return data


def read_json(path: Path, expect: type = dict) -> Any:
    """The JSON value in ``path`` (of type ``expect``); None when the file does not exist.

    Raises StateFileError for an empty, truncated or otherwise invalid file, or a value of another type.
    """
    data = read_bytes(path)
    if data is None:
        return None
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise StateFileError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(value, expect):
        raise StateFileError(f"{path}: a JSON {type(value).__name__} where a {expect.__name__} belongs")
    return value
