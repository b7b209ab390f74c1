#!/usr/bin/env python3
"""Benchmark (not a test): what our log driver costs a container compared with dockerd's json-file.

Starts a private dockerd (scripts/docker-engine.sh, needs root, refuses when another dockerd runs),
makes the local images, builds and enables the plugin from this tree, then measures, interleaving the
two drivers so that drift on the machine hits both alike:

1. start-up: wall time of ``docker run --rm test/busybox true``, N times each; medians and ratio
   (goal: ours / json-file <= 1.1);
2. throughput: a container writing LINES lines of 100 bytes (``yes ... | head``), ``docker start`` +
   ``docker wait`` (no attach, so the CLI does not copy the output), a few rounds each; medians and ratio.

Usage: .venv/bin/python -m bench.docker_run [--runs 20] [--lines 200000] [--rounds 3]
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

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
OURS = "elastic-logging-plugin"
JSON_FILE = "json-file"
DRIVERS = (OURS, JSON_FILE)
IMAGE = "test/busybox"
GOAL = 1.1


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


def report(title: str, samples: dict[str, list[float]]) -> None:
    ours, ref = statistics.median(samples[OURS]), statistics.median(samples[JSON_FILE])
    ratio = ours / ref
    verdict = "ok" if ratio <= GOAL else f"ABOVE the {GOAL} goal"
    print(f"\n{title}")
    for driver in DRIVERS:
        values = samples[driver]
        print(f"  {driver:24s} median {statistics.median(values) * 1000:9.1f} ms   "
              f"min {min(values) * 1000:9.1f} ms   max {max(values) * 1000:9.1f} ms   (n={len(values)})")
    print(f"  ratio ours/json-file: {ratio:.3f}  ({verdict})", flush=True)


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
    report(f"docker run --rm {IMAGE} true", samples)


def bench_lines(env: dict[str, str], lines: int, rounds: int) -> None:
    payload = "x" * 99  # + "\n" = 100 bytes a line
    script = f"yes {payload} | head -n {lines}"
    samples: dict[str, list[float]] = {d: [] for d in DRIVERS}
    for i in range(rounds):
        order = DRIVERS if i % 2 == 0 else DRIVERS[::-1]
        for driver in order:
            cid = run(["docker", "create", "--log-driver", driver, IMAGE, "sh", "-c", script], env).strip()
            t0 = time.perf_counter()
            run(["docker", "start", cid], env)
            status = run(["docker", "wait", cid], env).strip()
            samples[driver].append(time.perf_counter() - t0)
            if status != "0":
                sys.exit(f"container with {driver} exited {status}")
            if i == 0:
                # Once per driver, untimed: everything written can be read back.
                logs = subprocess.run(["docker", "logs", cid], env=env, capture_output=True, timeout=600,
                                      check=False)
                out, err = logs.stdout, logs.stderr.decode(errors="replace")[-300:]
                print(f"  ({driver}: docker logs exit {logs.returncode}, {out.count(10)} lines, "
                      f"{len(out)} bytes{', stderr: ' + err if err else ''})", flush=True)
            run(["docker", "rm", "-f", cid], env)
    report(f"container writing {lines} lines of 100 B (docker start + docker wait)", samples)


def bench_tail(env: dict[str, str], lines: int, runs: int) -> None:
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
    for _ in range(max(1, runs // 5)):
        for driver in (OURS, "local"):
            t0 = time.perf_counter()
            subprocess.run(["docker", "logs", cids[driver]], env=env, stdout=subprocess.DEVNULL, check=True,
                           timeout=600)
            full[driver].append(time.perf_counter() - t0)
    for title, samples in ((f"docker logs --tail 100 of {lines} lines", tail),
                           (f"docker logs (all {lines} lines, to /dev/null)", full)):
        ours, ref = statistics.median(samples[OURS]), statistics.median(samples["local"])
        print(f"\n{title}")
        for driver in (OURS, "local"):
            median = statistics.median(samples[driver]) * 1000
            print(f"  {driver:24s} median {median:9.1f} ms   (n={len(samples[driver])})")
        print(f"  ratio ours/local: {ours / ref:.3f}  (goal <= 1.0)", flush=True)
    for cid in cids.values():
        run(["docker", "rm", "-f", cid], env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="docker run --rm true, per driver")
    parser.add_argument("--lines", type=int, default=200_000, help="lines the throughput container writes")
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds per driver")
    parser.add_argument("--tail-lines", type=int, default=2_000_000, help="lines in the --tail store (0: skip)")
    args = parser.parse_args()
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
        bench_start(env, args.runs)
        bench_lines(env, args.lines, args.rounds)
        if args.tail_lines:
            bench_tail(env, args.tail_lines, 20)
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
