"""A log writer that runs INSIDE a container (``python3 /writer.py``, bind-mounted into the plugin's base image).

It writes numbered lines to stdout at a steady rate and times every write+flush with ``perf_counter``: when the
logging pipeline behind the container (dockerd's copier, the plugin's FIFO) stops draining, the 64 KiB stdout pipe
fills and a write blocks, so the longest write is the longest stall the application saw. It writes until the file
``stop`` appears in the mounted folder, then leaves ``result-<tag>.json`` there (lines written, max and p99 stall).

Standard library only: the image has nothing else.
"""

from __future__ import annotations

import argparse
import array
import json
import os
import sys
import time

STOP_CHECK_INTERVAL = 0.1  # seconds between looks for the stop file (a stat() each)
PACE = 0.002  # seconds between rounds: the rate is kept by catching up on the due count, not by this


def write_steadily(rate: float, pad: int, stop_file: str) -> tuple[int, array.array[float]]:
    out = sys.stdout.buffer
    filler = b"x" * pad
    durations: array.array[float] = array.array("d")
    clock = time.perf_counter
    start = clock()
    next_check = start
    written = 0
    while True:
        now = clock()
        if now >= next_check:
            if os.path.exists(stop_file):
                return written, durations
            next_check = now + STOP_CHECK_INTERVAL
        due = int((now - start) * rate)
        while written < due:
            line = b"%09d %s\n" % (written, filler)
            began = clock()
            out.write(line)
            out.flush()
            durations.append(clock() - began)
            written += 1
        time.sleep(PACE)  # not a sync: paces the writer


def summary(tag: str, written: int, durations: array.array[float]) -> dict[str, object]:
    ordered = sorted(durations)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0
    return {"tag": tag, "lines": written, "max_stall_s": ordered[-1] if ordered else 0.0, "p99_stall_s": p99,
            "stalls_over_100ms": sum(1 for d in ordered if d > 0.1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tag", required=True, help="names the result file")
    parser.add_argument("--rate", type=float, required=True, help="lines per second")
    parser.add_argument("--folder", required=True, help="mounted host folder: the stop file in, the result out")
    parser.add_argument("--pad", type=int, default=80, help="filler bytes per line")
    args = parser.parse_args()
    written, durations = write_steadily(args.rate, args.pad, os.path.join(args.folder, "stop"))
    result = os.path.join(args.folder, f"result-{args.tag}.json")
    with open(result + ".tmp", "w") as f:  # renamed into place so the test never reads half a file
        json.dump(summary(args.tag, written, durations), f)
    os.rename(result + ".tmp", result)


if __name__ == "__main__":
    main()
