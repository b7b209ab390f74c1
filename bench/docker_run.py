#!/usr/bin/env python3
"""Benchmark (not a test): what our log driver costs, measured with a real dockerd beside Docker's own drivers.

Starts a private dockerd (scripts/docker-engine.sh, needs root, refuses when another dockerd runs), makes the
local images, builds and enables the plugin from this tree, then runs these sections (all by default; pick some
with ``--only``), each printing our figure beside a reference measured in the same run, and their ratio. Where
two drivers are timed, they alternate so that drift on the machine hits both alike.

start       docker run --rm test/busybox true, N times each; ours / json-file (goal <= 1.1).
throughput  P1: a container writing LINES lines of 100 B (``yes | head``, default 1M), docker start + docker wait
            (no attach), ROUNDS alternating pairs; ours (local store only) / json-file, both with
            ``--log-opt max-size=MAX_SIZE`` (default 1g: large enough to keep every line, so neither driver pays
            for rotating); median ratio of the pairs and their spread (goal <= 0.95).
tail        P6: ``docker logs --tail 100`` of a stopped container holding TAIL_LINES lines (served through the
            temporary logger dockerd opens), and TAIL_FULL_RUNS full replays (default none: about 20 s each);
            ours / Docker's ``local`` driver (goal <= 1.0).
ship        P1b: a container writing SHIP_LINES lines as fast as it can, shipping to bench._counting_es (an
            Elasticsearch stand-in on 127.0.0.1; the plugin uses host networking): the time from the container's
            exit (docker wait returns) until the stand-in counted every line, given up after 60 s (goal <= 2 s at
            200k lines/s; the stand-in counts documents, so a re-sent bulk counts twice), and
            the container's own write rate (``date +%s%N`` around ``yes | head``, left in a mounted folder)
            beside json-file's.
latency     P5: a container writing timestamped lines at a steady LATENCY_RATE lines/s (python3 in the base image),
            a ``docker logs -f`` on the host parsing each line's timestamp; p50/p99/max of read - write time
            (the first 0.5 s is warm-up); ours / json-file (goal: p99 <= 100 ms).
cpu         P8: CPU_CONTAINERS containers each writing CPU_RATE lines/s for CPU_SECONDS (100 B lines, 10 per
            write): user+system CPU seconds per million lines (psutil) of the plugin (its whole process tree under
            the containerd shim, readers reaped in between included) and of dockerd in the same run; reference:
            dockerd's CPU for the same containers with json-file. Goal: (plugin + dockerd) / json-file's dockerd
            <= 3.

All sections with the default sizes take about 9 minutes on 2 cores (setup 1.5, cpu 4).

Usage: .venv/bin/python -m bench.docker_run [--only start,throughput,tail,ship,latency,cpu] [--runs 20]
           [--lines 1000000] [--max-size 1g] [--rounds 3] [--tail-lines 2000000] [--ship-lines 1000000]
           [--latency-rate 10000] [--latency-seconds 10] [--cpu-containers 100] [--cpu-rate 1000] [--cpu-seconds 60]
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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from bench._table import report as figure
from bench.shipper_throughput import CountingEs

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
OURS = "elastic-logging-plugin"
JSON_FILE = "json-file"
DRIVERS = (OURS, JSON_FILE)
IMAGE = "test/busybox"
PY_IMAGE = "elastic-logging-plugin/base:bookworm"
GOAL = 1.1
SECTIONS = ("start", "throughput", "tail", "ship", "latency", "cpu")

# Runs in a container (python3 of the base image): TOTAL lines of SIZE bytes at RATE lines/s from START (a Unix time,
# or seconds from now when small), what is due written every TICK s in one write(); each line starts with its write
# time (ns) and its index.
PACED_WRITER = r"""
import sys, time
rate, total, tick, size, start_at = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), \
    float(sys.argv[5])
time.sleep(max(0.0, start_at - time.time() if start_at > 1e9 else start_at))
out = sys.stdout.buffer
pad = b"x" * max(0, size - 32)
start = time.monotonic()
n = 0
while n < total:
    due = min(total, int((time.monotonic() - start) * rate) + 1)
    if due > n:
        t = time.time_ns()
        out.write(b"".join(b"%d %d %s\n" % (t, i, pad) for i in range(n, due)))
        out.flush()
        n = due
    time.sleep(tick)
