"""The two child processes of `falcon_h1r_lib.sandbox`: run as a script, never imported by the library.

`python -I -S -B sandbox_child.py ROLE JOB_FD` (stdlib only; the job is JSON in a memory file at JOB_FD):
  solution  contains itself (namespaces, a private root, rlimits, uid drop, guards), runs the candidate's
            code and, for `run_tests`, then answers calls from the grader over a pipe pair: it sees the
            names and arguments of calls, never the tests nor their expected values.
  grader    runs the tests in a process of its own (own uid when root, never dumpable, own private root):
            a name a test takes from the solution is a stand-in that calls across the pipe, and a return
            value comes back as plain data (tagged JSON decoded into builtins), so nothing the candidate
            defines or patches is ever evaluated here. Only the grader reports test progress to the parent,
            over a descriptor the solution never holds, tagged with a nonce the solution never sees.
Both report to the parent as nonce-tagged JSON lines on `result_fd`. See `sandbox.py` for what each layer is.
"""

import ast
import base64
import builtins
import ctypes
import importlib
import io
import json
import linecache
import os
import posix
import resource
import signal
import sys
import traceback
import types

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT = 0x1, 0x2, 0x4, 0x20
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 0x40000
PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 4, 38
# What the private root holds besides the interpreter's prefix and the working directory.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_FILES = ("/etc/ld.so.cache",)  # the dynamic loader's index of /usr/lib
DEVICES = ("null", "zero", "full", "random", "urandom")

JOB: dict = {}
NONCE = ""
libc = ctypes.CDLL(None, use_errno=True)
enforced: list = []


def report(**rec):
    rec["nonce"] = NONCE
    try:
        os.write(JOB["result_fd"], (json.dumps(rec) + "\n").encode())
    except OSError:
        pass


def check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source, target, fstype, flags, data):
    def enc(s):
        return None if s is None else s.encode()
    check(libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def bind(source, target, read_only):
    mount(source, target, None, MS_BIND | MS_REC, None)
    if read_only:
        mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID, None)


# ---------------------------------------------------------------------------------------------- isolation
def private_root(uid):
    """chroot into a fresh tmpfs holding only system libraries, the interpreter, a few devices and a private
    working dir: host files (datasets and their tests, other sandboxes, /proc) do not exist in here."""
    root, workdir = JOB["root_dir"], JOB["workdir"]
    mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    mount("sandbox-root", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    prefix = os.path.realpath(sys.base_prefix)
    bound = []
    for path in SYSTEM_DIRS + (prefix,):
        if any(path == b or path.startswith(b + "/") for b in bound):
            continue
        if os.path.islink(path):  # merged /usr: /lib -> usr/lib
            os.makedirs(os.path.dirname(root + path), exist_ok=True)
            os.symlink(os.readlink(path), root + path)
        elif os.path.isdir(path):
            os.makedirs(root + path, exist_ok=True)
            bind(path, root + path, read_only=True)
            bound.append(path)
    if not any(prefix == b or prefix.startswith(b + "/") for b in bound):
        raise OSError(f"the interpreter prefix {prefix} is not inside the private root")
    for path in SYSTEM_FILES:
        if os.path.isfile(path):
            os.makedirs(os.path.dirname(root + path), exist_ok=True)
            open(root + path, "w").close()
            bind(path, root + path, read_only=True)
    os.makedirs(root + "/dev", exist_ok=True)
    for name in DEVICES:
        if os.path.exists("/dev/" + name):
            open(f"{root}/dev/{name}", "w").close()
            bind("/dev/" + name, f"{root}/dev/{name}", read_only=False)
    os.makedirs(root + workdir)
    opts = f"size={JOB['file_size_mb']}m,mode=0700,uid={uid},gid={uid}"
    mount("sandbox", root + workdir, "tmpfs", MS_NOSUID | MS_NODEV, opts)
    os.chroot(root)
    os.chdir(workdir)


def first_closed_ancestor(path):
    """The first directory on `path` that others may not search (e.g. /root for a pyenv Python), or None."""
    parts = path.split("/")
    for i in range(2, len(parts) + 1):
        ancestor = "/".join(parts[:i])
        if not os.stat(ancestor).st_mode & 0o001:
            return ancestor
    return None


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


def isolate():
    """Kernel-enforced containment, each layer recorded only if it took (see sandbox.py)."""
    uid = JOB["uid"]
    os.umask(0o022)
    if uid is not None:  # root
        try:
            check(libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
            enforced.append("netns")
        except OSError:
            pass
        try:
            check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        except OSError:
            os.chdir(JOB["workdir"])
        else:  # from here a failure is fatal: a half-built root is no sandbox
            private_root(uid)
            enforced.extend(("mountns", "fs_view"))
        set_limits(None)
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0:
            enforced.append("no_new_privs")
        # Without the private root a stdlib under a closed directory would be unreadable to the fresh uid:
        # then keep root (the code must be able to import) and say so by not listing uid_drop.
        if "fs_view" in enforced or first_closed_ancestor(os.path.realpath(sys.base_prefix)) is None:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            enforced.append("uid_drop")
            resource.setrlimit(resource.RLIMIT_NPROC, (JOB["max_tasks"],) * 2)  # counted now: not root
            enforced.append("rlimit_nproc")
    else:  # an ordinary user: a user namespace may still give us a private network
        real_uid, gid = os.getuid(), os.getgid()
        try:
            check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNET), "unshare(CLONE_NEWUSER|CLONE_NEWNET)")
            for path, text in (("setgroups", "deny"), ("uid_map", f"{real_uid} {real_uid} 1"),
                               ("gid_map", f"{gid} {gid} 1")):
                with open(f"/proc/self/{path}", "w") as f:
                    f.write(text)
            enforced.append("netns")
        except OSError:
            pass
        os.chdir(JOB["workdir"])
        set_limits(0)  # not root: the kernel enforces it, so no fork and no threads
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0:
            enforced.append("no_new_privs")
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversize writes fail with EFBIG instead of killing
    sys.set_int_max_str_digits(0)  # big integers cross the pipe as decimal text


