"""Docs/s from a FIFO into Elasticsearch beside a bare ``helpers.bulk`` loop; and line -> bulk latency.

Both run against ``bench._counting_es``, an Elasticsearch stand-in in its own process that only counts.

P3. Reference: the same N documents (built beforehand with ``DocumentBuilder.document``, not timed) sent by
``elasticsearch.helpers.bulk(Elasticsearch(url), actions, chunk_size=1600)`` as ``create`` actions. Ours: the
real plugin (supervisor, reader, local store, shipper) fed N frames through a logger's FIFO with ``cat``; the
clock runs from the first write until the stand-in has seen N documents. So ours includes reading, decoding,
storing and building the documents, the reference only serialising and sending them. Beside it, P1b without
Docker: from ``cat``'s exit (every byte in the FIFO) until the stand-in has every document; and the stand-in's own
ceiling, fed pre-built gzipped bodies by two keep-alive clients (it must be well above ours).

Latency: a writer sends lines at a steady rate, each stamped ``time_nano`` = its write time; the stand-in keeps
``arrival of the bulk request - @timestamp`` per document. Reported with the default ``flush_interval`` (1s) and
with ``flush_interval=200ms``, each in a plugin of its own (loggers with the same hosts share one bulk output and
its flush interval).

Processing (issue #13): lines/s FIFO -> ES with multiline on (Java traces of 10 lines: a tenth as many documents),
JSON decoding on (300 B objects, keys under the root), and both (JSON lines whose message is a trace line), each
beside the same lines shipped on the plain path (no processing option) in the same run: the ratio is the cost of
processing alone. Clock as in P3, until the stand-in has every document but the last event (multiline keeps it
open until its timeout).

    python -m bench.shipper_throughput [--lines N] [--size BYTES] [--repeat R] [--rate L/S] [--seconds S] [--smoke]
        [--only-p3] [--plugin-first]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from elasticsearch import Elasticsearch, helpers

from bench.reader_throughput import feed, make_stream
from proto.entry_pb2 import LogEntry
from proto.framing import encode_frame
from shipper.documents import DocumentBuilder, container_meta
from shipper.index_names import IndexTemplate
from supervisor.logopts import parse_log_options

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._table import header, report  # noqa: E402
from testkit.dockerd_driver import FakeLogger, make_info, new_container_id  # noqa: E402
from testkit.plugin import RunningPlugin, start_plugin, wait_until  # noqa: E402

INDEX = "logs-docker-default"


class CountingEs:
    """``bench._counting_es`` in a child process."""

    def __init__(self, port: int = 0) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "bench._counting_es", "--port", str(port)], cwd=ROOT,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("port "):
            self.stop()
            raise RuntimeError(f"counting ES did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    def call(self, path: str, method: str = "GET") -> dict[str, Any]:
        req = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=10) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        return data

    def reset(self, latency: bool = False) -> None:
        self.call("/_reset?latency=1" if latency else "/_reset", "POST")

    def docs(self) -> int:
        return int(self.call("/_count_seen")["docs"])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def wait_docs(es: CountingEs, n: int, timeout: float) -> None:
    wait_until(lambda: es.docs() >= n, timeout, 0.01, f"{n} documents in the counting ES")


# ---------------------------------------------------------------------------------------------------- P3


def reference_actions(lines: int, size: int) -> list[dict[str, Any]]:
    """The documents our shipper would make for ``lines`` lines of ``size`` bytes, as ``create`` actions."""
    container_id = new_container_id()
    options = dict(parse_log_options({"hosts": "127.0.0.1:9200"}).values)
    meta = container_meta(make_info(container_id), options, socket.gethostname(), "bench-agent", "0.1.0")
    builder = DocumentBuilder(meta, IndexTemplate(INDEX))
    base = time.time_ns()
    payload = b"x" * (size - 8)
    actions = []
    for i in range(lines):
        doc: dict[str, Any] = builder.document(base + i, "stdout", b"%08d" % i + payload + b"\n")
        doc.update({"_op_type": "create", "_index": INDEX, "_id": f"{container_id[:16]}-{i}"})
        actions.append(doc)
    return actions


def bare_bulk(es: CountingEs, actions: list[dict[str, Any]]) -> float:
    es.reset()
    client = Elasticsearch(es.url)
    try:
        start = time.perf_counter()
        # helpers.bulk pops the metadata keys from a copy of each action: the list can be sent again.
        ok, errors = helpers.bulk(client, actions, chunk_size=1600)
        elapsed = time.perf_counter() - start
    finally:
        client.close()
    assert ok == len(actions) and not errors, (ok, errors)
    assert es.docs() == len(actions)
    return elapsed


def plugin_shipper(plugin: RunningPlugin, es: CountingEs, stream: Path, lines: int,
                   options: dict[str, str] | None = None) -> float:
    return plugin_shipper_tail(plugin, es, stream, lines, options)[0]


def plugin_shipper_tail(plugin: RunningPlugin, es: CountingEs, stream: Path, lines: int,
                        options: dict[str, str] | None = None) -> tuple[float, float]:
    """Seconds from the first write until the stand-in has ``lines`` documents; and from the writer's exit (its last
    byte is in the FIFO: P1b's "container exit", without Docker) until then."""
    lg = FakeLogger(plugin.client, plugin.fifo_dir, config={"hosts": es.url, "max-size": "10g", **(options or {})})
    assert lg.start() == {"_status": 200}
    es.reset()
    start = time.perf_counter()
    writer = feed(lg.path, stream)
    exited: list[float] = []

    def all_in() -> bool:
        if not exited and writer.poll() is not None:
            exited.append(time.perf_counter())
        return es.docs() >= lines

    wait_until(all_in, 600, 0.01, f"{lines} documents in the counting ES")
    done = time.perf_counter()
    writer.wait()
    lg.stop()
    return done - start, done - (exited[0] if exited else done)


