"""RL headroom: pass@k curves (k = 1, 2, 4, ..., n) of one model, overall and per level, and the paired change
of those curves between two models on the same problems (SFT before RL, RL after).

Why: RL on verifiable rewards can only reinforce answers the policy already samples. pass@k of the starting model
at large k bounds what RL can lift pass@1 to on those problems; after RL, a pass@1 that rose toward the old
pass@k means RL sharpened the distribution, and a pass@k that fell at large k is what that sharpening cost in
diversity (the diagnostic of Yue et al. 2025, "Does Reinforcement Learning Really Incentivize Reasoning Capacity
in LLMs Beyond the Base Model?", arXiv 2504.13837, Figs. 1-2).

Estimator: per problem, the unbiased pass@k of Chen et al. 2021 (``metrics.pass_at_k``, from the problem's n
graded samples and c correct), averaged over problems. Intervals: percentile bootstrap over problems
(``metrics.bootstrap_ci``); the change between two models resamples the per-problem differences together
(paired, as ``metrics.paired_difference``, which this equals at k = 1). "No verdict" samples are left out of a
problem's n, as everywhere in ``metrics``; a problem with no verdict at all is left out and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from falcon_h1r_lib.evaluation.metrics import bootstrap_ci, pass_at_k, problem_table

ALL = "all"  # the group label of the curve over every problem
CURVE_COLUMNS = ("group", "k", "pass_at_k", "ci_low", "ci_high", "n_problems", "n_left_out")
COMPARE_COLUMNS = ("group", "k", "before", "after", "difference", "ci_low", "ci_high", "n_problems",
                   "n_left_out", "after_better", "before_better", "ties")


def power_of_two_ks(n: int) -> list[int]:
    """[1, 2, 4, ..., n]: the powers of two up to ``n`` samples per problem, then ``n`` itself when it is not one
    (the log2 axis of a pass@k curve). ValueError when ``n`` is not an int >= 1."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"power_of_two_ks: n (samples per problem) must be an int >= 1, got {n!r}")
    ks = [1 << i for i in range(int(n).bit_length()) if (1 << i) <= n]
    return ks if ks[-1] == n else [*ks, int(n)]


def problem_pass_at_k(grades: pd.DataFrame, ks: Sequence[int] | None = None, by: str | None = "difficulty",
                      ) -> pd.DataFrame:
    """Per-problem unbiased pass@k from a grades table (one row per sample, ``grading.grade_all``'s columns).

    ``grades`` needs ``problem_id`` and ``correct`` (True / False / None = no verdict) and, when ``by`` is given,
    that column (the problem's level: ``grade_all`` copies the problem's ``difficulty``), constant per problem.
    ``ks`` defaults to ``power_of_two_ks`` of the fewest graded samples any problem has.

    Returns one row per problem (first-appearance order): problem_id, ``by``, n (samples), n_graded, c (correct),
    and ``pass@k`` for each k, a probability in [0, 1]; NaN for a problem without any verdict.
    Raises TypeError (not a DataFrame), ValueError (empty table, no problem graded, a level that changes within a
    problem, k < 1, or k above a problem's graded samples, naming it), KeyError naming missing columns.
    """
    per = _problems(grades, by, "problem_pass_at_k")
    graded = per[per["n_graded"] > 0]
    if graded.empty:
        raise ValueError("problem_pass_at_k: no problem has a verdict (every sample is 'no verdict')")
    ks = _check_ks(ks, graded, "problem_pass_at_k")
    for k in ks:
        per[f"pass@{k}"] = [pass_at_k(int(r.n_graded), int(r.c), k) if r.n_graded > 0 else np.nan
                            for r in per.itertuples()]
    return per


