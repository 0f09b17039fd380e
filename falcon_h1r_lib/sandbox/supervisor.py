"""The supervisor: spawn the children of one run, watch their pipes and limits, kill and reap everything.

The mechanism only (what the limits and results mean lives in `outcome.py`); runs in the caller's process,
so it never executes Python between fork and exec (no `preexec_fn`): the child contains itself.
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
from dataclasses import dataclass, field

from .outcome import classify

MAX_TASKS = 8  # RLIMIT_NPROC under the dropped uid: the main thread plus a few worker threads
MAX_REPLY_BYTES = 1 << 24  # one value returned by the solution to the grader (16 MiB of tagged JSON)
_CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "child", "__main__.py")
_GRACE_S = 0.5  # after the deciding child exits, how long the others get to exit (and flush) on their own
_CHUNK = 1 << 16
_MAX_RECORD_BYTES = 1 << 20  # the children write a few small JSON lines; more is noise
# Fresh uids come from [2^30, 2^31): far above any real account, and 2^30 values make a collision between
# concurrent sandboxes negligible. Drawn from `secrets`, not a seeded RNG: this is isolation, not science.
_UID_BASE, _UID_SPAN = 1 << 30, 1 << 30


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
class Child:
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


def supervise(code, tests, *, timeout_s, memory_mb, stdin, max_output_bytes, cpu_time_s, file_size_mb):
    """One run: validate, spawn the solution child (and for `tests` the grader), watch them, classify."""
    _validate(code, timeout_s, memory_mb, stdin, max_output_bytes, cpu_time_s, file_size_mb)
    cpu_limit = int(-(-(cpu_time_s if cpu_time_s is not None else timeout_s + 1) // 1))  # ceil, whole s
    limits = {"memory_mb": memory_mb, "cpu_limit_s": cpu_limit, "file_size_mb": file_size_mb, "max_tasks": MAX_TASKS}
    children: list[Child] = []
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
    return classify(children, tests, reason, wall, cpu_limit)


def _spawn(stack, role, job, limits, stdin, pass_fds=()) -> Child:
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
    child = Child(role, proc, uid, nonce, result_r)
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


def _exited(child: Child) -> bool:  # exited but not yet reaped: its pid (and process group id) stay ours
    return os.waitid(os.P_PID, child.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _watch(children: list[Child], primary: Child, deadline: float, cap: int) -> str | None:
    """Read every child's pipes (bounded) until `primary` exits or a limit hits; give the others a short
    grace to exit; kill every group and uid; reap. Returns why the run was cut: "timeout", "output" or None."""
    sel = selectors.DefaultSelector()
    for c in children:
        for name, fd, buf in (("stdout", c.proc.stdout.fileno(), c.out), ("stderr", c.proc.stderr.fileno(), c.err),
                              ("result", c.result_r, c.rec)):
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ, (c, name, buf))
    pidfds: dict[int, Child] = {}
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
