"""StartLogging reply time (fork of a reader included), beside the plugin's own Capabilities round trip.

The reference is the cheapest request the same plugin answers on the same socket (Capabilities), so the ratio
shows what validating the options, opening the FIFO and forking a reader add. Goal: StartLogging < 50 ms.

    python -m bench.start_logging [--containers N] [--smoke]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._table import header, report  # noqa: E402
from testkit.dockerd_driver import FakeLogger  # noqa: E402
from testkit.plugin import start_plugin  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--smoke", action="store_true", help="a few seconds, only to show it still runs")
    args = parser.parse_args()
    if args.smoke:
        args.containers = 5
    work = Path(tempfile.mkdtemp(prefix="elp-b-", dir="/tmp"))
    plugin = start_plugin(work)
    loggers: list[FakeLogger] = []
    caps, starts = [], []
    try:
        for _ in range(args.containers):
            t = time.perf_counter()
            plugin.client.call("/LogDriver.Capabilities")
            caps.append(time.perf_counter() - t)
            lg = FakeLogger(plugin.client, plugin.fifo_dir)
            t = time.perf_counter()
            reply = lg.start()
            starts.append(time.perf_counter() - t)
            assert reply == {"_status": 200}, reply
            loggers.append(lg)
        # Each start() above also made one Capabilities call and the FIFO; subtract neither: it is the upper bound.
        print(f"StartLogging with {args.containers} readers forked one after another")
        for name, values in (("Capabilities (reference)", caps), ("StartLogging incl. fork", starts)):
            p50, p99 = statistics.median(values) * 1000, percentile(values, 0.99) * 1000
            print(f"  {name:26}: p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")
        header()
        report("P7", "StartLogging p50 ms / Capabilities p50 ms", f"{statistics.median(starts) * 1000:.2f}",
               f"{statistics.median(caps) * 1000:.2f}", f"{statistics.median(starts) / statistics.median(caps):.1f}")
        report("P7", "StartLogging p99 ms (fork of the reader included)", f"{percentile(starts, 0.99) * 1000:.2f}",
               goal="< 50 ms")
    finally:
        for lg in loggers:
            lg.stop()
        plugin.stop(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
