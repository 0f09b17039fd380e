"""Math verifier ([P] §3.2): tier 1 = normalised string / exact rational match, tier 2 = math-verify.

Extraction (the one response reader, `format`): the final ``\\boxed{}`` of the answer part; an unclosed
final box is no answer; math-verify's own extraction only when there is no box (math-verify merges *all*
boxes of a response into a set, "1,3/4", which is no single vote).
Equality (verdicts and DeepConf / majority votes alike, `answers_equivalent`):
- tier 1 decides only what it can decide exactly: equal strings or equal values are equal, two unequal exact
  rationals are unequal; a decimal is an approximation, so "0.0833333333333333" vs "\\frac{1}{12}" goes on;
- math-verify then compares, and a True is vetoed when both sides are numbers that differ by more than
  their precision allows (`_distinct`): math-verify rounds to 6 decimals and chops, so any two values
  below ~1e-7 compare equal (1/2^99 vs 1/2^98, 1/2004! vs 1/2006!).
math-verify guards its sympy calls with ``signal.alarm``, which raises outside the main thread, so off the
main thread its timeouts are switched off (the caller's thread pool bounds the time instead).
"""

from __future__ import annotations

import re
import threading
from fractions import Fraction

from .format import LATEX_SPACING, answer_part, final_boxed

_TIMEOUT_S = 5
_FRAC = re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)(/[+-]?(\d+(\.\d*)?|\.\d+))?$")
_EXACT_RTOL = 1e-30  # two exact values closer than this (at 50 digits) are left to math-verify
_DECIMAL_RTOL = 1e-5  # a decimal must match to this relative precision (math-verify: 6 places absolute)


def clean_spacing(s: str) -> str:
    """Drop LaTeX spacing (``\\,`` ``\\!`` ``\\ `` ``\\quad`` ``~``) and whitespace, which never change a value in
    math mode; a single space stays only between two letters, where it may end a command name (``\\cdot y``),
    and a command name before a digit always gets one (``\\lor6`` and ``\\lor 6`` read ``\\lor 6``: math-verify
    drops what follows ``\\lor6``, so ``5 \\lor 6`` would read as 5)."""
    s = " ".join(LATEX_SPACING.sub(" ", s).split())
    s = re.sub(r" (?![A-Za-z])|(?<![A-Za-z]) ", "", s)
    return re.sub(r"(\\[A-Za-z]+)(?=\d)", r"\1 ", s)


def normalize(s: str) -> str:
    """Strip LaTeX dressing that never changes a value: $, spaces, \\left/\\right, \\!, braces of \\frac."""
    s = s.strip().strip("$").strip()
    for junk in ("\\left", "\\right", "\\!", "\\,", "\\;", "\\displaystyle", " "):
        s = s.replace(junk, "")
    s = re.sub(r"\\text\{([^{}]*)\}", r"\1", s)
    prev = None
    while prev != s:  # \frac{a}{b} -> (a)/(b), innermost first
        prev = s
        s = _FRAC.sub(lambda m: f"({m.group(1)})/({m.group(2)})", s)
    s = re.sub(r"\((-?[\d.]+)\)", r"\1", s)  # (3)/(4) -> 3/4
    return s.rstrip(".")


def to_number(s: str) -> Fraction | None:
    """Exact value of a plain number "42", "-0.5", "3/4", "\\frac{1}{2}", "-\\frac{3}{4}"; else None."""
    t = normalize(s)
    if not _NUMBER.match(t):
        return None
    try:
        num, _, den = t.partition("/")
        v = Fraction(num) / Fraction(den) if den else Fraction(num)
    except (ValueError, ZeroDivisionError):
        return None
    return v


def _mv_timeout() -> int | None:
    return _TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


def _mv_parse(text: str) -> list:
    from math_verify import parse

    return parse(text, parsing_timeout=_mv_timeout())


def _mv_verify(gold: list, pred: list) -> bool:
    from math_verify import verify

    return bool(verify(gold, pred, timeout_seconds=_mv_timeout()))


