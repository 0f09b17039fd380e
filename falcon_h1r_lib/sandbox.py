"""Run model-written Python in contained child processes: the code verifier's only way to execute code.

Used by the code reward (RL) and code evaluation, thousands of calls, many in parallel; stdlib only. The
paper (§3.2) sends code to SandboxFusion in Docker; this is a local stand-in with the same contract. Each
child is `sys.executable -I -S -B sandbox_child.py` (isolated, stdlib only) with a minimal environment; it
contains itself before any candidate code runs (not through a `preexec_fn`: that would run Python between
fork and exec, unsafe with `run_many`'s threads).

Who decides a test passed (`run_tests`): not the candidate's process. The candidate runs in a *solution*
child; the tests run in a separate *grader* child (`sandbox_child.py`), where each name a test takes from
the solution is a stand-in that calls across a pipe pair. The solution side sees only the name and
arguments of each call; results come back as plain data (None, bool, int, float, complex, str, bytes, list,
tuple, dict, set) decoded into builtins, so `==`, `assert`, `exec` and everything else a test evaluates
are the grader's own and a candidate object with `__eq__` always True never reaches it (it fails as
NotPlainResult). Builtins win over solution names in the tests. Only the grader reports progress to this
process, over a descriptor the solution never holds, tagged with a nonce the solution never sees;
`passed` needs its end-of-tests record, so exiting, crashing, hanging or forging output never passes.
Limits: tests may pass the solution plain data and its own callables only (anything else: error_type
"UnsupportedTest", no verdict); a solution returning an object of its own class fails that test; in-place
changes to list / dict / set / bytearray arguments are copied back. Stdin/stdout tests (`run_python`) are
compared by the caller, here in the parent.

What is contained, by whom (every result lists what was in force in `SandboxResult.enforced`):
Always, by the kernel or by the parent (Linux):
  session_kill   own session and process group; SIGKILLed as a group at the wall-clock limit
  wall_clock     the parent's deadline (`timeout_s`), counted from spawn, for everything the run started
  rlimit_cpu     RLIMIT_CPU (whole seconds: the kernel's granularity), SIGXCPU then SIGKILL a second later
  rlimit_as      RLIMIT_AS = `memory_mb` of address space per child -> MemoryError in Python
  rlimit_fsize   RLIMIT_FSIZE = `file_size_mb` per written file (SIGXFSZ ignored, so writes fail with EFBIG)
  rlimit_core    no core files;  rlimit_nofile: 256 descriptors
  output_cap     stdout/stderr are pipes read by the parent into `max_output_bytes` each; more output kills
                 the run (status "killed", error_type "OutputLimitExceeded"), so an output bomb costs
                 the host neither memory nor disk
  separate_grader  (run_tests) the tests run in the grader child described above
Kernel-enforced when the parent runs as root (the case on our machines; probed per run, not assumed):
  netns          a fresh network namespace (no interface but a downed loopback): no network at all
  mountns, fs_view  a private mount namespace and a chroot into a fresh tmpfs holding only /usr and the
                 other system library dirs and the interpreter's prefix (read-only binds), /dev/null and
                 friends, and a working directory that is a fresh tmpfs of `file_size_mb`: host files
                 (datasets holding the hidden tests, other sandboxes' files, /proc) do not exist in there,
                 and nothing written reaches the host's disk
  uid_drop       each child drops to a fresh random uid (no groups): host files owned by root or users
                 are unwritable, other processes (the grader included) unsignalable, and RLIMIT_NPROC
                 counts only this child; the grader is also not dumpable (no ptrace, no /proc/<pid>/mem)
  rlimit_nproc   at most 8 tasks (threads included) for that uid: fork bombs stop at the kernel
                 (as root RLIMIT_NPROC is ignored by the kernel, hence the uid drop); after the run
                 every process of those uids is SIGKILLed, so setsid/daemonised escapees die too
  no_new_privs   PR_SET_NO_NEW_PRIVS: exec of a setuid binary gains nothing
Non-root fallback: netns via an unprivileged user namespace when the kernel allows it, and
RLIMIT_NPROC = 0 (no fork, no threads: enforced because the user is not root). No fs_view: the solution
can read world-readable host files, and it shares the uid of this process and of the grader (the grader
is still not dumpable, and test results still come only from the grader).

Best-effort only (solution child, entries "guard_*"): NOT a security boundary, any code that wants to can
undo it (e.g. `del sys.modules["ctypes"]`); it turns honest mistakes into clear errors.
  guard_process  os.fork/system/popen/exec*/spawn*/posix_spawn* removed; subprocess, multiprocessing,
                 _posixsubprocess, pty, ctypes import as ImportError
  guard_socket   socket, _socket, ssl import as ImportError
  guard_signal   os.kill/os.killpg refuse any target but the child itself
  guard_fs_write builtins.open/io.open/os.open in write modes and os.remove/rename/mkdir/... refuse
                 paths outside the working directory (`_io.FileIO` is not wrapped)
Not contained at all: CPU contention; without fs_view, reads of world-readable host files.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

__all__ = [
    "STATUSES",
    "FailedTest",
    "SandboxJob",
    "SandboxResult",
    "run_many",
    "run_python",
    "run_tests",
]

STATUSES = ("ok", "error", "timeout", "memory", "killed")
DEFAULT_MAX_OUTPUT_BYTES = 1 << 22  # 4 MiB per stream
DEFAULT_FILE_SIZE_MB = 16
MAX_TASKS = 8  # RLIMIT_NPROC under the dropped uid: the main thread plus a few worker threads
MAX_REPLY_BYTES = 1 << 24  # one value returned by the solution to the grader (16 MiB of tagged JSON)
_CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_child.py")
_GRACE_S = 0.5  # after the deciding child exits, how long the others get to exit (and flush) on their own
_CHUNK = 1 << 16
_MAX_RECORD_BYTES = 1 << 20  # the children write a few small JSON lines; more is noise
_MEMORY_HINTS = ("MemoryError", "Cannot allocate memory", "out of memory", "std::bad_alloc")
# Fresh uids come from [2^30, 2^31): far above any real account, and 2^30 values make a collision between
# concurrent sandboxes negligible. Drawn from `secrets`, not a seeded RNG: this is isolation, not science.
_UID_BASE, _UID_SPAN = 1 << 30, 1 << 30


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


@dataclass(frozen=True)
class SandboxJob:
    """One entry for `run_many`: `tests=None` runs the code as a script, otherwise as `run_tests`."""

    code: str
    timeout_s: float
    memory_mb: int
    tests: tuple[str, ...] | None = None
    stdin: str = ""
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    cpu_time_s: float | None = None
    file_size_mb: int = DEFAULT_FILE_SIZE_MB


def run_python(
    code: str,
    *,
    timeout_s: float,
    memory_mb: int,
    stdin: str = "",
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    cpu_time_s: float | None = None,
    file_size_mb: int = DEFAULT_FILE_SIZE_MB,
) -> SandboxResult:
    """Run `code` as a script (`__name__ == "__main__"`) with `stdin`; ok means exit status 0.

    `cpu_time_s=None` still sets RLIMIT_CPU, at `timeout_s + 1` rounded up, as a backstop.
    """
    return _run(code, None, timeout_s=timeout_s, memory_mb=memory_mb, stdin=stdin,
                max_output_bytes=max_output_bytes, cpu_time_s=cpu_time_s, file_size_mb=file_size_mb)


def run_tests(
    code: str,
    tests: Sequence[str],
    *,
    timeout_s: float,
    memory_mb: int,
    stdin: str = "",
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    cpu_time_s: float | None = None,
    file_size_mb: int = DEFAULT_FILE_SIZE_MB,
) -> SandboxResult:
    """Run `code` in a solution child, then each test (assert statements) in a grader child that calls it,
    stopping at the first failure (module docstring: why the candidate cannot reach the verdict).

    The code runs as module `solution`, not `__main__`, so a main-guarded stdin reader stays idle while its
    functions are tested. `passed` needs the grader's end-of-tests record, so exiting early never passes.
    """
    if isinstance(tests, str) or not all(isinstance(t, str) for t in tests):
        raise TypeError("run_tests: `tests` must be a list of str (one test per entry)")
    return _run(code, list(tests), timeout_s=timeout_s, memory_mb=memory_mb, stdin=stdin,
                max_output_bytes=max_output_bytes, cpu_time_s=cpu_time_s, file_size_mb=file_size_mb)


def run_many(jobs: Sequence[SandboxJob], max_workers: int) -> list[SandboxResult]:
    """Run jobs concurrently (a thread per running child); results come back in the order of `jobs`."""
    if max_workers < 1:
        raise ValueError(f"run_many: max_workers must be >= 1, got {max_workers}")
    for i, job in enumerate(jobs):
        if not isinstance(job, SandboxJob):
            raise TypeError(f"run_many: jobs[{i}] is {type(job).__name__}, expected SandboxJob")

    def one(job: SandboxJob) -> SandboxResult:
        return _run(job.code, None if job.tests is None else list(job.tests), timeout_s=job.timeout_s,
                    memory_mb=job.memory_mb, stdin=job.stdin, max_output_bytes=job.max_output_bytes,
                    cpu_time_s=job.cpu_time_s, file_size_mb=job.file_size_mb)

    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sandbox") as pool:
        return list(pool.map(one, jobs))


def _validate(code, timeout_s, memory_mb, stdin, max_output_bytes, cpu_time_s, file_size_mb) -> None:
    if not isinstance(code, str):
        raise TypeError(f"sandbox: `code` must be str, got {type(code).__name__}")
    if not isinstance(stdin, str):
        raise TypeError(f"sandbox: `stdin` must be str, got {type(stdin).__name__}")
    if not timeout_s > 0:
        raise ValueError(f"sandbox: `timeout_s` must be > 0, got {timeout_s}")
    if not (isinstance(memory_mb, int) and memory_mb >= 32):
        raise ValueError(f"sandbox: `memory_mb` must be an int >= 32 (the interpreter needs ~20 MB), got {memory_mb}")
    if not (isinstance(max_output_bytes, int) and max_output_bytes >= 0):
        raise ValueError(f"sandbox: `max_output_bytes` must be an int >= 0, got {max_output_bytes}")
    if cpu_time_s is not None and not cpu_time_s > 0:
        raise ValueError(f"sandbox: `cpu_time_s` must be > 0 or None, got {cpu_time_s}")
    if not (isinstance(file_size_mb, int) and file_size_mb >= 1):
        raise ValueError(f"sandbox: `file_size_mb` must be an int >= 1, got {file_size_mb}")


@dataclass(eq=False)
class _Child:
    """One spawned child (solution or grader) and what the parent read from it."""

    role: str
    proc: subprocess.Popen
    uid: int | None
    nonce: str
    result_r: int
    out: bytearray = field(default_factory=bytearray)
    err: bytearray = field(default_factory=bytearray)
    rec: bytearray = field(default_factory=bytearray)
    over: dict = field(default_factory=lambda: {"stdout": False, "stderr": False})
    returncode: int | None = None
    cpu: float = 0.0

    def close(self) -> None:
        os.close(self.result_r)
        self.proc.stdout.close()
        self.proc.stderr.close()

    def records(self) -> list[dict]:
        return [r for r in _parse_records(bytes(self.rec)) if r.get("nonce") == self.nonce]  # forged lines lack it


def _run(code, tests, *, timeout_s, memory_mb, stdin, max_output_bytes, cpu_time_s, file_size_mb):
    _validate(code, timeout_s, memory_mb, stdin, max_output_bytes, cpu_time_s, file_size_mb)
    cpu_limit = int(-(-(cpu_time_s if cpu_time_s is not None else timeout_s + 1) // 1))  # ceil, whole s
    limits = {"memory_mb": memory_mb, "cpu_limit_s": cpu_limit, "file_size_mb": file_size_mb, "max_tasks": MAX_TASKS}
    children: list[_Child] = []
    with contextlib.ExitStack() as stack:
        start = time.monotonic()
        pipe_ends: list[int] = []
        try:
            if tests is None:
                children.append(_spawn(stack, "solution", {"mode": "script", "code": code}, limits, stdin))
            else:  # calls: grader -> solution; replies: solution -> grader
                calls_r, calls_w = os.pipe()
                pipe_ends += [calls_r, calls_w]
                replies_r, replies_w = os.pipe()
                pipe_ends += [replies_r, replies_w]
                children.append(_spawn(stack, "solution", {"mode": "serve", "code": code, "calls_fd": calls_r,
                                                           "replies_fd": replies_w}, limits, stdin, (calls_r, replies_w)))
                children.append(_spawn(stack, "grader", {"tests": tests, "calls_fd": calls_w, "replies_fd": replies_r,
                                                         "max_reply_bytes": MAX_REPLY_BYTES}, limits, "", (calls_w, replies_r)))
        except BaseException:
            for child in children:  # a half-started run: end what did start
                _kill_group(child.proc.pid)
                child.proc.wait()
            raise
        finally:
            for fd in pipe_ends:  # the children hold their own copies
                os.close(fd)
        reason = _watch(children, children[-1], start + timeout_s, max_output_bytes)
        wall = time.monotonic() - start
    return _classify(children, tests, reason, wall, cpu_limit)


def _spawn(stack, role, job, limits, stdin, pass_fds=()) -> _Child:
    """Start one child in a fresh temporary directory (its working dir and private-root mountpoint)."""
    base = os.path.realpath(stack.enter_context(tempfile.TemporaryDirectory(prefix="falcon_sandbox_")))
    workdir, root_dir = os.path.join(base, "work"), os.path.join(base, "root")
    os.mkdir(workdir, 0o700)
    os.mkdir(root_dir, 0o700)
    os.chmod(base, 0o711)  # without a private root the dropped uid must reach its working dir
    uid = _UID_BASE + secrets.randbelow(_UID_SPAN) if os.geteuid() == 0 else None
    if uid is not None:
        os.chown(workdir, uid, uid)
    nonce = secrets.token_hex(16)
    result_r, result_w = os.pipe()
    job_fd = _memory_file(json.dumps({**job, **limits, "nonce": nonce, "result_fd": result_w, "uid": uid,
                                      "workdir": workdir, "root_dir": root_dir}))
    stdin_file = _memory_file(stdin) if stdin else subprocess.DEVNULL
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir}
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", _CHILD, role, str(job_fd)],
            stdin=stdin_file, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=(result_w, job_fd, *pass_fds), cwd=workdir, env=env, start_new_session=True, close_fds=True,
        )
    except BaseException:
        os.close(result_r)
        raise
    finally:
        os.close(result_w)
        os.close(job_fd)
        if stdin_file is not subprocess.DEVNULL:
            os.close(stdin_file)
    child = _Child(role, proc, uid, nonce, result_r)
    stack.callback(child.close)
    return child


def _memory_file(text: str) -> int:
    """A memory file holding `text`, rewound: no disk, nothing on a path another process could open."""
    fd = os.memfd_create("sandbox")  # close-on-exec: only a passed or dup'ed copy reaches the child
    view = memoryview(text.encode("utf-8"))
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _kill_group(pid: int) -> None:
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            target()
        except ProcessLookupError:
            pass


def _exited(child: _Child) -> bool:  # exited but not yet reaped: its pid (and process group id) stay ours
    return os.waitid(os.P_PID, child.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _watch(children: list[_Child], primary: _Child, deadline: float, cap: int) -> str | None:
    """Read every child's pipes (bounded) until `primary` exits or a limit hits; give the others a short
    grace to exit; kill every group and uid; reap. Returns why the run was cut: "timeout", "output" or None."""
    sel = selectors.DefaultSelector()
    for c in children:
        for name, fd, buf in (("stdout", c.proc.stdout.fileno(), c.out), ("stderr", c.proc.stderr.fileno(), c.err),
                              ("result", c.result_r, c.rec)):
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ, (c, name, buf))
    pidfds: dict[int, _Child] = {}
    for c in children:
        try:
            pidfd = os.pidfd_open(c.proc.pid)
        except (AttributeError, OSError):  # pre-5.3 kernels: poll instead
            continue
        pidfds[pidfd] = c
        sel.register(pidfd, selectors.EVENT_READ, None)
    poll = None if len(pidfds) == len(children) else 0.05
    over = False

    def read_ready(timeout):
        nonlocal over
        for key, _ in sel.select(timeout):
            if key.data is None:
                continue
            c, name, buf = key.data
            try:
                chunk = os.read(key.fd, _CHUNK)
            except BlockingIOError:
                continue
            if not chunk:
                sel.unregister(key.fd)
                continue
            limit = _MAX_RECORD_BYTES if name == "result" else cap
            room = limit - len(buf)
            buf += chunk[:max(room, 0)]
            if len(chunk) > room and name != "result":
                c.over[name] = over = True

    def forget_exited():  # an exited child's pidfd stays readable: stop selecting on it
        for pidfd, c in list(pidfds.items()):
            if _exited(c):
                sel.unregister(pidfd)
                os.close(pidfd)
                del pidfds[pidfd]

    reason = None
    while not _exited(primary):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            reason = "timeout"
            break
        read_ready(min(remaining, poll) if poll else remaining)
        forget_exited()
        if over:
            reason = "output"
            break
    grace_end = min(deadline, time.monotonic() + _GRACE_S)
    while reason is None and not all(_exited(c) for c in children) and time.monotonic() < grace_end:
        read_ready(min(0.02, max(grace_end - time.monotonic(), 0)))
        forget_exited()
        if over:
            reason = "output"
    for c in children:  # also after a clean exit: background children of its group or uid must not outlive it
        _kill_group(c.proc.pid)
    for c in children:
        _, status, rusage = os.wait4(c.proc.pid, 0)
        c.returncode = c.proc.returncode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        c.cpu = rusage.ru_utime + rusage.ru_stime
    for c in children:
        if c.uid is not None:  # after reaping: the uid is ours alone, so no pid-reuse race here
            _kill_uid(c.uid)
    for pidfd in pidfds:
        sel.unregister(pidfd)
        os.close(pidfd)
    drain_deadline = time.monotonic() + 2.0
    while len(sel.get_map()) and time.monotonic() < drain_deadline:  # every writer is dead: EOF is near
        read_ready(0.1)
        if over:
            reason = reason or "output"
            break
    sel.close()
    return reason


def _kill_uid(uid: int) -> None:
    """SIGKILL every process whose real uid is `uid` (fresh per run, so only the child's own processes)."""
    for _ in range(50):
        found = False
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(os.path.join(entry.path, "status"), "rb") as f:
                    fields = dict(line.split(b":", 1) for line in f if b":" in line)
                state, uids = fields[b"State"].split(), fields[b"Uid"].split()
            except (OSError, KeyError, ValueError):
                continue
            if int(uids[0]) == uid and state[0] != b"Z":  # zombies are dead already
                found = True
                try:
                    os.kill(int(entry.name), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if not found:
            return
        time.sleep(0.002)


def _parse_records(raw: bytes) -> list[dict]:
    records = []
    for line in raw.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records



def _outcome(c: _Child, cpu_limit: int) -> tuple[str, str | None, str | None]:
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


def _classify(children: list[_Child], tests, reason: str | None, wall: float, cpu_limit: int) -> SandboxResult:
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


def _test_outcome(solution: _Child, grader: _Child, records: list[dict], cpu_limit: int):
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
