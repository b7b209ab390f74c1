"""supervisor/spawn.py: a forked child's exit code tells a boot failure from a crash."""

from __future__ import annotations

import os
from collections.abc import Callable

from proto.messages import ExitCode
from supervisor.spawn import fork_child, run_child


class Process:
    def __init__(self, fail_at_boot: bool) -> None:
        self.booted = False
        self.fail_at_boot = fail_at_boot

    def run(self) -> ExitCode:
        if self.fail_at_boot:
            raise OSError(98, "Address already in use")
        self.booted = True
        raise RuntimeError("a bug in the main loop")


def exit_code_of(make: Callable[[], Process]) -> int:
    pid = fork_child("test", (), lambda: run_child("test", make, Process.run))
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_failure_before_the_main_loop_is_a_boot_failure() -> None:
    assert exit_code_of(lambda: Process(fail_at_boot=True)) == ExitCode.BOOT_FAILED


def test_a_failure_while_making_the_process_is_a_boot_failure() -> None:
    def make() -> Process:
        raise PermissionError(13, "Permission denied")

    assert exit_code_of(make) == ExitCode.BOOT_FAILED


def test_a_failure_in_the_main_loop_is_a_crash() -> None:
    assert exit_code_of(lambda: Process(fail_at_boot=False)) == ExitCode.CRASHED
