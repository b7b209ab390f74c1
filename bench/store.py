"""The local store: append throughput, ``--tail 100`` latency and full replay, each beside a bare equivalent.

Append: ``LocalStore.append`` driven directly with ready ~1 MiB batches of records (what a reader sends: 100-byte
lines ending in "\\n", ``encode_record`` of each ``LogEntry``), default rotation (max-size 10m, max-file 5).
Reference: ``os.write`` of the same batches into a plain file with the same rotation done by hand (rename the
chain, reopen); a third line, ``os.write`` without rotation, shows what rotation costs the reference.

Reads, from one store of one container written once with rotation off (``StoreOptions(max_size=0)``: a single
file of the whole size), served by ``ReadLogsStream`` into a socketpair whose other end a thread drains:

* ``--tail 100``: from the request to the last frame (EOF on the peer), fresh ``LocalStore`` each time; median of
  20. Reference: open the file, walk 100 records back from its end, read them (no socket, no event loop).
* ``--tail 100`` through the real plugin (testkit: supervisor, local store) on the same store, asked over its unix
  socket as dockerd asks: what the plugin adds to the store's own read (HTTP, validation, handing the connection
  to the store); reference: the store alone (the row above), median of 20. For information, the whole of what
  dockerd asks for ``docker logs`` of a stopped container: StartLogging of a temporary logger, the ReadLogs,
  StopLogging.
* full replay: lines/s; reference: read the same file in 1 MiB chunks and split the records (no decode).
* ``--tail 100`` over a rotated, compressed store (10m x 5, compress): the current file holds 50 records, so
  half the tail comes from ``container.log.1.gz`` (gunzipped into a scratch file first), for information.

Everything lives in a temporary folder under /tmp, removed at the end.

    python -m bench.store [--mib N] [--repeat R] [--tail-runs T] [--tail-only] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import struct
import tempfile
import threading
import time
from pathlib import Path

import uvloop

from bench._table import header, report
from localstore.container_log import StoreOptions
from localstore.readlogs import ReadLogsStream
from localstore.store import LocalStore
from proto.entry_pb2 import LogEntry
from proto.framing import HEADER, HEADER_SIZE, encode_record, record_boundary_after
from proto.messages import ReadRequest
from supervisor.statscli import UnixHTTPConnection
from testkit.dockerd_driver import ZERO_TIME, FakeLogger
from testkit.plugin import start_plugin

CID = "0123456789abcdef" * 4
FIFO = "bench-fifo"
BATCH = 1 << 20
ROTATION = StoreOptions(max_size=10_000_000, max_file=5)
TAIL = 100
TAIL_RUNS = 20
FRAME_HEADER = struct.Struct(">I")  # ReadLogs frames: [u32 BE length][LogEntry]


# ---------------------------------------------------------------------------------------------------- data


def make_batches(count: int, line_size: int) -> list[tuple[bytes, int]]:
    """``count`` distinct batches of just under 1 MiB of records: (records, how many)."""
    base = time.time_ns()
    payload = b"x" * (line_size - 9) + b"\n"
    batches = []
    i = 0
    for _ in range(count):
        records, size = [], 0
        while True:
            rec = encode_record(LogEntry(source="stdout", time_nano=base + i, line=b"%08d" % i + payload)
                                .SerializeToString())
            if size + len(rec) > BATCH:
                break
            records.append(rec)
            size += len(rec)
            i += 1
        batches.append((b"".join(records), len(records)))
    return batches


def schedule(batches: list[tuple[bytes, int]], total: int) -> list[tuple[bytes, int]]:
    """The batches, cycled, up to ``total`` bytes."""
    out: list[tuple[bytes, int]] = []
    size = 0
    while size < total:
        batch = batches[len(out) % len(batches)]
        out.append(batch)
        size += len(batch[0])
    return out


def new_store(data_dir: Path, options: StoreOptions) -> LocalStore:
    store = LocalStore(data_dir)
    store.logger_started(CID, FIFO, {"ContainerID": CID, "ContainerName": "/bench"}, options)
    return store


# ---------------------------------------------------------------------------------------------------- append


def store_append(work: Path, plan: list[tuple[bytes, int]], options: StoreOptions) -> float:
    data_dir = work / "append"
    store = new_store(data_dir, options)
    try:
        start = time.perf_counter()
        for records, count in plan:
            store.append(CID, records, count)
        elapsed = time.perf_counter() - start
        assert store.counters.records_total == sum(c for _, c in plan)
    finally:
        store.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    return elapsed


def raw_write(work: Path, plan: list[tuple[bytes, int]], max_size: int, max_file: int) -> float:
    """os.write of the batches; with ``max_size``, Docker-style rotation by hand (cut at batch boundaries)."""
    folder = work / "raw"
    folder.mkdir()
    path = folder / "container.log"
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    try:
        start = time.perf_counter()
        fd = os.open(path, flags, 0o640)
        size = 0
        for records, _ in plan:
            if max_size and size >= max_size:
                os.close(fd)
                (folder / f"container.log.{max_file - 1}").unlink(missing_ok=True)
                for index in range(max_file - 2, 0, -1):
                    src = folder / f"container.log.{index}"
                    if src.exists():
                        os.replace(src, folder / f"container.log.{index + 1}")
                os.replace(path, folder / "container.log.1")
                fd = os.open(path, flags, 0o640)
                size = 0
            view = memoryview(records)
            while view:
                n = os.write(fd, view)
                size += n
                view = view[n:]
        os.close(fd)
        return time.perf_counter() - start
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------- reads


def drain(sock: socket.socket, expected: int, result: dict[str, float]) -> None:
    """dockerd's side: read to EOF, count bytes, note when the ``expected``-th byte (the last frame) came."""
    buf = bytearray(1 << 20)
    got = 0
    while n := sock.recv_into(buf):
        got += n
        if got >= expected and "end" not in result:
            result["end"] = time.perf_counter()
    result["bytes"] = got