def pass_at_k_curve(grades: pd.DataFrame, ks: Sequence[int] | None = None, by: str | None = "difficulty", *,
                    resamples: int = 1000, ci_level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """The pass@k curve of one model on one problem set: overall (group ``"all"``) and per value of ``by``.

    pass@k = mean over problems of the unbiased per-problem pass@k (Chen et al. 2021), with a percentile
    bootstrap CI over the group's problems (``metrics.bootstrap_ci``, ``resamples`` draws, own RNG from ``seed``;
    every k of a group reuses the same resampled problem sets, so the band is one coherent curve).

    Returns one row per (group, k), groups "all" then the ``by`` values in sorted order (as strings, "1", "2",
    ...), k ascending; columns ``CURVE_COLUMNS``: pass_at_k, ci_low, ci_high (probabilities), n_problems used,
    n_left_out (problems without any verdict). Errors: as ``problem_pass_at_k``.
    """
    per = problem_pass_at_k(grades, ks, by)
    ks = _ks_of(per)
    rows = []
    for group, sub in _groups(per, by):
        used = sub[sub["n_graded"] > 0]
        for k in ks:
            values = used[f"pass@{k}"].to_numpy(dtype=np.float64)  # (P,)
            low, high = bootstrap_ci(values, resamples=resamples, level=ci_level, seed=seed)
            rows.append({"group": group, "k": k, "pass_at_k": float(values.mean()), "ci_low": low, "ci_high": high,
                         "n_problems": int(len(used)), "n_left_out": int(len(sub) - len(used))})
    return pd.DataFrame(rows, columns=list(CURVE_COLUMNS))


def compare_curves(before: pd.DataFrame, after: pd.DataFrame, ks: Sequence[int] | None = None,
                   by: str | None = "difficulty", *, resamples: int = 2000, ci_level: float = 0.95, seed: int = 0,
                   ) -> pd.DataFrame:
    """pass@k of ``after`` minus ``before`` (two grades tables of the same problems, e.g. RL vs SFT), per group and
    k, with a paired percentile bootstrap CI over problems (the per-problem differences resampled together,
    ``metrics.bootstrap_ci``; at k = 1 this is ``metrics.paired_difference``).

    A positive difference at k = 1 is RL raising pass@1; a negative one at the largest k is what RL cost pass@k.
    Problems without a verdict in either table are left out (``n_left_out``). ``ks`` defaults to
    ``power_of_two_ks`` of the fewest graded samples any problem has in either table.

    Returns one row per (group, k) with columns ``COMPARE_COLUMNS``: before, after, difference, ci_low, ci_high
    (probabilities / differences of probabilities), n_problems, and how many problems each model did better on
    (after_better, before_better, ties). Raises ValueError when the tables cover different problems or give a
    problem different levels, besides ``problem_pass_at_k``'s errors (each naming the table: before / after).
    """
    if ks is None:
        ks = power_of_two_ks(min(_min_graded(before, by, "compare_curves(before)"),
                                 _min_graded(after, by, "compare_curves(after)")))
    a = _named(problem_pass_at_k, before, ks, by, "before")
    b = _named(problem_pass_at_k, after, ks, by, "after")
    differ = sorted(set(a["problem_id"]) ^ set(b["problem_id"]), key=str)
    if differ:
        raise ValueError(f"compare_curves: before and after cover different problems, e.g. {differ[:3]}")
    b = b.set_index("problem_id").loc[a["problem_id"]].reset_index()
    if by is not None:
        clash = a.loc[a[by].to_numpy() != b[by].to_numpy(), "problem_id"].tolist()
        if clash:
            raise ValueError(f"compare_curves: column {by!r} differs between before and after for problems {clash[:3]}")
    ks = _ks_of(a)
    rows = []
    both = (a["n_graded"] > 0).to_numpy() & (b["n_graded"] > 0).to_numpy()
    for group, sub in _groups(a, by):
        idx = sub.index.to_numpy()
        use = idx[both[idx]]
        for k in ks:
            x = a.loc[use, f"pass@{k}"].to_numpy(dtype=np.float64)  # (P,)
            y = b.loc[use, f"pass@{k}"].to_numpy(dtype=np.float64)  # (P,)
            if x.size == 0:
                raise ValueError(f"compare_curves: group {group!r} has no problem graded in both tables")
            d = y - x
            low, high = bootstrap_ci(d, resamples=resamples, level=ci_level, seed=seed)
            rows.append({"group": group, "k": k, "before": float(x.mean()), "after": float(y.mean()),
                         "difference": float(d.mean()), "ci_low": low, "ci_high": high, "n_problems": int(d.size),
                         "n_left_out": int(len(idx) - d.size), "after_better": int((d > 0).sum()),
                         "before_better": int((d < 0).sum()), "ties": int((d == 0).sum())})
    return pd.DataFrame(rows, columns=list(COMPARE_COLUMNS))


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _problems(grades: pd.DataFrame, by: str | None, where: str) -> pd.DataFrame:
    """``metrics.problem_table`` (n, n_graded, c per problem) plus the ``by`` column, checked constant."""
    if not isinstance(grades, pd.DataFrame):
        raise TypeError(f"{where}: grades must be a pandas DataFrame (grading.grade_all), got {type(grades).__name__}")
    need = ["problem_id", "correct"] + ([by] if by is not None else [])
    missing = [c for c in need if c not in grades.columns]
    if missing:
        raise KeyError(f"{where}: grades lack column(s) {missing} (have {list(grades.columns)})")
    if grades.empty:
        raise ValueError(f"{where}: the grades table is empty (no samples)")
    bad = [v for v in grades["correct"] if not (v is None or v is pd.NA or isinstance(v, (bool, np.bool_))
                                                  or (isinstance(v, float) and np.isnan(v)))]
    if bad:
        raise ValueError(f"{where}: column 'correct' must hold True / False / None, got e.g. {bad[0]!r}")
    per = problem_table(grades)[["problem_id", "n", "n_graded", "c"]]
    if by is not None:
        levels = grades.groupby("problem_id", sort=False)[by].agg(lambda s: sorted(set(s.dropna()), key=str))
        mixed = [pid for pid, v in levels.items() if len(v) > 1]
        if mixed:
            raise ValueError(f"{where}: column {by!r} changes within problem(s) {mixed[:3]}")
        nulls = [pid for pid, v in levels.items() if not v]
        if nulls:
            raise ValueError(f"{where}: column {by!r} is missing for problem(s) {nulls[:3]}")
        per.insert(1, by, per["problem_id"].map(lambda pid: levels[pid][0]).to_numpy())
    return per.reset_index(drop=True)


def _check_ks(ks: Sequence[int] | None, graded: pd.DataFrame, where: str) -> list[int]:
    if ks is None:
        return power_of_two_ks(int(graded["n_graded"].min()))
    ks = list(ks)
    if not ks:
        raise ValueError(f"{where}: ks is empty")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"{where}: every k must be an int >= 1, got {k!r}")
    if len(set(ks)) != len(ks):
        raise ValueError(f"{where}: ks repeat a value: {ks}")
    short = graded[graded["n_graded"] < max(ks)]
    if len(short):
        r = short.iloc[0]
        raise ValueError(f"{where}: k={max(ks)} exceeds the n={int(r.n_graded)} graded samples of problem "
                         f"{r.problem_id!r} ({len(short)} problem(s) fall short); pass@k needs k <= n")
    return sorted(int(k) for k in ks)


