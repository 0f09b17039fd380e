"""The sandbox contains what model-written code can do, and the host (this pytest process) stays unharmed.

Each attack is tried twice where it matters: through the ordinary API (stopped by the best-effort prelude) and
with the prelude undone first (stopped by the kernel: uid drop, namespaces, rlimits), the latter only where
the run reports that layer in `enforced`.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
import textwrap
import time
import tracemalloc

import pytest

from falcon_h1r_lib.sandbox import (
    MAX_TASKS,
    STATUSES,
    SandboxJob,
    SandboxResult,
    run_many,
    run_python,
    run_tests,
)

LIMITS = {"timeout_s": 5.0, "memory_mb": 256}
# Undo the best-effort prelude, as hostile code would: what remains is the kernel's doing.
UNGUARD = "import sys\nfor _m in ('ctypes', '_ctypes', 'socket', '_socket'):\n    sys.modules.pop(_m, None)\n"


def run(code: str, **kw) -> SandboxResult:
    return run_python(textwrap.dedent(code), **{**LIMITS, **kw})


@functools.cache
def enforced() -> tuple[str, ...]:
    return run("pass").enforced


def needs(layer: str):
    return pytest.mark.skipif(layer not in enforced(), reason=f"{layer} not available on this kernel/user")


def pids_of_uid(uid: int) -> list[int]:
    """Live (non-zombie) processes whose real uid is `uid`."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if int(fields["Uid"].split()[0]) == uid and not fields["State"].strip().startswith("Z"):
            found.append(int(name))
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "State:\tZ" not in f.read()
    except OSError:
        return False


def test_ok_program_with_stdin_and_stdout():
    r = run("name = input()\nprint('hello', name)\nprint(sum(range(10)))", stdin="falcon\n")
    assert (r.status, r.returncode, r.passed) == ("ok", 0, True)
    assert r.stdout == "hello falcon\n45\n" and r.stderr == ""
    assert not r.stdout_truncated and r.error_type is None
    assert r.status in STATUSES and r.wall_time_s < 5


def test_syntax_error_and_exception_are_errors_with_type():
    r = run("def f(:\n    pass\n")
    assert (r.status, r.error_type, r.passed) == ("error", "SyntaxError", False)
    assert "SyntaxError" in r.stderr
    r = run("print('before')\nx = {}['missing']\n")
    assert (r.status, r.returncode, r.error_type) == ("error", 1, "KeyError")
    assert r.error_message == "'missing'" and r.stdout == "before\n"
    assert 'File "solution.py", line 2' in r.stderr  # the traceback points at the candidate, not the harness
    r = run("import sys\nsys.exit(3)")
    assert (r.status, r.returncode) == ("error", 3)


def test_wall_clock_timeout():
    r = run("while True:\n    pass", timeout_s=1.0)
    assert (r.status, r.error_type) == ("timeout", "Timeout")
    assert 1.0 <= r.wall_time_s < 2.5


def test_cpu_time_limit():
    r = run("while True:\n    pass", timeout_s=10.0, cpu_time_s=1)
    assert (r.status, r.error_message) == ("timeout", "CPU-time limit reached")
    assert 0.9 <= r.cpu_time_s < 2.5 and r.wall_time_s < 9  # before the 10 s wall clock


def test_memory_bombs():
    r = run("x = bytearray(10**10)")
    assert (r.status, r.error_type) == ("memory", "MemoryError")
    r = run("x = []\nwhile True:\n    x.append(bytearray(10**6))", memory_mb=128)
    assert (r.status, r.error_type) == ("memory", "MemoryError")
    assert r.wall_time_s < 5


def test_output_bomb_is_truncated_fast_with_bounded_host_memory():
    cap = 64 * 1024
    tracemalloc.start()
    try:
        r = run("import sys\nfor _ in range(100_000):\n    sys.stdout.write('x' * 1000)\n", max_output_bytes=cap)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.stdout_truncated and len(r.stdout) == cap and set(r.stdout) == {"x"}
    assert (r.status, r.error_type) == ("killed", "OutputLimitExceeded")
    assert r.wall_time_s < 5
    assert peak < 4 * cap + (1 << 20)  # the parent held the capped buffers, not 100 MB
    r = run("import sys\nsys.stderr.write('e' * 500)\nprint('ok')", max_output_bytes=100)
    assert r.stderr_truncated and len(r.stderr) == 100 and r.status == "killed"


def test_fork_bomb_is_contained():
    r = run("import os\nprint(os.getuid(), flush=True)\nwhile True:\n    os.fork()")
    assert (r.status, r.error_type) == ("error", "AttributeError")  # the prelude removed os.fork
    if "uid_drop" in r.enforced:
        assert pids_of_uid(int(r.stdout)) == []


