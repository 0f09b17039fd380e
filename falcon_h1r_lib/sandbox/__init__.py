"""Run model-written Python in contained child processes: the code verifier's only way to execute code.

Used by the code reward (RL) and code evaluation, thousands of calls, many in parallel; stdlib only. The
paper (§3.2) sends code to SandboxFusion in Docker; this is a local stand-in with the same contract. Each
child is `sys.executable -I -S -B child/__main__.py` (isolated, stdlib only) with a minimal environment; it
contains itself before any candidate code runs (not through a `preexec_fn`: that would run Python between
fork and exec, unsafe with `run_many`'s threads). Layout: this module is the API; `supervisor.py` spawns,
watches and kills the children; `outcome.py` reads a result off them; `child/` is the program they run.

Who decides a test passed (`run_tests`): not the candidate's process. The candidate runs in a *solution*
child; the tests run in a separate *grader* child (`child/grader.py`), where each name a test takes from
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

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .outcome import STATUSES, FailedTest, SandboxResult
from .supervisor import MAX_TASKS, supervise

__all__ = [
    "MAX_TASKS",
    "STATUSES",
    "FailedTest",
    "SandboxJob",
    "SandboxResult",
    "run_many",
    "run_python",
    "run_tests",
]

DEFAULT_MAX_OUTPUT_BYTES = 1 << 22  # 4 MiB per stream
DEFAULT_FILE_SIZE_MB = 16


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
    return supervise(code, None, timeout_s=timeout_s, memory_mb=memory_mb, stdin=stdin,
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
    return supervise(code, list(tests), timeout_s=timeout_s, memory_mb=memory_mb, stdin=stdin,
                     max_output_bytes=max_output_bytes, cpu_time_s=cpu_time_s, file_size_mb=file_size_mb)


def run_many(jobs: Sequence[SandboxJob], max_workers: int) -> list[SandboxResult]:
    """Run jobs concurrently (a thread per running child); results come back in the order of `jobs`."""
    if max_workers < 1:
        raise ValueError(f"run_many: max_workers must be >= 1, got {max_workers}")
    for i, job in enumerate(jobs):
        if not isinstance(job, SandboxJob):
            raise TypeError(f"run_many: jobs[{i}] is {type(job).__name__}, expected SandboxJob")

    def one(job: SandboxJob) -> SandboxResult:
        return supervise(job.code, None if job.tests is None else list(job.tests), timeout_s=job.timeout_s,
                         memory_mb=job.memory_mb, stdin=job.stdin, max_output_bytes=job.max_output_bytes,
                         cpu_time_s=job.cpu_time_s, file_size_mb=job.file_size_mb)

    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sandbox") as pool:
        return list(pool.map(one, jobs))
