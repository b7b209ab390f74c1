"""LoggerRegistry: the active loggers, persisted so that a restarted plugin re-attaches to their FIFOs.

dockerd restarts a crashed plugin but never repeats StartLogging; what it started before is only known here.
One small JSON file per logger under ``<data dir>/loggers/``, written atomically, readable by its owner only (the
log-opts in it may hold secrets).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("elp.supervisor")


@dataclass(frozen=True)
class LoggerRecord:
    fifo_path: str
    info: dict[str, Any]


class LoggerRegistry:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, fifo_path: str) -> Path:
        return self.folder / (os.path.basename(fifo_path) + ".json")

    def save(self, record: LoggerRecord) -> None:
        # 0600 in a 0700 folder: the Info's Config holds the log-opts, secrets included, and re-attaching after a
        # restart needs them as given.
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._path(record.fifo_path)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump({"File": record.fifo_path, "Info": record.info}, file)
        os.replace(tmp, path)

    def remove(self, fifo_path: str) -> None:
        try:
            self._path(fifo_path).unlink()
        except FileNotFoundError:
            pass

    def load(self) -> list[LoggerRecord]:
        records = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                data = json.loads(path.read_text())
                records.append(LoggerRecord(str(data["File"]), dict(data["Info"])))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring unreadable logger record %s: %s", path, exc)
                path.unlink(missing_ok=True)
        return records
