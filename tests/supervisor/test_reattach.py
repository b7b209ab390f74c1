"""supervisor/loggers.py reattach: a running container's FIFO that vanished while the plugin was down (what
`docker plugin upgrade` did to a plugin without PropagatedMount: the FIFOs went with the old rootfs) is an error
naming the container, not an info line."""

from __future__ import annotations

import logging
from pathlib import Path

from testkit.dockerd_driver import entry
from testkit.plugin import start_plugin, wait_until


def test_a_fifo_gone_under_a_running_container_is_an_error_naming_it(short_tmp: Path) -> None:
    plugin = start_plugin(short_tmp)
    gone = plugin.logger(name="gone")
    kept = plugin.logger(name="kept")
    try:
        for lg in (gone, kept):
            assert not lg.start().get("Err")
            lg.write(entry(b"before"))
        wait_until(lambda: plugin.stats()["localstore"]["records_total"] == 2, message="both lines stored")
        assert plugin.stop() == 0
        gone.path.unlink()  # the container keeps its write end open: only the name is gone
        plugin = start_plugin(short_tmp)
        wait_until(lambda: "re-attached to the FIFO of container " + kept.container_id[:12] in plugin.log_text(),
                   message="the other logger re-attached")
        errors = [line for line in plugin.log_text().splitlines()
                  if logging.getLevelName(logging.ERROR) in line and gone.container_id[:12] in line]
        assert len(errors) == 1 and "is gone" in errors[0] and "restarted" in errors[0], plugin.log_text()[-3000:]
    finally:
        plugin.stop()
        gone.close()
        kept.close()
