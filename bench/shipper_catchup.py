"""Catch-up after an Elasticsearch outage: docs/s while the shipper works off its backlog, beside P3's docs/s.

Both against ``bench._counting_es`` and the real plugin (supervisor, reader, local store, shipper), alternating in
the same run. P3 as in ``bench.shipper_throughput``: N lines fed at full speed through a logger's FIFO, clock from
the first write until the stand-in has them all. Catch-up: the stand-in is stopped, a logger's FIFO gets lines at
``--rate`` (5k lines/s) for ``--outage`` seconds (60), then the stand-in starts again on the same port and the
writer stops. The clock runs from the first accepted bulk request after the outage until the stand-in has every
line: docs/s while catching up. The wait before that first request (the shipper's back-off, with ``backoff_max``
set to 2 s here for both runs so the run stays short) is reported on its own row.

    python -m bench.shipper_catchup [--outage S] [--rate L/S] [--lines N] [--repeat R] [--smoke]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench._table import header, report
from bench.reader_throughput import make_stream
from bench.shipper_throughput import CountingEs, paced_frames, plugin_shipper, running_plugins
from testkit.dockerd_driver import FakeLogger
from testkit.plugin import RunningPlugin, wait_until

SIZE = 100
OPTIONS = {"backoff_max": "2s", "max-size": "10g"}


def catch_up(plugin: RunningPlugin, es: CountingEs, outage: float, rate: int) -> tuple[CountingEs, float, float]:
    """(the stand-in running again, docs/s while catching up, seconds from up to the first accepted request)."""
    port = int(es.url.rsplit(":", 1)[1])
    lg = FakeLogger(plugin.client, plugin.fifo_dir, config={"hosts": es.url, **OPTIONS})
    es.stop()
    assert lg.start() == {"_status": 200}
    total = 0
    for frames, count in paced_frames(rate, outage, SIZE):
        lg.write_raw(frames)
        total += count
    es = CountingEs(port)
    up = time.perf_counter()
    first: list[tuple[float, int]] = []

    def started() -> bool:
        docs = es.docs()
        if docs:
            first.append((time.perf_counter(), docs))
        return bool(docs)

    wait_until(started, 120, 0.005, "the first documents after the outage")
    (t_first, d_first), = first
    wait_until(lambda: es.docs() >= total, 600, 0.01, f"{total} documents after the outage")
    done = time.perf_counter()
    lg.stop()
    return es, (total - d_first) / (done - t_first), t_first - up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outage", type=float, default=60.0, help="seconds the stand-in is down")
    parser.add_argument("--rate", type=int, default=5_000, help="lines/s written during the outage")
    parser.add_argument("--lines", type=int, default=200_000, help="lines in each P3 run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="a 3 s outage, to check that the benchmark runs")
    args = parser.parse_args()
    if args.smoke:
        args.outage, args.lines, args.repeat = 3.0, 15_000, 1
    work = Path(tempfile.mkdtemp(prefix="elp-bc-", dir="/tmp"))
    es = CountingEs()
    try:
        stream = work / "stream.bin"
        make_stream(stream, args.lines, SIZE)
        p3, rates, waits = [], [], []
        with running_plugins(work / "p1") as (plugin,):
            for _ in range(args.repeat):
                p3.append(args.lines / plugin_shipper(plugin, es, stream, args.lines, OPTIONS))
                es, rate, wait = catch_up(plugin, es, args.outage, args.rate)
                rates.append(rate)
                waits.append(wait)
        ours, ref = statistics.median(rates), statistics.median(p3)
        print(f"catch-up: {args.outage:g} s outage at {args.rate} lines/s of {SIZE} B; P3 {args.lines} lines; "
              f"median of {args.repeat}")
        header()
        report("catch-up", f"docs/s after a {args.outage:g} s outage at {args.rate} l/s / P3 docs/s",
               f"{ours:,.0f}", f"{ref:,.0f}", f"{ours / ref:.2f}", ">= 0.9")
        report("catch-up", "s from the stand-in up to its first accepted request", f"{statistics.median(waits):.1f}",
               goal="(back-off, backoff_max 2s)")
        # Each run beside the P3 run just before it (the machine's load changes between runs).
        print("runs (catch-up docs/s / P3 docs/s):", ", ".join(f"{r:,.0f}/{p:,.0f} = {r / p:.2f}"
                                                            for r, p in zip(rates, p3, strict=True)))
    finally:
        es.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
