"""Where one process of the plugin spends its time while a benchmark runs: py-spy on it, the top functions' shares.

Runs a benchmark of this folder as it would run alone, waits for the first process of the plugin named
``elp-<role>`` (every forked child names itself so: ``supervisor/spawn.py``) among the benchmark's descendants,
lets it warm up, then samples it with py-spy for a while and prints, over all samples:

- inclusive shares: the samples in which a function is anywhere on the stack (a function called at several depths
  counts once per sample);
- self shares: the samples in which it is the innermost frame.

A function is ``name (file)``, its line numbers merged. The benchmark's own output and figures print as usual, so a
profile and the figure it explains come from one command. Idle samples (a thread waiting in epoll or a lock) are left
out unless ``--idle``: the shares are then of the CPU the process used. py-spy needs ptrace (root, or
``kernel.yama.ptrace_scope`` 0). ``--nonblocking`` (default) samples without pausing the process, so the figure
it runs beside is hardly touched.

    python -m bench.profile --role shipper [--seconds 10] [--delay 3] [--rate 200] [--top 15] [--idle]
        -- shipper_throughput --only-p3 --lines 400000
    python -m bench.profile --smoke        (the local store during ``bench.start_logging --smoke``: checks the tool
                                            runs)

``--role`` is one of ``shipper`` (the first one found when SHIPPERS > 1 names them ``elp-shipper-<i>``),
``localstore``, ``reader`` (the first reader found) or ``supervisor`` (the benchmark's plugin itself: the process of
the tree whose children are named ``elp-*``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
ROLES = ("shipper", "localstore", "reader", "supervisor")


class SpyFailed(Exception):
    """py-spy could not sample (no ptrace permission, the process ended first)."""


@dataclass(frozen=True)
class Shares:
    samples: int
    inclusive: Counter[str]
    self_: Counter[str]


def parse_collapsed(text: str) -> Shares:
    """py-spy's ``--format raw`` output: one ``frame;frame;...;innermost COUNT`` line per distinct stack, each
    frame ``function (file:line)``; the outermost frame may be a thread's ``process …``/``thread …`` label."""
    inclusive: Counter[str] = Counter()
    self_: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(frame) for frame in stack.split(";") if frame and not _is_label(frame)]
        if not frames:
            continue
        total += count
        for name in set(frames):
            inclusive[name] += count
        self_[frames[-1]] += count
    return Shares(total, inclusive, self_)


def _function(frame: str) -> str:
    """``encode_line (shipper/documents.py:120)`` -> ``encode_line (shipper/documents.py)``."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    try:
        path = str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        path = Path(path).name
    return f"{name} ({path})" if where else name


def _is_label(frame: str) -> bool:
    return frame.startswith(("process ", "thread "))


def find_role(root: psutil.Process, role: str) -> psutil.Process | None:
    for proc in root.children(recursive=True):
        try:
            name = proc.name()
            if role == "supervisor":
                if any(child.name().startswith("elp-") for child in proc.children()):
                    return proc
            elif name == f"elp-{role}"[:15] or name.startswith(f"elp-{role}-"):  # SHIPPERS > 1: elp-shipper-0
                return proc
        except psutil.Error:
            continue
    return None


def profile(role: str, bench_args: list[str], seconds: float, delay: float, rate: int, idle: bool,
            find_timeout: float = 300.0) -> Shares:
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        sys.exit("py-spy is not installed: .venv/bin/pip install py-spy (it is in the dev extras)")
    bench = subprocess.Popen([sys.executable, "-m", f"bench.{bench_args[0]}", *bench_args[1:]], cwd=ROOT)
    try:
        target = _wait_for(psutil.Process(bench.pid), role, bench, find_timeout)
        time.sleep(delay)  # not a sync: the warm-up the profile skips
        with tempfile.NamedTemporaryFile("r", suffix=".txt") as out:
            cmd = [py_spy, "record", "--pid", str(target.pid), "--duration", str(max(1, round(seconds))),
                   "--rate", str(rate), "--format", "raw", "--output", out.name, "--nonblocking"]
            if idle:
                cmd.append("--idle")
            spy = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
            if spy.returncode != 0 and not Path(out.name).stat().st_size:
                raise SpyFailed(f"py-spy on the {role} (pid {target.pid}) failed: {spy.stderr.strip()[-400:]}")
            shares = parse_collapsed(Path(out.name).read_text())
    except SpyFailed:
        bench.wait()  # the benchmark's own figures still print
        raise
    except BaseException:
        bench.terminate()
        raise
    code = bench.wait()
    if code != 0:
        sys.exit(f"the benchmark bench.{bench_args[0]} exited {code}")
    return shares


def _wait_for(root: psutil.Process, role: str, bench: subprocess.Popen[bytes], timeout: float) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = find_role(root, role)
        if found is not None:
            return found
        if bench.poll() is not None:
            sys.exit(f"the benchmark ended before an elp-{role} process appeared")
        time.sleep(0.05)  # not a sync: polling the process tree, with a deadline
    sys.exit(f"no elp-{role} process in the benchmark's tree within {timeout:.0f} s")


def print_shares(role: str, shares: Shares, top: int) -> None:
    if not shares.samples:
        print(f"profile of the {role}: no samples (was it idle? try --idle)")
        return
    print(f"\n== profile of the {role}: {shares.samples} samples")
    # Frames on every sampled stack (the fork from the supervisor down to the child's main loop) say nothing.
    common = {name for name, count in shares.inclusive.items() if count == shares.samples}
    inclusive = Counter({name: count for name, count in shares.inclusive.items() if name not in common})
    print(f"  ({len(common)} frames on every stack left out of the inclusive shares)")
    for title, counter in (("inclusive", inclusive), ("self", shares.self_)):
        print(f"  {title} share (top {top}):")
        for name, count in counter.most_common(top):
            print(f"    {100 * count / shares.samples:5.1f}%  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=ROLES, default="shipper")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to sample")
    parser.add_argument("--delay", type=float, default=3.0, help="seconds after the process appears, before sampling")
    parser.add_argument("--rate", type=int, default=200, help="samples per second")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--idle", action="store_true", help="also count samples of waiting threads")
    parser.add_argument("--smoke", action="store_true", help="the local store during bench.start_logging --smoke")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    bench_args = argv[split + 1:]
    if args.smoke:
        args.role, args.seconds, args.delay, args.idle = "localstore", 1.0, 0.0, True
        bench_args = ["start_logging", "--smoke"]
    if not bench_args:
        parser.error("name the benchmark to run after --, e.g. -- shipper_throughput --only-p3")
    try:
        shares = profile(args.role, bench_args, args.seconds, args.delay, args.rate, args.idle)
    except SpyFailed as exc:
        # The smoke run checks this tool and the benchmark it drives; a machine that forbids ptrace (a container
        # without CAP_SYS_PTRACE) cannot profile, which is said, not failed on.
        if not args.smoke:
            sys.exit(str(exc))
        print(f"no profile taken: {exc}")
        return
    print_shares(args.role, shares, args.top)


if __name__ == "__main__":
    main()
