"""Scores from graded samples: pass@1 averaged over n samples, the unbiased pass@k, majority vote, and
bootstrap confidence intervals over problems ([P] §4.1 reports pass@1 averaged over n responses).

"No verdict" (``verify`` returned None: the checker could not decide, through no fault of the response) is
kept out of every numerator and denominator and counted on its own, so it never reads as a silent 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from falcon_h1r_lib.rewards import answers_equivalent


def _check_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"pass_at_k: {name} must be an int, got {type(value).__name__} {value!r}")
    if value < 0:
        raise ValueError(f"pass_at_k: {name} must be >= 0, got {value}")
    return int(value)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k) (Chen et al. 2021).

    Product form, 1 - prod_{i=n-c+1}^{n} (1 - k/i), avoids the huge binomials (n = 512 DeepConf traces).
    """
    n, c, k = _check_int("n", n), _check_int("c", c), _check_int("k", k)
    if k < 1:
        raise ValueError(f"pass_at_k: k must be >= 1, got {k}")
    if k > n:
        raise ValueError(f"pass_at_k: k={k} exceeds the n={n} samples drawn")
    if c > n:
        raise ValueError(f"pass_at_k: c={c} correct exceeds the n={n} samples drawn")
    if n - c < k:  # every size-k subset holds a correct sample
        return 1.0
    i = np.arange(n - c + 1, n + 1, dtype=np.float64)  # (c,)
    return float(1.0 - np.prod(1.0 - k / i))


def mean_pass_at_1(correct_per_problem: Sequence[Sequence[bool | None]]) -> float:
    """pass@1 averaged over n samples per problem, then over problems ([P] §4.1). None verdicts are left
    out of their problem's n; a problem without any verdict is left out of the mean (count them apart)."""
    scores = [c for c in (_problem_pass_rate(v) for v in correct_per_problem) if c is not None]
    if not scores:
        raise ValueError("mean_pass_at_1: no problem has a verdict")
    return float(np.mean(scores))


def _problem_pass_rate(verdicts: Sequence[bool | None]) -> float | None:
    graded = [v for v in verdicts if v is not None]
    return sum(bool(v) for v in graded) / len(graded) if graded else None


# --------------------------------------------------------------------------------------------
# Majority vote
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vote:
    """The outcome of a majority vote over the answers of one problem's samples."""

    answer: str | None  # the winning group's first answer; None when no sample gave an answer
    index: int | None  # sample index of that first answer (grade this sample for maj@k correctness)
    votes: int  # size of the winning group
    n_answers: int  # samples among the first k that gave an answer (abstentions excluded)
    tied: bool  # another group had as many votes (the tie rule decided)


def maj_at_k(
    answers: Sequence[str | None],
    k: int | None = None,
    equivalent: Callable[[str, str], bool] = answers_equivalent,
) -> Vote:
    """Majority vote over the first ``k`` answers (all when None), equivalent answers pooled.

    Rules (deterministic): an answer joins the first earlier group whose first answer it is ``equivalent``
    to ("0.5" and "\\frac{1}{2}" vote together); the largest group wins; a tie goes to the group whose first
    answer came earliest. None (no answer extracted) is an abstention: it never forms a group, so any real
    answer beats any number of abstentions, and only when every sample abstains is the result None.
    """
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"maj_at_k: k must be an int >= 1 or None, got {k!r}")
        if k > len(answers):
            raise ValueError(f"maj_at_k: k={k} exceeds the {len(answers)} answers given")
    window = list(answers[:k] if k is not None else answers)
    groups: list[list[int]] = []  # sample indices, in order of first appearance
    for i, a in enumerate(window):
        if a is None:
            continue
        for g in groups:
            if equivalent(window[g[0]], a):
                g.append(i)
                break
        else:
            groups.append([i])
    n_answers = sum(len(g) for g in groups)
    if not groups:
        return Vote(answer=None, index=None, votes=0, n_answers=0, tied=False)
    best = max(len(g) for g in groups)
    winners = [g for g in groups if len(g) == best]  # already ordered by first appearance
    first = winners[0][0]
    return Vote(answer=window[first], index=first, votes=best, n_answers=n_answers, tied=len(winners) > 1)


