"""StartLogging reply time, beside the plugin's own Capabilities round trip.

The reference is the cheapest request the same plugin answers on the same socket (Capabilities), so the ratio
shows what validating the options, opening the FIFO and recording the logger add (the reader is forked at the
FIFO's first data, after the reply). Rows: a container that logs locally only; one that ships (``hosts`` on a
closed local port: the options are validated, TLS context included, and the shipper told); and the temporary
logger dockerd starts for ``docker logs`` of a stopped container (StartLogging, then StopLogging of a FIFO that
never carries a line). Goal: StartLogging < 50 ms.

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
from testkit.plugin import RunningPlugin, start_plugin  # noqa: E402

SHIPS = {"hosts": "http://127.0.0.1:9"}  # the discard port: nothing listens, the shipper backs off


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def starts(plugin: RunningPlugin, count: int, config: dict[str, str], keep: list[FakeLogger],
           temporary: bool = False) -> tuple[list[float], list[float], list[float]]:
    """``count`` StartLogging calls, each after a Capabilities call (as dockerd makes them): the seconds of each
    Capabilities, StartLogging and (``temporary``: the logger is stopped at once) StopLogging."""
    caps, started, stopped = [], [], []
    for _ in range(count):
        t = time.perf_counter()
        plugin.client.call("/LogDriver.Capabilities")
        caps.append(time.perf_counter() - t)
        lg = FakeLogger(plugin.client, plugin.fifo_dir, config=config)
        t = time.perf_counter()
        reply = lg.start()
        started.append(time.perf_counter() - t)
        assert reply == {"_status": 200}, reply
        if temporary:
            t = time.perf_counter()
            lg.stop()
            stopped.append(time.perf_counter() - t)
        else:
            keep.append(lg)
    return caps, started, stopped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--smoke", action="store_true", help="a few seconds, only to show it still runs")
    args = parser.parse_args()
    if args.smoke:
        args.containers = 5
    work = Path(tempfile.mkdtemp(prefix="elp-b-", dir="/tmp"))
    plugin = start_plugin(work, {"LOG_LEVEL": "info"})
    loggers: list[FakeLogger] = []
    try:
        # FakeLogger.start() also makes a Capabilities call and the FIFO, outside the timed StartLogging.
        caps, local, _ = starts(plugin, args.containers, {}, loggers)
        _, shipping, _ = starts(plugin, args.containers, SHIPS, loggers)
        _, temporary, stops = starts(plugin, args.containers, {}, loggers, temporary=True)
        print(f"StartLogging of {args.containers} loggers of each kind, one after another")
        for name, values in (("Capabilities (reference)", caps), ("StartLogging, local only", local),
                             ("StartLogging, shipping", shipping), ("StartLogging, temporary", temporary),
                             ("StopLogging, temporary", stops)):
            p50, p99 = statistics.median(values) * 1000, percentile(values, 0.99) * 1000
            print(f"  {name:26}: p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")
        cap = statistics.median(caps)
        header()
        for name, values in (("StartLogging", local), ("  shipping (hosts set)", shipping),
                             ("  temporary (docker logs of a stopped container)", temporary),
                             ("  StopLogging of the temporary one", stops)):
            report("P7", f"{name} p50 ms / Capabilities p50 ms", f"{statistics.median(values) * 1000:.2f}",
                   f"{cap * 1000:.2f}", f"{statistics.median(values) / cap:.1f}")
        report("P7", "StartLogging p99 ms, any kind", f"{percentile(local + shipping + temporary, 0.99) * 1000:.2f}",
               goal="< 50 ms")
    finally:
        for lg in loggers:
            lg.stop()
        plugin.stop(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
