"""Aggregate docs/s of K busy containers with SHIPPERS=2 beside SHIPPERS=1 (the reference), in the same run.

Two real plugins (supervisor, readers, local store, shippers) run side by side, one with ``SHIPPERS=1`` and one
with ``SHIPPERS=2``, both shipping into one ``bench._counting_es`` (its own process, only counts). A run starts K
loggers, chosen so that each of the two shippers of SHIPPERS=2 gets K/2 of them, feeds each FIFO N frames with
``cat`` at once, and times from the first write until the stand-in has K x N documents. The two plugins are run
alternately, ``--repeat`` times each; medians are compared (ratio SHIPPERS=2 / SHIPPERS=1).

A second row: the shippers' CPU seconds per million documents (both shippers summed), median over the runs: what
splitting the containers costs in CPU, a figure the machine's load moves less than the wall clock. Then the CPU
split of the last run of each: CPU seconds of the shippers, the local store, the readers, the supervisor, the
stand-in and the writers (``cat``), from psutil, so one sees which process was at a core's limit. Everything shares
the machine's cores: on a 2-core host the stand-in, the store and the readers take cores the second shipper would
need.

    python -m bench.shippers [--containers K] [--lines N] [--size BYTES] [--repeat R] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from bench.reader_throughput import feed, make_stream
from bench.shipper_throughput import CountingEs
from proto.shards import shard_of

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._table import header, report  # noqa: E402
from testkit.dockerd_driver import FakeLogger, new_container_id  # noqa: E402
from testkit.plugin import RunningPlugin, start_plugin, wait_until  # noqa: E402


def balanced_ids(k: int) -> list[str]:
    """K container ids, half of them for each shipper of SHIPPERS=2 (so the split is the best case, not luck)."""
    ids: dict[int, list[str]] = {0: [], 1: []}
    while len(ids[0]) + len(ids[1]) < k:
        cid = new_container_id()
        share = ids[shard_of(cid, 2)]
        if len(share) < (k + 1 - shard_of(cid, 2)) // 2:
            share.append(cid)
    return ids[0] + ids[1]


def cpu_seconds(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
        return float(times.user + times.system)
    except psutil.Error:
        return 0.0


def roles(plugin: RunningPlugin, es: CountingEs) -> dict[int, str]:
    """pid -> role, for every process of the plugin (and the stand-in)."""
    stats = plugin.stats()
    shippers = stats["shipper"]["pids"] if "pids" in stats["shipper"] else [stats["shipper"]["pid"]]
    found = {plugin.proc.pid: "supervisor", stats["localstore"]["pid"]: "localstore", es.proc.pid: "stand-in"}
    found.update({pid: "shippers" for pid in shippers})
    for child in psutil.Process(plugin.proc.pid).children():
        found.setdefault(child.pid, "readers")
    return found


def one_run(plugin: RunningPlugin, es: CountingEs, stream: Path, k: int, lines: int) -> tuple[float, Counter[str]]:
    """Seconds until the stand-in has every document of K containers; CPU seconds per role over the run."""
    loggers = [FakeLogger(plugin.client, plugin.fifo_dir, container_id=cid, config={"hosts": es.url,
                                                                                     "max-size": "10g"})
               for cid in balanced_ids(k)]
    for lg in loggers:
        assert lg.start() == {"_status": 200}
    es.reset()
    services = {pid: psutil.Process(pid) for pid, role in roles(plugin, es).items() if role != "readers"}
    before = {pid: cpu_seconds(p) for pid, p in services.items()}
    start = time.perf_counter()
    writers = [feed(lg.path, stream) for lg in loggers]
    wait_until(lambda: es.docs() >= k * lines, 600, 0.02, f"{k * lines} documents in the counting ES")
    elapsed = time.perf_counter() - start
    cpu: Counter[str] = Counter()
    for pid, role in roles(plugin, es).items():  # readers: forked for this run, so their whole CPU time counts
        proc = services.get(pid) or psutil.Process(pid)
        cpu[role] += cpu_seconds(proc) - before.get(pid, 0.0)
    for writer in writers:
        writer.wait()  # reaped: its CPU time joins this process's children times, which main() reads
    for lg in loggers:
        lg.stop()
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--containers", type=int, default=4, help="busy containers (K)")
    parser.add_argument("--lines", type=int, default=250_000, help="lines per container (N)")
    parser.add_argument("--size", type=int, default=100, help="bytes per line")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check that the benchmark runs")
    args = parser.parse_args()
    if args.smoke:
        args.lines, args.repeat = 5_000, 1
    work = Path(tempfile.mkdtemp(prefix="elp-s-", dir="/tmp"))
    es = CountingEs()
    try:
        stream = work / "stream.bin"
        make_stream(stream, args.lines, args.size)
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(start_plugin, work / "one", {"SHIPPERS": "1"}),
                       pool.submit(start_plugin, work / "two", {"SHIPPERS": "2"})]
        one, two = (f.result() for f in futures)
        times: dict[str, list[float]] = {"1": [], "2": []}
        split: dict[str, Counter[str]] = {}
        shipper_cpu: dict[str, list[float]] = {"1": [], "2": []}
        try:
            for _ in range(args.repeat):
                for name, plugin in (("1", one), ("2", two)):  # alternating: the machine's load falls on both
                    writers_before = sum(os.times()[2:4])
                    elapsed, cpu = one_run(plugin, es, stream, args.containers, args.lines)
                    cpu["writers"] = sum(os.times()[2:4]) - writers_before
                    times[name].append(elapsed)
                    split[name] = cpu
                    shipper_cpu[name].append(cpu["shippers"])
        finally:
            one.stop()
            two.stop()
        docs = args.containers * args.lines
        t1, t2 = statistics.median(times["1"]), statistics.median(times["2"])
        print(f"shippers: {args.containers} containers x {args.lines} lines of {args.size} B, median of "
              f"{args.repeat} alternating runs; {os.cpu_count()} CPUs shared by every process below")
        print("  runs, s: " + "; ".join(f"SHIPPERS={n}: " + ", ".join(f"{t:.2f}" for t in ts)
                                        for n, ts in times.items()))
        for name, cpu in split.items():
            print(f"  CPU s of the last run, SHIPPERS={name} ({times[name][-1]:.2f} s wall): "
                  + ", ".join(f"{role} {cpu[role]:.2f}" for role in ("shippers", "localstore", "readers",
                                                                      "supervisor", "stand-in", "writers")))
        header()
        report("P3", f"docs/s of {args.containers} busy containers, SHIPPERS=2 / =1", f"{docs / t2:,.0f}",
               f"{docs / t1:,.0f}", f"{t1 / t2:.2f}", "> 1 with cores to spare")
        # What the split costs, whatever the load: the shippers' CPU seconds per million documents (summed).
        c1, c2 = (statistics.median(shipper_cpu[n]) * 1e6 / docs for n in ("1", "2"))
        report("P3", "shippers' CPU s per 1M docs, SHIPPERS=2 / =1", f"{c2:.1f}", f"{c1:.1f}", f"{c2 / c1:.2f}",
               "~ 1")
    finally:
        es.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
