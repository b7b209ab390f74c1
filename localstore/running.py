"""The local store's running marker: there while a store runs, holding the kernel's boot id. Found at start with
another boot's id, it says the machine died under the previous store (see LocalStore.start)."""

from __future__ import annotations

import logging
from pathlib import Path

from proto.statefile import write_bytes

log = logging.getLogger("elp.localstore")

RUNNING_NAME = "localstore.running"  # there while a local store runs (holding the boot id): found at start, it crashed
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def current_boot_id() -> bytes:
    """The kernel's id of this boot (b"" when unreadable): it changes at every start of the machine."""
    try:
        return BOOT_ID.read_bytes().strip()
    except OSError:
        return b""


def mark_running(data_dir: Path) -> bool:
    """Note that a local store runs on ``data_dir``; True when the previous one stopped uncleanly (another boot).

    After a power cut (or any end of the machine) a file may have lost its unsynced tail although the shipper
    had already read those lines and Elasticsearch holds them: appending at the old end would hand their
    positions, so their ids, to new lines, which Elasticsearch would then refuse as already there. So after
    such an unclean stop each container continues in a new file (a new generation) the first time it is
    appended to. A crash of the process alone loses nothing the kernel was given (the page cache outlives it),
    and a rotation would cost a file of every container (all of it with max-file=1), so the marker holds the
    kernel's boot id: only a marker from another boot (or an unreadable one) means an unclean stop.
    """
    marker = data_dir / RUNNING_NAME
    boot = current_boot_id()
    try:
        previous: bytes | None = marker.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        previous = None
    except OSError:
        previous = b""  # there but unreadable: assume the worst
    unclean = previous is not None and (not boot or previous.strip() != boot)
    if unclean:
        log.warning("the previous local store did not stop cleanly and the machine restarted since: each "
                    "container goes on in a new file, so that no line takes the place (and _id) of one lost "
                    "from the end of a file")
    elif previous is not None:
        log.info("the previous local store did not stop cleanly (same boot: the files kept every write)")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        write_bytes(marker, boot)
    except OSError as exc:  # disk full: run anyway; a crash before it works goes unnoticed next time
        log.error("cannot write %s: %s", marker, exc)
    return unclean


def mark_stopped(data_dir: Path) -> None:
    """A clean stop: every file was closed by us, nothing half-written."""
    try:
        (data_dir / RUNNING_NAME).unlink(missing_ok=True)
    except OSError as exc:
        log.error("cannot remove %s: %s", data_dir / RUNNING_NAME, exc)
