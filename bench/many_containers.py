"""CPU of the whole plugin with many containers at a steady rate, beside one bare process reading the same FIFOs.

P9: 100 quiet containers at 100 lines/s and at 10 lines/s each (goal: the plugin, all processes, <= 0.2 cores),
kept in the local store only, and also shipped (what shipping adds is per line, not per wake-up: see P3).
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

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


def tree_cpu(root: psutil.Process) -> dict[int, float]:
    """User+system CPU seconds of every live process of the tree, by pid."""
    cpu = {}
    for proc in [root, *root.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        cpu[proc.pid] = t.user + t.system
    return cpu


def measure(root_pid: int, fds: list[int], load: Load, warmup: float, window: float,
            roles: dict[int, str] | None = None) -> Cost:
    """``roles`` names some processes of the tree (the root is "supervisor"); the others count as "readers"."""
    root = psutil.Process(root_pid)
    with feeding(fds, load, warmup + window) as written:
        time.sleep(warmup)
        cpu0, lines0, t0 = tree_cpu(root), written.value, time.monotonic()
        time.sleep(window)
        cpu1, lines1, t1 = tree_cpu(root), written.value, time.monotonic()
    names = {root_pid: "supervisor", **(roles or {})}
    by_role: dict[str, float] = {}
    for pid, seconds in cpu1.items():
        role = names.get(pid, "readers")
        by_role[role] = by_role.get(role, 0.0) + (seconds - cpu0.get(pid, 0.0)) / (t1 - t0)
    return Cost(sum(by_role.values()), lines1 - lines0, t1 - t0, by_role)


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


def run_bare(work: Path, load: Load, warmup: float, window: float) -> Cost:
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


def run_ours(work: Path, es: CountingEs, load: Load, warmup: float, window: float) -> Cost:
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
        stats = plugin.stats()
        roles = {int(stats[role]["pid"]): role for role in ("localstore", "shipper")}
        return measure(plugin.proc.pid, [lg.fd for lg in loggers], load, warmup, window, roles)
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
    bare = run_bare(work, load, warmup, window)
    ours = run_ours(work, es, load, warmup, window)
    achieved = ours.lines / ours.seconds / load.containers
    report(key, f"{load.label()}: cores", f"{ours.cores:.3f}", f"{bare.cores:.3f}",
           f"{ours.cores / bare.cores:.1f}" if bare.cores else "-", goal)
    report(key, f"{load.label()}: CPU s/1M lines", f"{ours.per_million:.1f}", f"{bare.per_million:.1f}",
           "-", f"(fed {achieved:,.0f} lines/s per container)")
    split = ", ".join(f"{role} {cores:.3f}" for role, cores in sorted(ours.by_role.items()))
    print(f"    ours by process, cores: {split}", flush=True)


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
                compare("P9", work, es, load, args.warmup, args.window, "<= 0.2 cores")
        if args.only in (None, "scaling"):
            for load in scaling:
                compare("scaling", work, es, load, args.warmup, args.window, "-")
    finally:
        es.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
