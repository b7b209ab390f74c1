"""``elastic-logging-plugin stats``: read ``GET /stats`` from the plugin socket and print it."""

from __future__ import annotations

import http.client
import json
import socket
import sys
from pathlib import Path
from typing import Any


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 over the plugin's unix socket (dockerd sends Host: plugin.moby.localhost; nobody checks it)."""

    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        super().__init__("plugin.moby.localhost", timeout=timeout)
        self.unix_path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def fetch_stats(path: Path) -> dict[str, Any]:
    conn = UnixHTTPConnection(path)
    try:
        conn.request("GET", "/stats")
        resp = conn.getresponse()
        data: dict[str, Any] = json.loads(resp.read())
        return data
    finally:
        conn.close()


def show_stats(path: Path, as_json: bool) -> int:
    try:
        data = fetch_stats(path)
    except OSError as exc:
        print(f"elastic-logging-plugin: cannot reach the plugin at {path}: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True))
        return 0
    sup = data["supervisor"]
    print(f"supervisor  pid {sup['pid']}  up {sup['uptime_s']:.0f}s  restarts {sup['restarts']}  "
          f"rss {_mib(sup.get('rss_bytes'))}  protobuf {sup.get('protobuf')}")
    store = data.get("localstore", {})
    print(f"localstore  pid {store.get('pid')}  records {store.get('records_total', 0)}  "
          f"bytes {store.get('bytes_total', 0)}  rotations {store.get('rotations_total', 0)}  "
          f"dropped {store.get('records_dropped_total', 0)}  disk free {_mib(store.get('disk_free_bytes'))}  "
          f"rss {_mib(store.get('rss_bytes'))}")
    ship = data.get("shipper", {})
    pids = ",".join(str(pid) for pid in ship["pids"]) if "pids" in ship else ship.get("pid")
    print(f"shipper     pid {pids}  shipped {ship.get('shipped_total', 0)}  queued {ship.get('queued', 0)}  "
          f"in flight {ship.get('in_flight', 0)}  retried {ship.get('retried_total', 0)}  "
          f"failed {ship.get('failed_total', 0)}  dead-lettered {ship.get('dead_lettered_total', 0)}")
    for one in data.get("shippers", []):  # SHIPPERS > 1: the line above is their sum
        print(f"  shipper-{one['index']}  pid {one['pid']}  shipped {one.get('shipped_total', 0)}  "
              f"queued {one.get('queued', 0)}  in flight {one.get('in_flight', 0)}  restarts {one['restarts']}")
    for out in ship.get("outputs", []):
        state = {True: "reachable", False: "UNREACHABLE", None: "not tried yet"}[out.get("reachable")]
        print(f"  -> {out['output']}: {state}{'  (' + out['last_error'] + ')' if out.get('last_error') else ''}")
    print(f"{'CONTAINER':13} {'NAME':18} {'PID':>7} {'STATE':10} {'LINES':>10} {'LINES/S':>8} {'BYTES':>12} "
          f"{'DISCARD':>7} {'RESTART':>7} {'RSS':>8} {'CPU%':>5}")
    for r in data.get("readers", []):
        print(f"{r['container_id'][:12]:13} {r['container_name'][:18]:18} {r['pid'] or '-':>7} {r['state']:10} "
              f"{r.get('lines_total', 0):>10} {r.get('lines_per_s', 0):>8.0f} {r.get('bytes_total', 0):>12} "
              f"{r.get('frames_discarded_total', 0):>7} {r.get('restarts', 0):>7} {_mib(r.get('rss_bytes')):>8} "
              f"{r.get('cpu_percent', 0):>5.1f}")
    return 0


def _mib(value: object) -> str:
    return f"{value / 2**20:.1f}M" if isinstance(value, int | float) and value >= 0 else "-"