"""


def run(args: list[str], env: dict[str, str], timeout: float = 600, quiet: bool = True) -> str:
    """Run a command; fail loudly with its output when it fails."""
    proc = subprocess.run(args, env=env, capture_output=quiet, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} exited {proc.returncode}\n{proc.stdout or ''}{proc.stderr or ''}")
    return proc.stdout or ""


def timed(args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    run(args, env)
    return time.perf_counter() - t0


def report(key: str, title: str, samples: dict[str, list[float]], goal: float = GOAL) -> None:
    ours, ref = statistics.median(samples[OURS]), statistics.median(samples[JSON_FILE])
    ratio = ours / ref
    verdict = "ok" if ratio <= goal else f"ABOVE the {goal} goal"
    print(f"\n{title}")
    for driver in DRIVERS:
        values = samples[driver]
        print(f"  {driver:24s} median {statistics.median(values) * 1000:9.1f} ms   "
              f"min {min(values) * 1000:9.1f} ms   max {max(values) * 1000:9.1f} ms   (n={len(values)})")
    print(f"  ratio ours/json-file: {ratio:.3f}  ({verdict})", flush=True)
    figure(key, f"{title}: median ms / json-file", f"{ours * 1000:.0f}", f"{ref * 1000:.0f}", f"{ratio:.3f}",
           f"<= {goal}")


def bench_start(env: dict[str, str], runs: int) -> None:
    samples: dict[str, list[float]] = {d: [] for d in DRIVERS}
    # One warm-up each (first container start pays for page cache, plugin connection set-up, ...).
    for driver in DRIVERS:
        run(["docker", "run", "--rm", "--log-driver", driver, IMAGE, "true"], env)
    for i in range(runs):
        order = DRIVERS if i % 2 == 0 else DRIVERS[::-1]
        for driver in order:
            cmd = ["docker", "run", "--rm", "--log-driver", driver, IMAGE, "true"]
            samples[driver].append(timed(cmd, env))
    report("P7", f"docker run --rm {IMAGE} true", samples)


def bench_lines(env: dict[str, str], lines: int, rounds: int, max_size: str) -> None:
    """P1: wall time of a container writing LINES lines, ours beside json-file, both rotating at MAX_SIZE."""
    payload = "x" * 99  # + "\n" = 100 bytes a line
    script = f"yes {payload} | head -n {lines}"
    opts = ["--log-opt", f"max-size={max_size}"]
    samples: dict[str, list[float]] = {d: [] for d in DRIVERS}
    ratios: list[float] = []  # ours / json-file per alternating pair
    for i in range(rounds):
        order = DRIVERS if i % 2 == 0 else DRIVERS[::-1]
        pair: dict[str, float] = {}
        for driver in order:
            cid = run(["docker", "create", "--log-driver", driver, *opts, IMAGE, "sh", "-c", script], env).strip()
            t0 = time.perf_counter()
            run(["docker", "start", cid], env)
            status = run(["docker", "wait", cid], env).strip()
            pair[driver] = time.perf_counter() - t0
            samples[driver].append(pair[driver])
            if status != "0":
                sys.exit(f"container with {driver} exited {status}")
            if i == 0:
                # Once per driver, untimed: everything written can be read back (the rotation kept every line).
                logs = subprocess.run(["docker", "logs", cid], env=env, capture_output=True, timeout=600,
                                      check=False)
                out, err = logs.stdout, logs.stderr.decode(errors="replace")[-300:]
                print(f"  ({driver}: docker logs exit {logs.returncode}, {out.count(10)} lines, "
                      f"{len(out)} bytes{', stderr: ' + err if err else ''})", flush=True)
                if out.count(10) != lines:
                    print(f"  ({driver}: {out.count(10)} of {lines} lines kept: max-size={max_size} rotated "
                          f"some away, so the drivers are not compared like with like)", flush=True)
            run(["docker", "rm", "-f", cid], env)
        ratios.append(pair[OURS] / pair[JSON_FILE])
    title = f"P1 container writing {lines} lines of 100 B, max-size={max_size} (docker start + docker wait)"
    report("P1", title, samples, goal=0.95)
    print(f"  ratio per pair ours/json-file: median {statistics.median(ratios):.3f}   min {min(ratios):.3f}   "
          f"max {max(ratios):.3f}   ({' '.join(f'{r:.3f}' for r in ratios)}; goal <= 0.95)", flush=True)
    figure("P1", f"{lines} lines, max-size={max_size}: median of per-pair ratios ours/json-file (min-max)",
           f"{statistics.median(ratios):.3f}", "-", f"{min(ratios):.3f}-{max(ratios):.3f}", "<= 0.95")


def bench_tail(env: dict[str, str], lines: int, runs: int, full_runs: int) -> None:
    """`docker logs --tail 100` on a container holding LINES lines, ours beside Docker's `local` driver, and a
    full `docker logs` replay of the same. Both stores use one big file (no rotation) so only reading differs."""
    payload = "y" * 99
    script = f"yes {payload} | head -n {lines}"
    opts = {OURS: ["--log-opt", "max-size=100g"], "local": ["--log-opt", "max-size=100g"]}
    cids = {}
    for driver in (OURS, "local"):
        cid = run(["docker", "run", "-d", "--log-driver", driver, *opts[driver], IMAGE, "sh", "-c", script],
                  env).strip()
        run(["docker", "wait", cid], env)
        cids[driver] = cid
    tail: dict[str, list[float]] = {OURS: [], "local": []}
    full: dict[str, list[float]] = {OURS: [], "local": []}
    for i in range(runs):
        order = (OURS, "local") if i % 2 == 0 else ("local", OURS)
        for driver in order:
            t0 = time.perf_counter()
            out = run(["docker", "logs", "--tail", "100", cids[driver]], env)
            tail[driver].append(time.perf_counter() - t0)
            if out.count("\n") != 100:
                sys.exit(f"{driver}: --tail 100 gave {out.count(chr(10))} lines")
    for _ in range(full_runs):
        for driver in (OURS, "local"):
            t0 = time.perf_counter()
            subprocess.run(["docker", "logs", cids[driver]], env=env, stdout=subprocess.DEVNULL, check=True,
                           timeout=600)
            full[driver].append(time.perf_counter() - t0)
    for title, samples in ((f"P6 docker logs --tail 100 of {lines} lines (stopped container)", tail),
                           (f"docker logs (all {lines} lines, to /dev/null)", full)):
        if not samples[OURS]:
            continue
        ours, ref = statistics.median(samples[OURS]), statistics.median(samples["local"])
        print(f"\n{title}")
        for driver in (OURS, "local"):
            median = statistics.median(samples[driver]) * 1000
            print(f"  {driver:24s} median {median:9.1f} ms   (n={len(samples[driver])})")
        print(f"  ratio ours/local: {ours / ref:.3f}  (goal <= 1.0)", flush=True)
        figure("P6", f"{title.removeprefix('P6 ')}: median ms / local driver", f"{ours * 1000:.1f}",
               f"{ref * 1000:.1f}", f"{ours / ref:.3f}", "<= 1.0")
    for cid in cids.values():
        run(["docker", "rm", "-f", cid], env)


def bench_ship(env: dict[str, str], workdir: Path, lines: int, rounds: int) -> None:
    """P1b: from the container's exit until the Elasticsearch stand-in counted every line; and the write rate."""
    payload = "z" * 99
    out = workdir / "ship"
    out.mkdir(exist_ok=True)
    # The container times its own writing and leaves the figure in a mounted folder (not in its log).
    script = f"s=$(date +%s%N); yes {payload} | head -n {lines}; e=$(date +%s%N); echo $((e - s)) > /out/ns"
    es = CountingEs()
    delays: list[float] = []
    rates: dict[str, list[float]] = {OURS: [], JSON_FILE: []}
    try:
        for i in range(rounds):
            order = DRIVERS if i % 2 == 0 else DRIVERS[::-1]
            for driver in order:
                opts = ["--log-opt", f"hosts={es.url}", "--log-opt", "max-size=10g"] if driver == OURS else []
                cid = run(["docker", "create", "--log-driver", driver, *opts, "-v", f"{out}:/out", PY_IMAGE,
                           "sh", "-c", script], env).strip()
                es.reset()
                run(["docker", "start", cid], env)
                status = run(["docker", "wait", cid], env).strip()
                exited = time.perf_counter()
                if status != "0":
                    sys.exit(f"ship container with {driver} exited {status}")
                if driver == OURS:
                    delays.append(_wait_counted(es, lines, exited, env))
                rates[driver].append(lines / (int((out / "ns").read_text()) / 1e9))
                _check_tail(env, cid, driver)
                run(["docker", "rm", "-f", cid], env)
    finally:
        es.stop()
    ours_rate, ref_rate = statistics.median(rates[OURS]), statistics.median(rates[JSON_FILE])
    delay = statistics.median(delays)
    print(f"\nP1b {lines} lines written as fast as the container can, shipped to the counting ES stand-in")
    print(f"  exit -> every line counted    median {delay * 1000:9.1f} ms   max {max(delays) * 1000:9.1f} ms   "
          f"(n={len(delays)}; goal <= 2000 ms at 200k lines/s)")
    for driver in DRIVERS:
        print(f"  write rate with {driver:24s} median {statistics.median(rates[driver]):11,.0f} lines/s")
    print(f"  ratio of write rates ours/json-file: {ours_rate / ref_rate:.3f}", flush=True)
    figure("P1b", f"{lines} lines: container exit -> all counted in ES, ms (median)", f"{delay * 1000:.0f}",
           goal="<= 2000 ms at 200k lines/s")
    figure("P1b", "same: container write rate, lines/s / json-file", f"{ours_rate:,.0f}", f"{ref_rate:,.0f}",
           f"{ours_rate / ref_rate:.3f}")


