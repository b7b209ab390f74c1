"""Memory of the shipper and the local store while Elasticsearch is down and the local store fills up (issue 15).

The row: the shipper's and the local store's RSS at CONTAINERS containers during an outage, with GIB GiB waiting on
disk; it must stay bounded. Reference, printed beside it as a ratio: the same process's RSS early in the outage
(once the first 100 MiB are stored, or 1/20 of the target in ``--smoke``), so a ratio near 1 shows the memory does
not grow with what waits on disk.

How: the real supervisor (testkit.plugin.start_plugin, no Docker) with one logger per fake container
(testkit.dockerd_driver.FakeLogger: a FIFO and dockerd's StartLogging), every logger shipping to ``hosts=`` a
closed port on 127.0.0.1. A closed port is chosen over a stand-in answering 503 because it is what an outage
mostly looks like (the node is gone: connection refused), and because a stand-in reading every retried bulk body
would take CPU from the plugin on this 2-core machine. A feeder process writes dockerd's frames of LINE_BYTES-byte
lines round-robin into every FIFO as fast as the plugin takes them (non-blocking writes; a full FIFO is skipped),
until the data dir holds GIB GiB. Every second the RSS and USS (psutil) of the shipper and the local store are
sampled (their pids from the plugin's /stats, looked up again if one is respawned: that is reported). Then (unless
``--catchup-docs 0``) ``bench._counting_es`` is started on that very port and the time until it counted the first
document and CATCHUP_DOCS documents is printed; the first retry waits out the shipper's back-off (``backoff_max``,
default 60 s, with jitter), so that part says more about the back-off than about the shipping rate.

The default log-opts keep the data: at 1000 containers x 10 GiB, each container stores about 10 MiB, and the
local store rotates at max-size=10m and keeps max-file=5 files, so nothing is deleted before it is shipped (the
bench checks the data dir's size, which would stop growing if rotation deleted files).

What bounds the memory (from the code):

* shipper: it fetches a container's records only while that container's output queue has room
  (``shipper/bulk.py: BulkShipper.full``: queued + parked documents below ``QUEUE_MAX_BYTES`` = 64 MiB), at most one
  fetch in flight per container, of at most ``shipper/main.py: FETCH_BYTES`` = 1 MiB of records, and at most
  ``MAX_BACKLOG`` = 20,000 documents per container between fetch and acknowledgement. The documents the senders
  hold in retry (``SENDERS`` = 2 requests of at most ``bulk_max_bytes``, 10 MB) are outside the 64 MiB. The check
  is made before a fetch, so the queue can overshoot by what the fetches already in flight bring: at most one
  FETCH_BYTES of records per container (as documents, a little more). Hence the bound grows with the number of
  containers, not with the bytes waiting on disk: about 64 MiB + 2 x 10 MB + containers x (1 MiB of documents)
  in the worst case, plus per-container state (a feed, its encoder, its positions).
* local store: it answers a fetch with at most ``max_bytes`` (the shipper's 1 MiB) read from one file, one fetch
  per container; per container it keeps the open file, its state and the sequence numbers it has seen. Nothing it
  holds grows with the bytes waiting for Elasticsearch. What can grow is its ZeroMQ receive queue when the readers
  send faster than it writes: ``localstore/main.py: RCVHWM`` = 64 messages per reader pipe (each batch at most
  1 MiB, the reader holding at most 64 MiB unconfirmed, and resending what is unconfirmed after 2 s), so the bound
  is containers x 64 MiB, not a constant. Unpaced (every FIFO written as fast as it drains), 1000 containers on
  this 2-core machine took the store's RSS to 1.8 GiB with 0.6 GiB stored, readers resent and some dropped
  batches (the store confirmed nothing for 5 s); hence ``--mb-per-s``. Paced at 25 MB/s on the loaded machine,
  the store's RSS still swung between 0.2 and 3.3 GiB with the backlog in its queues; the supervisor's watchdog
  killed the busy store once (no report for 10 s while running), the readers resent what it had not confirmed,
  and the respawned store was OOM-killed at 3.4 GiB: at 1000 containers this run needs a quiet machine.

    python -m bench.outage_memory [--containers 1000] [--gib 10] [--line-bytes 8192] [--catchup-docs 100000]
                                  [--smoke]

``--smoke``: 10 containers, 50 MB, a few seconds.
"""

