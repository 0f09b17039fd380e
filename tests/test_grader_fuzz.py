"""Grader fuzzing (issue 13): the extractors and verifiers never hang and never raise on arbitrary text, and a
response and its whitespace / LaTeX-spacing variants (``\\,`` ``\\ `` ``\\!`` extra spaces and newlines) get the
same reading and the same verdict. Example counts are kept small (a few seconds); derandomised, no database.
"""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from falcon_h1r_lib.rewards import (
    answers_equivalent,
    extract_answer,
    format_ok,
    parse_response,
    quality_issues,
    verify,
    verify_math,
    verify_science,
)
from falcon_h1r_lib.rewards.format import final_boxed, final_code_block, read_choice

settings.register_profile("graders", max_examples=40, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("graders")

SLOW_S = 20.0  # math-verify bounds each parse / compare at 5 s on the main thread; a hang runs past all of them
# Pieces graders react to, mixed with arbitrary unicode: what a policy's output is made of.
PIECES = ["<think>", "</think>", "\\boxed{", "\\boxed {", "{", "}", "```python\n", "```", "\n", " ", "\\frac{",
          "}{", "\\text{", "\\textbf{", "Answer:", "answer is", "option", "(", ")", "B", "b", "A.", "$", "\\,",
          "\\!", "\\ ", "0.5", "1", "2004!", "/", "^{-17}", "-", "**", "\\sqrt{", "\\cdot", "x", "e", "\\pi", "10"]
texts = st.one_of(st.text(max_size=80), st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=4)),
                                                 max_size=30).map("".join))
GOLDS = ["42", "\\frac{1}{2}", "x^2+1", "\\sqrt{2}", "0.5", "10^{-17}"]
PROBLEMS = {"math": {"id": "m", "domain": "math", "answer": "42"},
            "science": {"id": "s", "domain": "science", "answer": "B"},
            "code": {"id": "c", "domain": "code", "tests": ["assert f(1) == 2"]},
            "other": {"id": "o", "domain": "other", "rules": [{"rule": "no_commas"}]}}


def timed(fn, *args):
    start = time.monotonic()
    out = fn(*args)
    assert time.monotonic() - start < SLOW_S, (fn.__name__, args)
    return out


@given(texts)
def test_readers_never_raise_on_arbitrary_text(text):
    parsed = parse_response(text)
    assert parsed.issue is None or isinstance(parsed.issue, str)
    assert format_ok(text) is (parsed.issue is None)
    final_boxed(text), final_code_block(text), read_choice(text)
    for domain, problem in PROBLEMS.items():
        assert isinstance(quality_issues(problem, text), list)
        answer = timed(extract_answer, text, domain)
        assert answer is None or isinstance(answer, str)


@given(texts, st.sampled_from(GOLDS))
def test_verifiers_never_raise_on_arbitrary_text(text, gold):
    response = f"<think>\nx\n</think>\n\n{text}"
    assert timed(verify_math, gold, response) in (True, False, None)
    assert timed(verify_math, gold, text) in (True, False, None)
    assert verify_science(PROBLEMS["science"], response) in (True, False)
    assert timed(verify, PROBLEMS["other"], response) in (True, False)
    assert timed(answers_equivalent, gold, text) in (True, False)


@settings(max_examples=15)
@given(texts)
def test_code_verifier_never_raises_on_arbitrary_text(text):
    """Code in a fence: mostly unparsable (no process spawned), sometimes valid Python run in the sandbox."""
    response = f"<think>\nx\n</think>\n\n```python\n{text}\n```"
    assert timed(verify, PROBLEMS["code"], response) in (True, False, None)