def _check_tail(env: dict[str, str], cid: str, driver: str, n: int = 1000) -> None:
    """Untimed: ``docker logs --tail`` of the exited container gives what it should."""
    logs = subprocess.run(["docker", "logs", "--tail", str(n), cid], env=env, capture_output=True, check=False,
                          timeout=120)
    if logs.returncode != 0 or logs.stdout.count(b"\n") != n or logs.stderr:
        print(f"  ({driver}: docker logs --tail {n} exited {logs.returncode} with {logs.stdout.count(10)} lines; "
              f"stderr {logs.stderr[-300:]!r})", flush=True)


def _wait_counted(es: CountingEs, n: int, since: float, env: dict[str, str], timeout: float = 60.0) -> float:
    """Seconds from ``since`` until the stand-in has counted ``n`` documents."""
    deadline = since + timeout
    while es.docs() < n:
        if time.perf_counter() > deadline:
            # Reported, not fatal: the sections after this one still run.
            print(f"  (ship: the stand-in counted only {es.docs()} of {n} documents {timeout:.0f}s after the exit; "
                  f"the plugin's last messages:)\n{_plugin_log_tail(env, 15)}", flush=True)
            return float("inf")
        time.sleep(0.005)  # a poll interval, not synchronisation: the clock stops at the first full count
    return time.perf_counter() - since


