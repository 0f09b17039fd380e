"""Grade sampled completions with the verifiers RL rewards with (one verifier is both
the RL reward and the evaluation metric).

Extraction and verdicts come from ``falcon_h1r_lib.rewards``, whose one response reader (``rewards.format``)
curation and DeepConf share: math reads the final ``\\boxed{}`` of the answer part (an unclosed final box
is no answer) and falls back to math-verify's own extraction when there is no box (math-verify alone merges
every box of a response into one set); the verdict compares exactly where it can, then with math-verify
(vetoed for numbers it rounds together). A response with two ``</think>`` has no answer.
A problem our verifiers cannot judge (e.g. IFBench's own constraint ids) gets verdict None with the reason
in ``note``: counted as "no verdict", never as wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from falcon_h1r_lib.rewards import extract_answer, last_boxed, parse_response, verify, verify_batch
from falcon_h1r_lib.rewards.instructions import RULES

_SCIENCE_LETTERS = ("A", "B", "C", "D")


@dataclass(frozen=True)
class Grade:
    """The verdict on one completion and what was read from it."""

    problem_id: str
    sample_index: int
    correct: bool | None  # verify(): True / False (wrong or no answer) / None (no verdict)
    answer: str | None  # the extracted final answer (the vote in maj@k); None: none found
    has_boxed: bool  # the answer part holds a \boxed{} (the [P] §2.1 format the model was taught)
    format_ok: bool  # <think>...</think> then a non-empty answer
    empty: bool  # the completion is blank
    finish_reason: str | None  # "eos" | "length" | "stopped" (None for a bare string)
    n_tokens: int | None  # generated tokens (None for a bare string)
    domain: str
    difficulty: int | None
    note: str = ""  # why there is no verdict, when there is none

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def completion_text(trace: Any) -> str:
    """The completion of a generation Trace (``completion``), of any record with ``text``, or a str."""
    if isinstance(trace, str):
        return trace
    for name in ("completion", "text"):
        value = _get(trace, name)
        if value is not None:
            if not isinstance(value, str):
                raise TypeError(f"trace {_get(trace, 'problem_id')!r}: {name} must be a str, got {type(value).__name__}")
            return value
    raise TypeError(f"cannot read a completion from {type(trace).__name__}: expected a str or a record with "
                    "'completion' or 'text'")


def ungradable_reason(problem: Mapping[str, Any]) -> str | None:
    """Why ``rewards.verify`` cannot judge this problem (None: it can). Data shapes our verifiers do not
    read yield "no verdict" instead of a crash or a silent 0."""
    domain = problem.get("domain")
    if domain == "math":
        return None if str(problem.get("answer", "")).strip() else "no gold answer"
    if domain == "science":
        gold = str(problem.get("answer", "")).strip().upper()
        if gold not in _SCIENCE_LETTERS:
            return f"gold letter {gold!r}: rewards.science reads choices A-D only"
        return None
    if domain == "code":
        tests = problem.get("tests")
        if not tests:
            return "no tests"
        if all(isinstance(t, str) for t in tests):
            return None  # assert statements (the tiny task world)
        if all(isinstance(t, Mapping) for t in tests):  # {"input", "output"} pairs (LiveCodeBench)
            if problem.get("entry_point"):
                return "functional tests (call a method with arguments): rewards.verify_code runs stdin/stdout programs"
            return None
        return "tests mix assert statements and stdin/stdout pairs"
    if domain == "other":
        rules = problem.get("rules")
        if not rules:
            return "no instruction rules"
        unknown = sorted({str(r.get("rule", r.get("instruction_id"))) for r in rules if r.get("rule") not in RULES})
        if unknown:
            return f"instruction ids {unknown[:3]}{'...' if len(unknown) > 3 else ''} need their own checker (rewards.instructions knows {len(RULES)} rules)"
        return None
    raise ValueError(f"problem {problem.get('id')!r}: unknown domain {domain!r}")


def _grade(problem: Mapping[str, Any], trace: Any, verdict: bool | None, note: str) -> Grade:
    text = completion_text(trace)
    domain = problem["domain"]
    parsed = parse_response(text)
    answer = extract_answer(text, domain) if text.strip() else None
    n_tokens = _get(trace, "n_tokens") if not isinstance(trace, str) else None
    return Grade(
        problem_id=str(problem["id"]),
        sample_index=int(_get(trace, "sample_index", 0) or 0) if not isinstance(trace, str) else 0,
        correct=verdict,
        answer=answer,
        has_boxed=last_boxed(parsed.answer) is not None,
        format_ok=parsed.issue is None,
        empty=not text.strip(),
        finish_reason=_get(trace, "finish_reason") if not isinstance(trace, str) else None,
        n_tokens=int(n_tokens) if n_tokens is not None else None,
        domain=domain,
        difficulty=problem.get("difficulty"),
        note=note,
    )


def grade(problem: Mapping[str, Any], trace_or_text: Any, **code_limits) -> Grade:
    """Grade one completion (a Trace, a record with ``text``/``completion``, or a str) of ``problem``."""
    reason = ungradable_reason(problem)
    if reason is not None:
        return _grade(problem, trace_or_text, None, f"no verdict: {reason}")
    verdict = verify(dict(problem), completion_text(trace_or_text), **code_limits)
    return _grade(problem, trace_or_text, verdict, "" if verdict is not None else "no verdict: verifier abstained")


def grade_all(
    problems: Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]],
    traces: Iterable[Any],
    max_workers: int = 4,
) -> pd.DataFrame:
    """One row per trace (columns of ``Grade``), in trace order. Code problems verify on a thread pool
    (``rewards.verify_batch``); a trace whose problem id is unknown raises, naming it."""
    by_id = dict(problems) if isinstance(problems, Mapping) else {str(p["id"]): p for p in problems}
    traces = list(traces)
    items, reasons = [], []
    for i, t in enumerate(traces):
        pid = _get(t, "problem_id")
        if pid not in by_id:
            raise KeyError(f"traces[{i}]: problem_id {pid!r} is not among the {len(by_id)} problems given")
        reasons.append(ungradable_reason(by_id[pid]))
        items.append((dict(by_id[pid]), completion_text(t)))
    todo = [i for i, r in enumerate(reasons) if r is None]
    verdicts: dict[int, bool | None] = dict(zip(todo, verify_batch([items[i] for i in todo], max_workers=max_workers)))
    rows = []
    for i, t in enumerate(traces):
        problem = by_id[_get(t, "problem_id")]
        if reasons[i] is not None:
            g = _grade(problem, t, None, f"no verdict: {reasons[i]}")
        else:
            v = verdicts[i]
            g = _grade(problem, t, v, "" if v is not None else "no verdict: verifier abstained")
        rows.append(g.to_dict())
    columns = list(Grade.__dataclass_fields__)
    df = pd.DataFrame(rows, columns=columns)
    df["correct"] = df["correct"].astype(object)  # True / False / None, never coerced to 0
    return df


__all__ = ["Grade", "completion_text", "grade", "grade_all", "ungradable_reason"]
