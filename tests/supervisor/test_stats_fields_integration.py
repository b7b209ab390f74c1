"""Stats figures that follow what happens: a reader's line rate, the free space of the data folder."""

from __future__ import annotations

from pathlib import Path

from testkit.dockerd_driver import PacedWriter, entry
from testkit.plugin import RunningPlugin, start_plugin, wait_until


def test_lines_per_s_follows_the_write_rate(plugin: RunningPlugin) -> None:
    lg = plugin.logger(name="paced")
    assert lg.start() == {"_status": 200}
    writer = PacedWriter(lg, rate=2000)
    writer.start()
    try:
        wait_until(lambda: 1200 <= plugin.stats()["readers"][0]["lines_per_s"] <= 2800, 15,
                   message="lines_per_s near the 2000 lines/s written")
    finally:
        writer.finish()
    wait_until(lambda: plugin.stats()["readers"][0]["lines_per_s"] == 0, 10, message="the rate back to 0")
    lg.stop()


def test_disk_free_bytes_is_the_data_folders_and_shrinks_as_lines_are_stored(small_disk: Path) -> None:
    plugin = start_plugin(small_disk)
    try:
        free_at_start = wait_until(lambda: plugin.stats()["localstore"]["disk_free_bytes"], message="a figure")
        assert 1 << 20 < free_at_start <= 2 << 20, "the 2 MiB tmpfs the data folder is on"
        lg = plugin.logger()
        assert lg.start() == {"_status": 200}
        lg.write(*(entry(b"%04d " % i + b"f" * 500) for i in range(1000)))  # ~0.5 MB stored
        wait_until(lambda: plugin.stats()["localstore"]["records_total"] >= 1000, message="the lines stored")
        wait_until(lambda: free_at_start - plugin.stats()["localstore"]["disk_free_bytes"] >= 500_000, 10,
                   message="the free space to shrink by what was stored")
        lg.stop()
    finally:
        assert plugin.stop() == 0