def serve(data_dir: Path, tail: int, expected: int) -> tuple[float, int]:
    """One ReadLogsStream over a socketpair, from a fresh LocalStore, on uvloop as in the plugin.

    Returns (seconds from the request to the last of ``expected`` bytes, bytes received to EOF).
    """
    store = LocalStore(data_dir)
    ours, theirs = socket.socketpair()
    result: dict[str, float] = {}
    peer = threading.Thread(target=drain, args=(theirs, expected, result))
    peer.start()
    started: list[float] = []

    async def run() -> None:
        ours.setblocking(False)
        request = ReadRequest(CID, since_ns=0, until_ns=0, tail=tail, follow=False, open_fifos=[],
                              draining_fifos=[])
        started.append(time.perf_counter())
        await ReadLogsStream(store, request, ours).run()

    try:
        uvloop.run(run())
        ours.close()  # as localstore.main does when a stream ends: the peer sees EOF
        peer.join()
    finally:
        ours.close()
        theirs.close()
        store.close()
    assert "end" in result, f"{result.get('bytes')} bytes of {expected}"
    return result["end"] - started[0], int(result["bytes"])


PLUGIN_STEPS = ("caps", "start", "head", "body", "stop", "all")


def plugin_tail(base: Path, tail: int, runs: int) -> dict[str, float]:
    """The real plugin (supervisor and local store, testkit) on ``base``/data, asked over its unix socket what
    dockerd asks for ``docker logs --tail`` of a stopped container (daemon/logger/plugin.go: makePluginCreator, then
    ReadLogs, then Close): Capabilities, StartLogging of a temporary logger (a FIFO that never carries a line),
    ReadLogs with ``tail`` (split at the response head: the supervisor's validation and hand-over, then the local
    store's read to EOF), StopLogging. Median seconds of each step and of the whole."""
    plugin = start_plugin(base, {"LOG_LEVEL": "info"})
    steps: dict[str, list[float]] = {key: [] for key in PLUGIN_STEPS}
    try:
        for _ in range(runs):
            temporary = FakeLogger(plugin.client, plugin.fifo_dir, container_id=CID)
            os.mkfifo(temporary.path, 0o700)
            temporary.fd = os.open(temporary.path, os.O_RDWR)
            t0 = time.perf_counter()
            caps = plugin.client.call("/LogDriver.Capabilities")
            t1 = time.perf_counter()
            reply = plugin.client.call("/LogDriver.StartLogging", {"File": str(temporary.path),
                                                                   "Info": temporary.info})
            t2 = time.perf_counter()
            head, got = read_logs_timed(plugin.socket_path, temporary.info, tail)
            t4 = time.perf_counter()
            temporary.stop()
            t5 = time.perf_counter()
            assert caps.get("Cap") and reply == {"_status": 200} and got == tail, (caps, reply, got, tail)
            took = (t1 - t0, t2 - t1, head - t2, t4 - head, t5 - t4, t5 - t0)
            for key, seconds in zip(PLUGIN_STEPS, took, strict=True):
                steps[key].append(seconds)
    finally:
        plugin.stop(30)
    return {key: statistics.median(values) for key, values in steps.items()}


