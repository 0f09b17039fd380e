"""What one sandboxed run did (`SandboxResult`) and how it is read off the children it left behind.

Separate from the supervisor because this is the policy (which exit status, record or signal means what),
the supervisor only the mechanism; a pass needs the grader's own end-of-tests record.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .supervisor import Child

STATUSES = ("ok", "error", "timeout", "memory", "killed")
_MEMORY_HINTS = ("MemoryError", "Cannot allocate memory", "out of memory", "std::bad_alloc")


@dataclass(frozen=True)
class FailedTest:
    """The first test of `run_tests` that did not pass (or was running when the limit hit)."""

    index: int
    text: str
    error_type: str | None
    message: str | None


@dataclass(frozen=True)
class SandboxResult:
    """What one sandboxed run did; `status` is one of STATUSES, `passed` is what a reward should read."""

    status: str
    returncode: int | None  # negative: killed by that signal
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    wall_time_s: float
    cpu_time_s: float  # user + system of the child and its reaped descendants
    error_type: str | None = None  # exception class name, or "Timeout" / "OutputLimitExceeded" / ...
    error_message: str | None = None
    passed: bool = False  # run_python: exit 0; run_tests: every test ran and passed
    tests_passed: int | None = None  # run_tests only: how many tests passed before the first failure
    failed_test: FailedTest | None = None
    enforced: tuple[str, ...] = ()


def _outcome(c: Child, cpu_limit: int) -> tuple[str, str | None, str | None]:
    """How one child ended by itself: (status, error_type, error_message) from its exit status, records, stderr."""
    records = c.records()
    setup = next((r for r in records if r.get("event") == "setup"), None)
    exc = next((r for r in records if r.get("event") == "exception"), None)
    stderr = c.err.decode("utf-8", errors="replace")
    err_type, err_msg = (exc.get("type"), exc.get("message")) if exc else _parse_stderr(stderr)
    memory_hint = err_type == "MemoryError" or any(h in stderr for h in _MEMORY_HINTS)
    rc = c.returncode
    if rc is not None and rc < 0:
        sig = -rc
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and c.cpu >= cpu_limit - 0.05):
            return "timeout", "Timeout", "CPU-time limit reached"
        if memory_hint:
            return "memory", "MemoryError", err_msg
        if sig == signal.SIGXFSZ:
            return "error", "FileSizeLimitExceeded", "a written file exceeded file_size_mb"
        return "killed", err_type or signal.Signals(sig).name, err_msg
    if memory_hint and rc != 0:
        return "memory", "MemoryError", err_msg
    if rc == 0:
        return "ok", None, None
    if setup is None:  # the child itself failed before any candidate code or test ran
        return "error", "SandboxSetupError", stderr.strip()[-2000:] or f"exit status {rc}"
    return "error", err_type, err_msg


def classify(children: list[Child], tests, reason: str | None, wall: float, cpu_limit: int) -> SandboxResult:
    """The run's result from its reaped children (solution first) and why the supervisor cut it, if it did."""
    solution = children[0]
    setup = next((r for r in solution.records() if r.get("event") == "setup"), None)
    enforced = ("session_kill", "wall_clock", "output_cap") + tuple(setup.get("enforced", ()) if setup else ())
    started: list[int] = []
    if reason == "timeout":
        status, err_type, err_msg = "timeout", "Timeout", "wall-clock limit reached"
    elif reason == "output":
        status, err_type, err_msg = "killed", "OutputLimitExceeded", "output exceeded max_output_bytes"
    elif tests is None:
        status, err_type, err_msg = _outcome(solution, cpu_limit)
    if tests is not None:
        grader = children[1]
        enforced += ("separate_grader",)
        records = grader.records()
        started = [r["index"] for r in records if r.get("event") == "test" and isinstance(r.get("index"), int)]
        if reason is None:
            status, err_type, err_msg = _test_outcome(solution, grader, records, cpu_limit)
    passed = status == "ok"
    tests_passed, failed = None, None
    if tests is not None:
        tests_passed = len(tests) if passed else (max(started) if started else 0)
        if not passed and started:
            i = max(started)
            failed = FailedTest(index=i, text=tests[i], error_type=err_type, message=err_msg)
    stdout = b"".join(c.out for c in children).decode("utf-8", errors="replace")
    stderr = b"".join(c.err for c in children).decode("utf-8", errors="replace")
    return SandboxResult(
        status=status, returncode=solution.returncode, stdout=stdout, stderr=stderr,
        stdout_truncated=any(c.over["stdout"] for c in children), stderr_truncated=any(c.over["stderr"] for c in children),
        wall_time_s=wall, cpu_time_s=sum(c.cpu for c in children), error_type=err_type, error_message=err_msg,
        passed=passed, tests_passed=tests_passed, failed_test=failed, enforced=enforced,
    )


def _test_outcome(solution: Child, grader: Child, records: list[dict], cpu_limit: int):
    """run_tests: ok only on the grader's own end-of-tests record; a failure is the grader's, or, when the
    grader lost the solution process, whatever ended that process."""
    if any(r.get("event") == "done" for r in records) and grader.returncode == 0:
        return "ok", None, None
    exc = next((r for r in records if r.get("event") == "exception"), None)
    if exc is None:  # the grader itself died (limits) or never started
        status, err_type, err_msg = _outcome(grader, cpu_limit)
        return ("error", "SandboxSetupError", f"grader exit status {grader.returncode}") if status == "ok" else (
            status, err_type, err_msg)
    if exc.get("type") == "SolutionGone":
        status, err_type, err_msg = _outcome(solution, cpu_limit)
        if status == "ok" or (status == "error" and err_type is None):  # exit(), os._exit(), exit status != 0
            return "error", "SystemExit", f"the code exited (status {solution.returncode}) before every test had run"
        return status, err_type, err_msg
    err_type, err_msg = exc.get("type"), exc.get("message")
    return ("memory" if err_type == "MemoryError" else "error"), err_type, err_msg


def _parse_stderr(stderr: str) -> tuple[str | None, str | None]:
    """Exception type and message from the last line of a Python traceback, when there is one."""
    if "Traceback (most recent call last)" not in stderr and "Error" not in stderr:
        return None, None
    for line in reversed(stderr.strip().splitlines()):
        head, sep, message = line.partition(": ")
        name = head.strip().rsplit(".", 1)[-1]
        if name.isidentifier() and (name.endswith(("Error", "Exception", "Exit", "Interrupt")) or name == "Warning"):
            return name, (message if sep else "")
    return None, None
