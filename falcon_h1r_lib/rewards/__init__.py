"""One verifier per domain, shared by RL rewards and evaluation (what RL is paid for is
what evaluation counts): ``verify(problem, response)``.

Verdicts: True (correct), False (wrong, including *no extractable answer*: the model failed to answer),
None (no verdict: the checker could not decide through no fault of the response, e.g. the sandbox could
not start or the gold label is unreadable). Callers count Nones and report them, never fold them into 0.
Every verifier reads a response through the one response reader, ``format.parse_response`` (also used by
curation's quality filter, evaluation and DeepConf's votes).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import numpy as np

from .code import extract_code, verify_code
from .format import (
    Response,
    answer_part,
    final_choice,
    format_ok,
    format_penalty,
    last_boxed,
    last_code_block,
    parse_response,
    quality_issues,
    split_response,
)
from .instructions import check_rule, check_rules, verify_other
from .maths import answers_equivalent as _math_equivalent
from .maths import extract_math_answer, normalize, to_number, verify_math
from .science import extract_choice, verify_science

__all__ = [
    "verify_batch",
    "verify", "verify_math", "verify_code", "verify_science", "verify_other", "extract_answer",
    "answers_equivalent", "format_ok", "format_penalty", "quality_issues", "split_response", "answer_part",
    "parse_response", "Response", "final_choice",
    "last_boxed", "last_code_block", "extract_code", "extract_choice", "extract_math_answer", "check_rule",
    "check_rules", "normalize", "to_number", "reward", "NO_ANSWER", "AnswerBook", "answer_groups",
]

NO_ANSWER = -1  # the group of a response with no extractable answer: it never votes


def verify(problem: dict, response: str, **code_limits) -> bool | None:
    """Dispatch on ``problem["domain"]``; ``code_limits`` (timeout_s, memory_mb) go to the code sandbox."""
    domain = problem.get("domain")
    if domain == "math":
        return verify_math(problem["answer"], response)
    if domain == "code":
        return verify_code(problem, response, **code_limits)
    if domain == "science":
        return verify_science(problem, response)
    if domain == "other":
        return verify_other(problem, response)
    raise ValueError(f"problem {problem.get('id')!r}: unknown domain {domain!r}")


def verify_batch(items, max_workers: int = 4) -> list[bool | None]:
    """``verify`` over many ``(problem, response)`` pairs, in order.

    Identical pairs (for code: the same extracted program) are verified once, and code runs on a thread pool;
    the other domains stay in the calling thread, where math-verify's signal-based timeouts work.
    """
    from concurrent.futures import ThreadPoolExecutor

    items = list(items)
    # a code verdict depends only on the problem and the extracted program, so rollouts sharing one run once;
    # the key holds the whole problem (not only its id): two problems never share a verdict
    key_of = [(_problem_key(p), "code", extract_code(r)) if p.get("domain") == "code" else (_problem_key(p), r)
              for p, r in items]
    first: dict = {}
    for i, key in enumerate(key_of):
        first.setdefault(key, i)
    verdicts: dict = {}
    code = [i for k, i in first.items() if len(k) == 3]
    if code:
        with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
            for i, v in zip(code, pool.map(lambda j: verify(*items[j]), code)):
                verdicts[key_of[i]] = v
    for key, i in first.items():
        if key not in verdicts:
            verdicts[key] = verify(*items[i])
    return [verdicts[k] for k in key_of]


def _problem_key(problem: dict) -> str:
    return json.dumps(problem, sort_keys=True, default=repr)


def extract_answer(response: str, domain: str = "math") -> str | None:
    """The final answer as a string for voting: math (final box, else math-verify), science (letter), code
    (final block, if Python), other (the answer text). None when there is none (an unclosed final box too)."""
    if domain == "math":
        return extract_math_answer(response)
    if domain == "science":
        return extract_choice(response)
    if domain == "code":
        return extract_code(response)
    if domain == "other":
        return answer_part(response) or None
    raise ValueError(f"unknown domain {domain!r}")


def answers_equivalent(a: str | None, b: str | None, domain: str = "math") -> bool:
    """Same vote? Math compares values ("0.5" ~ "\\frac{1}{2}", "3/4" ~ "6/8"); others compare the
    whitespace-normalised strings (science letters case-insensitively)."""
    if domain == "math":
        return _math_equivalent(a, b)
    if a is None or b is None:
        return False
    if domain == "science":
        return a.strip().upper() == b.strip().upper()
    return " ".join(a.split()) == " ".join(b.split())


class AnswerBook:
    """Incremental answer groups of one problem: `label(answer)` numbers groups 0, 1, ... by first appearance.

    An answer joins the first earlier group whose first answer it is equivalent to (default:
    `answers_equivalent(a, b, domain)`, so "0.5" and "\\frac{1}{2}" are one vote); identical strings skip the
    comparison; None or blank is NO_ANSWER. The one vote grouping of DeepConf's votes and the RL filter's
    majority answer ([P] Fig. 9).
    """

    def __init__(self, domain: str = "math", equivalent: Callable[[str, str], bool] | None = None):
        if equivalent is None:
            def equivalent(a: str, b: str) -> bool:
                return answers_equivalent(a, b, domain=domain)

        self.equivalent = equivalent
        self.heads: list[str] = []  # first answer of each group
        self._exact: dict[str, int] = {}

    def label(self, answer: str | None) -> int:
        if answer is None or not str(answer).strip():
            return NO_ANSWER
        a = str(answer)
        if a not in self._exact:
            for g, head in enumerate(self.heads):
                if self.equivalent(head, a):
                    self._exact[a] = g
                    break
            else:
                self._exact[a] = len(self.heads)
                self.heads.append(a)
        return self._exact[a]


def answer_groups(answers: Sequence[str | None], domain: str = "math",
                  equivalent: Callable[[str, str], bool] | None = None) -> np.ndarray:
    """Group id per answer (0, 1, ... by first appearance; NO_ANSWER for None or blank): (n,) int64."""
    book = AnswerBook(domain, equivalent)
    return np.array([book.label(a) for a in answers], dtype=np.int64)


def reward(problem: dict, response: str, format_weight: float = 1.0) -> float:
    """Scalar RL reward: 1 for a verified answer, 0 otherwise (None counts as 0 here; count it upstream),
    plus the format penalty ([P] §3.2) scaled by ``format_weight``."""
    return float(verify(problem, response) is True) + format_penalty(response, format_weight)
