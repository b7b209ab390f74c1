"""LocalStore: every container's files (container_log.py), what the loggers and the shipper tell about them, and
their end: DESTROY_LOGS_ON_STOP, RETAIN_STOPPED_FOR, release of idle containers."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localstore.container_log import ContainerLog, StoreOptions
from localstore.generations import GenerationFloor
from localstore.paths import INFO_NAME, container_dir, containers_dir
from localstore.recovery import find_last_marker, last_good_end
from localstore.running import mark_running, mark_stopped
from localstore.segments import chain, existing_rotated
from proto.framing import marker_record
from proto.messages import SEQ_SHIFT
from proto.options import redacted_config
from proto.paths import is_container_id
from proto.statefile import write_bytes

log = logging.getLogger("elp.localstore")


# DESTROY_LOGS_ON_STOP waits at most this long for the shipper before deleting undelivered lines.
DESTROY_WAIT = 60.0
# One expiry run deletes for at most this long (at least one folder), then lets the loop serve again: deleting many
# big folders on a slow disk would otherwise hold the loop past the supervisor's heartbeat timeout.
EXPIRE_BUDGET = 1.0


# What info.json keeps of dockerd's Info: nothing reads it back, it tells an operator whose logs a folder holds.
_INFO_JSON_KEYS = ("ContainerID", "ContainerName", "ContainerImageID", "ContainerImageName", "ContainerCreated",
                   "ContainerLabels", "DaemonName", "Config")


def _write_if_changed(path: Path, data: bytes) -> None:
    """A durable write costs two fsyncs, and dockerd starts a logger (same Info) for every ``docker logs`` of a
    stopped container: its ReadRequest, next on our loop, would wait for them."""
    try:
        if path.read_bytes() == data:
            return
    except OSError:
        pass  # not there yet, or unreadable: write it
    write_bytes(path, data)


def _without_secrets(info: dict[str, Any]) -> dict[str, Any]:
    """dockerd's Info for info.json, without what may hold other people's secrets: the environment and the
    command line are left out, and the log-opts (Config) keep their secrets masked (only the shipper needs them,
    in its own 0600 files)."""
    kept = {key: info[key] for key in _INFO_JSON_KEYS if key in info}
    config = info.get("Config")
    if isinstance(config, dict):
        kept["Config"] = redacted_config(config)
    return kept


@dataclass
class StoreCounters:
    bytes_total: int = 0
    records_total: int = 0
    batches_total: int = 0  # readers' batches written (each costs wake-ups in a reader and here)
    records_dropped_total: int = 0
    write_errors_total: int = 0
    read_streams: int = 0
    read_streams_total: int = 0
    destroyed_total: int = 0
    destroyed_unshipped_total: int = 0
    duplicates_skipped_total: int = 0
    out_of_order_refused_total: int = 0
    expired_total: int = 0
    rotations_forgotten: int = 0  # rotations of containers no longer in memory (rotations_total never goes down)


@dataclass(frozen=True)
class StoreSettings:
    """Plugin-wide behaviour of the store (plugin settings, not log options)."""

    destroy_logs_on_stop: bool = False
    retain_stopped_for: float = 0.0  # seconds; 0 keeps files for ever


class LocalStore:
    """All containers' files under ``<data dir>/containers/<container id>/``."""

    def __init__(self, data_dir: Path, settings: StoreSettings | None = None) -> None:
        self.data_dir = data_dir
        self.settings = settings or StoreSettings()
        self.logs: dict[str, ContainerLog] = {}
        # FIFOs whose reader said LoggerClosed (or that the supervisor declared gone): followers of a container
        # end once every FIFO they wait for is in here. The caller prunes it.
        self.closed_fifos: set[str] = set()
        self.counters = StoreCounters()
        self.failing: dict[str, str] = {}
        self.closed_changed = asyncio.Event()  # replaced at every close, like ContainerLog.changed
        self.floor = GenerationFloor(data_dir)
        self.unclean = False  # see start()
        self.continued: set[str] = set()  # containers already moved to a new file after an unclean stop
        # Called with a container id when its files are deleted, so that nobody keeps one open (fd and disk space).
        self.forget_hooks: list[Callable[[str], None]] = []
        self.last_seq: dict[str, int] = {}  # logger -> sequence number after its last stored batch
        self.refused_from: dict[str, int] = {}  # logger -> lowest sequence number refused since a gap
        # True once the supervisor named every running logger (LoggersSynced): before, a running container whose
        # LoggerStarted has not come yet looks stopped, and expire() must not judge any.
        self.loggers_synced = False

    def get(self, container_id: str) -> ContainerLog:
        clog = self.logs.get(container_id)
        if clog is None:
            clog = ContainerLog(container_id, container_dir(self.data_dir, container_id))
            clog.load_state(self.floor)
            if clog.path.exists():  # from before a restart of the store
                clog.size = last_good_end(clog.path, clog.path.stat().st_size)
            self.logs[container_id] = clog
        return clog

    def start(self) -> None:
        """Note that a local store runs on this data dir; find out whether the previous one stopped cleanly (see
        running.py: after an unclean stop each container goes on in a new file)."""
        self.unclean = mark_running(self.data_dir)

    def stopped(self) -> None:
        """A clean stop: every file was closed by us, nothing half-written."""
        mark_stopped(self.data_dir)

    def _after_unclean_stop(self, clog: ContainerLog) -> None:
        if not self.unclean or clog.container_id in self.continued:
            return
        self.continued.add(clog.container_id)
        if clog.path.exists() and clog.path.stat().st_size > 0:
            if clog.fd < 0:
                clog.open()
            clog.rotate()

    def append(self, container_id: str, records: bytes | bytearray | memoryview, count: int,
               head: bytes = b"") -> None:
        """Append ``head`` (a marker record, or nothing) and ``records``, whole records both."""
        clog = self.get(container_id)
        try:
            self._after_unclean_stop(clog)
            clog.append(records, head)
        except OSError as exc:
            # Disk full or folder unwritable: the batch is lost here (and counted); the next one tries again,
            # so writing resumes by itself when space returns.
            self.counters.write_errors_total += 1
            self.counters.records_dropped_total += count
            if self.failing.get(container_id) != exc.strerror:
                self.failing[container_id] = exc.strerror or str(exc)
                log.error("container %s: cannot write %s: %s; lines are dropped until it works again",
                          container_id[:12], clog.path, exc)
            clog.close()
            return
        if self.failing.pop(container_id, None) is not None:
            log.info("container %s: writing to %s again", container_id[:12], clog.path)
        size = len(head) + len(records)
        self.counters.bytes_total += size
        self.counters.records_total += count
        clog.bytes_total += size
        clog.records_total += count

    def append_batch(self, container_id: str, fifo: str, seq: int, records: bytes | bytearray | memoryview,
                     count: int) -> bool:
        """Store a reader's batch once, and in order; False when it must not be confirmed (yet).

        A batch sent again (the store died before confirming it) is recognised by its sequence number, from memory
        or, after a restart, from the last marker of its logger. A batch that does not follow the last one stored
        means an earlier batch was lost (it sat in a killed store's queue): it is refused and not confirmed, so the
        reader, hearing nothing, sends everything it still holds again, the lost batch first. Confirming it would
        confirm the lost one too (confirmations are cumulative). Two gaps are legitimate: a new reader incarnation
        starts a fresh range, and a reader that had to drop its oldest batches resends from its oldest held one,
        which is then the lowest batch refused since the gap.
        """
        last = self.last_seq.get(fifo)
        if last is None:
            last = self.last_seq[fifo] = find_last_marker(self.get(container_id).path, fifo)
        if seq + count <= last:
            self.counters.duplicates_skipped_total += count
            return True
        if last and seq != last and seq % (1 << SEQ_SHIFT) and seq != self.refused_from.get(fifo):
            self.refused_from[fifo] = min(seq, self.refused_from.get(fifo, seq))
            self.counters.out_of_order_refused_total += 1
            return False
        self.refused_from.pop(fifo, None)
        self.append(container_id, records, count, head=marker_record(fifo, seq + count))
        self.counters.batches_total += 1
        self.last_seq[fifo] = seq + count
        return True

    def logger_started(self, container_id: str, fifo: str, info: dict[str, Any], options: StoreOptions,
                       ships: bool = False) -> None:
        clog = self.get(container_id)
        clog.open_fifos.add(fifo)
        clog.options = options
        clog.destroy_pending_since = None
        if ships != clog.ships or (ships and clog.shipped is None):
            clog.ships = ships
            if ships and clog.shipped is None:
                # Shipping starts at the oldest stored line, fixed now: files rotated away before the shipper's
                # first fetch are then counted as lost, not skipped silently by a start that moves with the chain.
                clog.shipped = (clog.generation - max((i for i, _ in chain(clog.folder)), default=0), 0)
            clog.folder.mkdir(parents=True, exist_ok=True)
            clog.save_state()
        self.closed_fifos.discard(fifo)
        try:
            clog.folder.mkdir(parents=True, exist_ok=True)
            _write_if_changed(clog.folder / INFO_NAME, json.dumps(_without_secrets(info), sort_keys=True).encode())
        except OSError as exc:
            log.error("container %s: cannot write %s: %s", container_id[:12], clog.folder / INFO_NAME, exc)

    def logger_closed(self, container_id: str, fifo: str, lines: int) -> None:
        """A logger reached EOF. When it carried lines and was the container's last one, the container stopped.

        dockerd opens a temporary logger that never carries a line to serve ``docker logs`` of a stopped
        container: its close is not a stop, so it never destroys anything.
        """
        self.closed_fifos.add(fifo)
        self.last_seq.pop(fifo, None)
        self.refused_from.pop(fifo, None)
        self.closed_changed.set()
        self.closed_changed = asyncio.Event()
        clog = self.logs.get(container_id)
        if clog is None:
            return
        clog.open_fifos.discard(fifo)
        clog.notify()
        if self.settings.destroy_logs_on_stop and lines > 0 and not clog.open_fifos:
            clog.destroy_pending_since = time.monotonic()
            self.destroy_if_due(clog, time.monotonic())

    def destroy_if_due(self, clog: ContainerLog, now: float) -> None:
        """DESTROY_LOGS_ON_STOP: delete once Elasticsearch has every line, or after a bounded wait."""
        if clog.destroy_pending_since is None or clog.open_fifos:
            return
        behind = clog.ships and (clog.shipped is None or clog.shipped < clog.end)
        if not behind:
            self.destroy(clog.container_id, "the container stopped and DESTROY_LOGS_ON_STOP is on")
        elif now - clog.destroy_pending_since >= DESTROY_WAIT:
            log.warning("container %s: Elasticsearch still lacks its lines from %s to %s after %.0fs; "
                        "deleting them anyway (DESTROY_LOGS_ON_STOP)", clog.container_id[:12],
                        clog.shipped, clog.end, DESTROY_WAIT)
            self.counters.destroyed_unshipped_total += 1
            self.destroy(clog.container_id, "the container stopped and DESTROY_LOGS_ON_STOP is on")

    def acked(self, container_id: str, position: tuple[int, int]) -> None:
        clog = self.logs.get(container_id)
        if clog is None or (clog.shipped is not None and position <= clog.shipped):
            return
        clog.shipped = position
        self.destroy_if_due(clog, time.monotonic())

    def release_idle(self) -> list[str]:
        """Close and forget containers that need nothing more from us: no logger open, nothing left to ship or
        compress, no deletion pending. Each would otherwise keep its file open and its entry for good, one per
        container ever seen. Everything about one is on disk, so a later ReadLogs, Fetch or StartLogging simply
        loads it again. Returns their ids."""
        released = []
        for container_id, clog in list(self.logs.items()):
            behind = clog.ships and (clog.shipped or (0, 0)) < clog.end
            if clog.open_fifos or clog.compressing or clog.destroy_pending_since is not None or behind:
                continue
            if clog.shipped != clog.shipped_saved:
                try:
                    clog.save_state(durable=False)
                except OSError:
                    continue  # keep it (and its cursor) in memory; save_cursors logs the problem
            clog.close()
            self.counters.rotations_forgotten += clog.rotations
            del self.logs[container_id]
            self.failing.pop(container_id, None)
            released.append(container_id)
        return released

    def save_cursors(self) -> None:
        """Persist shipping cursors that moved (called every few seconds, and at shutdown)."""
        for clog in self.logs.values():
            if clog.shipped != clog.shipped_saved:
                try:
                    clog.save_state(durable=False)
                except OSError as exc:
                    log.error("container %s: cannot save its shipping cursor: %s", clog.container_id[:12], exc)

    def destroy(self, container_id: str, why: str) -> None:
        """Delete every file of one container (and nothing else)."""
        clog = self.logs.pop(container_id, None)
        if clog is not None:
            clog.close()
            self.counters.rotations_forgotten += clog.rotations
        for hook in self.forget_hooks:
            hook(container_id)
        folder = container_dir(self.data_dir, container_id)
        if not folder.exists():
            return
        if clog is None:
            clog = ContainerLog(container_id, folder)
            clog.load_state(self.floor)
        # A container started again later must start past every position (so every _id) this one used.
        self.floor.raise_to(clog.generation + 1)
        try:
            shutil.rmtree(folder)
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error("container %s: cannot delete %s: %s", container_id[:12], folder, exc)
            return
        self.counters.destroyed_total += 1
        log.info("container %s: deleted its local logs (%s)", container_id[:12], why)

    def expire(self, now: float, budget: float = EXPIRE_BUDGET) -> bool:
        """Delete the files of containers that stopped longer than ``retain_stopped_for`` ago. Nothing before the
        running loggers are known (``loggers_synced``). False when it stopped at its time ``budget`` with folders
        left to look at: call again soon."""
        keep_for = self.settings.retain_stopped_for
        if not keep_for or not self.loggers_synced:
            return True
        deadline = time.monotonic() + budget
        try:
            folders = list(containers_dir(self.data_dir).iterdir())
        except FileNotFoundError:
            return True
        for folder in folders:
            cid = folder.name
            if not is_container_id(cid):
                continue
            clog = self.logs.get(cid)
            if clog is not None and clog.open_fifos:
                continue
            try:
                last = max(p.stat().st_mtime for p in folder.iterdir())
            except (OSError, ValueError):
                continue
            if now - last > keep_for:
                self.destroy(cid, f"stopped for more than {keep_for:.0f}s (RETAIN_STOPPED_FOR)")
                self.counters.expired_total += 1
                if time.monotonic() >= deadline:
                    return False
        return True

    def existing(self, container_id: str) -> ContainerLog | None:
        """The container's log if anything was ever stored for it (also from before a restart)."""
        clog = self.logs.get(container_id)
        if clog is not None:
            return clog
        folder = container_dir(self.data_dir, container_id)
        if existing_rotated(folder, 0) is None and existing_rotated(folder, 1) is None:
            return None
        return self.get(container_id)

    def rotations_total(self) -> int:
        return self.counters.rotations_forgotten + sum(clog.rotations for clog in self.logs.values())

    def per_container(self) -> dict[str, dict[str, int]]:
        return {
            cid: {
                "bytes_total": clog.bytes_total,
                "records_total": clog.records_total,
                "rotations_total": clog.rotations,
                "compressing": clog.compressing,
            }
            for cid, clog in self.logs.items()
        }

    def close(self) -> None:
        for clog in self.logs.values():
            clog.close()