def read_logs_timed(socket_path: Path, info: dict[str, object], tail: int) -> tuple[float, int]:
    """ReadLogs as dockerd sends it; returns (perf_counter when the response head was in, frames read to EOF)."""
    conn = UnixHTTPConnection(socket_path, 30)
    body = {"Info": info, "Config": {"Since": ZERO_TIME, "Until": ZERO_TIME, "Tail": tail, "Follow": False}}
    try:
        conn.request("POST", "/LogDriver.ReadLogs", body=json.dumps(body).encode() + b"\n")
        resp = conn.getresponse()
        head = time.perf_counter()
        assert resp.status == 200, resp.status
        data = resp.read()
    finally:
        conn.close()
    frames, pos = 0, 0
    while pos < len(data):
        (n,) = FRAME_HEADER.unpack_from(data, pos)
        pos += FRAME_HEADER.size + n
        frames += 1
    assert pos == len(data), (pos, len(data))
    return head, frames


def bare_tail(path: Path, tail: int) -> tuple[float, int]:
    """Open, walk ``tail`` records back from the end, read them: (seconds, records)."""
    start = time.perf_counter()
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        pos, found, block_start, block = end, 0, end, b""
        while found < tail and pos >= 2 * HEADER_SIZE:
            if pos - HEADER_SIZE < block_start:
                block_start = max(0, pos - 65536)
                f.seek(block_start)
                block = f.read(pos - block_start)
            (n,) = HEADER.unpack_from(block, pos - HEADER_SIZE - block_start)
            pos -= n + 2 * HEADER_SIZE
            found += 1
        f.seek(pos)
        data = f.read(end - pos)
    assert len(data) == end - pos
    return time.perf_counter() - start, found


def bare_replay(path: Path) -> tuple[float, int]:
    """Read the file in 1 MiB chunks and split the records without decoding them: (seconds, records)."""
    start = time.perf_counter()
    count = 0
    unpack_from = HEADER.unpack_from
    rest = b""
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(1 << 20):
            data = rest + chunk if rest else chunk
            pos, size = 0, len(data)
            while pos + HEADER_SIZE <= size:
                (n,) = unpack_from(data, pos)
                end = pos + n + 2 * HEADER_SIZE
                if end > size:
                    break
                _ = data[pos + HEADER_SIZE:end - HEADER_SIZE]
                count += 1
                pos = end
            rest = data[pos:]
    return time.perf_counter() - start, count


def build_store(data_dir: Path, plan: list[tuple[bytes, int]], options: StoreOptions) -> int:
    store = new_store(data_dir, options)
    try:
        for records, count in plan:
            store.append(CID, records, count)
        return store.counters.records_total
    finally:
        store.close()