# ------------------------------------------------- best-effort guards: not a security boundary (sandbox.py)
def refuse(what):
    def refused(*args, **kwargs):
        raise PermissionError(f"sandbox: {what} is not allowed")
    return refused


def install_guards():
    for name in ("fork", "forkpty", "system", "popen", "execv", "execve", "execl", "execle", "execlp",
                 "execlpe", "execvp", "execvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv",
                 "spawnve", "spawnvp", "spawnvpe", "posix_spawn", "posix_spawnp", "fexecve"):
        for module in (os, posix):
            if hasattr(module, name):
                delattr(module, name)
    for name in ("subprocess", "_posixsubprocess", "multiprocessing", "_multiprocessing", "pty", "ctypes",
                 "_ctypes"):
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

    root = os.path.realpath(os.getcwd()) + os.sep
    _realpath, _fspath = os.path.realpath, os.fspath

    def refuse_outside(path):
        if isinstance(path, int):
            return  # an already-open descriptor
        real = _realpath(os.fsdecode(_fspath(path)))
        if not ((real + os.sep).startswith(root) or real == "/dev/null"):
            raise PermissionError(13, "sandbox: writing outside the working directory is refused", str(path))

    _open = io.open

    def guarded_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            refuse_outside(file)
        return _open(file, mode, *args, **kwargs)

    builtins.open = io.open = guarded_open
    _os_open = os.open
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def guarded_os_open(path, flags, *args, **kwargs):
        if flags & write_flags:
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


# ------------------------------------------------------------------- plain data across the pipe pair
PLAIN = "None, bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set, frozenset"


class NotPlainData(TypeError):
    """A value that cannot cross to the grader: anything but PLAIN (a candidate class could fake `==`)."""


