"""Which shipper process ships a container, when the plugin runs several (the SHIPPERS setting).

The supervisor routes a container's ``ShipContainer`` by it and each shipper resumes only its own share of the
saved configs by it, so the two must agree, also across restarts: Python's ``hash()`` of a str is salted per
process, crc32 is not. Only one shipper may ever fetch and acknowledge a container: exactly-once depends on it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

MAX_SHIPPERS = 8


@dataclass(frozen=True)
class Shard:
    """One shipper's share: the containers whose ``shard_of`` is ``index``, of ``count`` shippers."""

    index: int = 0
    count: int = 1

    def owns(self, container_id: str) -> bool:
        return shard_of(container_id, self.count) == self.index


def shard_of(container_id: str, count: int) -> int:
    """The shipper (0 .. count-1) of a container; the same in every process and every run."""
    if count <= 1:
        return 0
    return zlib.crc32(container_id.encode()) % count


ONLY = Shard()  # one shipper: it ships every container
