"""Kernel-enforced containment of one child: namespaces, a private root, rlimits, uid drop, no_new_privs.

The security boundary (unlike `guards.py`); each layer is recorded in `enforced` only if it took.
"""

import ctypes
import os
import resource
import signal
import sys

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT = 0x1, 0x2, 0x4, 0x20
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 0x40000
PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 4, 38
# What the private root holds besides the interpreter's prefix and the working directory.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_FILES = ("/etc/ld.so.cache",)  # the dynamic loader's index of /usr/lib
DEVICES = ("null", "zero", "full", "random", "urandom")

libc = ctypes.CDLL(None, use_errno=True)


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


def private_root(job, uid):
    """chroot into a fresh tmpfs holding only system libraries, the interpreter, a few devices and a private
    working dir: host files (datasets and their tests, other sandboxes, /proc) do not exist in here."""
    root, workdir = job["root_dir"], job["workdir"]
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
    opts = f"size={job['file_size_mb']}m,mode=0700,uid={uid},gid={uid}"
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


def set_limits(job, nproc, enforced):
    mb = 1 << 20
    cpu = job["cpu_limit_s"]
    limits = [("rlimit_cpu", resource.RLIMIT_CPU, (cpu, cpu + 1)),
              ("rlimit_as", resource.RLIMIT_AS, (job["memory_mb"] * mb,) * 2),
              ("rlimit_fsize", resource.RLIMIT_FSIZE, (job["file_size_mb"] * mb,) * 2),
              ("rlimit_core", resource.RLIMIT_CORE, (0, 0)),
              ("rlimit_nofile", resource.RLIMIT_NOFILE, (256, 256))]
    if nproc is not None:
        limits.append(("rlimit_nproc", resource.RLIMIT_NPROC, (nproc, nproc)))
    for name, which, value in limits:
        resource.setrlimit(which, value)
        enforced.append(name)


def isolate(job):
    """Kernel-enforced containment (see sandbox/__init__.py); returns the layers that took, in order."""
    enforced = []
    uid = job["uid"]
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
            os.chdir(job["workdir"])
        else:  # from here a failure is fatal: a half-built root is no sandbox
            private_root(job, uid)
            enforced.extend(("mountns", "fs_view"))
        set_limits(job, None, enforced)
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0:
            enforced.append("no_new_privs")
        # Without the private root a stdlib under a closed directory would be unreadable to the fresh uid:
        # then keep root (the code must be able to import) and say so by not listing uid_drop.
        if "fs_view" in enforced or first_closed_ancestor(os.path.realpath(sys.base_prefix)) is None:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            enforced.append("uid_drop")
            resource.setrlimit(resource.RLIMIT_NPROC, (job["max_tasks"],) * 2)  # counted now: not root
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
        os.chdir(job["workdir"])
        set_limits(job, 0, enforced)  # not root: the kernel enforces it, so no fork and no threads
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0:
            enforced.append("no_new_privs")
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversize writes fail with EFBIG instead of killing
    sys.set_int_max_str_digits(0)  # big integers cross the pipe as decimal text
    return enforced
