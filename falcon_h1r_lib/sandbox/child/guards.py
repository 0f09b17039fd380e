"""Best-effort guards in the solution child: NOT a security boundary (see sandbox/__init__.py).

Any code that wants to can undo them; they turn honest mistakes into clear errors. Kept apart from
`isolation.py` so nobody mistakes one for the other.
"""

import builtins
import io
import os
import posix
import sys


def install_guards(enforced):
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
