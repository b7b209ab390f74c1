"""Where the local store keeps things. Every path derived from a request goes through here."""

from __future__ import annotations

import re
from pathlib import Path

CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
LOG_NAME = "container.log"
INFO_NAME = "info.json"


def is_container_id(value: object) -> bool:
    """A full Docker container id: 64 lowercase hex digits (nothing that could climb out of a folder)."""
    return isinstance(value, str) and CONTAINER_ID.fullmatch(value) is not None


def containers_dir(data_dir: Path) -> Path:
    return data_dir / "containers"


def container_dir(data_dir: Path, container_id: str) -> Path:
    if not is_container_id(container_id):
        raise ValueError(f"not a container id: {container_id[:80]!r}")
    return containers_dir(data_dir) / container_id


def ipc_dir(data_dir: Path) -> Path:
    return data_dir / "ipc"


def localstore_endpoint(data_dir: Path) -> str:
    return f"ipc://{ipc_dir(data_dir) / 'localstore'}"


def fetch_endpoint(data_dir: Path) -> str:
    return f"ipc://{ipc_dir(data_dir) / 'fetch'}"
