"""Run model-written Python in a contained child process: the code verifier's only way to execute code.

Used by the code reward (RL) and code evaluation, thousands of calls, many in parallel; stdlib only. The
paper (§3.2) sends code to SandboxFusion in Docker; this is a local stand-in with the same contract. The
child is `sys.executable -I -S -B` (isolated, stdlib only, no site-packages) in a fresh temporary directory,
with a minimal environment. Limits are set by the child's own first code (a harness run before the
candidate), not by a `preexec_fn`: that would run Python between fork and exec, unsafe with `run_many`'s
threads. What is contained, by whom (every result lists what was in force in `SandboxResult.enforced`):

Always, by the kernel or by the parent (Linux):
  session_kill   own session and process group; SIGKILLed as a group at the wall-clock limit
  wall_clock     the parent's deadline (`timeout_s`), counted from spawn
  rlimit_cpu     RLIMIT_CPU (whole seconds: the kernel's granularity), SIGXCPU then SIGKILL a second later
  rlimit_as      RLIMIT_AS = `memory_mb` of address space -> MemoryError in Python
  rlimit_fsize   RLIMIT_FSIZE = `file_size_mb` per written file (SIGXFSZ ignored, so writes fail with EFBIG)
  rlimit_core    no core files;  rlimit_nofile: 256 descriptors
  output_cap     stdout/stderr are pipes read by the parent into `max_output_bytes` each; more output kills
                 the child (status "killed", error_type "OutputLimitExceeded"), so an output bomb costs
                 the host neither memory nor disk
Kernel-enforced when the parent runs as root (the case on our machines; probed per run, not assumed):
  netns          a fresh network namespace (no interface but a downed loopback): no network at all
  mountns        a private mount namespace: the working directory is a fresh tmpfs of `file_size_mb`,
                 and /tmp, /var/tmp, /dev/shm, /run/lock are covered by empty root-owned tmpfs, so
                 nothing the code writes reaches the host's disk, and it vanishes with the child; a
                 closed directory above the interpreter (e.g. /root for pyenv) is covered likewise,
                 with only the interpreter's prefix bound back in
  uid_drop       the child drops to a fresh random uid (no groups): host files owned by root or users
                 are unwritable, other processes unsignalable, and RLIMIT_NPROC counts only this child
  rlimit_nproc   at most 8 tasks (threads included) for that uid: fork bombs stop at the kernel
                 (as root RLIMIT_NPROC is ignored by the kernel, hence the uid drop); after the child
                 exits every process of that uid is SIGKILLed, so setsid/daemonised escapees die too
  no_new_privs   PR_SET_NO_NEW_PRIVS: exec of a setuid binary gains nothing
Non-root fallback: netns via an unprivileged user namespace when the kernel allows it, and
RLIMIT_NPROC = 0 (no fork, no threads: enforced because the user is not root).

Best-effort only (a prelude run before the code, entries "guard_*"): NOT a security boundary, any code
that wants to can undo it (e.g. `del sys.modules["ctypes"]`); it turns honest mistakes into clear errors.
  guard_process  os.fork/system/popen/exec*/spawn*/posix_spawn* removed; subprocess, multiprocessing,
                 _posixsubprocess, pty, ctypes import as ImportError
  guard_socket   socket, _socket, ssl import as ImportError
  guard_signal   os.kill/os.killpg refuse any target but the child itself
  guard_fs_write builtins.open/io.open/os.open in write modes and os.remove/rename/mkdir/... refuse
                 paths outside the working directory (`_io.FileIO` is not wrapped)
Not contained at all: reads of world-readable host files, /proc listings of other processes, CPU
contention. A candidate that deliberately subverts `run_tests`' harness from inside (walking frames to
forge its result record) can fake a pass; exiting early (`sys.exit(0)`, `os._exit(0)`) cannot.
"""