def encode(value, depth=0):
    """Plain data as tagged JSON; subclasses of plain types cross as their base value (their methods stay)."""
    if depth > 200:
        raise NotPlainData("nested deeper than 200 levels")
    if value is None or type(value) is bool:
        return value
    if isinstance(value, int):
        return int.__index__(value) if type(value) is not int else value
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, complex):
        c = complex.__complex__(value)
        return {"complex": [c.real, c.imag]}
    if isinstance(value, (bytes, bytearray)):
        tag = "bytearray" if isinstance(value, bytearray) else "bytes"
        return {tag: base64.b64encode(bytes(value)).decode()}
    if isinstance(value, list):
        return [encode(v, depth + 1) for v in list.__iter__(value)]
    if isinstance(value, tuple):
        return {"tuple": [encode(v, depth + 1) for v in tuple.__iter__(value)]}
    if isinstance(value, frozenset):
        return {"frozenset": [encode(v, depth + 1) for v in frozenset.__iter__(value)]}
    if isinstance(value, set):
        return {"set": [encode(v, depth + 1) for v in set.__iter__(value)]}
    if isinstance(value, dict):
        return {"dict": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in dict.items(value)]}
    raise NotPlainData(f"a {type(value).__qualname__} is not plain data ({PLAIN})")


def decode(value, refs=None):
    """Tagged JSON back to builtins only; `refs(name)` resolves a solution callable passed as an argument."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if type(value) is list:
        return [decode(v, refs) for v in value]
    if type(value) is dict and len(value) == 1:
        (tag, body), = value.items()
        if tag == "tuple" and type(body) is list:
            return tuple(decode(v, refs) for v in body)
        if tag == "set" and type(body) is list:
            return {decode(v, refs) for v in body}
        if tag == "frozenset" and type(body) is list:
            return frozenset(decode(v, refs) for v in body)
        if tag == "dict" and type(body) is list and all(type(kv) is list and len(kv) == 2 for kv in body):
            return {decode(k, refs): decode(v, refs) for k, v in body}
        if tag in ("bytes", "bytearray") and type(body) is str:
            raw = base64.b64decode(body, validate=True)
            return bytearray(raw) if tag == "bytearray" else raw
        if tag == "complex" and type(body) is list and len(body) == 2 and all(type(x) is float for x in body):
            return complex(body[0], body[1])
        if tag == "ref" and type(body) is str and refs is not None:
            return refs(body)
        if tag == "module" and type(body) is str and refs is not None:
            return importlib.import_module(body)
    raise ValueError(f"not a plain-data encoding: {str(value)[:200]}")


def text_of(exc):
    try:
        return str(exc)[:2000]
    except BaseException:
        return "<unprintable message>"


class Lines:
    """Newline-framed messages from a pipe, refusing any longer than `cap` bytes."""

    def __init__(self, fd, cap):
        self.fd, self.cap, self.buf = fd, cap, bytearray()

    def read(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 1]
                return line
            if len(self.buf) > self.cap:
                raise BadReply(f"a reply longer than {self.cap} bytes")
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return None
            self.buf += chunk


def send(fd, message):
    data = memoryview((json.dumps(message) + "\n").encode())
    while data:
        data = data[os.write(fd, data):]


# ------------------------------------------------------------------------------------------- solution
def fail(exc, tb, ns, **extra):
    if isinstance(exc, MemoryError):
        ns.clear()  # free the candidate's data so reporting can allocate
    try:
        traceback.print_exception(type(exc), exc, tb)
    except BaseException:
        pass
    report(event="exception", type=type(exc).__name__, message=text_of(exc), **extra)


def run_solution():
    code, serve = JOB["code"], JOB["mode"] == "serve"
    install_guards()
    report(event="setup", enforced=enforced)
    linecache.cache["solution.py"] = (len(code), None, code.splitlines(True), "solution.py")
    # The candidate gets a module of its own under its __name__ (dataclasses, pickle look it up there);
    # as a service it is `solution`, so a main-guarded stdin reader stays idle while its functions are tested.
    module = types.ModuleType("solution" if serve else "__main__")
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
    if not serve:
        return 0
    calls, replies = Lines(JOB["calls_fd"], 1 << 62), JOB["replies_fd"]
    send(replies, {"ready": True})
    while True:
        line = calls.read()
        if line is None:  # the grader is done
            return 0
        send(replies, answer(json.loads(line), ns))


def answer(request, ns):
    """One call or lookup from the grader, run on the candidate's side of the pipe."""
    name = request["name"]
    if request["op"] == "get":
        if name.startswith("__") or name not in ns:
            return {"missing": True}
        value = ns[name]
        if isinstance(value, types.ModuleType):
            return {"module": value.__name__}
        if callable(value):
            return {"callable": True}
        try:
            return {"ok": encode(value)}
        except NotPlainData as exc:
            return {"not_plain": f"solution.{name}: {exc}"}
    try:
        fn = ns[name]
        args = [decode(a, ns.__getitem__) for a in request["args"]]
        kwargs = {k: decode(v, ns.__getitem__) for k, v in request["kwargs"].items()}
        result = fn(*args, **kwargs)
    except BaseException as exc:  # the candidate's exception, or SystemExit/KeyboardInterrupt from it
        return {"raise": [str(type(exc).__name__), text_of(exc), isinstance(exc, Exception)]}
    try:
        after = [encode(a) if type(a) in (list, dict, set, bytearray) else None for a in args]
        return {"ok": encode(result), "after": after}
    except NotPlainData as exc:
        return {"not_plain": f"{name}(...) returned {exc}"}
    except RecursionError:
        return {"not_plain": f"{name}(...) returned a value nested too deep"}


