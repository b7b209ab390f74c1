"""Lines/s through one reader into the local store, beside a bare read+decode loop on the same FIFO.

Reference: one Python loop doing what a reader can never avoid (1 MiB reads, frame split, protobuf decode,
reading the fields) on a FIFO fed by ``cat`` at full speed. Ours: the real supervisor; the same bytes are fed into
a FIFO it was told about with StartLogging, and the clock stops when the local store reports every line stored.

    python -m bench.reader_throughput [--lines N] [--size BYTES] [--repeat R] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from proto.entry_pb2 import LogEntry
from proto.framing import FrameSplitter, encode_frame

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._table import header, report  # noqa: E402
from testkit.dockerd_driver import FakeLogger  # noqa: E402
from testkit.plugin import start_plugin, wait_until  # noqa: E402


def make_stream(path: Path, lines: int, size: int) -> None:
    base = time.time_ns()
    payload = b"x" * (size - 8)
    with open(path, "wb") as f:
        batch = []
        for i in range(lines):
            batch.append(encode_frame(LogEntry(source="stdout", time_nano=base + i, line=b"%08d" % i + payload)))
            if len(batch) == 10000:
                f.write(b"".join(batch))
                batch.clear()
        f.write(b"".join(batch))


def feed(fifo_fd_path: Path, stream: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["cat", str(stream)], stdout=open(fifo_fd_path, "wb"))


def bare_reader(work: Path, stream: Path, lines: int) -> float:
    fifo = work / "bare.fifo"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR)  # as dockerd holds it: no EOF, so count lines to know the end
    start = time.perf_counter()
    writer = feed(fifo, stream)
    splitter, n = FrameSplitter(), 0
    while n < lines:
        for body in splitter.feed(os.read(fd, 1 << 20)):
            e = LogEntry.FromString(body)
            _ = (e.source, e.time_nano, e.line, e.partial)
            n += 1
    elapsed = time.perf_counter() - start
    writer.wait()
    os.close(fd)
    fifo.unlink()
    return elapsed


def plugin_reader(work: Path, stream: Path, lines: int) -> float:
    plugin = start_plugin(work / "p")
    try:
        # One file: the clock stops when it reaches its known final size (rotation would cut it).
        lg = FakeLogger(plugin.client, plugin.fifo_dir, config={"max-size": "10g"})
        assert lg.start() == {"_status": 200}
        # Stored records are the frames plus a 4-byte length suffix and the newline put back on each line.
        stored = plugin.data_dir / "containers" / lg.container_id / "container.log"
        expected = stream.stat().st_size + lines * 5
        start = time.perf_counter()
        writer = feed(lg.path, stream)
        wait_until(lambda: stored.exists() and stored.stat().st_size >= expected, 600, 0.002, "every line stored")
        elapsed = time.perf_counter() - start
        writer.wait()
        lg.stop()
        return elapsed
    finally:
        plugin.stop()
        shutil.rmtree(work / "p", ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=100, help="bytes per line")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="a few seconds, only to show it still runs")
    args = parser.parse_args()
    if args.smoke:
        args.lines, args.repeat = 20_000, 1
    work = Path(tempfile.mkdtemp(prefix="elp-b-", dir="/tmp"))
    try:
        stream = work / "stream.bin"
        make_stream(stream, args.lines, args.size)
        bare, ours = [], []
        for _ in range(args.repeat):
            bare.append(bare_reader(work, stream, args.lines))
            ours.append(plugin_reader(work, stream, args.lines))
        b, o = statistics.median(bare), statistics.median(ours)
        print(f"P2 one reader, {args.lines} lines of {args.size} B, median of {args.repeat}")
        header()
        report("P2", f"lines/s one reader -> local store ({args.size} B) / bare read+split+decode",
               f"{args.lines / o:,.0f}", f"{args.lines / b:,.0f}", f"{b / o:.2f}", ">= 0.5")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