@needs("rlimit_nproc")
def test_fork_bomb_stops_at_the_kernel_and_leaves_nothing_behind():
    r = run(UNGUARD + textwrap.dedent("""
        import ctypes, os
        libc = ctypes.CDLL(None)
        children = []
        for _ in range(100):
            pid = libc.fork()
            if pid == 0:
                libc.setsid()          # try to leave the process group as well
                libc.pause()
                libc._exit(0)
            if pid < 0:
                break
            children.append(pid)
        print(os.getuid(), len(children), *children)
    """))
    assert r.status == "ok", r.stderr
    uid, n, *children = map(int, r.stdout.split())
    assert n < MAX_TASKS  # RLIMIT_NPROC under the fresh uid
    assert pids_of_uid(uid) == [] and not any(alive(pid) for pid in children)


def test_writes_outside_the_working_directory_are_refused(tmp_path):
    host_file = tmp_path / "host.txt"
    host_file.write_text("original")
    r = run(f"""
        import os
        open("inside.txt", "w").write("fine")           # its own directory is writable
        print(open("inside.txt").read())
        open({str(host_file)!r}, "w").write("pwned")
    """)
    assert r.stdout == "fine\n"
    assert (r.status, r.error_type) == ("error", "PermissionError")
    assert host_file.read_text() == "original"
    r = run(f"import os\nos.remove({str(host_file)!r})")
    assert r.error_type == "PermissionError" and host_file.exists()


@needs("uid_drop")
def test_writes_outside_are_refused_by_the_kernel(tmp_path):
    host_file = tmp_path / "host.txt"
    host_file.write_text("original")
    stray = f"/tmp/falcon_sandbox_stray_{os.getpid()}_{time.monotonic_ns()}"
    r = run(f"""
        import _io
        for path in ({str(host_file)!r}, {stray!r}):   # _io.FileIO is not wrapped by the prelude
            try:
                _io.FileIO(path, "w").write(b"pwned")
                print("wrote", path)
            except OSError as e:
                print("refused", type(e).__name__)
    """)
    assert r.status == "ok", r.stderr
    # Refused either way: invisible under the private /tmp (FileNotFoundError), or unwritable to the fresh uid.
    assert r.stdout.splitlines() == ["refused FileNotFoundError"] * 2 or "wrote" not in r.stdout
    assert host_file.read_text() == "original"
    assert not os.path.exists(stray)  # /tmp is a private, root-owned tmpfs in there (or unwritable)


@needs("fs_view")
def test_private_root_shows_no_host_files(tmp_path):
    """Datasets (which hold the hidden tests), this repository and other runs do not exist in the sandbox."""
    secret = tmp_path / "tests.json"
    secret.write_text("[]")
    secret.chmod(0o644)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = run(f"""
        import os
        print([os.path.exists(p) for p in ({str(secret)!r}, {repo!r}, "/proc/self", "/home")])
        import json, fractions, decimal, heapq   # the interpreter and its stdlib still work
        print(json.dumps(str(fractions.Fraction(1, 3))))
    """)
    assert r.status == "ok", r.stderr
    assert r.stdout.splitlines() == ["[False, False, False, False]", '"1/3"']


@pytest.fixture()
def listener():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(0.3)
    yield srv
    srv.close()


def assert_no_connection(srv):
    with pytest.raises(socket.timeout):
        srv.accept()


def test_network_is_blocked(listener):
    port = listener.getsockname()[1]
    r = run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)")
    assert (r.status, r.error_type) == ("error", "ModuleNotFoundError")  # import halted by the prelude
    assert_no_connection(listener)


@needs("netns")
def test_network_is_cut_by_the_kernel(listener):
    port = listener.getsockname()[1]
    r = run(UNGUARD + f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)")
    assert r.status == "error" and r.error_type in ("OSError", "ConnectionRefusedError", "TimeoutError")
    assert "unreachable" in r.error_message.lower() or r.error_type != "OSError"
    assert_no_connection(listener)


def test_killing_the_parent_fails_and_the_host_survives():
    for attack in ("os.kill(os.getppid(), 9)", "os.killpg(os.getpgid(os.getppid()), 9)"):
        r = run(f"import os\n{attack}")
        assert (r.status, r.error_type) == ("error", "PermissionError"), attack
    if "uid_drop" in r.enforced:  # the same attacks through libc: refused by the kernel (EPERM)
        r = run(UNGUARD + textwrap.dedent("""
            import ctypes, os
            libc = ctypes.CDLL(None, use_errno=True)
            print(libc.kill(os.getppid(), 9), ctypes.get_errno(), libc.kill(-1, 9))  # -1: "everyone I may"
        """))
        assert r.status == "ok" and r.stdout.split()[:2] == ["-1", "1"]  # EPERM
    assert run("print(1)").stdout == "1\n"  # we are still here, and so is the sandbox


