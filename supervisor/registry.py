"""LoggerRegistry: the active loggers, persisted so that a restarted plugin re-attaches to their FIFOs.

dockerd restarts a crashed plugin but never repeats StartLogging; what it started before is only known here.
One small JSON file per logger under ``<data dir>/loggers/``, written atomically (proto/statefile.py) but not
fsynced (see ``save``), readable by its owner only (the log-opts in it may hold secrets).

A record found damaged at start-up is never just dropped: a running container in blocking mode whose FIFO nobody
reads would hang. It is rebuilt from what is left: the FIFO from the file's name, the container from what remains
of the record (its id is written first) or from the local store's batch markers, which name the FIFO. Only when
nothing tells its container is it set aside as ``<name>.corrupt``, with an error.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localstore.paths import LOG_NAME, containers_dir
from proto.framing import MARKER_PREFIX
from proto.paths import is_container_id
from proto.statefile import StateFileError, read_json, write_json

log = logging.getLogger("elp.supervisor")

CONTAINER_ID_FIELD = re.compile(rb'"ContainerID"\s*:\s*"([0-9a-f]{64})"')
CONFIG_FIELD = re.compile(r'"Config"\s*:\s*')
LABELS_FIELD = re.compile(r'"ContainerLabels"\s*:\s*')
MARKER_SCAN = 4 << 20  # how much of the end of each container's file is searched for a FIFO's batch marker


@dataclass(frozen=True)
class LoggerRecord:
    fifo_path: str
    info: dict[str, Any]


class LoggerRegistry:
    def __init__(self, folder: Path, fifo_dir: Path | None = None, data_dir: Path | None = None) -> None:
        self.folder = folder
        self.fifo_dir = fifo_dir
        self.data_dir = data_dir

    def _path(self, fifo_path: str) -> Path:
        return self.folder / (os.path.basename(fifo_path) + ".json")

    def save(self, record: LoggerRecord) -> None:
        # 0600 in a 0700 folder: the Info's Config holds the log-opts, secrets included, and re-attaching after a
        # restart needs them as given. The container id comes first, the log-opts next, then the labels (their
        # co.elastic.logs/ hints may say enabled=false), so a file cut short still tells them.
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        first = ("ContainerID", "Config", "ContainerLabels")
        info = {key: record.info[key] for key in first if key in record.info} | record.info
        # Atomic (rename) but not fsynced: the record only has to outlive the plugin's processes, whose crash
        # leaves the renamed file in the page cache. A power cut also ends dockerd, the only writer of every FIFO,
        # and after the reboot dockerd starts each container's logger anew (a new FIFO, a new StartLogging; so
        # does a dockerd restart with live-restore: InitializeStdio -> startLogging), so a record lost or emptied
        # by a power cut names a FIFO nobody writes any more. The two fsyncs were most of a StartLogging
        # (`python -m bench.store --tail-only`), and dockerd makes a logger for every `docker logs` of a stopped
        # container.
        write_json(self._path(record.fifo_path), {"ContainerID": record.info.get("ContainerID"),
                                                  "File": record.fifo_path, "Info": info}, durable=False)

    def remove(self, fifo_path: str) -> None:
        try:
            self._path(fifo_path).unlink()
        except FileNotFoundError:
            pass

    def load(self) -> list[LoggerRecord]:
        records = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                data = read_json(path)
                if data is None:
                    continue
                if not isinstance(data.get("File"), str) or not isinstance(data.get("Info"), dict):
                    raise StateFileError(f"{path}: no File string and Info object in it")
                records.append(LoggerRecord(data["File"], data["Info"]))
            except StateFileError as exc:
                rebuilt = self._rebuild(path)
                if rebuilt is None:
                    log.error("%s; nothing on disk tells its container, so its FIFO is not re-attached (kept as "
                              "%s.corrupt)", exc, path.name)
                    os.replace(path, path.with_name(path.name + ".corrupt"))
                    continue
                log.error("%s; re-attaching FIFO %s of container %s from what is left on disk (log-opts %s)", exc,
                          path.stem[:12], rebuilt.info["ContainerID"][:12],
                          "kept" if rebuilt.info["Config"] else "lost: defaults apply until it starts again")
                records.append(rebuilt)
        return records

    def _rebuild(self, path: Path) -> LoggerRecord | None:
        """A damaged record's logger, from what is left of the file and the local store's files."""
        if self.fifo_dir is None:
            return None
        try:
            raw = path.read_bytes()[: 1 << 20]
        except OSError:
            raw = b""
        found = CONTAINER_ID_FIELD.search(raw)
        container_id = found.group(1).decode() if found else self._container_from_markers(path.stem)
        if container_id is None:
            return None
        info: dict[str, Any] = {"ContainerID": container_id, "Config": _config(raw)}
        labels = _string_map(raw, LABELS_FIELD)
        if labels:
            info["ContainerLabels"] = labels
        return LoggerRecord(str(self.fifo_dir / path.stem), info)

    def _container_from_markers(self, fifo_name: str) -> str | None:
        """The container whose file holds a batch marker of this FIFO near its end (the newest such file)."""
        if self.data_dir is None:
            return None
        needle = f"{MARKER_PREFIX}{fifo_name}:".encode()
        best: tuple[float, str] | None = None
        try:
            folders = list(containers_dir(self.data_dir).iterdir())
        except OSError:
            return None
        for folder in folders:
            if not is_container_id(folder.name):
                continue
            try:
                with open(folder / LOG_NAME, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    f.seek(max(0, size - MARKER_SCAN))
                    if needle in f.read():
                        mtime = os.fstat(f.fileno()).st_mtime
                        if best is None or mtime > best[0]:
                            best = (mtime, folder.name)
            except OSError:
                continue
        return best[1] if best else None


def _config(raw: bytes) -> dict[str, str]:
    """The log-opts, if the damaged record still holds them whole."""
    return _string_map(raw, CONFIG_FIELD)


def _string_map(raw: bytes, field: re.Pattern[str]) -> dict[str, str]:
    """An object of strings of the damaged record (log-opts, labels), if it still holds it whole."""
    text = raw.decode(errors="replace")
    found = field.search(text)
    if found is None:
        return {}
    try:
        value, _ = json.JSONDecoder().raw_decode(text, found.end())
    except ValueError:
        return {}
    if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return value
    return {}