# ------------------------------------------------------------------------------------- spacing variants
SPACES = [" ", "  ", "\n", "\\,", "\\ ", "\\!", "\\;", "\\quad "]
WHITE = [" ", "  ", "\n", " \n "]  # before a brace argument only whitespace: `\\frac\\,{1}` is another formula
# Math answers as token lists: spacing may go between any two tokens (never inside a command name).
_NUM = st.sampled_from(["1", "2", "3", "12", "42", "0.5", "0.0833333333333333", "10"])
_ATOM = st.one_of(
    _NUM.map(lambda n: [n]),
    st.tuples(_NUM, _NUM).map(lambda ab: ["\\frac", "{", ab[0], "}", "{", ab[1], "}"]),
    st.tuples(_NUM, _NUM).map(lambda ab: [ab[0], "^", "{", "-", ab[1], "}"]),
    _NUM.map(lambda n: ["\\sqrt", "{", n, "}"]),
    _NUM.map(lambda n: ["\\frac", "{", "1", "}", "{", n, "!", "}"]),
)
expressions = st.tuples(_ATOM, st.sampled_from(["+", "-", "\\cdot", None]), _ATOM).map(
    lambda t: t[0] if t[1] is None else t[0] + [t[1]] + t[2])


def gap(tok: str, pick: int) -> str:
    """Spacing to put before `tok`: nothing or one of SPACES (WHITE before a brace argument)."""
    options = ("", *(WHITE if tok == "{" else SPACES))
    return options[pick % len(options)]


def spaced(tokens: list[str], picks: list[int]) -> str:
    """`tokens` joined with chosen spacing between neighbours."""
    return tokens[0] + "".join(gap(tok, pick) + tok for tok, pick in zip(tokens[1:], picks))


@given(expressions, st.lists(st.integers(0, 100), min_size=40, max_size=40), st.sampled_from(GOLDS + ["3", "2"]),
       st.sampled_from(["", " ", "\n\n", "  \n"]))
def test_math_verdict_ignores_spacing(tokens, picks, gold, pad):
    plain = f"<think>\nwork\n</think>\n\nSo \\boxed{{{''.join(tokens)}}}"
    variant = f"{pad}<think>{pad}\nwork\n{pad}</think>\n\n{pad}So{pad} \\boxed{{{spaced(tokens, picks)}}}{pad}"
    assert extract_answer(variant) == extract_answer(plain)
    assert verify_math(gold, variant) == verify_math(gold, plain)
    assert answers_equivalent(gold, extract_answer(variant)) == answers_equivalent(gold, extract_answer(plain))


STATEMENTS = [["\\boxed", "{", "B", "}"], ["\\boxed", "{", "(B)", "42", "kJ", "}"], ["Answer:", "**B**"],
              ["**Answer:**", "B"], ["\\boxed", "{", "\\textbf", "{", "B", "}", "}"], ["The", "correct", "option", "is", "B."],
              ["the", "answer", "is", "option", "(b)"], ["\\boxed", "{", "B:", "Mitochondrial", "DNA", "}"],
              ["A", "cell", "divides."], ["Option", "A", "is", "incorrect."], ["\\boxed", "{", "42", "kJ", "}"]]


@settings(max_examples=150)
@given(st.sampled_from(STATEMENTS), st.lists(st.integers(0, 100), min_size=12, max_size=12),
       st.sampled_from(["", " ", "\n", "\n\n  "]))
def test_science_choice_ignores_spacing(tokens, picks, pad):
    """Words stay apart (a space at least), braces and commands may gain any spacing around them."""
    seps = [" " if tok[0].isalnum() and prev[-1].isalnum() else "" for prev, tok in zip(tokens, tokens[1:])]
    plain = "<think>\nr\n</think>\n\n" + tokens[0] + "".join(s + t for s, t in zip(seps, tokens[1:]))
    widened = [tokens[0]] + [s + gap(t, p) + t for s, t, p in zip(seps, tokens[1:], picks)]
    variant = f"{pad}<think>{pad}\nr\n</think>{pad}\n\n{pad}" + "".join(widened) + pad
    problem = {"id": "s", "domain": "science", "answer": "B"}
    assert extract_answer(variant, "science") == extract_answer(plain, "science")
    assert verify_science(problem, variant) == verify_science(problem, plain)
    assert format_ok(variant) == format_ok(plain)
