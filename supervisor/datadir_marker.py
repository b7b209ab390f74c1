"""Tell when the plugin starts on another data dir than its FIFOs were last served with.

`docker plugin upgrade` replaces the plugin's whole Config, and `docker plugin set data.source=...` is stored there
(moby plugin/v2/plugin.go Set), so an upgrade puts the data mount back to config.json's default. The FIFO folder
is the plugin's PropagatedMount, which an upgrade keeps (docs/architecture.md, "Upgrading the plugin"). A marker
in it naming the data dir (its device and inode, as the plugin sees them) turns that silent switch (no history in
`docker logs`, running containers not re-attached) into one error at start-up that says what to do.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from proto import statefile

log = logging.getLogger("elp.supervisor")

MARKER = ".elp-data-dir"


def identity(data_dir: Path) -> str:
    st = os.stat(data_dir)
    return f"{st.st_dev}:{st.st_ino}"


def check_data_dir(data_dir: Path, fifo_dir: Path) -> bool:
    """Compare the data dir with the one the marker names, then name this one. False when they differ."""
    marker = fifo_dir / MARKER
    try:
        now = identity(data_dir)
        try:
            before = marker.read_text().strip()
        except FileNotFoundError:
            before = ""
        if before != now:
            statefile.write_text(marker, now + "\n")
    except OSError as exc:
        log.warning("cannot check that the data dir is the one used before (%s): %s", marker, exc)
        return True
    if before and before != now:
        log.error("the data dir %s is not the one this plugin's containers were logged to before: after `docker "
                  "plugin upgrade`, Docker puts the data mount back to its default, so the earlier history is not "
                  "here and running containers are not re-attached (they wait once their pipe is full). Disable the "
                  "plugin, `docker plugin set <plugin> data.source=<your folder>`, enable it (README, Upgrading). "
                  "If you moved the data on purpose, this is said once.", data_dir)
        return False
    return True