def _plugin_log_tail(env: dict[str, str], lines: int = 40) -> str:
    """The plugin's last messages (dockerd logs its stdout), for a failure."""
    log_path = Path(env["DOCKER_HOST"].removeprefix("unix://")).parent / "dockerd.log"
    try:
        found = [line for line in log_path.read_text(errors="replace").splitlines() if "plugin=" in line]
    except OSError as exc:
        return f"(no dockerd log: {exc})"
    return "\n".join(found[-lines:])


def bench_latency(env: dict[str, str], rate: int, seconds: float) -> None:
    """P5: line written in the container -> line printed by ``docker logs -f`` on the host."""
    total = int(rate * seconds)
    warmup = int(rate * 0.5)
    samples: dict[str, list[int]] = {}
    for driver in DRIVERS:
        cid = run(["docker", "create", "--log-driver", driver, PY_IMAGE, "python3", "-c", PACED_WRITER,
                   str(rate), str(total), "0.001", "100", "2"], env).strip()
        run(["docker", "start", cid], env)
        # The writer waits 2 s before its first line: the follower is attached by then, so every line is live.
        follower = subprocess.Popen(["docker", "logs", "-f", cid], env=env, stdout=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL)
        assert follower.stdout is not None
        latencies = []
        count = 0
        for line in follower.stdout:
            now = time.time_ns()
            stamp, index, _ = line.split(b" ", 2)
            count += 1
            if int(index) >= warmup:
                latencies.append(now - int(stamp))
        follower.wait(60)
        if count != total:
            sys.exit(f"latency: docker logs -f with {driver} printed {count} of {total} lines")
        samples[driver] = sorted(latencies)
        run(["docker", "rm", "-f", cid], env)
    print(f"\nP5 latency line -> docker logs -f at {rate} lines/s for {seconds:.0f} s (after 0.5 s warm-up)")
    for driver in DRIVERS:
        values = samples[driver]
        print(f"  {driver:24s} p50 {_pct(values, 0.5):8.1f} ms   p99 {_pct(values, 0.99):8.1f} ms   "
              f"max {values[-1] / 1e6:8.1f} ms   (n={len(values)})")
    ours, ref = _pct(samples[OURS], 0.99), _pct(samples[JSON_FILE], 0.99)
    print(f"  ratio of p99 ours/json-file: {ours / ref:.3f}  (goal: ours p99 <= 100 ms: "
          f"{'met' if ours <= 100 else 'NOT met'})", flush=True)
    figure("P5", f"line -> docker logs -f p50 ms, {rate} lines/s / json-file", f"{_pct(samples[OURS], 0.5):.1f}",
           f"{_pct(samples[JSON_FILE], 0.5):.1f}")
    figure("P5", f"line -> docker logs -f p99 ms, {rate} lines/s / json-file", f"{ours:.1f}", f"{ref:.1f}",
           f"{ours / ref:.3f}", "<= 100 ms")


