"""Where the local store keeps things. Every path derived from a request goes through here.

(What other processes need too, container ids and the ZeroMQ endpoints, is in ``proto.paths``.)
"""

from __future__ import annotations

from pathlib import Path

from proto.paths import is_container_id

LOG_NAME = "container.log"
INFO_NAME = "info.json"


def containers_dir(data_dir: Path) -> Path:
    return data_dir / "containers"


def container_dir(data_dir: Path, container_id: str) -> Path:
    if not is_container_id(container_id):
        raise ValueError(f"not a container id: {container_id[:80]!r}")
    return containers_dir(data_dir) / container_id
