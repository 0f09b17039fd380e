"""Code families: small Python functions from templates, with hidden assert tests.

Each family has one template per level; higher levels compose more operations or add edge cases (empty
input, ties, case). Each template also carries the bug a careless solver would write (``>=`` for ``>``,
a dropped edge case); the generator adds test inputs until the hidden tests catch that bug, so a
teacher's buggy trace is rejected by the verifier exactly as in [P] §2.1 ("unit tests").
Expected values come from running the reference solution in-process: it is our own template code.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from . import Family


@dataclass(frozen=True)
class _Template:
    args: str  # signature
    desc: str  # "returns ..." (str.format with the constants)
    body: str  # reference body, 4-space indented continuation lines
    bug: str  # the plausible wrong body
    steps: tuple[str, ...]
    consts: Callable[[random.Random], dict]
    inputs: Callable[[random.Random, dict], tuple]  # one argument tuple


def _ints(rng: random.Random, lo: int = -5, hi: int = 12, n_max: int = 6, extra: tuple = ()) -> list[int]:
    xs = [rng.randint(lo, hi) for _ in range(rng.randint(0, n_max))]
    for v in extra:  # boundary values the bug trips on
        if rng.random() < 0.5:
            xs.insert(rng.randint(0, len(xs)), v)
    return xs


def _word(rng: random.Random, letters: str = "abeiorstu", n_max: int = 7) -> str:
    return "".join(rng.choice(letters) for _ in range(rng.randint(0, n_max)))


def _palindrome_or_not(rng: random.Random) -> str:
    half = _word(rng, "abeor", 3)
    s = half + (rng.choice("abe") if rng.random() < 0.5 else "") + half[::-1]
    if rng.random() < 0.3:
        s += rng.choice("abe")
    return "".join(ch.upper() if rng.random() < 0.3 else ch for ch in s)


def _K(rng: random.Random) -> dict:
    return {"k": rng.randint(1, 8), "m": rng.choice([2, 3])}


def _NONE(rng: random.Random) -> dict:
    return {}


def _RANGE(rng: random.Random) -> dict:
    lo = rng.randint(-3, 5)
    return {"lo": lo, "hi": lo + rng.randint(2, 8)}


SUM_IF = (
    _Template("xs", "the sum of the numbers in xs", "return sum(xs)", "return sum(xs[1:])",
              ("add up every x in xs", "return the total"), _NONE, lambda r, c: (_ints(r),)),
    _Template("xs", "the sum of the even numbers in xs", "return sum(x for x in xs if x % 2 == 0)",
              "return sum(x for x in xs if x % 2 == 1)",
              ("keep x when x % 2 == 0", "add the kept values"), _NONE, lambda r, c: (_ints(r),)),
    _Template("xs", "the sum of the numbers in xs greater than {k}", "return sum(x for x in xs if x > {k})",
              "return sum(x for x in xs if x >= {k})",
              ("keep x when x > {k}, not when x == {k}", "add the kept values"), _K,
              lambda r, c: (_ints(r, extra=(c["k"],)),)),
    _Template("xs", "the sum of the squares of the numbers in xs greater than {k}",
              "return sum(x * x for x in xs if x > {k})", "return sum(x * 2 for x in xs if x > {k})",
              ("keep x when x > {k}", "square each kept x: x * x", "add the squares"), _K,
              lambda r, c: (_ints(r, extra=(c["k"],)),)),
    _Template("xs", "the sum of the squares of the numbers in xs that are greater than {k} and divisible by {m}",
              "return sum(x * x for x in xs if x > {k} and x % {m} == 0)",
              "return sum(x * x for x in xs if x > {k} or x % {m} == 0)",
              ("keep x when x > {k} and x % {m} == 0", "both conditions must hold", "add x * x"), _K,
              lambda r, c: (_ints(r, extra=(c["k"], c["m"] * 2)),)),
)

STRINGS = (
    _Template("s", "s reversed", "return s[::-1]", "return s[:0:-1]",
              ("a slice with step -1 reverses", "s[::-1] keeps every character"), _NONE, lambda r, c: (_word(r),)),
    _Template("s", "the number of times '{c}' occurs in s", "return s.count('{c}')", "return s[1:].count('{c}')",
              ("count every '{c}' in s, the first character too",), lambda r: {"c": r.choice("aeo")},
              lambda r, c: ((c["c"] if r.random() < 0.5 else "") + _word(r, "abeo"),)),
    _Template("s", "s reversed and in capital letters", "return s[::-1].upper()", "return s.upper()",
              ("reverse with s[::-1]", "then .upper()"), _NONE, lambda r, c: (_word(r),)),
    _Template("s", "the number of vowels (a e i o u) in s", "return sum(1 for ch in s if ch in 'aeiou')",
              "return sum(1 for ch in s if ch in 'aeio')",
              ("vowels are aeiou", "count the characters of s that are vowels"), _NONE,
              lambda r, c: (_word(r, "abeiorstu"),)),
    _Template("s", "True if s reads the same backwards ignoring case, else False",
              "t = s.lower()\n    return t == t[::-1]", "return s == s[::-1]",
              ("lowercase first: t = s.lower()", "compare t with t[::-1]"), _NONE,
              lambda r, c: (_palindrome_or_not(r),)),
)

LISTS = (
    _Template("xs", "the largest number in xs (xs is not empty)", "return max(xs)", "return xs[-1]",
              ("scan xs for the largest value", "max(xs)"), _NONE, lambda r, c: (_ints(r) or [r.randint(-5, 9)],)),
    _Template("xs", "the smallest number in xs (xs is not empty)", "return min(xs)", "return xs[0]",
              ("scan xs for the smallest value", "min(xs)"), _NONE, lambda r, c: (_ints(r) or [r.randint(-5, 9)],)),
    _Template("xs", "the position of the first largest number in xs (xs is not empty)",
              "return xs.index(max(xs))", "return len(xs) - 1 - xs[::-1].index(max(xs))",
              ("find m = max(xs)", "return the first index of m: xs.index(m)"), _NONE,
              lambda r, c: (_ints(r, 0, 4) or [r.randint(0, 4)],)),
    _Template("xs", "the largest number in xs, or {d} if xs is empty", "return max(xs) if xs else {d}",
              "return max(xs)", ("empty xs gives {d}", "else max(xs)"), lambda r: {"d": r.choice([-1, 0, 99])},
              lambda r, c: (_ints(r),)),
    _Template("xs", "the second largest distinct number in xs, or None if there is none",
              "vals = sorted(set(xs))\n    return vals[-2] if len(vals) > 1 else None",
              "vals = sorted(xs)\n    return vals[-2] if len(vals) > 1 else None",
              ("drop duplicates with set(xs)", "sort and take the second from the end", "fewer than 2 values gives None"),
              _NONE, lambda r, c: (_ints(r, -3, 5),)),
)

POLY = (
    _Template("x", "the value of {a}*x+{b}", "return {a} * x + {b}", "return {a} * x - {b}",
              ("multiply x by {a}", "add {b}"), lambda r: {"a": r.randint(2, 9), "b": r.randint(1, 9)},
              lambda r, c: (r.randint(-3, 6),)),
    _Template("x", "the value of {a}*x**2+{b}*x+{c}", "return {a} * x**2 + {b} * x + {c}",
              "return {a} * x * 2 + {b} * x + {c}", ("x**2 is x times x", "{a}*x**2 + {b}*x + {c}"),
              lambda r: {"a": r.randint(1, 5), "b": r.randint(1, 5), "c": r.randint(0, 9)},
              lambda r, c: (r.randint(-3, 6),)),
    _Template("cs, x", "the value at x of the polynomial with coefficients cs, constant term first",
              "return sum(c * x**i for i, c in enumerate(cs))",
              "return sum(c * x**(i + 1) for i, c in enumerate(cs))",
              ("cs[i] multiplies x**i", "sum over i"), _NONE,
              lambda r, c: (_ints(r, -3, 5, 4) or [1], r.randint(-3, 4))),
    _Template("cs, x", "the value at x of the polynomial with coefficients cs, highest power first",
              "r = 0\n    for c in cs:\n        r = r * x + c\n    return r",
              "r = 0\n    for c in cs:\n        r = r + c * x\n    return r",
              ("horner: r = r * x + c", "for each c in cs"), _NONE,
              lambda r, c: (_ints(r, -3, 5, 4) or [1], r.randint(-3, 4))),
    _Template("cs, x", "the derivative at x of the polynomial with coefficients cs, constant term first",
              "return sum(i * c * x**(i - 1) for i, c in enumerate(cs) if i > 0)",
              "return sum(i * c * x**i for i, c in enumerate(cs))",
              ("d/dx of c * x**i is i * c * x**(i-1)", "skip i = 0", "sum the terms"), _NONE,
              lambda r, c: (_ints(r, -3, 5, 4) or [1], r.randint(-3, 4))),
)

CLAMP = (
    _Template("x", "x limited to the range {lo} to {hi}", "return max({lo}, min({hi}, x))", "return min({hi}, x)",
              ("cap at {hi} with min", "raise to {lo} with max"), _RANGE, lambda r, c: (r.randint(-10, 15),)),
    _Template("x, lo, hi", "x limited to the range lo to hi (lo <= hi)", "return max(lo, min(hi, x))",
              "return max(lo, min(hi - 1, x))", ("min(hi, x) caps from above, hi itself allowed", "max(lo, ..)"),
              _NONE, lambda r, c: (lambda lo: (r.randint(-10, 15), lo, lo + r.randint(0, 8)))(r.randint(-5, 5))),
    _Template("xs", "the list xs with every number limited to the range {lo} to {hi}",
              "return [max({lo}, min({hi}, x)) for x in xs]", "return [max({lo}, min({hi} - 1, x)) for x in xs]",
              ("clamp each x: max({lo}, min({hi}, x))", "keep the order"), _RANGE,
              lambda r, c: (_ints(r, -8, 15, extra=(c["hi"],)),)),
    _Template("xs", "how many numbers in xs lie outside the range {lo} to {hi}",
              "return sum(1 for x in xs if x < {lo} or x > {hi})",
              "return sum(1 for x in xs if x <= {lo} or x > {hi})",
              ("outside means x < {lo} or x > {hi}", "the ends count as inside"), _RANGE,
              lambda r, c: (_ints(r, -8, 15, extra=(c["lo"],)),)),
    _Template("xs", "the total distance the numbers in xs move when limited to the range {lo} to {hi}",
              "return sum(abs(x - max({lo}, min({hi}, x))) for x in xs)",
              "return sum(x - max({lo}, min({hi}, x)) for x in xs)",
              ("clamp each x", "distance is abs(x - clamped)", "add the distances"), _RANGE,
              lambda r, c: (_ints(r, -8, 15),)),
)

_TABLE = {"sum_if": ("total", SUM_IF), "strings": ("text", STRINGS), "lists": ("pick", LISTS),
          "poly": ("poly", POLY), "clamp": ("clamp", CLAMP)}


def _run(code: str, entry: str, args: tuple):
    """Evaluate our own template code in-process (never model output: that goes through the sandbox)."""
    ns: dict = {}
    exec(compile(code, f"<template {entry}>", "exec"), ns)  # noqa: S102 - trusted template text
    try:
        return True, ns[entry](*args)
    except Exception as e:  # the *bug* may crash on an edge case; that also counts as caught
        return False, type(e).__name__


def _make(family: str):
    entry, templates = _TABLE[family]

    def make(rng: random.Random, level: int) -> dict:
        t = templates[level - 1]
        c = t.consts(rng)
        code = f"def {entry}({t.args}):\n    {t.body.format(**c)}"
        bug = f"def {entry}({t.args}):\n    {t.bug.format(**c)}"
        cases, caught, seen = [], False, set()
        target = 4 + level // 3  # distinct tests; one must fail the bug, two must expect different values
        for _ in range(400):
            diverse = len({repr(w) for _, w in cases}) > 1
            if len(cases) >= target and caught and diverse:
                break
            args = t.inputs(rng, c)
            if repr(args) in seen:
                continue
            ok_ref, want = _run(code, entry, args)
            if not ok_ref:
                raise AssertionError(f"{family} level {level}: reference raised {want} on {args!r}")
            hit = _run(bug, entry, args) != (True, want)
            new_value = repr(want) not in {repr(w) for _, w in cases}
            if (hit and not caught) or (new_value and not diverse) or len(cases) < target - (not caught) - (not diverse):
                cases.append((args, want))
                seen.add(repr(args))
                caught = caught or hit
        if not caught:
            raise AssertionError(f"{family} level {level}: no test input separates the bug {t.bug!r}")
        tests = [f"assert {entry}({', '.join(map(repr, a))}) == {w!r}" for a, w in cases]
        args0, want0 = max(cases, key=lambda aw: len(repr(aw[0])))
        return {
            "entry_point": entry, "signature": f"{entry}({t.args})", "desc": t.desc.format(**c),
            "code": code, "bug": bug, "tests": tests, "steps": [s.format(**c) for s in t.steps],
            "example": f"{entry}({', '.join(map(repr, args0))}) == {want0!r}",
        }

    return make


def _pose(p: dict) -> dict:
    return {
        "prompt": f"write a python function {p['signature']} that returns {p['desc']}.",
        "answer": p["code"], "tests": list(p["tests"]), "entry_point": p["entry_point"],
    }


def _solve(p: dict, fault: random.Random | None) -> tuple[list[str], str]:
    return list(p["steps"]), (p["bug"] if fault else p["code"])


def _check(p: dict, final: str) -> str:
    return f"check: {p['example']}"


FAMILIES = tuple(
    Family("code", name, _make(name), _pose, _solve, _check, "write it, test it")
    for name in _TABLE
)