from __future__ import annotations

import argparse
import errno
import multiprocessing
import os
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

import psutil

from proto.entry_pb2 import LogEntry
from proto.framing import encode_frame

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._table import header, report  # noqa: E402
from bench.shipper_throughput import CountingEs  # noqa: E402
from testkit.dockerd_driver import FakeLogger  # noqa: E402
from testkit.plugin import RunningPlugin, start_plugin, wait_until  # noqa: E402

FORK = multiprocessing.get_context("fork")
ROLES = ("shipper", "localstore")
MIB = 1 << 20
WRITE_BYTES = 60 * 1024  # a FIFO holds 64 KiB: one write of a few whole frames fits an empty one


# ---------------------------------------------------------------------------------------------------- feeder


def feed(fds: list[int], line_bytes: int, rate: float, written: Synchronized[int], stop: Synchronized[int]) -> None:
    """Write whole frames round-robin into ``fds`` (non-blocking) at ``rate`` bytes/s in all until ``stop`` is set;
    count bytes written."""
    for fd in fds:
        os.set_blocking(fd, False)
    pad = b"x" * max(0, line_bytes - 10)
    pending = [memoryview(b"")] * len(fds)
    n = turn = 0
    start = time.monotonic()
    while not stop.value:
        progress = False
        now = time.time_ns()
        for _ in range(len(fds)):
            if written.value >= (time.monotonic() - start) * rate:
                break
            # The turn goes on where the last pass stopped, so every container gets its share of the rate.
            i, turn = turn, (turn + 1) % len(fds)
            fd = fds[i]
            if not pending[i]:
                frames: list[bytes] = []
                size = 0
                while size < WRITE_BYTES - line_bytes or not frames:
                    frames.append(encode_frame(LogEntry(source="stdout", time_nano=now, line=b"%09d " % n + pad)))
                    size += len(frames[-1])
                    n += 1
                pending[i] = memoryview(b"".join(frames))
            try:
                done = os.write(fd, pending[i])
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno == errno.EPIPE:
                    return
                raise
            pending[i] = pending[i][done:]
            written.value += done
            progress = True
        if not progress:
            time.sleep(0.005)  # paces the feed (or every FIFO is full); not a sync


# ---------------------------------------------------------------------------------------------------- sampling


@dataclass
class Memory:
    """RSS/USS samples of one role."""

    role: str
    pid: int = 0
    respawns: int = 0
    early_rss: int = 0
    max_rss: int = 0
    max_uss: int = 0
    last_rss: int = 0
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (GiB stored, rss, uss)

    def sample(self, stored_gib: float, early: bool) -> None:
        info = psutil.Process(self.pid).memory_full_info()
        rss, uss = int(info.rss), int(info.uss)
        self.samples.append((stored_gib, rss, uss))
        self.max_rss, self.max_uss, self.last_rss = max(self.max_rss, rss), max(self.max_uss, uss), rss
        if early:
            self.early_rss = max(self.early_rss, rss)


def _nearest(samples: list[tuple[float, int, int]], gib: float) -> tuple[float, int, int]:
    return min(samples, key=lambda s: abs(s[0] - gib))


def role_pids(plugin: RunningPlugin) -> dict[str, int]:
    stats = plugin.stats()
    return {role: int(stats[role]["pid"]) for role in ROLES if stats.get(role, {}).get("pid")}


def _respawned(plugin: RunningPlugin, role: str, old: int) -> int:
    def new_pid() -> int:
        pid = role_pids(plugin).get(role, 0)
        return pid if pid != old else 0

    return wait_until(new_pid, 60, 0.2, f"a new {role}")


def sample_all(plugin: RunningPlugin, memory: dict[str, Memory], stored_gib: float, early: bool) -> None:
    for m in memory.values():
        try:
            m.sample(stored_gib, early)
        except psutil.NoSuchProcess:
            # Respawned (it crashed or was killed): that is a finding, and the new one is sampled from now on.
            pid = _respawned(plugin, m.role, m.pid)
            print(f"  ({m.role} pid {m.pid} is gone: respawned as {pid} at {stored_gib:.2f} GiB stored)", flush=True)
            m.pid, m.respawns = pid, m.respawns + 1


def stored_bytes(containers: Path) -> int:
    return sum(per_container(containers))