# ---------------------------------------------------------------------------------------------- grader
class SolutionGone(BaseException):
    """The solution process ended (or never became ready) while the grader needed it."""


class BadReply(BaseException):
    """The solution side wrote something that is not a reply: a failure, not a pass."""


class NotPlainResult(BaseException):
    """The solution returned something other than plain data (see PLAIN): the test fails."""


class SolutionExit(BaseException):
    """The solution raised SystemExit / KeyboardInterrupt / a bare BaseException during a call."""


class UnsupportedTest(BaseException):
    """The test passes the solution something that cannot cross the pipe: no verdict, not a failure."""


class SolutionError(Exception):
    """A candidate-defined exception (only builtin exception types are re-raised as themselves)."""


class Solution:
    """The grader's view of the solution process: lookups and calls over the pipe pair."""

    def __init__(self):
        self.calls = JOB["calls_fd"]
        self.replies = Lines(JOB["replies_fd"], JOB["max_reply_bytes"])

    def request(self, message):
        try:
            send(self.calls, message)
        except OSError as exc:
            raise SolutionGone(f"the solution process exited ({exc.strerror})") from None
        line = self.replies.read()
        if line is None:
            raise SolutionGone("the solution process exited")
        try:
            reply = json.loads(line)
        except (ValueError, RecursionError):
            raise BadReply(f"not a reply: {line[:200]!r}") from None
        if type(reply) is not dict:
            raise BadReply(f"not a reply: {line[:200]!r}")
        return reply

    def wait_ready(self):
        line = self.replies.read()
        if line is None:
            raise SolutionGone("the solution process exited before its code had run")
        if line != b'{"ready": true}':
            raise BadReply(f"expected the ready line, got {line[:200]!r}")

    def lookup(self, name):
        reply = self.request({"op": "get", "name": name})
        if reply.get("missing") is True:
            return _MISSING
        if reply.get("callable") is True:
            return Remote(self, name)
        if type(reply.get("module")) is str:  # the test relies on the solution's `import math`: import it here,
            if reply["module"] == name and name in sys.stdlib_module_names:  # only a stdlib module of that name
                return importlib.import_module(name)
            raise NotPlainResult(f"solution.{name} is the module {reply['module']!r}, not the stdlib {name!r}")
        if "not_plain" in reply:
            raise NotPlainResult(str(reply["not_plain"]))
        if "ok" in reply:
            return self.value(reply["ok"])
        raise BadReply(f"not a lookup reply: {str(reply)[:200]}")

    def call(self, name, args, kwargs):
        reply = self.request({"op": "call", "name": name, "args": [arg_code(a) for a in args],
                              "kwargs": {str(k): arg_code(v) for k, v in kwargs.items()}})
        if "raise" in reply:
            raise candidate_exception(reply["raise"])
        if "not_plain" in reply:
            raise NotPlainResult(str(reply["not_plain"]))
        if "ok" not in reply:
            raise BadReply(f"not a call reply: {str(reply)[:200]}")
        after = reply.get("after")
        if type(after) is list and len(after) == len(args):
            for mine, theirs in zip(args, after):
                if theirs is not None and type(mine) in (list, dict, set, bytearray):
                    copy_back(mine, self.value(theirs))
        return self.value(reply["ok"])

    @staticmethod
    def value(code):
        try:
            return decode(code)
        except (ValueError, TypeError, RecursionError) as exc:  # unhashable set members, bad base64, depth
            raise BadReply(f"undecodable value: {text_of(exc)}") from None