# ---------------------------------------------------------------------------------------------------- ceiling


def stand_in_ceiling(es: CountingEs, actions: list[dict[str, Any]], level: int = 1, clients: int = 2) -> float:
    """Seconds for the stand-in alone to take ``actions`` as pre-built gzipped bulk bodies of 1600 documents (our
    default bulk_max_size and compression_level), from ``clients`` keep-alive connections: its own ceiling."""
    bodies = []
    for start in range(0, len(actions), 1600):
        out = bytearray()
        for doc in actions[start:start + 1600]:
            meta = {"_index": doc["_index"], "_id": doc["_id"]}
            out += orjson.dumps({"create": meta}) + b"\n"
            out += orjson.dumps({k: v for k, v in doc.items() if not k.startswith("_")}) + b"\n"
        bodies.append(gzip.compress(bytes(out), level))
    host, port = es.url.removeprefix("http://").split(":")
    headers = {"content-type": "application/x-ndjson", "content-encoding": "gzip"}

    def send(share: list[bytes]) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        for body in share:
            conn.request("PUT", "/_bulk", body, headers)
            answer = conn.getresponse()
            assert answer.status == 200, answer.status
            answer.read()
        conn.close()

    es.reset()
    with ThreadPoolExecutor(clients) as pool:
        start = time.perf_counter()
        list(pool.map(send, [bodies[i::clients] for i in range(clients)]))
        elapsed = time.perf_counter() - start
    assert es.docs() == len(actions), (es.docs(), len(actions))
    return elapsed


# ---------------------------------------------------------------------------------------------------- processing

JAVA_PATTERN = r"^[[:space:]]+(at|\.{3})[[:space:]]+\b|^Caused by:"
TRACE_LINES = 10


def java_line(i: int) -> bytes:
    """Line ``i`` of back-to-back Java traces of TRACE_LINES lines (a head, frames, a cause, "... N more")."""
    n, k = divmod(i, TRACE_LINES)
    if k == 0:
        return b'Exception in thread "worker-%d" java.lang.IllegalStateException: request %08d failed' % (n % 8, n)
    if k == TRACE_LINES - 2:
        return b"Caused by: java.lang.NullPointerException: Cannot invoke \"String.length()\" on null"
    if k == TRACE_LINES - 1:
        return b"\t... %d more" % (TRACE_LINES - 3)
    return b"\tat com.example.service.Handler%d.process(Handler%d.java:%d)" % (k, k, 40 + k)


def json_line(i: int, message: bytes | None = None) -> bytes:
    """A typical structured log line, about 300 B."""
    text = message.decode() if message is not None else f"request {i:08d} served in {i % 997} ms"
    return orjson.dumps({
        "@timestamp": "2026-12-06T14:00:00.000Z", "log.level": "info", "logger": "com.example.service.Handler",
        "thread": f"worker-{i % 8}", "message": text, "trace.id": trace_id(i), "user": {"id": i % 1000,
        "name": f"user-{i % 1000}"}, "http": {"method": "GET", "status": 200, "path": f"/api/items/{i % 5000}"},
        "duration_ms": i % 997})


