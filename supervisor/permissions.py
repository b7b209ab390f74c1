"""The plugin's files are its owner's only: container logs, their Info and the log-opts hold other people's data.

``serve`` sets the umask to 077 before anything is created (children are forked and inherit it), so every file is
0600 and every folder 0700. ``private_data_dir`` creates the data dir that way and, when it finds one an older
version left open to others, takes back everything under it once.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("elp.supervisor")

UMASK = 0o077
_OPEN_TO_OTHERS = 0o077


def private_data_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.stat().st_mode & _OPEN_TO_OTHERS:
        return  # created private, or already taken back: no walk on every start
    changed = _take_back(path)
    log.warning("%s and %d entries under it were readable by others (left by an older version); "
                "they are now private to the plugin", path, changed)


def _take_back(root: Path) -> int:
    """chmod go-rwx on ``root`` and everything under it (links are not followed); how many entries changed."""
    changed = 0
    pending = [str(root)]
    os.chmod(root, stat.S_IMODE(root.stat().st_mode) & ~_OPEN_TO_OTHERS)
    while pending:
        folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            log.warning("cannot list %s to make it private: %s", folder, exc)
            continue
        for entry in entries:
            try:
                if entry.is_symlink():
                    continue
                mode = entry.stat(follow_symlinks=False).st_mode
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                if mode & _OPEN_TO_OTHERS:
                    os.chmod(entry.path, stat.S_IMODE(mode) & ~_OPEN_TO_OTHERS, follow_symlinks=False)
                    changed += 1
            except OSError as exc:
                log.warning("cannot make %s private: %s", entry.path, exc)
    return changed
