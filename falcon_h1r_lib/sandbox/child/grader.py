"""The grader role: run the tests in a process of its own, taking names from the solution as stand-ins.

A name a test takes from the solution calls across the pipe and gets plain data back (`codec.py`), so
`==`, `assert` and everything else a test evaluates are the grader's own. Only this role reports test
progress to the parent, so the candidate cannot reach the verdict.
"""

import ast
import builtins
import importlib
import json
import linecache
import sys
import traceback
import types

from .codec import BadReply, Lines, NotPlainData, decode, encode, send, text_of
from .isolation import PR_SET_DUMPABLE, libc


class SolutionGone(BaseException):
    """The solution process ended (or never became ready) while the grader needed it."""


class NotPlainResult(BaseException):
    """The solution returned something other than plain data (see codec.PLAIN): the test fails."""


class SolutionExit(BaseException):
    """The solution raised SystemExit / KeyboardInterrupt / a bare BaseException during a call."""


class UnsupportedTest(BaseException):
    """The test passes the solution something that cannot cross the pipe: no verdict, not a failure."""


class SolutionError(Exception):
    """A candidate-defined exception (only builtin exception types are re-raised as themselves)."""


class Solution:
    """The grader's view of the solution process: lookups and calls over the pipe pair."""

    def __init__(self, job):
        self.calls = job["calls_fd"]
        self.replies = Lines(job["replies_fd"], job["max_reply_bytes"])

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


def run_grader(job, enforced, report):
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # no ptrace or /proc/<pid>/{mem,fd} by anyone not root
    report(event="setup", enforced=enforced)
    tests = job["tests"]
    solution = Solution(job)
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