# --------------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------------


def bootstrap_ci(
    values: Sequence[float], resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of per-problem scores (problems resampled with replacement).

    Owns its RNG (``numpy.random.default_rng(seed)``): the same seed gives the same interval.
    """
    x = np.asarray(values, dtype=np.float64)  # (P,)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"bootstrap_ci: need a non-empty 1-D list of per-problem scores, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("bootstrap_ci: scores must be finite")
    if not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f"bootstrap_ci: resamples must be an int >= 1, got {resamples!r}")
    if not 0 < level < 1:
        raise ValueError(f"bootstrap_ci: level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(resamples, x.size))  # (R, P)
    means = x[idx].mean(axis=1)  # (R,)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def paired_difference(
    grades_a: pd.DataFrame, grades_b: pd.DataFrame, resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> dict[str, Any]:
    """pass@1 of B minus A on the same problems, with a paired bootstrap CI (problems resampled together).

    Two models scored on one problem set share its per-problem difficulty; resampling the per-problem
    differences removes that shared variance, so the interval is much narrower than comparing two separate
    CIs. Problems either model could not grade are left out (and counted).
    """
    rate_a = problem_table(grades_a).set_index("problem_id")["pass_rate"]
    rate_b = problem_table(grades_b).set_index("problem_id")["pass_rate"]
    missing = sorted(set(rate_a.index) ^ set(rate_b.index))
    if missing:
        raise ValueError(f"paired_difference: the two grade tables cover different problems, e.g. {missing[:3]}")
    both = pd.concat({"a": rate_a, "b": rate_b}, axis=1).dropna()
    if both.empty:
        raise ValueError("paired_difference: no problem was graded for both models")
    diff = (both["b"] - both["a"]).to_numpy(dtype=np.float64)  # (P,)
    low, high = bootstrap_ci(diff, resamples=resamples, level=level, seed=seed)
    return {"difference": float(diff.mean()), "ci": [low, high], "ci_level": level, "n_problems": int(diff.size),
            "n_left_out": int(len(rate_a) - diff.size), "b_better": int((diff > 0).sum()),
            "a_better": int((diff < 0).sum()), "ties": int((diff == 0).sum())}


# --------------------------------------------------------------------------------------------
# One benchmark's summary from a grades table
# --------------------------------------------------------------------------------------------

GRADE_COLUMNS = ("problem_id", "sample_index", "correct", "answer", "finish_reason", "n_tokens")


def problem_table(grades: pd.DataFrame) -> pd.DataFrame:
    """Per problem: n samples, n graded, c correct, no-verdict count, pass rate (None if nothing graded)."""
    missing = [c for c in ("problem_id", "correct") if c not in grades.columns]
    if missing:
        raise KeyError(f"problem_table: grades lack column(s) {missing}")
    rows = []
    for pid, g in grades.groupby("problem_id", sort=False):
        verdicts = [None if _is_missing(v) else bool(v) for v in g["correct"]]
        graded = [v for v in verdicts if v is not None]
        rows.append({
            "problem_id": pid,
            "difficulty": g["difficulty"].iloc[0] if "difficulty" in g else None,
            "n": len(verdicts),
            "n_graded": len(graded),
            "c": sum(graded),
            "no_verdict": len(verdicts) - len(graded),
            "pass_rate": (sum(graded) / len(graded)) if graded else None,
        })
    return pd.DataFrame(rows)


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


def summarize(
    grades: pd.DataFrame,
    ks: Sequence[int] = (1,),
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics of one benchmark run from ``grading.grade_all``'s table (one row per sample), JSON-ready.

    pass@1 is the mean over problems of c/n (graded samples only), with a bootstrap CI over problems;
    pass@k for each k no problem falls short of; maj@n by ``maj_at_k`` over each problem's samples, in
    sample order; counts of "no verdict", of samples without an answer, and of truncated ("length") ones.
    """
    if grades.empty:
        raise ValueError("summarize: no graded samples")
    grades = grades.sort_values(["problem_id", "sample_index"], kind="stable") if "sample_index" in grades else grades
    per = problem_table(grades)
    scored = per[per["pass_rate"].notna()]
    out: dict[str, Any] = {
        "n_problems": int(len(per)),
        "n_problems_graded": int(len(scored)),
        "n_samples": int(len(grades)),
        "samples_per_problem": sorted({int(v) for v in per["n"]}),
        "no_verdict": int(per["no_verdict"].sum()),
        "no_verdict_fraction": float(per["no_verdict"].sum() / len(grades)),
    }
    if "answer" in grades:
        out["no_answer"] = int(grades["answer"].map(_is_missing).sum())
    if "finish_reason" in grades:
        out["finish_reasons"] = {str(k): int(v) for k, v in grades["finish_reason"].value_counts().sort_index().items()}
    if "n_tokens" in grades:
        out["mean_tokens"] = float(grades["n_tokens"].mean())
        out["total_tokens"] = int(grades["n_tokens"].sum())
    if scored.empty:  # nothing could be graded: report counts only, never a 0 score
        out.update({"pass_at_1": None, "pass_at_1_ci": None, "pass_at_k": {}, "maj_at_n": None})
        return out
    rates = scored["pass_rate"].to_numpy(dtype=np.float64)  # (P,)
    out["pass_at_1"] = float(rates.mean())
    out["pass_at_1_ci"] = list(bootstrap_ci(rates, resamples=resamples, level=level, seed=seed))
    out["ci_level"] = level
    # no verdict counted as wrong: the lower bound a reader may want beside pass@1
    out["pass_at_1_no_verdict_as_wrong"] = float((per["c"] / per["n"]).mean())
    pass_k: dict[str, float | None] = {}
    for k in ks:
        usable = scored[scored["n_graded"] >= k]
        pass_k[str(k)] = (
            float(np.mean([pass_at_k(int(r.n_graded), int(r.c), k) for r in usable.itertuples()]))
            if len(usable) == len(scored) else None  # some problem has < k graded samples: undefined
        )
    out["pass_at_k"] = pass_k
    if "answer" in grades and "domain" in grades:
        out.update(_majority(grades))
    if "difficulty" in per and per["difficulty"].notna().any():
        by = {}
        for level_, g in scored.groupby("difficulty"):
            by[str(int(level_))] = {"n_problems": int(len(g)), "pass_at_1": float(g["pass_rate"].mean())}
        out["by_difficulty"] = by
    return out


def _majority(grades: pd.DataFrame) -> dict[str, Any]:
    """maj@n over each problem's samples; a problem's vote is graded by its winning sample's verdict."""
    verdicts, ties = [], 0
    for _, g in grades.groupby("problem_id", sort=False):
        domain = g["domain"].iloc[0]
        answers = [None if _is_missing(a) else str(a) for a in g["answer"]]
        vote = maj_at_k(answers, equivalent=lambda a, b, d=domain: answers_equivalent(a, b, domain=d))
        ties += vote.tied
        if vote.index is None:
            verdicts.append(False)  # every sample abstained: the model gave no answer
        else:
            v = g["correct"].iloc[vote.index]
            verdicts.append(None if _is_missing(v) else bool(v))
    graded = [v for v in verdicts if v is not None]
    n = sorted({int(s) for s in grades.groupby("problem_id").size()})
    return {
        "maj_at_n": float(np.mean(graded)) if graded else None,
        "maj_n": n,
        "maj_ties": int(ties),
        "maj_no_verdict": int(len(verdicts) - len(graded)),
    }


__all__ = ["GRADE_COLUMNS", "Vote", "bootstrap_ci", "maj_at_k", "mean_pass_at_1", "pass_at_k", "problem_table",
           "summarize"]
