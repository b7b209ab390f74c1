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
    print(f"supervisor  pid {sup['pid']}  up {sup['uptime_s']:.0f}s  restarts {sup['restarts']}")
    store = data.get("localstore", {})
    print(
        f"localstore  pid {store.get('pid')}  records {store.get('records_total', 0)}  "
        f"bytes {store.get('bytes_total', 0)}  disk free {store.get('disk_free_bytes', 0)}"
    )
    print(f"{'CONTAINER':14} {'NAME':20} {'PID':>7} {'STATE':10} {'LINES':>10} {'BYTES':>12} {'DISCARDED':>9}")
    for r in data.get("readers", []):
        print(
            f"{r['container_id'][:12]:14} {r['container_name'][:20]:20} {r['pid'] or '-':>7} {r['state']:10} "
            f"{r.get('lines_total', 0):>10} {r.get('bytes_total', 0):>12} {r.get('frames_discarded_total', 0):>9}"
        )
    return 0