def _pct(sorted_ns: list[int], p: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(p * len(sorted_ns)))] / 1e6


def bench_cpu(env: dict[str, str], workdir: Path, containers: int, rate: int, seconds: float) -> None:
    """P8: CPU per million lines of the plugin and dockerd, beside dockerd's with json-file."""
    total = int(rate * seconds)
    lines = containers * total
    dockerd = psutil.Process(int((workdir / "docker.pid").read_text()))
    plugin = _plugin_root(env)
    cost: dict[str, tuple[float, float]] = {}
    for driver in (JSON_FILE, OURS):
        plugin_before, dockerd_before = _tree_cpu(plugin), _cpu(dockerd)
        # Every container starts writing at the same moment, once all of them run.
        start_at = time.time() + 5 + containers * 0.25
        cids = [run(["docker", "create", "--log-driver", driver, PY_IMAGE, "python3", "-c", PACED_WRITER, str(rate),
                     str(total), "0.01", "100", f"{start_at:.3f}"], env).strip() for _ in range(containers)]
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda cid: run(["docker", "start", cid], env), cids))
        if time.time() > start_at:
            print(f"  (cpu: starting {containers} containers took longer than planned; they began late)")
        run(["docker", "wait", *cids], env, timeout=seconds * 10 + 600)
        if driver == OURS:
            # The readers flush and exit after EOF; their CPU moves into the supervisor's children times on reaping.
            _wait(lambda: len(plugin.children()) <= 2, 60, "the plugin's readers to exit")
        cost[driver] = (_tree_cpu(plugin) - plugin_before, _cpu(dockerd) - dockerd_before)
        printed = subprocess.run(["docker", "logs", cids[0]], env=env, capture_output=True, check=False).stdout
        if printed.count(b"\n") != total:
            sys.exit(f"cpu: a container with {driver} has {printed.count(10)} of {total} lines in docker logs")
        run(["docker", "rm", "-f", *cids], env)
    per_m = lines / 1e6
    ours_plugin, ours_dockerd = (c / per_m for c in cost[OURS])
    ref_dockerd = cost[JSON_FILE][1] / per_m
    print(f"\nP8 CPU: {containers} containers x {rate} lines/s x {seconds:.0f} s = {lines:,} lines of 100 B")
    print(f"  ours: plugin (all processes)   {ours_plugin:7.2f} CPU s per million lines")
    print(f"  ours: dockerd                  {ours_dockerd:7.2f} CPU s per million lines")
    print(f"  json-file: dockerd             {ref_dockerd:7.2f} CPU s per million lines")
    print(f"  ratio plugin / json-file dockerd:               {ours_plugin / ref_dockerd:.3f}")
    total_ratio = (ours_plugin + ours_dockerd) / ref_dockerd
    print(f"  ratio (plugin + dockerd) / json-file dockerd:   {total_ratio:.3f}  "
          f"({'ok' if total_ratio <= 3 else 'ABOVE'} the 3x goal)", flush=True)
    figure("P8", f"{containers} x {rate} lines/s: plugin CPU s/1M lines / json-file dockerd", f"{ours_plugin:.2f}",
           f"{ref_dockerd:.2f}", f"{ours_plugin / ref_dockerd:.3f}")
    figure("P8", "same: (plugin + dockerd) / json-file dockerd", f"{ours_plugin + ours_dockerd:.2f}",
           f"{ref_dockerd:.2f}", f"{total_ratio:.3f}", "<= 3")