def trace_id(i: int) -> str:
    """32 hex digits that look random, as trace ids do (a counter's zeros would be a run of digits)."""
    return f"{(i * 0x9E3779B97F4A7C15) % (1 << 128):032x}"


def write_stream(path: Path, lines: list[bytes]) -> None:
    base = time.time_ns()
    with open(path, "wb") as f:
        for start in range(0, len(lines), 10_000):
            f.write(b"".join(encode_frame(LogEntry(source="stdout", time_nano=base + start + i, line=line))
                             for i, line in enumerate(lines[start:start + 10_000])))


def processing_workloads(work: Path, lines: int) -> list[tuple[str, Path, dict[str, str], int]]:
    """(name, stream, processing options, documents expected with them on) for the three workloads."""
    lines -= lines % TRACE_LINES
    multiline = {"multiline.pattern": JAVA_PATTERN, "multiline.match": "after"}
    json_on = {"json.message_key": "message", "json.keys_under_root": "true", "json.add_error_key": "true"}
    streams = {"multiline": [java_line(i) for i in range(lines)],
               "json": [json_line(i) for i in range(lines)],
               "both": [json_line(i, java_line(i)) for i in range(lines)]}
    options = {"multiline": multiline, "json": json_on, "both": {**multiline, **json_on}}
    docs = {"multiline": lines // TRACE_LINES, "json": lines, "both": lines // TRACE_LINES}
    workloads = []
    for name, content in streams.items():
        path = work / f"{name}.bin"
        write_stream(path, content)
        workloads.append((name, path, options[name], docs[name]))
    return workloads


def processing_rows(plugin: RunningPlugin, es: CountingEs, work: Path, lines: int, repeat: int) -> None:
    """Lines/s with each kind of processing on, beside the same lines on the plain path (same plugin, same run)."""
    lines -= lines % TRACE_LINES
    for name, stream, options, docs in processing_workloads(work, lines):
        plain, processed = [], []
        for _ in range(repeat):
            plain.append(plugin_shipper(plugin, es, stream, lines))
            # Every document but the last event's: multiline holds it until its timeout (or the container stops).
            processed.append(plugin_shipper(plugin, es, stream, docs - 1, options))
        p, q = statistics.median(plain), statistics.median(processed)
        report("P3", f"lines/s FIFO -> ES, {name} on / plain path", f"{lines / q:,.0f}", f"{lines / p:,.0f}",
               f"{p / q:.2f}", ">= 0.6")
        stream.unlink()


# ---------------------------------------------------------------------------------------------------- latency


def paced_frames(rate: int, seconds: float, size: int) -> Iterator[tuple[bytes, int]]:
    """Yield (frames, how many) as they fall due at ``rate`` lines/s, each stamped with its write time."""
    total = int(rate * seconds)
    payload = b"y" * (size - 8)
    sent = 0
    start = time.monotonic()
    while sent < total:
        due = min(total, int((time.monotonic() - start) * rate) + 1)
        if due > sent:
            now = time.time_ns()
            yield b"".join(encode_frame(LogEntry(source="stdout", time_nano=now, line=b"%08d" % i + payload))
                           for i in range(sent, due)), due - sent
            sent = due
        time.sleep(max(0.0, start + sent / rate - time.monotonic()))


def plugin_latency(plugin: RunningPlugin, es: CountingEs, rate: int, seconds: float, size: int,
                   flush_interval: str | None) -> dict[str, Any]:
    config = {"hosts": es.url, "max-size": "10g"}
    if flush_interval:
        config["flush_interval"] = flush_interval
    lg = FakeLogger(plugin.client, plugin.fifo_dir, config=config)
    assert lg.start() == {"_status": 200}
    es.reset(latency=True)
    try:
        total = 0
        for frames, count in paced_frames(rate, seconds, size):
            lg.write_raw(frames)
            total += count
        wait_docs(es, total, 60)
        result = es.call("/_latency")
        result["lines"] = total
    finally:
        es.reset()
    lg.stop()
    return result


@contextmanager
def running_plugins(*bases: Path) -> Iterator[list[RunningPlugin]]:
    """Plugins started side by side (each takes about a second to come up, mostly waiting)."""
    with ThreadPoolExecutor(len(bases)) as pool:
        futures = [pool.submit(start_plugin, base) for base in bases]
    plugins = [f.result() for f in futures if not f.exception()]
    try:
        if len(plugins) < len(futures):
            raise next(e for f in futures if (e := f.exception()) is not None)
        yield plugins
    finally:
        for plugin in plugins:
            plugin.stop()
        for base in bases:
            shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=200_000, help="documents in the throughput runs")
    parser.add_argument("--size", type=int, default=100, help="bytes per line")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rate", type=int, default=10_000, help="lines/s in the latency runs")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each latency run")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check that the benchmark runs")
    parser.add_argument("--only-p3", action="store_true", help="P3 and the stand-in's ceiling only (A/B runs)")
    parser.add_argument("--plugin-first", action="store_true",
                        help="each repeat runs the plugin before the reference: the shipper is busy a few seconds "
                             "after the start, for `python -m bench.profile --role shipper -- shipper_throughput ...`")
    args = parser.parse_args()
    if args.smoke:
        args.lines, args.repeat, args.seconds = 2_000, 1, 2.0
    work = Path(tempfile.mkdtemp(prefix="elp-b-", dir="/tmp"))
    es = CountingEs()
    try:
        stream = work / "stream.bin"
        make_stream(stream, args.lines, args.size)
        actions = reference_actions(args.lines, args.size)
        bare, ours, ceiling, tails = [], [], [], []
        lat: dict[str | None, dict[str, Any]] = {}
        # A plugin for each part, started side by side: loggers with the same hosts share one bulk output (and
        # its flush interval), and a plugin that just shipped the throughput runs showed seconds of latency.
        # --only-p3 starts only the first: bench.profile samples the first shipper it finds, which must be busy.
        bases = [work / "p1"] if args.only_p3 else [work / "p1", work / "p2", work / "p3"]
        with running_plugins(*bases) as plugins:
            plugin = plugins[0]
            for _ in range(args.repeat):
                if not args.plugin_first:
                    bare.append(bare_bulk(es, actions))
                elapsed, after_writer = plugin_shipper_tail(plugin, es, stream, args.lines)
                ours.append(elapsed)
                tails.append(after_writer)
                if args.plugin_first:
                    bare.append(bare_bulk(es, actions))
                ceiling.append(stand_in_ceiling(es, actions))
            del actions
            if not args.only_p3:
                lat[None] = plugin_latency(plugins[1], es, args.rate, args.seconds, args.size, None)
                lat["200ms"] = plugin_latency(plugins[2], es, args.rate, args.seconds, args.size, "200ms")
            b, o, c = statistics.median(bare), statistics.median(ours), statistics.median(ceiling)
            print(f"shipper: {args.lines} lines of {args.size} B, median of {args.repeat}; latency at {args.rate} "
                  f"lines/s for {args.seconds:g} s; {os.cpu_count()} CPUs")
            header()
            report("P3", "docs/s FIFO -> ES / helpers.bulk of built docs", f"{args.lines / o:,.0f}",
                   f"{args.lines / b:,.0f}", f"{b / o:.2f}", ">= 4")
            report("P1b", f"in-process: writer done -> all {args.lines} in ES, ms (no Docker)",
                   f"{statistics.median(tails) * 1000:.0f}", goal="<= 5000 ms at 1M lines")
            # The stand-in must not be what bounds P3 (or the catch-up row): its ceiling ÷ ours well above 1.
            report("P3", "counting stand-in alone (pre-built gzipped bodies) docs/s", f"{args.lines / c:,.0f}",
                   f"{args.lines / o:,.0f}", f"{o / c:.2f}", ">> 1")
            if not args.only_p3:
                processing_rows(plugin, es, work, args.lines, args.repeat)
        for flush, name in ((None, "default 1s"), ("200ms", "200ms")) if lat else ():
            r = lat[flush]
            report("P5", f"line -> bulk accepted p50 ms, {args.rate} lines/s, flush {name}", f"{r['p50_ms']:.0f}")
            report("P5", f"line -> bulk accepted p99 ms, {args.rate} lines/s, flush {name}", f"{r['p99_ms']:.0f}",
                   goal="<= 1500 ms")
            report("P5", f"line -> bulk accepted max ms, flush {name}", f"{r['max_ms']:.0f}",
                   goal=f"({r['n']} of {r['lines']} lines)")
    finally:
        es.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