_MISSING = object()


class Remote:
    """A solution callable as the tests see it: calling it runs the call in the solution process."""

    __slots__ = ("_solution", "_name")

    def __init__(self, solution, name):
        self._solution, self._name = solution, name

    def __call__(self, *args, **kwargs):
        return self._solution.call(self._name, args, kwargs)

    def __repr__(self):
        return f"<solution.{self._name}>"


def arg_code(value):
    if isinstance(value, Remote):
        return {"ref": value._name}
    if isinstance(value, types.ModuleType):  # a stdlib module the test got from the solution's namespace
        return {"module": value.__name__}
    try:
        return encode(value)
    except NotPlainData as exc:
        raise UnsupportedTest(f"the test passes the solution {exc}") from None


def copy_back(mine, theirs):
    """In-place changes the solution made to a list / dict / set / bytearray argument, made here too."""
    if type(theirs) is not type(mine):
        raise BadReply(f"argument came back as a {type(theirs).__name__}")
    if type(mine) in (list, bytearray):
        mine[:] = theirs
    else:
        mine.clear()
        mine.update(theirs)


def candidate_exception(raised):
    if type(raised) is not list or len(raised) != 3:
        return BadReply(f"not an exception reply: {str(raised)[:200]}")
    name, message, is_exception = str(raised[0]), str(raised[1]), raised[2] is True
    if not is_exception:
        return SolutionExit(f"{name}: {message}")
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(message)  # a builtin type: the test may expect it by name
        except TypeError:  # e.g. UnicodeDecodeError wants five arguments
            pass
    return SolutionError(f"{name}: {message}")


def free_names(tree):
    """Names a test reads but never binds: the ones it may take from the solution."""
    loaded, bound = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return sorted(loaded - bound)


def run_grader():
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # no ptrace or /proc/<pid>/{mem,fd} by anyone not root
    report(event="setup", enforced=enforced)
    tests = JOB["tests"]
    solution = Solution()
    ns = {"__name__": "__grader__", "__builtins__": builtins}
    index = None
    try:
        solution.wait_ready()
        for index, test in enumerate(tests):
            report(event="test", index=index)
            linecache.cache[f"test_{index}"] = (len(test), None, test.splitlines(True), f"test_{index}")
            tree = compile(test, f"test_{index}", "exec", ast.PyCF_ONLY_AST)
            for name in free_names(tree):  # builtins always win: a solution cannot redefine `sorted`
                if name not in ns and not hasattr(builtins, name) and not name.startswith("__"):
                    value = solution.lookup(name)
                    if value is not _MISSING:
                        ns[name] = value
            exec(compile(tree, f"test_{index}", "exec"), ns)
    except BaseException as exc:  # SystemExit inside a test is a failure too
        tb = exc.__traceback__.tb_next if exc.__traceback__ else None
        try:
            traceback.print_exception(type(exc), exc, tb)
        except BaseException:
            pass
        extra = {} if index is None else {"index": index}
        report(event="exception", type=type(exc).__name__, message=text_of(exc), **extra)
        return 1
    report(event="done", count=len(tests))
    return 0


def main():
    global NONCE
    role, job_fd = sys.argv[1], int(sys.argv[2])
    with open(job_fd, encoding="utf-8") as f:
        JOB.update(json.load(f))
    NONCE = JOB["nonce"]
    isolate()
    sys.exit(run_solution() if role == "solution" else run_grader())


if __name__ == "__main__":
    main()