def per_container(containers: Path) -> list[int]:
    """Bytes in each container's files."""
    sizes = []
    with os.scandir(containers) as folders:
        for folder in folders:
            size = 0
            with os.scandir(folder.path) as files:
                for f in files:
                    if f.name.startswith("container.log"):
                        try:
                            size += f.stat().st_size
                        except FileNotFoundError:
                            pass  # rotated away (renamed or deleted) since the listing
            sizes.append(size)
    return sizes


# ---------------------------------------------------------------------------------------------------- the run


def closed_port() -> int:
    """A port nobody listens on (bound once, then released), where Elasticsearch will come back."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fill(plugin: RunningPlugin, fds: list[int], target: int, early: int, line_bytes: int, rate: float,
         memory: dict[str, Memory]) -> tuple[float, int]:
    """Feed until ``target`` bytes are stored, sampling memory every second; returns (seconds, bytes written)."""
    written: Synchronized[int] = FORK.Value("q", 0, lock=False)
    stop: Synchronized[int] = FORK.Value("b", 0, lock=False)
    feeder = FORK.Process(target=feed, args=(fds, line_bytes, rate, written, stop), daemon=True)
    containers = plugin.data_dir / "containers"
    t0 = last_print = time.monotonic()
    feeder.start()
    try:
        stored, stalled_since, last_stored = 0, time.monotonic(), -1
        while stored < target:
            time.sleep(1.0)  # the sampling period, not a synchronisation
            stored = stored_bytes(containers) if containers.exists() else 0
            sample_all(plugin, memory, stored / 2**30, stored < early)
            if stored != last_stored:
                stalled_since, last_stored = time.monotonic(), stored
            elif time.monotonic() - stalled_since > 60:
                sys.exit(f"the data dir stopped growing at {stored / 2**30:.2f} GiB for 60 s (rotation deleting "
                         f"files, or the plugin stuck); see {plugin.log_path}")
            if not feeder.is_alive():
                sys.exit(f"the feeder died (exit {feeder.exitcode})")
            if time.monotonic() - last_print >= 15:
                last_print = time.monotonic()
                print(f"  {time.monotonic() - t0:6.0f} s: {stored / 2**30:6.2f} GiB stored, "
                      + ", ".join(f"{m.role} RSS {m.last_rss / MIB:.0f} MiB" for m in memory.values()), flush=True)
    finally:
        stop.value = 1
        feeder.join(30)
        if feeder.is_alive():
            feeder.kill()
    return time.monotonic() - t0, written.value


def catch_up(port: int, docs: int, timeout: float) -> tuple[float, float, float] | None:
    """Elasticsearch back on ``port``: seconds until the first documents and until ``docs`` documents, and the
    rate (docs/s) between those two moments."""
    t0 = time.monotonic()
    es = CountingEs(port)
    try:
        first_count = wait_until(es.docs, timeout, 0.05, "the first documents after the outage")
        first = time.monotonic() - t0
        last_count = wait_until(lambda: (n := es.docs()) >= docs and n, timeout, 0.05,
                                f"{docs} documents after the outage")
        total = time.monotonic() - t0
        return first, total, (last_count - first_count) / (total - first) if total > first else float("nan")
    except AssertionError as exc:
        print(f"  (catch-up: {exc}; counted {es.docs()})", flush=True)
        return None
    finally:
        es.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--containers", type=int, default=1000)
    parser.add_argument("--gib", type=float, default=10.0, help="GiB stored in the local store during the outage")
    parser.add_argument("--line-bytes", type=int, default=8192, help="bytes per line (below dockerd's 16 KiB)")
    parser.add_argument("--mb-per-s", type=float, default=25.0,
                        help="feed rate, all containers together (MB/s); unpaced, 1000 busy readers overload the "
                             "local store of a 2-core machine and the readers drop batches (see the docstring)")
    parser.add_argument("--catchup-docs", type=int, default=100_000,
                        help="documents to count once Elasticsearch is back (0: skip)")
    parser.add_argument("--smoke", action="store_true", help="10 containers, 50 MB, a few seconds")
    args = parser.parse_args()
    if args.smoke:
        args.containers, args.gib, args.catchup_docs = 10, 50e6 / 2**30, 1000
    target = int(args.gib * 2**30)
    early = min(100 * MIB, target // 20)
    work = Path(tempfile.mkdtemp(prefix="elp-b-", dir="/tmp"))
    port = closed_port()
    plugin = start_plugin(work / "p", env={"LOG_LEVEL": "info"})
    plugin.client.timeout = 120  # StartLogging of a thousand loggers keeps the supervisor busy
    loggers: list[FakeLogger] = []
    try:
        memory = {role: Memory(role, pid) for role, pid in role_pids(plugin).items()}
        for i in range(args.containers):
            lg = FakeLogger(plugin.client, plugin.fifo_dir, name=f"c{i}", config={"hosts": f"127.0.0.1:{port}"})
            reply = lg.start()
            assert reply == {"_status": 200}, reply
            loggers.append(lg)
        sample_all(plugin, memory, 0.0, True)
        print(f"{args.containers} containers shipping to 127.0.0.1:{port} (closed: Elasticsearch down), lines of "
              f"{args.line_bytes} B at {args.mb_per_s:g} MB/s in all until {args.gib:g} GiB are stored; "
              f"{os.cpu_count()} CPUs, load "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
        seconds, written = fill(plugin, [lg.fd for lg in loggers], target, early, args.line_bytes,
                                args.mb_per_s * 1e6, memory)
        sizes = per_container(plugin.data_dir / "containers")
        stored = sum(sizes)
        # The default rotation (max-size=10m, max-file=5) deletes a container's oldest file past about 50 MB.
        near = " (near the 50 MB the default rotation keeps: files may have been deleted)" if max(sizes) > 45e6 else ""
        print(f"per container: {min(sizes) / MIB:.1f} to {max(sizes) / MIB:.1f} MiB stored{near}")
        print(f"stored {stored / 2**30:.2f} GiB in {seconds:.0f} s ({stored / seconds / 1e6:.0f} MB/s; the feeder "
              f"wrote {written / 2**30:.2f} GiB of frames); load {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        for m in memory.values():
            half = [s for s in m.samples if s[0] >= stored / 2**30 / 2]
            print(f"  {m.role:10}: RSS early {m.early_rss / MIB:6.0f} MiB, max {m.max_rss / MIB:6.0f} MiB, "
                  f"at the end {m.last_rss / MIB:6.0f} MiB, "
                  f"max over the second half {max(s[1] for s in half) / MIB:6.0f}"
                  f" MiB; USS max {m.max_uss / MIB:6.0f} MiB; respawned {m.respawns}x")
            curve = [_nearest(m.samples, stored / 2**30 * k / 10) for k in range(1, 11)]
            print("              RSS MiB at GiB stored: " + "  ".join(f"{g:.1f}:{r / MIB:.0f}" for g, r, _ in curve))
        stats = plugin.stats()
        readers = stats["readers"]
        dropped = sum(r.get("lines_dropped_total", 0) for r in readers)
        resends = sum(r.get("resends_total", 0) for r in readers)
        print(f"  readers: {len(readers)}, lines dropped {dropped} (the store confirmed nothing for 5 s), "
              f"resends {resends} (no confirmation for 2 s)")
        shipper_stats = stats["shipper"]
        print("  shipper counters: " + ", ".join(f"{k}={shipper_stats[k]}" for k in sorted(shipper_stats)
                                                 if isinstance(shipper_stats[k], int | float)))
        catchup = catch_up(port, args.catchup_docs, 600) if args.catchup_docs else None
        header()
        label = f"{args.containers} containers, {stored / 2**30:.1f} GiB waiting, ES down"
        for m in memory.values():
            report("memory", f"{m.role} max RSS MiB, {label} / early RSS", f"{m.max_rss / MIB:.0f}",
                   f"{m.early_rss / MIB:.0f}", f"{m.max_rss / m.early_rss:.2f}", "bounded (ratio ~1)")
            report("memory", f"{m.role} max USS MiB, same", f"{m.max_uss / MIB:.0f}")
        if catchup is not None:
            first, total, rate = catchup
            report("catch-up", f"ES back after the outage: s to the first docs / to {args.catchup_docs} docs",
                   f"{first:.1f}", f"{total:.1f}", "-", "(first retry waits out backoff_max)")
            report("catch-up", f"docs/s from the first docs to {args.catchup_docs}, {args.line_bytes} B lines",
                   f"{rate:,.0f}" if rate > 0 else "- (all in the first answers)")
    finally:
        for lg in loggers:
            lg.close()
        plugin.stop(120)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
