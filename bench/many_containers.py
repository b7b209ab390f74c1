"""CPU of the whole plugin with many containers at a steady rate, beside one bare process reading the same FIFOs.

P9: 100 quiet containers at 100 lines/s and at 10 lines/s each, kept in the local store only, and also shipped
(what shipping adds is per line, not per wake-up: see P3). Goal (issue 15): the plugin, all processes, <= 0.10
cores at 100 lines/s in the local store only.
Scaling: 1, 10 and 100 containers sharing one total rate, with 100-byte and 4 KiB lines, so the cost curve of
"more containers, same volume" is visible.

How: a feeder process writes LogEntry frames into every container's FIFO at its rate, one ``write()`` per line
spread evenly over time, as dockerd's copier does for a container printing steadily. Ours: the real supervisor
(LOG_LEVEL=info) with one logger per FIFO, storing locally and (unless "store only") shipping to
``bench._counting_es`` (bulk every 1 s, the default). Reference: one bare Python process that registers every
FIFO in epoll and on each wake reads, splits and decodes what is there (no store, no shipping): what a reader can
never avoid, with the wake-ups shared.
Every reader is forked (one line into each FIFO) before the warm-up starts, so that forking 1000 readers is not
measured as the cost of their lines. Both are measured the same way: user+system CPU seconds (psutil, every process
of the tree) over a window that starts after a warm-up, divided by the window (cores) and by the lines the feeder
wrote in it (CPU s per million lines).

    python -m bench.many_containers [--window S] [--warmup S] [--only p9|scaling] [--store-only]
                                    [--counts 1,10,100[,1000]] [--smoke]

Each row is followed by where the CPU goes: the cores of each role (the readers together, beside the bare reader;
the local store; the supervisor; the shipper when shipping), each role's context switches (every thread, from
/proc) per stored batch, the batches stored per second (the store's ``batches_total``) and the readers' main-loop
turns per batch (their ``wakeups_total``), from the plugin's /stats asked just outside the window.

``--store-only`` keeps only the rows that store locally (no shipping), for the reader -> local store path alone;
``--counts`` sets the container counts of the scaling rows (1000 needs about 6 GB for the readers).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import selectors
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import psutil

from proto.entry_pb2 import LogEntry
from proto.framing import FrameSplitter, encode_frame

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._table import header, report  # noqa: E402
from bench.shipper_throughput import CountingEs  # noqa: E402
from testkit.dockerd_driver import FakeLogger  # noqa: E402
from testkit.plugin import RunningPlugin, start_plugin, wait_until  # noqa: E402

FORK = multiprocessing.get_context("fork")


@dataclass(frozen=True)
class Load:
    containers: int
    rate: float  # lines/s per container
    size: int  # bytes per line
    ships: bool = True  # to the counting Elasticsearch, or kept in the local store only

    def label(self) -> str:
        return f"{self.containers} x {self.rate:g}/s x {self.size} B{'' if self.ships else ', store only'}"


@dataclass(frozen=True)
class Cost:
    cores: float
    lines: int
    seconds: float
    by_role: dict[str, float] = field(default_factory=dict)  # cores per kind of process

    @property
    def per_million(self) -> float:
        """CPU seconds per million lines."""
        return self.cores * self.seconds / self.lines * 1e6 if self.lines else float("nan")


# ---------------------------------------------------------------------------------------------------- feeder


def feed(fds: list[int], load: Load, written: Synchronized[int], stop_at: float) -> None:
    """Write lines round-robin over ``fds`` so that each gets ``load.rate`` lines/s, evenly spread."""
    total_rate = load.rate * len(fds)
    payload = b"x" * max(0, load.size - 9) + b"\n"
    start, sent, turn = time.monotonic(), 0, 0
    while (now := time.monotonic()) < stop_at:
        due = int((now - start) * total_rate) - sent
        for _ in range(due):
            frame = encode_frame(LogEntry(source="stdout", time_nano=time.time_ns(), line=b"%08d " % sent + payload))
            os.write(fds[turn], frame)
            turn = (turn + 1) % len(fds)
            sent += 1
        written.value = sent
        time.sleep(0.001)  # the feeder's own pacing tick, not a synchronisation


@contextmanager
def feeding(fds: list[int], load: Load, seconds: float) -> Iterator[Synchronized[int]]:
    written: Synchronized[int] = FORK.Value("q", 0, lock=False)  # type: ignore[assignment]
    proc = FORK.Process(target=feed, args=(fds, load, written, time.monotonic() + seconds), daemon=True)
    proc.start()
    try:
        yield written
    finally:
        proc.join(seconds + 10)
        if proc.is_alive():
            proc.kill()


# ---------------------------------------------------------------------------------------------------- measure


ROLES = ("readers", "localstore", "supervisor", "shipper", "other")


@dataclass(frozen=True)
class Usage:
    """CPU seconds (user + system) and context switches (voluntary + involuntary, every thread) of one process."""

    cpu: float = 0.0
    switches: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.cpu + other.cpu, self.switches + other.switches)

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.cpu - other.cpu, self.switches - other.switches)


def usage(proc: psutil.Process) -> Usage | None:
    """None once the process is gone. Context switches are summed over its threads (psutil's count is the main
    thread's only, and a reader's ZeroMQ I/O thread wakes on its own)."""
    try:
        t = proc.cpu_times()
        tids = os.listdir(f"/proc/{proc.pid}/task")
    except (psutil.NoSuchProcess, FileNotFoundError):
        return None
    switches = 0
    for tid in tids:
        try:
            with open(f"/proc/{proc.pid}/task/{tid}/status") as f:
                switches += sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that just ended
    return Usage(t.user + t.system, switches)


def tree_usage(root: psutil.Process, role_of: Callable[[int], str]) -> dict[str, Usage]:
    """Every process of the tree, summed per role (``role_of(pid)``)."""
    total = {role: Usage() for role in ROLES}
    for proc in [root, *root.children(recursive=True)]:
        u = usage(proc)
        if u is not None:
            role = role_of(proc.pid)
            total[role] = total[role] + u
    return total


@dataclass(frozen=True)
class Window:
    """What the tree used over the measured window, per role, and what it did meanwhile."""

    cost: Cost
    roles: dict[str, Usage]
    wakeups: int = 0  # the readers' main-loop turns (their stats: wakeups_total)
    batches: int = 0  # batches the local store stored (its stats: batches_total)


def measure(root_pid: int, fds: list[int], load: Load, warmup: float, window: float,
            plugin: RunningPlugin | None = None) -> Window:
    """Feed ``load`` for ``warmup + window`` s; what the tree of ``root_pid`` used over the window. With
    ``plugin``, its /stats name each process's role and give the readers' wake-ups and the stored batches (asked
    outside the window, so the answer's own cost is not counted)."""
    root = psutil.Process(root_pid)
    with feeding(fds, load, warmup + window) as written:
        time.sleep(warmup)  # the bench's warm-up, not a sync
        stats0 = plugin.stats() if plugin else {}
        role_of = _roles(stats0, root_pid)
        use0, lines0, t0 = tree_usage(root, role_of), written.value, time.monotonic()
        time.sleep(window)  # the measured window, not a sync
        use1, lines1, t1 = tree_usage(root, role_of), written.value, time.monotonic()
        stats1 = plugin.stats() if plugin else {}
    roles = {role: use1[role] - use0[role] for role in ROLES}
    cores = sum(u.cpu for u in roles.values()) / (t1 - t0)
    return Window(Cost(cores, lines1 - lines0, t1 - t0), roles,
                  _reader_sum(stats1, "wakeups_total") - _reader_sum(stats0, "wakeups_total"),
                  _store_count(stats1) - _store_count(stats0))


def _roles(stats: dict[str, Any], root_pid: int) -> Callable[[int], str]:
    """pid -> role, from the plugin's /stats (the bare reader, without stats, is all "readers")."""
    if not stats:
        return lambda pid: "readers"
    known = {root_pid: "supervisor"}
    for role in ("localstore", "shipper"):
        pid = stats.get(role, {}).get("pid")
        if pid:
            known[pid] = role
    for reader in stats.get("readers", []):
        if reader.get("pid"):
            known[reader["pid"]] = "readers"
    return lambda pid: known.get(pid, "other")


def _reader_sum(stats: dict[str, Any], key: str) -> int:
    return sum(int(r.get(key, 0)) for r in stats.get("readers", []))


def _store_count(stats: dict[str, Any]) -> int:
    return int(stats.get("localstore", {}).get("batches_total", 0))


# ---------------------------------------------------------------------------------------------------- the two sides


def bare_reader(paths: list[str]) -> None:
    """The reference: one process, every FIFO in epoll; read, split and decode whatever is there."""
    sel = selectors.DefaultSelector()
    splitters = {}
    for path in paths:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        sel.register(fd, selectors.EVENT_READ)
        splitters[fd] = FrameSplitter()
    while True:
        for key, _ in sel.select():
            for body in splitters[key.fd].feed(os.read(key.fd, 1 << 20)):
                e = LogEntry.FromString(body)
                _ = (e.source, e.time_nano, e.line, e.partial)


def run_bare(work: Path, load: Load, warmup: float, window: float) -> Window:
    paths = []
    for i in range(load.containers):
        path = work / f"bare-{i}.fifo"
        os.mkfifo(path)
        paths.append(str(path))
    fds = [os.open(p, os.O_RDWR) for p in paths]  # as dockerd holds them: the reader never sees EOF
    reader = FORK.Process(target=bare_reader, args=(paths,), daemon=True)
    reader.start()
    try:
        assert reader.pid is not None
        return measure(reader.pid, fds, load, warmup, window)
    finally:
        reader.kill()
        reader.join()
        for fd in fds:
            os.close(fd)
        for p in paths:
            os.unlink(p)


def run_ours(work: Path, es: CountingEs, load: Load, warmup: float, window: float) -> Window:
    plugin = start_plugin(work / "p", env={"LOG_LEVEL": "info"})
    plugin.client.timeout = 120  # StartLogging while the supervisor forks hundreds of readers
    loggers: list[FakeLogger] = []
    try:
        for i in range(load.containers):
            config = {"hosts": es.url} if load.ships else {}
            lg = FakeLogger(plugin.client, plugin.fifo_dir, name=f"c{i}", config=config)
            reply = lg.start()
            assert reply == {"_status": 200}, reply
            loggers.append(lg)
        forked_readers(plugin, loggers)
        return measure(plugin.proc.pid, [lg.fd for lg in loggers], load, warmup, window, plugin)
    finally:
        for lg in loggers:
            lg.stop()
        plugin.stop(30)
        shutil.rmtree(work / "p", ignore_errors=True)


def forked_readers(plugin: RunningPlugin, loggers: list[FakeLogger]) -> None:
    """A reader is forked when its FIFO first has data: write one line to each and wait for every reader, so the
    forks (about 1 s per 100 on 2 cores) fall before the warm-up, not in the measured window."""
    for lg in loggers:
        lg.write(LogEntry(source="stdout", time_nano=time.time_ns(), line=b"first"))
    root = psutil.Process(plugin.proc.pid)
    # The supervisor's children: the local store, the shipper and one reader per logger.
    wait_until(lambda: len(root.children()) >= len(loggers) + 2, 600, 0.2, f"{len(loggers)} readers forked")


def compare(key: str, work: Path, es: CountingEs, load: Load, warmup: float, window: float, goal: str) -> None:
    bare_window = run_bare(work, load, warmup, window)
    mine = run_ours(work, es, load, warmup, window)
    bare, ours = bare_window.cost, mine.cost
    achieved = ours.lines / ours.seconds / load.containers
    report(key, f"{load.label()}: cores", f"{ours.cores:.3f}", f"{bare.cores:.3f}",
           f"{ours.cores / bare.cores:.1f}" if bare.cores else "-", goal)
    report(key, f"{load.label()}: CPU s/1M lines", f"{ours.per_million:.1f}", f"{bare.per_million:.1f}",
           "-", f"(fed {achieved:,.0f} lines/s per container)")
    report_roles(key, load, mine, bare_window)


def report_roles(key: str, load: Load, mine: Window, bare: Window) -> None:
    """Where the CPU goes: each role's cores (the readers together) beside the bare reader's, and the wake-ups
    behind them: the readers' main-loop turns and every role's context switches, per stored batch."""
    seconds = mine.cost.seconds
    bare_cores = bare.roles["readers"].cpu / bare.cost.seconds
    for role in ROLES:
        used = mine.roles[role]
        if role in ("shipper", "other") and not used.cpu and not used.switches:
            continue
        cores = used.cpu / seconds
        ref, ratio = ("-", "-") if role != "readers" else (
            f"{bare_cores:.3f}", f"{cores / bare_cores:.1f}" if bare_cores else "-")
        per_batch = f"{used.switches / mine.batches:.1f} ctx switches/batch" if mine.batches else "-"
        report(key, f"{load.label()}: {role} cores", f"{cores:.3f}", ref, ratio, per_batch)
    if mine.batches:
        report(key, f"{load.label()}: batches/s", f"{mine.batches / seconds:,.0f}", "-", "-",
               f"reader wake-ups/batch {mine.wakeups / mine.batches:.2f}; "
               f"bare reader ctx switches/s {bare.roles['readers'].switches / bare.cost.seconds:,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=float, default=15.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds fed before measuring")
    parser.add_argument("--only", choices=("p9", "scaling"))
    parser.add_argument("--store-only", action="store_true", help="only rows that keep lines in the local store")
    parser.add_argument("--counts", default="1,10,100", help="container counts of the scaling rows")
    parser.add_argument("--smoke", action="store_true", help="a few seconds, only to show it still runs")
    args = parser.parse_args()
    counts = [int(n) for n in args.counts.split(",")]
    p9 = [Load(100, rate, 100, ships) for rate in (100, 10) for ships in (False, True)]
    # The same total volume spread over 1, 10, 100 containers: 10k lines/s of 100 B, 2.5k lines/s of 4 KiB.
    scaling = [Load(n, total / n, size, not args.store_only) for size, total in ((100, 10_000), (4096, 2_500))
               for n in counts]
    if args.store_only:
        p9 = [load for load in p9 if not load.ships]
    if args.smoke:
        args.window, args.warmup, p9, scaling = 2.0, 1.0, [Load(10, 100, 100, not args.store_only)], []
    work = Path(tempfile.mkdtemp(prefix="elp-b-", dir="/tmp"))
    es = CountingEs()
    try:
        print(f"plugin CPU (all processes) vs one bare epoll reader; window {args.window:g} s after "
              f"{args.warmup:g} s warm-up; {os.cpu_count()} CPUs")
        header()
        if args.only in (None, "p9"):
            for load in p9:
                goal = "<= 0.10 cores" if (load.rate, load.ships) == (100, False) else "-"
                compare("P9", work, es, load, args.warmup, args.window, goal)
        if args.only in (None, "scaling"):
            for load in scaling:
                compare("scaling", work, es, load, args.warmup, args.window, "-")
    finally:
        es.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