from __future__ import annotations

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
from dataclasses import dataclass

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
_CHUNK = 1 << 16
_MAX_RECORD_BYTES = 1 << 20  # the harness writes a few small JSON lines; more is noise
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
    """Run `code` then each test (assert statements) in one child, stopping at the first failure.

    The code runs as module `solution`, not `__main__`, so a main-guarded stdin reader stays idle while its
    functions are tested. `passed` needs the harness's end-of-tests record, so exiting early never passes.
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


def _run(code, tests, *, timeout_s, memory_mb, stdin, max_output_bytes, cpu_time_s, file_size_mb):
    _validate(code, timeout_s, memory_mb, stdin, max_output_bytes, cpu_time_s, file_size_mb)
    cpu_limit = int(-(-(cpu_time_s if cpu_time_s is not None else timeout_s + 1) // 1))  # ceil, whole s
    nonce = secrets.token_hex(16)
    uid = _UID_BASE + secrets.randbelow(_UID_SPAN) if os.geteuid() == 0 else None
    with tempfile.TemporaryDirectory(prefix="falcon_sandbox_") as workdir:
        workdir = os.path.realpath(workdir)
        if uid is not None:
            os.chown(workdir, uid, uid)  # writable by the dropped uid even if the private tmpfs fails
        result_r, result_w = os.pipe()
        job = {
            "nonce": nonce, "result_fd": result_w, "uid": uid, "code": code, "tests": tests,
            "memory_mb": memory_mb, "cpu_limit_s": cpu_limit, "file_size_mb": file_size_mb,
            "max_tasks": MAX_TASKS,
        }
        harness_path, job_path = os.path.join(workdir, "_harness.py"), os.path.join(workdir, "_job.json")
        with open(harness_path, "w", encoding="utf-8") as f:
            f.write(_HARNESS)
        with open(job_path, "w", encoding="utf-8") as f:
            json.dump(job, f)
        stdin_file = _stdin_file(stdin) if stdin else subprocess.DEVNULL
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": workdir,
               "TMPDIR": workdir}
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-B", harness_path, job_path],
                stdin=stdin_file, stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(result_w,),
                cwd=workdir, env=env, start_new_session=True, close_fds=True,
            )
        except BaseException:
            os.close(result_r)
            raise
        finally:
            os.close(result_w)
            if stdin_file is not subprocess.DEVNULL:
                os.close(stdin_file)
        try:
            watched = _watch(proc, result_r, start + timeout_s, max_output_bytes, uid)
        finally:
            os.close(result_r)
            proc.stdout.close()
            proc.stderr.close()
        wall = time.monotonic() - start
    return _classify(watched, nonce, tests, wall, cpu_limit)


def _stdin_file(text: str) -> int:
    """A memory file holding `text`, rewound: no pipe to feed, no disk, no size-dependent deadlock."""
    fd = os.memfd_create("sandbox_stdin")  # close-on-exec: only the dup on fd 0 reaches the child
    data = text.encode("utf-8")
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _watch(proc, result_r, deadline, cap, uid) -> dict:
    """Read the child's pipes (bounded) until it exits or a limit hits; kill its group and uid; reap it."""
    out, err, rec = bytearray(), bytearray(), bytearray()
    over = {"stdout": False, "stderr": False}
    reason = None  # why we killed it: "timeout" or "output"
    sel = selectors.DefaultSelector()
    streams = {proc.stdout.fileno(): ("stdout", out), proc.stderr.fileno(): ("stderr", err),
               result_r: ("result", rec)}
    for fd in streams:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    try:
        pidfd = os.pidfd_open(proc.pid)
        sel.register(pidfd, selectors.EVENT_READ)
    except (AttributeError, OSError):  # pre-5.3 kernels: poll instead
        pidfd = None

    def kill_all():
        for target in (lambda: os.killpg(proc.pid, signal.SIGKILL), lambda: os.kill(proc.pid, signal.SIGKILL)):
            try:
                target()
            except ProcessLookupError:
                pass

    def read_ready(timeout):
        for key, _ in sel.select(timeout):
            fd = key.fd
            if fd == pidfd:
                continue
            name, buf = streams[fd]
            try:
                chunk = os.read(fd, _CHUNK)
            except BlockingIOError:
                continue
            if not chunk:
                sel.unregister(fd)
                continue
            limit = _MAX_RECORD_BYTES if name == "result" else cap
            room = limit - len(buf)
            buf += chunk[:max(room, 0)]
            if len(chunk) > room and name != "result":
                over[name] = True

    def exited() -> bool:  # exited but not yet reaped: its pid (and process group id) stay ours
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None

    while not exited():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            reason = "timeout"
            break
        read_ready(min(remaining, 0.05) if pidfd is None else remaining)
        if over["stdout"] or over["stderr"]:
            reason = "output"
            break
    kill_all()  # also for a clean exit: background children of its group or uid must not outlive it
    _, status, rusage = os.wait4(proc.pid, 0)
    proc.returncode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    if uid is not None:  # after reaping: the uid is ours alone, so no pid-reuse race here
        _kill_uid(uid)
    if pidfd is not None:
        sel.unregister(pidfd)
        os.close(pidfd)
    drain_deadline = time.monotonic() + 2.0
    while len(sel.get_map()) and time.monotonic() < drain_deadline:  # every writer is dead: EOF is near
        read_ready(0.1)
        if over["stdout"] or over["stderr"]:
            reason = reason or "output"
            break
    sel.close()
    return {"returncode": proc.returncode, "stdout": bytes(out), "stderr": bytes(err), "over": over,
            "records": _parse_records(bytes(rec)), "reason": reason,
            "cpu": rusage.ru_utime + rusage.ru_stime}


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