def test_leaving_the_process_group_does_not_escape_the_timeout():
    r = run("""
        import os, time
        print(os.getpid(), flush=True)
        try:
            os.setsid()
        except OSError:
            pass
        time.sleep(30)
    """, timeout_s=1.0)
    assert r.status == "timeout" and r.wall_time_s < 2.5
    assert not alive(int(r.stdout))
    if "rlimit_nproc" in r.enforced:  # a real escape: a forked child in a session of its own
        r = run(UNGUARD + textwrap.dedent("""
            import ctypes, os, time
            libc = ctypes.CDLL(None)
            pid = libc.fork()
            if pid == 0:
                libc.setsid()
                libc.pause()
            print(os.getpid(), pid, flush=True)
            time.sleep(30)
        """), timeout_s=1.0)
        assert r.status == "timeout" and r.wall_time_s < 2.5
        parent, child = map(int, r.stdout.split())
        assert child > 0 and not alive(parent) and not alive(child)


def test_child_loads_stdlib_only_and_leaves_a_bare_sys_path():
    """The child's own modules load before isolation, from a path it takes off sys.path again: the candidate
    sees the sys.path of a bare `-I -S` interpreter, and nothing of falcon_h1r_lib nor any third-party code."""
    r = run("""
        import sys
        print(sys.path)
        print(sorted({m.split(".")[0] for m in sys.modules} - set(sys.stdlib_module_names) - set(sys.builtin_module_names)))
    """)
    bare = subprocess.run([sys.executable, "-I", "-S", "-c", "import sys; print(sys.path)"],
                          capture_output=True, text=True, check=True).stdout
    path, foreign = r.stdout.splitlines()
    assert r.passed and path + "\n" == bare
    assert foreign == "['__main__', 'child']"


def test_run_many_parallel_results_in_order():
    jobs = [SandboxJob(code="n = int(input())\nprint(n * n)", stdin=f"{i}\n", timeout_s=10, memory_mb=128)
            for i in range(14)]
    jobs.append(SandboxJob(code="def f(x): return x + 1", tests=("assert f(1) == 2",), timeout_s=10, memory_mb=128))
    jobs.append(SandboxJob(code="1 / 0", timeout_s=10, memory_mb=128))
    start = time.monotonic()
    results = run_many(jobs, max_workers=16)
    assert [r.stdout for r in results[:14]] == [f"{i * i}\n" for i in range(14)]
    assert results[14].passed and results[14].tests_passed == 1
    assert results[15].error_type == "ZeroDivisionError"
    assert time.monotonic() - start < 20
    with pytest.raises(TypeError, match=r"jobs\[0\]"):
        run_many(["print(1)"], max_workers=2)


def test_run_tests_pass_fail_and_failed_test():
    code = "def double(x):\n    return 2 * x if x != 3 else 7\n"
    tests = ["assert double(1) == 2", "assert double(2) == 4", "assert double(3) == 6", "assert double(4) == 8"]
    r = run_tests(code, tests[:2], **LIMITS)
    assert (r.status, r.passed, r.tests_passed, r.failed_test) == ("ok", True, 2, None)
    assert "separate_grader" in r.enforced
    r = run_tests(code, tests, **LIMITS)
    assert (r.status, r.passed, r.tests_passed) == ("error", False, 2)
    assert (r.failed_test.index, r.failed_test.text, r.failed_test.error_type) == (2, tests[2], "AssertionError")
    r = run_tests("def f():\n    while True:\n        pass\n", ["assert True", "f()"], timeout_s=1.0, memory_mb=128)
    assert (r.status, r.failed_test.index, r.tests_passed) == ("timeout", 1, 1)
    r = run_tests("x = 1 / 0", tests, **LIMITS)
    assert (r.error_type, r.failed_test, r.tests_passed) == ("ZeroDivisionError", None, 0)


def test_exiting_early_never_passes():
    for exit_call in ("import sys; sys.exit(0)", "import os; os._exit(0)"):
        r = run_tests(f"def f():\n    return 1\n{exit_call}", ["assert f() == 2"], **LIMITS)
        assert not r.passed and r.status == "error" and r.error_type == "SystemExit", exit_call
    # A forged record without the nonce is ignored.
    forged = textwrap.dedent("""
        import os
        for fd in range(3, 256):      # the result pipe is one of these
            try:
                os.write(fd, b'{"event": "done", "count": 1}\\n')
            except OSError:
                pass
        os._exit(0)
    """)
    assert not run_tests(forged, ["assert False"], **LIMITS).passed


def test_main_guard_runs_only_as_a_script():
    code = "def f():\n    return 5\nif __name__ == '__main__':\n    print(f())\n"
    assert run(code).stdout == "5\n"
    r = run_tests(code, ["assert f() == 5"], **LIMITS)
    assert r.passed and r.stdout == ""


def test_bad_arguments_name_the_field():
    for kw, field in (({"memory_mb": 4}, "memory_mb"), ({"timeout_s": 0}, "timeout_s"),
                      ({"cpu_time_s": -1}, "cpu_time_s"), ({"file_size_mb": 0}, "file_size_mb")):
        with pytest.raises(ValueError, match=field):
            run_python("pass", **{**LIMITS, **kw})
    with pytest.raises(TypeError, match="tests"):
        run_tests("pass", "assert True", **LIMITS)