def _plugin_root(env: dict[str, str]) -> psutil.Process:
    """The plugin's supervisor: the first process under the containerd shim that runs the plugin's container."""
    plugin_id = run(["docker", "plugin", "inspect", "-f", "{{.Id}}", OURS], env).strip()
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if cmdline and "containerd-shim" in cmdline[0] and plugin_id in cmdline:
            for child in proc.children(recursive=True):
                if "supervisor" in child.cmdline():
                    return child
    sys.exit(f"cannot find the plugin's processes (plugin id {plugin_id[:12]})")


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def _tree_cpu(root: psutil.Process) -> float:
    """CPU of a process, its live descendants and the children it reaped."""
    times = root.cpu_times()
    total = float(times.user + times.system + times.children_user + times.children_system)
    for child in root.children(recursive=True):
        try:
            total += _cpu(child)
        except psutil.NoSuchProcess:
            pass  # reaped between the listing and now: its time is in the root's children times already
    return total


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.1)  # a poll interval


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma list of sections to run (default: all of {','.join(SECTIONS)})")
    parser.add_argument("--runs", type=int, default=20, help="start: docker run --rm true, per driver")
    parser.add_argument("--lines", type=int, default=1_000_000, help="throughput: lines the container writes")
    parser.add_argument("--max-size", default="1g",
                        help="throughput: --log-opt max-size for both drivers (default 1g: keeps every line)")
    parser.add_argument("--rounds", type=int, default=3, help="throughput: rounds per driver")
    parser.add_argument("--tail-lines", type=int, default=2_000_000, help="tail: lines in the store")
    parser.add_argument("--tail-runs", type=int, default=20, help="tail: docker logs --tail 100, per driver")
    parser.add_argument("--tail-full-runs", type=int, default=0, help="tail: full replays per driver")
    parser.add_argument("--ship-lines", type=int, default=1_000_000, help="ship: lines the container writes")
    parser.add_argument("--ship-rounds", type=int, default=1, help="ship: rounds per driver")
    parser.add_argument("--latency-rate", type=int, default=10_000, help="latency: lines/s")
    parser.add_argument("--latency-seconds", type=float, default=10.0, help="latency: seconds of writing")
    parser.add_argument("--cpu-containers", type=int, default=100, help="cpu: containers")
    parser.add_argument("--cpu-rate", type=int, default=1000, help="cpu: lines/s per container")
    parser.add_argument("--cpu-seconds", type=float, default=60.0, help="cpu: seconds each container writes")
    args = parser.parse_args()
    sections = set(args.only.split(","))
    if not sections <= set(SECTIONS):
        parser.error(f"--only: unknown section(s) {', '.join(sorted(sections - set(SECTIONS)))}")
    if os.geteuid() != 0:
        print("bench/docker_run.py needs root (it runs a private dockerd); skipped")
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="elp-e2e-bench-", dir="/tmp"))
    env = {**os.environ, "DOCKER_HOST": f"unix://{workdir}/docker.sock",
           "BASE_IMAGE": os.environ.get("BASE_IMAGE", "elastic-logging-plugin/base:bookworm")}
    try:
        print("setting up: private dockerd, images, plugin (about a minute)...", flush=True)
        run([str(SCRIPTS / "docker-engine.sh"), "start", str(workdir)], env, quiet=False)
        what = "all" if env["BASE_IMAGE"] == "elastic-logging-plugin/base:bookworm" else "busybox"
        run([str(SCRIPTS / "make-images.sh"), what], env, quiet=False)
        run([str(SCRIPTS / "build-plugin.sh"), f"data.source={workdir}/plugin-data"], env)
        print(run(["docker", "version", "--format", "dockerd {{.Server.Version}}"], env).strip(), flush=True)
        if "start" in sections:
            bench_start(env, args.runs)
        if "throughput" in sections:
            bench_lines(env, args.lines, args.rounds, args.max_size)
        if "tail" in sections:
            bench_tail(env, args.tail_lines, args.tail_runs, args.tail_full_runs)
        if "ship" in sections:
            bench_ship(env, workdir, args.ship_lines, args.ship_rounds)
        if "latency" in sections:
            bench_latency(env, args.latency_rate, args.latency_seconds)
        if "cpu" in sections:
            bench_cpu(env, workdir, args.cpu_containers, args.cpu_rate, args.cpu_seconds)
        store = workdir / "plugin-data" / "elastic-logging-plugin"
        if store.exists():
            size = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
            print(f"\nlocal store after the benchmark: {size / 1e6:.1f} MB under {store}")
    finally:
        subprocess.run(["docker", "plugin", "disable", "-f", OURS], env=env, capture_output=True, check=False)
        subprocess.run([str(SCRIPTS / "docker-engine.sh"), "stop", str(workdir)], env=env, check=False)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