def build_rotated(data_dir: Path, batches: list[tuple[bytes, int]], options: StoreOptions, last: int) -> None:
    """Every file of the chain full, then a rotation and ``last`` records in the new current file.

    (``batches[0]`` is appended over and over; its records all have the same size.)

    Outside an event loop the store gzips a rotated file right away, so the chain is complete on return.
    """
    store = new_store(data_dir, options)
    clog = store.get(CID)
    records, count = batches[0]
    try:
        while clog.rotations < options.max_file or options.max_size - clog.size > len(records):
            store.append(CID, records, count)
        # Fill the current file to the record that reaches max-size, exactly: the next append rotates.
        if clog.size < options.max_size:
            cut = record_boundary_after(records, options.max_size - clog.size)
            store.append(CID, records[:cut], count * cut // len(records))
        assert clog.size >= options.max_size
        tail = tail_records(batches[0][0], last)
        store.append(CID, tail, last)  # rotates first: the file was full
        assert clog.size == _first_record_size(data_dir / "containers" / CID / "container.log") + len(tail)
    finally:
        store.close()


def tail_records(batch: bytes, n: int) -> bytes:
    """The first ``n`` records of a batch."""
    pos = 0
    for _ in range(n):
        (size,) = HEADER.unpack_from(batch, pos)
        pos += size + 2 * HEADER_SIZE
    return batch[:pos]


# ---------------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=1024, help="MiB appended per run, and the size of the read store")
    parser.add_argument("--size", type=int, default=100, help="bytes per line, newline included")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tail-runs", type=int, default=TAIL_RUNS, help="--tail 100 reads per figure")
    parser.add_argument("--tail-only", action="store_true",
                        help="only the --tail rows (store, bare, the plugin's calls): no append, replay or gz rows")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check that the benchmark runs")
    args = parser.parse_args()
    if args.smoke:
        args.mib, args.repeat = 50, 1
    work = Path(tempfile.mkdtemp(prefix="elp-bstore-", dir="/tmp"))
    try:
        batches = make_batches(16, args.size)
        plan = schedule(batches, args.mib << 20)
        total = sum(len(b) for b, _ in plan)
        lines = sum(c for _, c in plan)
        print(f"local store: {total / (1 << 20):,.0f} MiB in {len(plan)} batches of ~1 MiB, {lines:,} lines of "
              f"{args.size} B; median of {args.repeat} (tail: of {args.tail_runs}); {os.cpu_count()} CPUs")
        rows = [] if args.tail_only else append_rows(work, plan, args.repeat)
        # One store for the read figures: rotation off, one file of the whole size (where the plugin finds it).
        single = work / "plugin" / "data"
        assert build_store(single, plan, StoreOptions(max_size=0)) == lines
        rows += tail_rows(single, total, args.tail_runs)
        if not args.tail_only:
            rows += replay_rows(single, total, lines, args.repeat)
            shutil.rmtree(single.parent)
            rows += gz_rows(work / "packed", batches, args.tail_runs)
        header()
        for row in rows:
            report(*row)
    finally:
        shutil.rmtree(work, ignore_errors=True)


Row = tuple[str, ...]


def append_rows(work: Path, plan: list[tuple[bytes, int]], repeat: int) -> list[Row]:
    ours, ref, unrotated = [], [], []
    for _ in range(repeat):
        ours.append(store_append(work, plan, ROTATION))
        ref.append(raw_write(work, plan, ROTATION.max_size, ROTATION.max_file))
        unrotated.append(raw_write(work, plan, 0, 0))
    a_ours, a_ref, a_plain = (statistics.median(x) for x in (ours, ref, unrotated))
    total, mb = sum(len(b) for b, _ in plan), 1e6
    return [("store", "append MB/s (10m x 5) / os.write with rotation", f"{total / a_ours / mb:,.0f}",
             f"{total / a_ref / mb:,.0f}", f"{a_ref / a_ours:.2f}"),
            ("store", "  os.write, no rotation (info)", "-", f"{total / a_plain / mb:,.0f}")]


def tail_rows(single: Path, total: int, runs: int) -> list[Row]:
    """--tail 100 from the store alone, a bare walk back, and each call dockerd makes to the plugin for it."""
    log_file = single / "containers" / CID / "container.log"
    frames = sum(HEADER_SIZE + n for n in _last_sizes(log_file, TAIL))
    tails = [serve(single, TAIL, frames) for _ in range(runs)]
    assert all(b == frames for _, b in tails), (frames, tails[0])
    t_ours = statistics.median(t for t, _ in tails)
    t_ref = statistics.median(bare_tail(log_file, TAIL)[0] for _ in range(runs))
    calls = plugin_tail(single.parent, TAIL, runs)
    ms = {key: f"{seconds * 1e3:.2f}" for key, seconds in calls.items()}
    read = calls["head"] + calls["body"]
    # Four empty round trips (Capabilities) on the same socket: the least four calls can cost.
    floor = 4 * calls["caps"]
    return [
        ("P6", f"store --tail {TAIL} ms, one {total / (1 << 20):,.0f} MiB file / bare walk back",
         f"{t_ours * 1e3:.2f}", f"{t_ref * 1e3:.2f}", f"{t_ours / t_ref:.2f}", "<= 50 ms"),
        ("P6", f"plugin ReadLogs --tail {TAIL} ms over its socket / store alone",
         f"{read * 1e3:.2f}", f"{t_ours * 1e3:.2f}", f"{read / t_ours:.2f}"),
        ("P6", "docker logs of a stopped container: the plugin's 4 calls ms / 4 x Capabilities",
         ms["all"], f"{floor * 1e3:.2f}", f"{calls['all'] / floor:.2f}"),
        ("P6", "  Capabilities, StartLogging ms (info)", f"{ms['caps']}, {ms['start']}"),
        ("P6", "  ReadLogs to its head (supervisor), head to EOF (store) ms (info)", f"{ms['head']}, {ms['body']}"),
        ("P6", "  StopLogging ms (info)", ms["stop"]),
    ]


def replay_rows(single: Path, total: int, lines: int, repeat: int) -> list[Row]:
    log_file = single / "containers" / CID / "container.log"
    replays, bare = [], []
    for _ in range(repeat):
        seconds, sent = serve(single, -1, total - lines * HEADER_SIZE)
        assert sent == total - lines * HEADER_SIZE, (sent, total)
        replays.append(seconds)
        seconds, count = bare_replay(log_file)
        assert count == lines + 1  # and the generation record that opens every stored file
        bare.append(seconds)
    r_ours, r_ref = statistics.median(replays), statistics.median(bare)
    return [("P6", "store full replay lines/s / bare read+split", f"{lines / r_ours:,.0f}", f"{lines / r_ref:,.0f}",
             f"{r_ref / r_ours:.2f}", ">= 0.5")]


def gz_rows(packed: Path, batches: list[tuple[bytes, int]], runs: int) -> list[Row]:
    """A rotated, compressed store whose current file holds 50 records: the tail reaches into a .gz."""
    build_rotated(packed, batches, StoreOptions(ROTATION.max_size, ROTATION.max_file, compress=True), TAIL // 2)
    folder = packed / "containers" / CID
    assert (folder / "container.log.1.gz").exists(), sorted(p.name for p in folder.iterdir())
    gz_frames = len(tail_records(batches[0][0], TAIL // 2)) * 2 - TAIL * HEADER_SIZE  # same-size records
    gz_tails = [serve(packed, TAIL, gz_frames) for _ in range(max(3, runs // 4))]
    assert all(b == gz_frames for _, b in gz_tails), (gz_frames, gz_tails[0])
    t_gz = statistics.median(t for t, _ in gz_tails)
    return [("P6", f"store --tail {TAIL} ms, 10m x 5 gz (info)", f"{t_gz * 1e3:.2f}")]


def _first_record_size(path: Path) -> int:
    """The size of a file's first record (the generation record that opens every stored file), framing included."""
    with open(path, "rb") as f:
        (n,) = HEADER.unpack(f.read(HEADER_SIZE))
    return n + 2 * HEADER_SIZE


def _last_sizes(path: Path, tail: int) -> list[int]:
    """Body sizes of the last ``tail`` records of a file."""
    sizes = []
    with open(path, "rb") as f:
        pos = f.seek(0, os.SEEK_END)
        for _ in range(tail):
            f.seek(pos - HEADER_SIZE)
            (n,) = HEADER.unpack(f.read(HEADER_SIZE))
            sizes.append(n)
            pos -= n + 2 * HEADER_SIZE
    return sizes


if __name__ == "__main__":
    main()
