"""Respawn time per process kind, and memory per reader with many containers (issue figures of supervision).

Respawn time: SIGKILL a process, clock until its replacement has sent its first report to the supervisor (it is
serving then). Reference: the same measure for the very first start of the plugin's processes in this run
(bind, fork, first report), so the ratio shows what a restart costs beyond a start.
Memory: N fake containers each log a few lines through their own reader; USS per reader (memory that is the
reader's alone, from psutil) averaged, beside the supervisor's own USS.

    python -m bench.supervision [--containers 200] [--kills 5] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._table import header, report  # noqa: E402
from testkit.dockerd_driver import FakeLogger, entry  # noqa: E402
from testkit.plugin import RunningPlugin, start_plugin, wait_until  # noqa: E402


def respawn_seconds(plugin: RunningPlugin, role: str, kills: int) -> list[float]:
    times = []
    for _ in range(kills):
        def current() -> dict | None:
            if role == "reader":
                readers = plugin.stats()["readers"]
                return readers[0] if readers and readers[0]["pid"] else None
            data = plugin.stats()[role]
            return data if data.get("pid") else None

        old = wait_until(current, 30)
        # Wait for a fresh report so the kill hits a settled process.
        wait_until(lambda o=old: (c := current()) is not None and c["pid"] == o["pid"] and "rss_bytes" in c, 30)
        start = time.perf_counter()
        os.kill(old["pid"], signal.SIGKILL)
        # Serving again: a new pid that has reported at least one of its own counters.
        key = "lines_total" if role == "reader" else ("records_total" if role == "localstore" else "queued")
        wait_until(lambda o=old, k=key: (c := current()) is not None and c["pid"] != o["pid"] and k in c, 60, 0.002)
        times.append(time.perf_counter() - start)  # later kills include the back-off (0.5 s, 1 s, ...)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--containers", type=int, default=200)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.containers, args.kills = 5, 1
    work = Path(tempfile.mkdtemp(prefix="elp-b-", dir="/tmp"))
    t0 = time.perf_counter()
    plugin = start_plugin(work)
    first_start = time.perf_counter() - t0
    # Each first write forks a reader; with 1000 containers the supervisor is busy forking for a while.
    plugin.client.timeout = 120
    loggers: list[FakeLogger] = []
    try:
        print(f"first start of the plugin (bind + fork + first reports): {first_start * 1000:.0f} ms")
        one = FakeLogger(plugin.client, plugin.fifo_dir)
        one.start()
        loggers.append(one)
        one.write(entry(b"x"))
        print(f"respawn after SIGKILL, until the replacement reports (first restart is immediate; later ones "
              f"back off 0.5 s, 1 s, ...), {args.kills} kills each:")
        for role in ("reader", "localstore", "shipper"):
            times = respawn_seconds(plugin, role, args.kills)
            print(f"  {role:10}: first {times[0] * 1000:7.0f} ms   all: "
                  + " ".join(f"{t * 1000:.0f}" for t in times) + " ms")
            report("respawn", f"{role} SIGKILL -> replacement reports, ms / first start", f"{times[0] * 1000:.0f}",
                   f"{first_start * 1000:.0f}", f"{times[0] / first_start:.2f}")
        for _ in range(args.containers - 1):
            lg = FakeLogger(plugin.client, plugin.fifo_dir)
            assert lg.start() == {"_status": 200}
            loggers.append(lg)
        for lg in loggers:
            lg.write(*(entry(b"some log line %d" % i) for i in range(100)))
        wait_until(lambda: sum(r.get("lines_total", 0) for r in plugin.stats()["readers"]) >= 100 * args.containers,
                   120, message="every reader to report its lines")
        # /stats reads USS within a time budget per call: ask until every reader has its figure.
        def stats_with_uss() -> dict[str, Any] | None:
            st = plugin.stats()
            return st if all("uss_bytes" in r for r in st["readers"]) else None

        stats = wait_until(stats_with_uss, 300, 0.2, "a USS figure for every reader")
        uss = [r["uss_bytes"] for r in stats["readers"]]
        rss = [r["rss_bytes"] for r in stats["readers"] if "rss_bytes" in r]
        print(f"{args.containers} containers, each with its reader, after 100 lines each:")
        print(f"  USS per reader: median {statistics.median(uss) / 2**20:.2f} MiB, max {max(uss) / 2**20:.2f} MiB "
              f"(goal <= 6 MB)   RSS per reader: median {statistics.median(rss) / 2**20:.1f} MiB (shared pages "
              f"included)")
        print(f"  supervisor USS {stats['supervisor']['uss_bytes'] / 2**20:.1f} MiB, local store USS "
              f"{stats['localstore']['uss_bytes'] / 2**20:.1f} MiB, shipper USS "
              f"{stats['shipper']['uss_bytes'] / 2**20:.1f} MiB")
        total = sum(uss) + stats["supervisor"]["uss_bytes"] + stats["localstore"]["uss_bytes"] \
            + stats["shipper"]["uss_bytes"]
        print(f"  all processes together (USS): {total / 2**20:.0f} MiB")
        header()
        report("P4", f"USS MiB per reader, {args.containers} containers (median)",
               f"{statistics.median(uss) / 2**20:.2f}", goal="<= 6 MB")
        report("P4", f"USS MiB all processes, {args.containers} containers", f"{total / 2**20:.0f}",
               goal="1000 containers <= 8 GiB")
    finally:
        for lg in loggers:
            lg.stop()
        plugin.stop(60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