def _ks_of(per: pd.DataFrame) -> list[int]:
    return [int(c.split("@")[1]) for c in per.columns if c.startswith("pass@")]


def _min_graded(grades: pd.DataFrame, by: str | None, where: str) -> int:
    graded = _problems(grades, by, where)["n_graded"]
    if not (graded > 0).any():
        raise ValueError(f"{where}: no problem has a verdict (every sample is 'no verdict')")
    return int(graded[graded > 0].min())


def _named(fn, grades, ks, by, name):
    """Call ``fn`` and prefix its error with the table's name (before / after)."""
    try:
        return fn(grades, ks, by)
    except (KeyError, ValueError, TypeError) as err:
        msg = err.args[0] if err.args else str(err)
        raise type(err)(f"compare_curves({name}): {msg}") from err


def _groups(per: pd.DataFrame, by: str | None) -> list[tuple[str, pd.DataFrame]]:
    out = [(ALL, per)]
    if by is not None:
        for value in sorted(per[by].unique(), key=_level_key):
            out.append((_label(value), per[per[by] == value]))
    return out


def _level_key(value: Any) -> tuple[int, Any]:
    return (0, float(value)) if isinstance(value, (int, float, np.integer, np.floating)) else (1, str(value))


def _label(value: Any) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


__all__ = ["ALL", "COMPARE_COLUMNS", "CURVE_COLUMNS", "compare_curves", "pass_at_k_curve", "power_of_two_ks",
           "problem_pass_at_k"]