def _classify(w: dict, nonce: str, tests, wall: float, cpu_limit: int) -> SandboxResult:
    records = [r for r in w["records"] if r.get("nonce") == nonce]  # forged lines lack the nonce
    setup = next((r for r in records if r.get("event") == "setup"), None)
    exc = next((r for r in records if r.get("event") == "exception"), None)
    started = [r["index"] for r in records if r.get("event") == "test" and isinstance(r.get("index"), int)]
    done = any(r.get("event") == "done" for r in records)
    rc, stderr_b = w["returncode"], w["stderr"]
    stdout = w["stdout"].decode("utf-8", errors="replace")
    stderr = stderr_b.decode("utf-8", errors="replace")
    enforced = ("session_kill", "wall_clock", "output_cap") + tuple(setup.get("enforced", ()) if setup else ())
    err_type, err_msg = (exc.get("type"), exc.get("message")) if exc else _parse_stderr(stderr)
    memory_hint = err_type == "MemoryError" or any(h in stderr for h in _MEMORY_HINTS)

    if w["reason"] == "timeout":
        status, err_type, err_msg = "timeout", "Timeout", "wall-clock limit reached"
    elif w["reason"] == "output":
        status, err_type, err_msg = "killed", "OutputLimitExceeded", "output exceeded max_output_bytes"
    elif rc is not None and rc < 0:
        sig = -rc
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and w["cpu"] >= cpu_limit - 0.05):
            status, err_type, err_msg = "timeout", "Timeout", "CPU-time limit reached"
        elif memory_hint:
            status, err_type = "memory", "MemoryError"
        elif sig == signal.SIGXFSZ:
            status, err_type, err_msg = "error", "FileSizeLimitExceeded", "a written file exceeded file_size_mb"
        else:
            status, err_type = "killed", err_type or signal.Signals(sig).name
    elif memory_hint and rc != 0:
        status, err_type = "memory", "MemoryError"
    elif rc == 0 and (tests is None or done):
        status = "ok"
    else:
        status = "error"
        if setup is None:  # the harness itself failed before the candidate ran
            err_type, err_msg = "SandboxSetupError", stderr.strip()[-2000:] or f"exit status {rc}"
        elif tests is not None and rc == 0:
            err_type, err_msg = "SystemExit", "the code exited before every test had run"
    passed = status == "ok"

    tests_passed, failed = None, None
    if tests is not None:
        tests_passed = len(tests) if passed else (max(started) if started else 0)
        if not passed and started:
            i = max(started)
            failed = FailedTest(index=i, text=tests[i], error_type=err_type, message=err_msg)
    return SandboxResult(
        status=status, returncode=rc, stdout=stdout, stderr=stderr,
        stdout_truncated=w["over"]["stdout"], stderr_truncated=w["over"]["stderr"],
        wall_time_s=wall, cpu_time_s=w["cpu"], error_type=err_type, error_message=err_msg,
        passed=passed, tests_passed=tests_passed, failed_test=failed, enforced=enforced,
    )


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


