"""An Elasticsearch stand-in for benchmarks that only counts what it is sent (run as its own process).

    python -m bench._counting_es [--port 0]

Prints ``port <n>`` on stdout once listening. It answers:

* ``GET /``: ES 8's root JSON;
* ``PUT|POST [/<index>]/_bulk``: every action is "created" (201); bodies may be gzipped. Only the action lines
  (every other line) are read, unless latency recording is on: then each document's ``@timestamp`` is read too
  and ``arrival - @timestamp`` kept, arrival being when the whole request body was in;
* ``GET /_count_seen``: ``{"docs": n, "requests": r}`` since the last reset;
* ``POST /_reset[?latency=1]``: zero the counters (and start or stop latency recording);
* ``GET /_latency``: ``{"n", "p50_ms", "p99_ms", "max_ms"}`` of the recorded latencies.

Every answer carries ``X-Elastic-Product: Elasticsearch``: the Python client refuses answers without it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gzip
import socket
import sys
import time

import orjson
import uvloop
from aiohttp import web

PRODUCT = {"X-Elastic-Product": "Elasticsearch"}
ROOT = {
    "name": "bench-es", "cluster_name": "bench", "cluster_uuid": "bench-cluster-uuid-000000",
    "version": {
        "number": "8.15.0", "build_flavor": "default", "build_type": "docker",
        "build_hash": "1a77947f34deddb41af25e6f0ddb8e830159c179", "build_date": "2024-08-05T10:05:34.233336849Z",
        "build_snapshot": False, "lucene_version": "9.11.1", "minimum_wire_compatibility_version": "7.17.0",
        "minimum_index_compatibility_version": "7.0.0",
    },
    "tagline": "You Know, for Search",
}
_TS_KEY = b'"@timestamp":"'


class Counter:
    def __init__(self) -> None:
        self.docs = 0
        self.requests = 0
        self.latency = False
        self.latencies_ns: list[int] = []
        self._second_prefix = b""
        self._second_ns = 0

    def reset(self, latency: bool) -> None:
        self.docs = 0
        self.requests = 0
        self.latency = latency
        self.latencies_ns = []

    def timestamp_ns(self, stamp: bytes) -> int:
        """``2024-05-01T10:20:30.123456789Z`` -> Unix ns (the date part is parsed once per second)."""
        prefix, _, frac = stamp.partition(b".")
        if prefix != self._second_prefix:
            when = dt.datetime.fromisoformat(prefix.decode()).replace(tzinfo=dt.UTC)
            self._second_ns = int(when.timestamp()) * 1_000_000_000
            self._second_prefix = prefix
        digits = frac.rstrip(b"Z")
        return self._second_ns + int(digits.ljust(9, b"0")[:9] or b"0")


async def root(_: web.Request) -> web.Response:
    return web.json_response(ROOT, headers=PRODUCT)


async def bulk(request: web.Request) -> web.Response:
    counter: Counter = request.app["counter"]
    body = await request.read()
    arrival = time.time_ns()
    if body[:2] == b"\x1f\x8b":  # aiohttp already inflates a body sent with content-encoding: gzip
        body = gzip.decompress(body)
    lines = body.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    actions = lines[0::2]
    items = []
    for raw in actions:
        action = orjson.loads(raw)
        op, meta = next(iter(action.items()))
        items.append({op: {"_index": meta.get("_index", "bench"), "_id": meta.get("_id", "x"), "status": 201,
                           "result": "created", "_version": 1}})
    if counter.latency:
        for doc in lines[1::2]:
            at = doc.find(_TS_KEY)
            if at >= 0:
                start = at + len(_TS_KEY)
                stamp = doc[start:doc.index(b'"', start)]
                counter.latencies_ns.append(arrival - counter.timestamp_ns(stamp))
    counter.docs += len(actions)
    counter.requests += 1
    answer = orjson.dumps({"took": 1, "errors": False, "items": items})
    return web.Response(body=answer, content_type="application/json", headers=PRODUCT)


async def count_seen(request: web.Request) -> web.Response:
    counter: Counter = request.app["counter"]
    return web.json_response({"docs": counter.docs, "requests": counter.requests}, headers=PRODUCT)


async def reset(request: web.Request) -> web.Response:
    counter: Counter = request.app["counter"]
    counter.reset(request.query.get("latency") == "1")
    return web.json_response({"ok": True}, headers=PRODUCT)


async def latency(request: web.Request) -> web.Response:
    counter: Counter = request.app["counter"]
    values = sorted(counter.latencies_ns)

    def pct(p: float) -> float:
        return values[min(len(values) - 1, int(p * len(values)))] / 1e6 if values else float("nan")

    return web.json_response({"n": len(values), "p50_ms": pct(0.50), "p99_ms": pct(0.99),
                              "max_ms": values[-1] / 1e6 if values else float("nan")}, headers=PRODUCT)


def make_app() -> web.Application:
    app = web.Application(client_max_size=256 << 20)
    app["counter"] = Counter()
    app.router.add_get("/", root)
    app.router.add_get("/_count_seen", count_seen)
    app.router.add_post("/_reset", reset)
    app.router.add_get("/_latency", latency)
    for path in ("/_bulk", "/{index}/_bulk"):
        app.router.add_put(path, bulk)
        app.router.add_post(path, bulk)
    return app


async def serve(port: int) -> None:
    runner = web.AppRunner(make_app(), access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    await web.SockSite(runner, sock).start()
    print(f"port {sock.getsockname()[1]}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        uvloop.run(serve(args.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
