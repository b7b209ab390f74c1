"""The enabled plugin seen from the host during a reliability test: its ``/stats`` and its containers' figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supervisor.statscli import fetch_stats
from tests.docker_fixtures import DockerEngine, Plugin

# Counters that only move when the plugin itself lost or refused something (not when Elasticsearch did).
READER_LOSS_COUNTERS = ("frames_discarded_total", "bytes_discarded_total", "batches_dropped_total",
                        "lines_dropped_total", "lines_lost_in_crashes")
STORE_LOSS_COUNTERS = ("records_dropped_total", "write_errors_total", "bad_messages_total")
SHIPPER_LOSS_COUNTERS = ("failed_total", "dead_lettered_total", "bad_messages_total")


class LivePlugin:
    """``GET /stats`` through the plugin's socket in the host's /run/docker/plugins/<id>/."""

    def __init__(self, engine: DockerEngine, plugin: Plugin) -> None:
        self.engine = engine
        plugin_id = engine.docker("plugin", "inspect", "-f", "{{.Id}}", plugin.name, check=True).stdout.strip()
        self.socket = Path(f"/run/docker/plugins/{plugin_id}/elp.sock")

    def stats(self) -> dict[str, Any]:
        return fetch_stats(self.socket)

    def container_id(self, name: str) -> str:
        return self.engine.docker("inspect", "-f", "{{.Id}}", name, check=True).stdout.strip()

    @staticmethod
    def reader(stats: dict[str, Any], container_id: str) -> dict[str, Any] | None:
        """The running reader of a container (a stopped container's reader is gone from /stats)."""
        return next((r for r in stats["readers"] if r["container_id"] == container_id), None)

    @classmethod
    def stored(cls, stats: dict[str, Any], container_id: str) -> int:
        """Lines the local store wrote for a running container (reported beside its reader)."""
        reader = cls.reader(stats, container_id)
        return int(reader.get("store", {}).get("records_total", 0)) if reader else 0

    @staticmethod
    def store_and_shipper_losses(stats: dict[str, Any]) -> dict[str, int]:
        """The service-wide loss counters, to compare before and after a test (the plugin is shared)."""
        found = {f"localstore.{k}": int(stats["localstore"].get(k, 0)) for k in STORE_LOSS_COUNTERS}
        found.update({f"shipper.{k}": int(stats["shipper"].get(k, 0)) for k in SHIPPER_LOSS_COUNTERS})
        return found