# The child's first code, run as root when the parent is root: namespaces, limits, uid drop, guards,
# then the candidate. It only reports to the parent through `result_fd`, as nonce-tagged JSON lines.
_HARNESS = r'''
import builtins, ctypes, io, json, linecache, os, posix, resource, signal, sys, traceback, types

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x1000, 0x4000, 0x40000
PR_SET_NO_NEW_PRIVS = 38
HIDDEN_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")

with open(sys.argv[1], encoding="utf-8") as f:
    JOB = json.load(f)
os.unlink(sys.argv[1])
os.unlink(sys.argv[0])
NONCE, RESULT_FD, UID = JOB["nonce"], JOB["result_fd"], JOB["uid"]
WORKDIR = os.getcwd()
libc = ctypes.CDLL(None, use_errno=True)
enforced = []


def report(**rec):
    rec["nonce"] = NONCE
    try:
        os.write(RESULT_FD, (json.dumps(rec) + "\n").encode())
    except OSError:
        pass


def check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source, target, fstype, flags, data):
    enc = lambda s: None if s is None else s.encode()
    check(libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def private_filesystem():
    """Working dir -> fresh tmpfs owned by UID; shared world-writable dirs -> empty root-owned tmpfs."""
    mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    opts = f"size={JOB['file_size_mb']}m,mode=0700,uid={UID},gid={UID}"
    mount("sandbox", WORKDIR, "tmpfs", MS_NOSUID | MS_NODEV, opts)
    keep = os.open(WORKDIR, os.O_PATH | os.O_DIRECTORY)
    for d in HIDDEN_DIRS:
        if os.path.isdir(d) and not os.path.islink(d):
            mount("sandbox-hidden", d, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0755")
            if WORKDIR.startswith(d.rstrip("/") + "/"):
                os.makedirs(WORKDIR)
                mount(f"/proc/self/fd/{keep}", WORKDIR, None, MS_BIND, None)
    os.close(keep)
    expose(sys.base_prefix)
    os.chdir(WORKDIR)


def first_closed_ancestor(path):
    """The first directory on `path` that others may not search (e.g. /root for a pyenv Python), or None."""
    parts = path.split("/")
    for i in range(2, len(parts) + 1):
        ancestor = "/".join(parts[:i])
        if not os.stat(ancestor).st_mode & 0o001:
            return ancestor
    return None


def expose(path):
    """Let the dropped uid read the interpreter's stdlib: cover the closed ancestor with an empty tmpfs
    holding only a bind of `path` (which also hides the rest of, say, /root)."""
    path = os.path.realpath(path)
    closed = first_closed_ancestor(path)
    if closed is None or closed == path:
        return
    keep = os.open(path, os.O_PATH | os.O_DIRECTORY)
    mount("sandbox-hidden", closed, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0755")
    os.makedirs(path, mode=0o755)
    mount(f"/proc/self/fd/{keep}", path, None, MS_BIND | MS_REC, None)
    os.close(keep)


def set_limits(nproc):
    mb = 1 << 20
    cpu = JOB["cpu_limit_s"]
    limits = [("rlimit_cpu", resource.RLIMIT_CPU, (cpu, cpu + 1)),
              ("rlimit_as", resource.RLIMIT_AS, (JOB["memory_mb"] * mb,) * 2),
              ("rlimit_fsize", resource.RLIMIT_FSIZE, (JOB["file_size_mb"] * mb,) * 2),
              ("rlimit_core", resource.RLIMIT_CORE, (0, 0)),
              ("rlimit_nofile", resource.RLIMIT_NOFILE, (256, 256))]
    if nproc is not None:
        limits.append(("rlimit_nproc", resource.RLIMIT_NPROC, (nproc, nproc)))
    for name, which, value in limits:
        resource.setrlimit(which, value)
        enforced.append(name)


if UID is not None:  # root: kernel-enforced isolation, each layer recorded only if it took
    try:
        check(libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        enforced.append("netns")
    except OSError:
        pass
    try:
        check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        private_filesystem()
        enforced.append("mountns")
    except OSError:
        os.chdir(WORKDIR)
    set_limits(None)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0:
        enforced.append("no_new_privs")
    # Without the private mounts a stdlib under a closed directory would be unreadable to the fresh uid:
    # then keep root (the code must be able to import) and say so by not listing uid_drop.
    if "mountns" in enforced or first_closed_ancestor(os.path.realpath(sys.base_prefix)) is None:
        os.setgroups([])
        os.setresgid(UID, UID, UID)
        os.setresuid(UID, UID, UID)
        enforced.append("uid_drop")
        resource.setrlimit(resource.RLIMIT_NPROC, (JOB["max_tasks"],) * 2)  # counted now: not root
        enforced.append("rlimit_nproc")
else:  # an ordinary user: a user namespace may still give us a private network
    uid, gid = os.getuid(), os.getgid()
    try:
        check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNET), "unshare(CLONE_NEWUSER|CLONE_NEWNET)")
        for path, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{path}", "w") as f:
                f.write(text)
        enforced.append("netns")
    except OSError:
        pass
    set_limits(0)  # not root: the kernel enforces it, so no fork and no threads
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0:
        enforced.append("no_new_privs")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversize writes fail with EFBIG instead of killing


# ---- best-effort guards: not a security boundary (see the module docstring) ----
def refuse(what):
    def refused(*args, **kwargs):
        raise PermissionError(f"sandbox: {what} is not allowed")
    return refused


for name in ("fork", "forkpty", "system", "popen", "execv", "execve", "execl", "execle", "execlp",
             "execlpe", "execvp", "execvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv",
             "spawnve", "spawnvp", "spawnvpe", "posix_spawn", "posix_spawnp", "fexecve"):
    for module in (os, posix):
        if hasattr(module, name):
            delattr(module, name)
for name in ("subprocess", "_posixsubprocess", "multiprocessing", "_multiprocessing", "pty", "ctypes", "_ctypes"):
    sys.modules[name] = None
enforced.append("guard_process")
for name in ("socket", "_socket", "ssl", "_ssl"):
    sys.modules[name] = None
enforced.append("guard_socket")

_kill, _killpg, _getpid, _getpgrp = os.kill, os.killpg, os.getpid, os.getpgrp


def guarded_kill(pid, sig):
    if pid not in (0, _getpid(), -_getpgrp()):
        raise PermissionError(f"sandbox: signalling pid {pid} is not allowed")
    return _kill(pid, sig)


def guarded_killpg(pgid, sig):
    if pgid not in (0, _getpgrp()):
        raise PermissionError(f"sandbox: signalling process group {pgid} is not allowed")
    return _killpg(pgid, sig)


os.kill = posix.kill = guarded_kill
os.killpg = posix.killpg = guarded_killpg
enforced.append("guard_signal")

_ROOT = os.path.realpath(WORKDIR) + os.sep
_realpath, _fspath = os.path.realpath, os.fspath


def inside(path):
    if isinstance(path, int):
        return True  # an already-open descriptor
    real = _realpath(os.fsdecode(_fspath(path)))
    return (real + os.sep).startswith(_ROOT) or real == "/dev/null"


def refuse_outside(path):
    if not inside(path):
        raise PermissionError(13, "sandbox: writing outside the working directory is refused", str(path))


_open = io.open


def guarded_open(file, mode="r", *args, **kwargs):
    if any(c in mode for c in "wax+"):
        refuse_outside(file)
    return _open(file, mode, *args, **kwargs)


builtins.open = io.open = guarded_open
_os_open = os.open
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def guarded_os_open(path, flags, *args, **kwargs):
    if flags & WRITE_FLAGS:
        refuse_outside(path)
    return _os_open(path, flags, *args, **kwargs)


os.open = guarded_os_open


def wrap_paths(fn, n_paths):
    def guarded(*args, **kwargs):
        for p in args[:n_paths]:
            refuse_outside(p)
        return fn(*args, **kwargs)
    return guarded


for name, n in (("remove", 1), ("unlink", 1), ("rmdir", 1), ("mkdir", 1), ("mkfifo", 1), ("mknod", 1),
                ("chmod", 1), ("chown", 1), ("lchown", 1), ("truncate", 1), ("utime", 1),
                ("rename", 2), ("replace", 2), ("link", 2), ("symlink", 2)):
    if hasattr(os, name):
        setattr(os, name, wrap_paths(getattr(os, name), n))
enforced.append("guard_fs_write")
report(event="setup", enforced=enforced)


# ---- the candidate ----
def fail(exc, tb, ns, **extra):
    if isinstance(exc, MemoryError):
        ns.clear()  # free the candidate's data so reporting can allocate
    try:
        traceback.print_exception(type(exc), exc, tb)
    except BaseException:
        pass
    report(event="exception", type=type(exc).__name__, message=str(exc)[:2000], **extra)


def main():
    code, tests = JOB["code"], JOB["tests"]
    linecache.cache["solution.py"] = (len(code), None, code.splitlines(True), "solution.py")
    # The candidate gets a module of its own under its __name__ (dataclasses, pickle look it up there);
    # the harness module leaves sys.modules, so its nonce is not one attribute away.
    module = types.ModuleType("__main__" if tests is None else "solution")
    module.__file__ = "solution.py"
    ns = module.__dict__
    sys.modules[module.__name__] = module
    sys.argv = ["solution.py"]
    try:
        exec(compile(code, "solution.py", "exec"), ns)
    except SystemExit:
        raise
    except BaseException as exc:
        fail(exc, exc.__traceback__.tb_next, ns)
        return 1
    if tests is None:
        return 0
    for i, test in enumerate(tests):
        report(event="test", index=i)
        linecache.cache[f"test_{i}"] = (len(test), None, test.splitlines(True), f"test_{i}")
        try:
            exec(compile(test, f"test_{i}", "exec"), ns)
        except BaseException as exc:  # SystemExit inside a test is a failure too
            fail(exc, exc.__traceback__.tb_next, ns, index=i)
            return 1
    report(event="done", count=len(tests))
    return 0


sys.exit(main())
'''
