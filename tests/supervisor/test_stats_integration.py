"""`GET /stats`, `GET /metrics`, METRICS_ADDR and the `stats` command, on the real supervisor under load."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from testkit.dockerd_driver import entry
from testkit.plugin import ROOT, RunningPlugin, start_plugin, wait_until


def test_stats_follow_the_load(plugin: RunningPlugin) -> None:
    lg = plugin.logger(name="busy")
    lg.start()
    lg.write(*(entry(b"a line of some length %d" % i) for i in range(5000)))

    def reader_stats() -> dict | None:
        readers = plugin.stats()["readers"]
        # USS is read within a time budget per /stats call, so it may show up a call later.
        return readers[0] if readers and readers[0].get("lines_total") == 5000 and "uss_bytes" in readers[0] else None

    reader = wait_until(reader_stats, message="the reader to report 5000 lines")
    assert reader["container_name"] == "busy" and reader["container_id"] == lg.container_id
    assert reader["bytes_total"] > 5000 * 20 and reader["rss_bytes"] > 0 and reader["uss_bytes"] > 0
    stats = plugin.stats()
    assert set(stats) >= {"supervisor", "localstore", "shipper", "readers"}
    assert stats["supervisor"]["pid"] == plugin.proc.pid and stats["supervisor"]["uptime_s"] > 0
    # Forked children share the supervisor's command line; their names tell them apart (ps, top, bench.profile).
    names = {role: Path(f"/proc/{stats[role]['pid']}/comm").read_text().strip() for role in ("localstore", "shipper")}
    assert names == {"localstore": "elp-localstore", "shipper": "elp-shipper"}
    assert Path(f"/proc/{reader['pid']}/comm").read_text().strip() == "elp-reader"
    assert stats["localstore"]["records_total"] >= 5000 or wait_until(
        lambda: plugin.stats()["localstore"]["records_total"] >= 5000, message="the store's count")
    lg.write(*(entry(b"more") for _ in range(3000)))
    wait_until(lambda: plugin.stats()["readers"][0]["lines_total"] == 8000, message="8000 lines")
    status, body = plugin.client.request("/metrics", None, method="GET")
    assert status == 200
    text = body.decode()
    assert f'elp_reader_lines_total{{container_id="{lg.container_id[:12]}",container_name="busy"}} 8000.0' in text
    assert "elp_localstore_records_total" in text
    lg.stop()


def test_stats_command_prints_table_and_json(plugin: RunningPlugin) -> None:
    lg = plugin.logger(name="table")
    lg.start()
    lg.write(entry(b"x"))
    wait_until(lambda: plugin.stats()["readers"][0].get("lines_total") == 1, message="a line counted")
    cmd = [sys.executable, "-m", "supervisor", "stats", "--socket", str(plugin.socket_path)]
    table = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT, timeout=30).stdout
    assert "table" in table and lg.container_id[:12] in table
    data = json.loads(subprocess.run([*cmd, "--json"], capture_output=True, text=True, check=True, cwd=ROOT,
                                     timeout=30).stdout)
    assert data["readers"][0]["lines_total"] == 1
    missing = subprocess.run([sys.executable, "-m", "supervisor", "stats", "--socket", "/nonexistent/sock"],
                             capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert missing.returncode == 1 and "cannot reach the plugin" in missing.stderr
    lg.stop()


def test_metrics_addr_serves_only_metrics_on_tcp(short_tmp: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    plugin = start_plugin(short_tmp, env={"METRICS_ADDR": f"127.0.0.1:{port}"})
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            assert b"elp_supervisor_uptime_s" in resp.read()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/LogDriver.Capabilities", data=b"",
                                         method="POST")
        try:
            urllib.request.urlopen(request, timeout=10)
            raise AssertionError("the LogDriver API must not be served on TCP")
        except urllib.error.HTTPError as exc:
            assert exc.code in (404, 405)
            exc.close()
    finally:
        assert plugin.stop() == 0


def test_bad_plugin_setting_stops_the_plugin_with_a_clear_message(short_tmp: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "supervisor", "serve", "--socket", str(short_tmp / "s"),
                           "--data-dir", str(short_tmp / "d")], env={"METRICS_ADDR": "nonsense", "PATH": "/bin"},
                          capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert proc.returncode == 2 and "METRICS_ADDR" in proc.stderr