def _tier1(gold: str, pred: str) -> bool | None:
    """True / False when decidable exactly (equal strings or values; two unequal exact rationals); None to
    defer to math-verify, also for a decimal, which approximates a value it need not equal."""
    if normalize(gold) == normalize(pred):
        return True
    g, p = to_number(gold), to_number(pred)
    if g is None or p is None:
        return None
    if g == p:
        return True
    if "." not in normalize(gold) and "." not in normalize(pred):
        return False  # two exact rationals: math-verify could not say more
    return None


def _distinct(gold, pred) -> bool:
    """Two parsed numbers that differ by more than their precision allows: relative 1e-30 at 50 digits when
    both are exact, 1e-5 when a decimal is involved (math-verify's 6-place rounding is at least this strict
    from 0.1 up, so this only tightens it below 0.1). Tuples compare elementwise; symbols are left alone."""
    from sympy import Expr, Float
    from sympy import Tuple as SympyTuple

    if isinstance(gold, (tuple, list, SympyTuple)) and isinstance(pred, (tuple, list, SympyTuple)):
        return len(gold) == len(pred) and any(_distinct(g, p) for g, p in zip(gold, pred))
    if not (isinstance(gold, Expr) and isinstance(pred, Expr) and gold.is_number and pred.is_number):
        return False

    def differ() -> bool:
        g, p = gold.evalf(50), pred.evalf(50)
        scale = max(abs(g), abs(p))
        rtol = _EXACT_RTOL if not (gold.has(Float) or pred.has(Float)) else _DECIMAL_RTOL
        return bool(scale != 0 and abs(g - p) > rtol * scale)

    from math_verify.errors import TimeoutException
    from math_verify.utils import timeout

    try:
        return timeout(_mv_timeout())(differ)()
    except (TypeError, ValueError, ArithmeticError, RecursionError, TimeoutException):
        return False  # sympy cannot evaluate or order them (nan, zoo, too slow): math-verify's verdict stands


def _mv_equal(gold: list, pred: list) -> bool:
    return _mv_verify(gold, pred) and not _distinct(gold[0], pred[0])


def answers_equivalent(a: str | None, b: str | None) -> bool:
    """Same value? "0.5" ~ "\\frac{1}{2}" ~ "1/2", "3/4" ~ "6/8" (equal numbers are one DeepConf vote)."""
    if a is None or b is None:
        return False
    a, b = clean_spacing(a), clean_spacing(b)
    decided = _tier1(a, b)
    if decided is not None:
        return decided
    pa, pb = _mv_parse(f"${a}$"), _mv_parse(f"${b}$")
    # both ways: math-verify's verify(gold, pred) is not symmetric ("1 \\le x \\le 2" ~ "[1,2]" one way only),
    # and a vote grouping must not depend on which answer came first
    return bool(pa and pb) and _mv_equal(pa, pb) and _mv_equal(pb, pa)


def _final(response: str) -> tuple[str, str] | None:
    """("box", the final box's content) or ("text", the whole answer part) when there is no box; None when
    there is no answer: no answer part, or a final box that never closes or is empty."""
    answer = answer_part(response)
    if not answer:
        return None
    box = final_boxed(answer)
    if not box.opened:
        return "text", answer
    content = clean_spacing(box.content) if box.content is not None else ""
    return ("box", content) if content else None


def extract_math_answer(response: str) -> str | None:
    """The final answer string: the final ``\\boxed{}`` of the answer part, else math-verify's extraction."""
    final = _final(response)
    if final is None:
        return None
    kind, text = final
    if kind == "box":
        return text
    parsed = _mv_parse(text)
    return (clean_spacing(str(parsed[1])) or None) if len(parsed) > 1 else None


def verify_math(gold: str, response: str) -> bool | None:
    """Binary correctness of the final answer. False: no answer or a wrong one. None: the gold itself is
    unreadable to both tiers (a labelling problem, not the model's fault)."""
    gold = clean_spacing(str(gold))
    final = _final(response)
    if final is None:
        return False
    kind, pred = final
    if kind == "box":
        decided = _tier1(gold, pred)
        if decided is not None:
            return decided
    gold_parsed = _mv_parse(f"${gold}$")
    if not gold_parsed:
        return None
    pred_parsed = _mv_parse(f"${pred}$") if kind == "box" else _mv_parse(pred)
    if not pred_parsed:
        return False
    return _mv_equal(gold_parsed, pred_parsed)
