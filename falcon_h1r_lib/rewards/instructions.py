"""Verifier for the "other" domain: programmatic instruction-following rules (IFEval-style).

A rule is a dict ``{"rule": name, ...}``; words are runs of letters, digits and apostrophes, compared
case-insensitively (``starts_with`` "yes" accepts "YES" when the prompt also asks for capitals).
"""

from __future__ import annotations

import re

from .format import answer_part

_WORD = re.compile(r"[A-Za-z0-9']+")
_ITEM = re.compile(r"^(\d+)\.\s+(\S.*)$")


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def _numbered(text: str, n: int) -> bool:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if len(lines) != n:
        return False
    for i, ln in enumerate(lines, 1):
        m = _ITEM.match(ln)
        if not m or int(m.group(1)) != i:
            return False
    return True


def _count_from(text: str, values: list[str], n: int) -> bool:
    pool = {v.lower() for v in values}
    return len({w.lower() for w in words(text)} & pool) == n


def _word_count(text: str, rule: dict) -> bool:
    k = len(words(text))
    if "exact" in rule:
        return k == rule["exact"]
    if "max" in rule or "min" in rule:
        return rule.get("min", 0) <= k <= rule.get("max", k)
    raise ValueError(f"word_count rule needs 'exact', 'max' or 'min': {rule!r}")


def _has_letters(text: str) -> bool:
    return any(ch.isalpha() for ch in text)


RULES = {
    "word_count": lambda t, r: _word_count(t, r),
    "all_lowercase": lambda t, r: _has_letters(t) and t == t.lower(),
    "all_uppercase": lambda t, r: _has_letters(t) and t == t.upper(),
    "starts_with": lambda t, r: bool(words(t)) and words(t)[0].lower() == str(r["value"]).lower(),
    "ends_with": lambda t, r: bool(words(t)) and words(t)[-1].lower() == str(r["value"]).lower(),
    "contains_word": lambda t, r: str(r["value"]).lower() in {w.lower() for w in words(t)},
    "numbered_list": lambda t, r: _numbered(t, int(r["n"])),
    "count_from": lambda t, r: _count_from(t, r["values"], int(r["n"])),
    "no_commas": lambda t, r: "," not in t,
}


def check_rule(rule: dict, text: str) -> bool:
    try:
        fn = RULES[rule["rule"]]
    except KeyError as e:
        raise ValueError(f"unknown instruction rule {rule.get('rule')!r}; known: {sorted(RULES)}") from e
    return bool(fn(text.strip(), rule))


def check_rules(rules: list[dict], text: str) -> list[bool]:
    """One verdict per rule, in order (for per-rule error analysis)."""
    return [check_rule(r, text) for r in rules]


def verify_other(problem: dict, response: str) -> bool:
    """True iff the answer part is non-empty and satisfies every rule of ``problem["rules"]``."""
    if "rules" not in problem:
        raise ValueError(f"problem {problem.get('id')!r}: 'other' domain needs 'rules'")
    text = answer_part(response)
    return bool(text) and all(check_rules(problem["rules"], text))
