"""Math verifier ([P] §3.2): tier 1 = normalised string / exact rational match, tier 2 = math-verify.

Extraction: the last ``\\boxed{}`` of the answer part; math-verify's own extraction only when there is no
box (math-verify merges *all* boxes of a response into a set, "1,3/4", which is no single vote).
math-verify guards its sympy calls with ``signal.alarm``, which raises outside the main thread, so off the
main thread its timeouts are switched off (the caller's thread pool bounds the time instead).
"""

from __future__ import annotations

import re
import threading
from fractions import Fraction

from .format import answer_part, last_boxed

_TIMEOUT_S = 5
_FRAC = re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)(/[+-]?(\d+(\.\d*)?|\.\d+))?$")


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
    """True / False when decidable by string or exact rational comparison; None to defer to math-verify."""
    if normalize(gold) == normalize(pred):
        return True
    g, p = to_number(gold), to_number(pred)
    if g is not None and p is not None:
        return g == p  # two exact rationals: math-verify could not say more
    return None


def answers_equivalent(a: str | None, b: str | None) -> bool:
    """Same value? "0.5" ~ "\\frac{1}{2}" ~ "1/2", "3/4" ~ "6/8" (equal numbers are one DeepConf vote)."""
    if a is None or b is None:
        return False
    decided = _tier1(a, b)
    if decided is not None:
        return decided
    pa, pb = _mv_parse(f"${a}$"), _mv_parse(f"${b}$")
    return bool(pa and pb) and _mv_verify(pa, pb)


def extract_math_answer(response: str) -> str | None:
    """The final answer string: last ``\\boxed{}`` of the answer part, else math-verify's extraction."""
    answer = answer_part(response)
    if not answer:
        return None
    box = last_boxed(answer)
    if box is not None:
        return box.strip() or None
    parsed = _mv_parse(answer)
    return str(parsed[1]) if len(parsed) > 1 else None


def verify_math(gold: str, response: str) -> bool | None:
    """Binary correctness of the final answer. False: no answer or a wrong one. None: the gold itself is
    unreadable to both tiers (a labelling problem, not the model's fault)."""
    gold = str(gold).strip()
    answer = answer_part(response)
    if not answer:
        return False
    pred = last_boxed(answer)
    if pred is not None:
        decided = _tier1(gold, pred)
        if decided is not None:
            return decided
    gold_parsed = _mv_parse(f"${gold}$")
    if not gold_parsed:
        return None
    pred_parsed = _mv_parse(f"${pred}$") if pred is not None else _mv_parse(answer)
    if not pred_parsed:
        return False
    return _mv_verify(gold_parsed, pred_parsed)
