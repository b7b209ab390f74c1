"""Names every process agrees on: what a container id looks like, and where the local store's ZeroMQ endpoints are.

Here rather than in ``localstore.paths`` (the store's own layout of files) because the supervisor, the shipper and
the local store all need them, and ``proto`` is the one package they all may import.
"""

from __future__ import annotations

import re
from pathlib import Path

CONTAINER_ID = re.compile(r"[0-9a-f]{64}")


def is_container_id(value: object) -> bool:
    """A full Docker container id: 64 lowercase hex digits (nothing that could climb out of a folder)."""
    return isinstance(value, str) and CONTAINER_ID.fullmatch(value) is not None


def ipc_dir(data_dir: Path) -> Path:
    return data_dir / "ipc"


def localstore_endpoint(data_dir: Path) -> str:
    """The local store's ROUTER for the readers' batches."""
    return f"ipc://{ipc_dir(data_dir) / 'localstore'}"


def fetch_endpoint(data_dir: Path) -> str:
    """The local store's ROUTER for the shipper's fetches."""
    return f"ipc://{ipc_dir(data_dir) / 'fetch'}"
