"""The solution role: run the candidate's code and, for `run_tests`, answer the grader's calls over the pipes.

It sees the names and arguments of calls, never the tests nor their expected values; its own reports never
decide a verdict (only the grader's do).
"""

import json
import linecache
import sys
import traceback
import types

from .codec import Lines, NotPlainData, decode, encode, send, text_of
from .guards import install_guards


def fail(exc, tb, ns, report, **extra):
    if isinstance(exc, MemoryError):
        ns.clear()  # free the candidate's data so reporting can allocate
    try:
        traceback.print_exception(type(exc), exc, tb)
    except BaseException:
        pass
    report(event="exception", type=type(exc).__name__, message=text_of(exc), **extra)


def run_solution(job, enforced, report):
    code, serve = job["code"], job["mode"] == "serve"
    install_guards(enforced)
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
        fail(exc, exc.__traceback__.tb_next, ns, report)
        return 1
    if not serve:
        return 0
    calls, replies = Lines(job["calls_fd"], 1 << 62), job["replies_fd"]
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
