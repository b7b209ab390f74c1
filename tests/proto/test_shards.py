"""proto/shards.py: which shipper ships a container, the same in every process and every run."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

from proto.shards import Shard, shard_of
from testkit.dockerd_driver import new_container_id

CID = "4f1c6bba0a5a0c1f2c5e6e8d9b7a3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b"


def test_one_shipper_ships_everything() -> None:
    assert shard_of(CID, 1) == 0 and Shard().owns(CID)


def test_the_same_in_another_process() -> None:
    # Python's str hash is salted per process (PYTHONHASHSEED): a shard from it would differ between the supervisor
    # that routes a container and the shipper that resumes it from its saved config.
    code = f"from proto.shards import shard_of; print([shard_of({CID!r}, n) for n in range(1, 9)])"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "12345", "PATH": ""}, cwd=".")
    assert other.stdout.strip() == str([shard_of(CID, n) for n in range(1, 9)])


def test_each_container_belongs_to_exactly_one_shard_and_the_shares_are_even() -> None:
    ids = [new_container_id() for _ in range(4000)]
    for count in (2, 3, 8):
        shards = [Shard(i, count) for i in range(count)]
        assert all(sum(s.owns(cid) for s in shards) == 1 for cid in ids)
        sizes = Counter(shard_of(cid, count) for cid in ids)
        assert set(sizes) == set(range(count))
        assert max(sizes.values()) < 1.25 * len(ids) / count
