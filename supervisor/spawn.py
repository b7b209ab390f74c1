"""Forking a child from the warmed supervisor, and what the child must do first."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import resource
import signal
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

from proto.messages import ExitCode

log = logging.getLogger("elp.supervisor")

P = TypeVar("P", bound="Bootable")

_RESET_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE)


def fork_child(role: str, keep_fds: Iterable[int], target: Callable[[], ExitCode]) -> int:
    """Fork; in the child run ``target`` and leave with its exit code. Returns the child's pid.

    The child never returns into the supervisor's event loop: it shares the loop's epoll instance, so touching
    it would change the parent's registrations. It closes every inherited descriptor it does not own (the
    plugin socket, dockerd's connections, other containers' FIFOs), makes its own loop and ZeroMQ context, and
    always ends through ``os._exit``.
    """
    keep = sorted({0, 1, 2, *keep_fds})
    # The child keeps everything inherited frozen, so its cyclic GC never writes to (and so copies) the shared
    # pages of the supervisor's modules; the supervisor unfreezes at once and collects as usual.
    gc.freeze()
    pid = os.fork()
    if pid:
        gc.unfreeze()
        return pid
    code = ExitCode.CRASHED
    try:
        _become_child(role, keep)
        code = target()
    except SystemExit as exc:
        code = ExitCode(exc.code) if isinstance(exc.code, int) and exc.code in {0, 1, 3} else ExitCode.CRASHED
    except BaseException:
        log.exception("%s crashed", role)
    finally:
        logging.shutdown()
        os._exit(int(code))


class Bootable(Protocol):
    booted: bool  # set by the process when its main loop begins


def run_child(role: str, make: Callable[[], P], run: Callable[[P], ExitCode]) -> ExitCode:
    """In the child: make the process and run it. An exception before its main loop began (a data dir it cannot
    write, an endpoint it cannot bind, no descriptor left) ends it with ExitCode.BOOT_FAILED, logged with its cause,
    so the supervisor can tell a child that cannot start from one that crashed while running (gunicorn's
    WORKER_BOOT_ERROR); an exception later is a crash, as before."""
    process: P | None = None
    try:
        process = make()
        return run(process)
    except Exception:
        if process is not None and process.booted:
            raise
        log.exception("%s could not start", role)
        return ExitCode.BOOT_FAILED


def _become_child(role: str, keep: list[int]) -> None:
    _name_process(role)
    signal.set_wakeup_fd(-1)
    for sig in _RESET_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    asyncio.events._set_running_loop(None)
    asyncio.set_event_loop(None)
    _close_fds_except(keep)
    gc.enable()
    _retag_logging(role)


def _close_fds_except(keep: list[int]) -> None:
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    limit = limit if limit != resource.RLIM_INFINITY else 1 << 20
    low = 0
    for fd in keep:
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, limit)


def _retag_logging(role: str) -> None:
    for handler in logging.getLogger().handlers:
        fmt = handler.formatter
        if fmt is not None and fmt._fmt is not None:
            handler.setFormatter(logging.Formatter(fmt._fmt.replace("[supervisor]", f"[{role}]")))


def _name_process(role: str) -> None:
    """Name the child ``elp-<role>`` in /proc/<pid>/comm, so ``ps``, ``top`` and a profiler tell the forked
    processes apart (they all share the supervisor's command line). Threads started later (ZeroMQ's I/O thread)
    inherit the name. Linux keeps at most 15 bytes of it."""
    try:
        with open("/proc/self/comm", "w") as comm:
            comm.write(f"elp-{role}"[:15])
    except OSError as exc:  # not Linux, or /proc not mounted: only the name is lost
        log.debug("could not name the %s process: %s", role, exc)
