"""Confidence calibration diagnostics: do DeepConf's trace confidences separate correct from wrong traces?

DeepConf ([P] = Fu et al. 2025, arXiv 2508.15260) rests on one empirical premise (§2, Fig. 2-3): within a
problem, correct traces have higher confidence than wrong ones, so filtering to the top-eta% (§3.2, Alg. 1) and
stopping a trace at its first low-confidence window (§3.3, Alg. 2) remove mostly wrong traces. This module
measures that premise on scored pools (`experiment.ProblemPool`, no generation) and looks for why
high-confidence traces are wrong:

1. `trace_table`: one row per trace (verdict, length, every score of `SCORE_NAMES`, the cause flags below).
2. `auroc_table`: AUROC of each measure (mean trace confidence, bottom-10% group confidence, lowest group
   confidence, tail confidence; [P] Eq. 3, 5, 6, 7) for correct vs wrong traces, pooled over traces and as the
   mean of within-problem AUROCs (what voting sees: traces only compete with traces of their own problem),
   with a bootstrap CI over problems; trace length (shorter = more confident) is the baseline row.
3. `length_correlation`: Spearman rho of each measure with trace length.
4. `stop_shares`: replays online DeepConf (`online.replay_online`) on the pools and compares the verdicts of
   the traces it stops early (their full text is in the pool) with those it lets finish.
5. `cause_table`: for the traces of the top-eta% by a measure within their problem (DeepConf's own filter,
   `offline.keep_top`), wrong vs correct, the share that is (a) degenerate (no answer, shorter than the
   problem's shortest correct trace, repeated lines), (b) an answer copied from the prompt, (c) a trace whose
   lowest window is mostly template tokens (`<think>`, newlines, `\\boxed{`, ...), and where that window sits.
6. `calibration_summary` / `diagnose`: the headline numbers (JSON-ready) that `experiment.run` stores.

AUROC is `sklearn.metrics.roc_auc_score` (ties count one half); it is undefined (NaN) when a set holds one class.
Traces without a verdict (correct = NaN) are left out of every verdict-based number.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from falcon_h1r_lib.deepconf.confidence import SCORE_NAMES
from falcon_h1r_lib.deepconf.offline import NO_ANSWER, keep_top
from falcon_h1r_lib.deepconf.online import OnlineSettings, OnlineTrace, replay_online

if TYPE_CHECKING:
    from falcon_h1r_lib.deepconf.replay import ProblemPool

LENGTH = "length"  # the baseline "measure": -n_tokens (a shorter trace counts as more confident)
# Pieces of the chat / answer format (tokenizer.py's specials and reasoning tags, the \boxed{} wrapper): a token
# whose decoded text, stripped, is one of these, or is empty (spaces, newlines), is a template token.
TEMPLATE_PIECES = ("<think>", "</think>", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|pad|>",
                   "\\boxed{", "\\boxed", "\\", "boxed", "{", "}")
DETAIL_COLUMNS = ("sample_index", "finish_reason", "answer", "repeated_line_share", "copied_from_prompt",
                  "lowest_window_start", "lowest_window_position", "lowest_window_template_share")
TEMPLATE_DOMINATED = 0.5  # a lowest window with at least this share of template tokens is "template-dominated"
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_WORD = re.compile(r"[A-Za-z_]\w*")


# --------------------------------------------------------------------------------------------
# Per-trace cause detectors (simple on purpose; each documented with its rule)
# --------------------------------------------------------------------------------------------


def repeated_line_share(text: str) -> float:
    """Share of the non-blank lines of `text` (stripped) that repeat an earlier line; 0.0 when none.

    A degenerate-loop detector: a trace that writes the same line again scores > 0.
    """
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    if not lines:
        return 0.0
    return float(1.0 - len(set(lines)) / len(lines))


def copied_from_prompt(answer: str | None, prompt: str) -> bool:
    """Whether the extracted `answer` appears as a literal of the problem `prompt` (the user turn).

    Numeric answers (optional sign, digits, decimal point) match a number of the prompt, sign ignored
    (`3x+8=11` holds 3, 8, 11); other answers match a word of the prompt or, when longer than one word, the
    prompt as a substring. No answer (None or blank) is never a copy.
    """
    if answer is None or not str(answer).strip():
        return False
    a = str(answer).strip().strip("$").replace(" ", "")
    if re.fullmatch(r"[-+]?\d+(?:\.\d+)?", a):
        return a.lstrip("+-") in set(_NUMBER.findall(prompt))
    if _WORD.fullmatch(a):
        return a in set(_WORD.findall(prompt))
    return a in prompt.replace(" ", "")


def template_token_mask(token_ids, tokenizer, cache: dict[int, bool] | None = None) -> np.ndarray:
    """(n,) bool: token i is a template/format token (decoded alone, stripped, empty or in TEMPLATE_PIECES).

    `tokenizer` needs `decode(ids, skip_special_tokens=False)`; `cache` (id -> flag) saves decodes across traces.
    """
    ids = np.asarray(token_ids, dtype=np.int64).reshape(-1)
    cache = {} if cache is None else cache
    for i in set(ids.tolist()) - cache.keys():
        piece = tokenizer.decode([i], skip_special_tokens=False).strip()
        cache[i] = piece == "" or piece in TEMPLATE_PIECES
    return np.array([cache[i] for i in ids.tolist()], dtype=bool)


def lowest_window(groups, n_tokens: int, window: int) -> tuple[int, float]:
    """(start token, relative position) of the lowest group confidence C_G (`confidence.group_confidences`).

    groups: (max(1, n - window + 1),) window means; the first lowest window wins. The relative position is the
    window's centre over the trace length, in (0, 1] (a trace shorter than the window: one group, 0.5); NaN
    for an empty trace.
    """
    g = np.asarray(groups, dtype=np.float64)
    if g.size == 0:
        raise ValueError("lowest_window: no group confidences")
    if n_tokens <= 0:
        return 0, float("nan")
    start = int(np.argmin(g))
    covered = min(window, n_tokens - start)
    return start, float((start + covered / 2.0) / n_tokens)


def trace_details(problem: Mapping[str, Any], traces: Sequence, answers: Sequence[str | None],
                  groups: Sequence, window: int, tokenizer=None) -> pd.DataFrame:
    """Per-trace cause features of one problem's pool, one row per trace in the order given (DETAIL_COLUMNS).

    traces: `generation.Trace` (sample order); answers: their extracted answers (None: none); groups: each
    trace's group confidences (`OnlineTrace.groups`, window `window`). Without `tokenizer` the template share
    of the lowest window is NaN. Raises ValueError when the three sequences differ in length.
    """
    if not len(traces) == len(answers) == len(groups):
        raise ValueError(f"trace_details: problem {problem.get('id')!r}: {len(traces)} traces, {len(answers)} "
                         f"answers, {len(groups)} group-confidence arrays")
    prompt = str(problem.get("prompt", ""))
    cache: dict[int, bool] = {}
    rows = []
    for t, a, g in zip(traces, answers, groups, strict=True):
        start, pos = lowest_window(g, int(t.n_tokens), window)
        share = np.nan
        if tokenizer is not None and t.n_tokens:
            share = float(template_token_mask(t.token_ids[start:start + window], tokenizer, cache).mean())
        rows.append({"sample_index": int(t.sample_index), "finish_reason": getattr(t, "finish_reason", None),
                     "answer": a, "repeated_line_share": repeated_line_share(getattr(t, "completion", "")),
                     "copied_from_prompt": copied_from_prompt(a, prompt), "lowest_window_start": start,
                     "lowest_window_position": pos, "lowest_window_template_share": share})
    return pd.DataFrame(rows, columns=list(DETAIL_COLUMNS))


# --------------------------------------------------------------------------------------------
# The trace table
# --------------------------------------------------------------------------------------------


def _check_pools(pools: Sequence[ProblemPool], where: str) -> None:
    if not pools:
        raise ValueError(f"{where}: no problem pools")
    for p in pools:
        n = len(p.n_tokens)
        bad = {k: len(v) for k, v in {"labels": p.labels, "correct": p.correct, **p.scores}.items() if len(v) != n}
        if bad:
            raise ValueError(f"{where}: problem {p.problem_id!r} holds {n} traces (n_tokens) but {bad}")


def trace_table(pools: Sequence[ProblemPool], problems: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per trace: problem_id, difficulty, sample_index, correct (1/0/NaN), n_tokens, label, answer,
    finish_reason, every score of SCORE_NAMES, and the cause flags.

    Flags: no_answer (label == NO_ANSWER), short (fewer tokens than the problem's shortest correct trace; NA
    when the problem has none), repeated_lines (repeated_line_share > 0), degenerate (any of the three),
    copied_from_prompt, lowest_window_position / _template_share (`trace_details`; NaN / NA when the pool
    carries no details), mixed (the problem has both correct and wrong traces).
    `problems`: dicts with "id" (and "difficulty", else NA). Raises ValueError on empty pools, arrays of
    different lengths, or a pool whose problem is not in `problems`.
    """
    _check_pools(pools, "trace_table")
    meta = {str(p["id"]): p for p in problems}
    frames = []
    for pool in pools:
        if pool.problem_id not in meta:
            raise ValueError(f"trace_table: problem {pool.problem_id!r} is not among the {len(meta)} problems given")
        n = len(pool)
        f = pd.DataFrame({"problem_id": pool.problem_id, "difficulty": meta[pool.problem_id].get("difficulty"),
                          "sample_index": np.arange(n), "correct": pool.correct.astype(float),
                          "n_tokens": pool.n_tokens.astype(np.int64), "label": pool.labels.astype(np.int64),
                          **{s: np.asarray(pool.scores[s], dtype=float) for s in SCORE_NAMES}})
        details = getattr(pool, "details", None)
        if details is not None:
            if len(details) != n:
                raise ValueError(f"trace_table: problem {pool.problem_id!r}: {len(details)} detail rows, {n} traces")
            for c in DETAIL_COLUMNS:
                f[c] = details[c].to_numpy()
        else:
            f["finish_reason"], f["answer"] = None, None
            f["repeated_line_share"], f["copied_from_prompt"] = np.nan, pd.NA
            f["lowest_window_start"], f["lowest_window_position"] = -1, np.nan
            f["lowest_window_template_share"] = np.nan
        ok = pool.correct == 1.0
        shortest = pool.n_tokens[ok].min() if ok.any() else None
        f["no_answer"] = pool.labels == NO_ANSWER
        f["short"] = pd.array([pd.NA] * n if shortest is None else pool.n_tokens < shortest, dtype="boolean")
        f["repeated_lines"] = _flag(f["repeated_line_share"] > 0, f["repeated_line_share"].isna())
        f["degenerate"] = f["no_answer"] | f["short"].fillna(False) | f["repeated_lines"].fillna(False)
        f["copied_from_prompt"] = pd.array(f["copied_from_prompt"], dtype="boolean")
        f["mixed"] = bool(ok.any() and (pool.correct == 0.0).any())
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


def _flag(values: pd.Series, unknown: pd.Series) -> pd.Series:
    """Nullable boolean flag: `values`, NA where `unknown`."""
    return values.astype("boolean").mask(unknown.to_numpy(dtype=bool))


def _need(table: pd.DataFrame, columns: Sequence[str], where: str) -> None:
    if table.empty:
        raise ValueError(f"{where}: the trace table is empty")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise KeyError(f"{where}: the trace table has no column {missing[0]!r} (needs {list(columns)})")


def _score(table: pd.DataFrame, measure: str) -> np.ndarray:
    """Higher = more confident: a SCORE_NAMES column, or LENGTH (-n_tokens)."""
    return -table["n_tokens"].to_numpy(dtype=float) if measure == LENGTH else table[measure].to_numpy(dtype=float)


def auroc(correct, score) -> float:
    """AUROC of `score` for correct (1) vs wrong (0) traces, (n,) each; NaN when one class is absent.

    `sklearn.metrics.roc_auc_score`: the probability that a random correct trace scores above a random wrong
    one (ties 1/2); traces with a NaN verdict are left out. Raises ValueError when the shapes differ or a graded
    trace's score is not finite.
    """
    y, s = np.asarray(correct, dtype=float), np.asarray(score, dtype=float)
    if y.shape != s.shape:
        raise ValueError(f"auroc: correct {y.shape} and score {s.shape} differ in shape")
    keep = np.isfinite(y)
    y, s = y[keep], s[keep]
    if not np.isfinite(s).all():
        raise ValueError(f"auroc: the score holds {int((~np.isfinite(s)).sum())} non-finite values on graded traces")
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, s))


def auroc_table(table: pd.DataFrame, measures: Sequence[str] = SCORE_NAMES, resamples: int = 1000,
                ci_level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """AUROC per measure (plus LENGTH, the baseline) of one model's `trace_table`.

    Columns: measure, pooled_auroc (all traces with a verdict), within_auroc (mean over the problems with both
    correct and wrong traces), ci_low / ci_high (percentile bootstrap of that mean, problems resampled with
    `evaluation.bootstrap_ci`: seeded numpy Generator, `resamples` draws), n_problems (such problems),
    n_traces, n_correct, resamples. Raises ValueError on an empty table, KeyError on a missing column.
    """
    from falcon_h1r_lib.evaluation import bootstrap_ci

    _need(table, ["problem_id", "correct", "n_tokens", *measures], "auroc_table")
    graded = table[table["correct"].notna()]
    rows = []
    for m in [*measures, LENGTH]:
        per = [auroc(g["correct"], _score(g, m)) for _, g in graded.groupby("problem_id", sort=False)]
        per = np.array([a for a in per if np.isfinite(a)])
        lo, hi = bootstrap_ci(per, resamples, ci_level, seed) if per.size else (np.nan, np.nan)
        rows.append({"measure": m, "pooled_auroc": auroc(graded["correct"], _score(graded, m)),
                     "within_auroc": float(per.mean()) if per.size else np.nan, "ci_low": lo, "ci_high": hi,
                     "n_problems": int(per.size), "n_traces": int(len(graded)),
                     "n_correct": int((graded["correct"] == 1).sum()), "resamples": resamples})
    return pd.DataFrame(rows)


def length_correlation(table: pd.DataFrame, measures: Sequence[str] = SCORE_NAMES) -> pd.DataFrame:
    """Spearman rho of each measure with trace length (n_tokens): pooled over traces (with its p-value) and
    the mean of within-problem rhos (problems where both vary). Columns: measure, spearman_rho, p_value,
    within_rho, n_problems. Raises ValueError on an empty table, KeyError on a missing column."""
    _need(table, ["problem_id", "n_tokens", *measures], "length_correlation")
    rows = []
    for m in measures:
        rho, p = (spearmanr(table[m], table["n_tokens"]) if table[m].nunique() > 1 and table["n_tokens"].nunique() > 1
                  else (np.nan, np.nan))  # a constant input has no rank correlation
        per = [spearmanr(g[m], g["n_tokens"])[0] for _, g in table.groupby("problem_id", sort=False)
               if g[m].nunique() > 1 and g["n_tokens"].nunique() > 1]
        per = np.array([r for r in per if np.isfinite(r)])
        rows.append({"measure": m, "spearman_rho": float(rho), "p_value": float(p),
                     "within_rho": float(per.mean()) if per.size else np.nan, "n_problems": int(per.size)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Online stops: whom does Algorithm 2 cut?
# --------------------------------------------------------------------------------------------


def stop_shares(pools: Sequence[ProblemPool], settings: OnlineSettings, runs: int = 64, seed: int = 0
                ) -> pd.DataFrame:
    """Verdicts of the traces online DeepConf stops early vs those it lets finish ([P] Alg. 2, replayed).

    Each of `runs` runs per problem draws a permutation of the pool (seeded numpy Generator, as
    `experiment.scaling_curves`) and replays the first `settings.budget` traces; the first N_init are the
    warm-up (never stopped). Counts are over trace-runs with a verdict. One row per scope ("all problems",
    "mixed problems": those with both correct and wrong traces). Columns: scope, n_warmup, n_stopped,
    n_finished, correct_share_warmup, correct_share_stopped, correct_share_finished, stop_rate_correct
    (stopped / post-warm-up correct), stop_rate_wrong, runs. Raises ValueError on empty pools or a pool
    smaller than the budget.
    """
    _check_pools(pools, "stop_shares")
    if runs < 1:
        raise ValueError(f"stop_shares: runs must be >= 1, got {runs}")
    short = [p.problem_id for p in pools if len(p) < settings.budget]
    if short:
        raise ValueError(f"stop_shares: pools of {short[:3]} hold fewer than budget={settings.budget} traces")
    rng = np.random.default_rng(seed)
    counts = {scope: np.zeros((3, 2)) for scope in ("all problems", "mixed problems")}  # (warm/stop/finish, wrong/ok)
    for _ in range(runs):
        for pool in pools:
            mixed = (pool.correct == 1.0).any() and (pool.correct == 0.0).any()
            ws = rng.permutation(len(pool))[:settings.budget]
            order: list[OnlineTrace] = [pool.online[i] for i in ws]
            res = replay_online(order, settings)[settings.budget]
            for k, (i, (_, _, stopped)) in enumerate(zip(ws, res.trace_tokens, strict=False)):
                v = pool.correct[i]
                if not np.isfinite(v):
                    continue
                row = 0 if k < settings.n_init else 1 if stopped else 2
                for scope in ("all problems", "mixed problems") if mixed else ("all problems",):
                    counts[scope][row, int(v)] += 1
    out = []
    for scope, c in counts.items():
        n = c.sum(axis=1)
        post = c[1] + c[2]  # post-warm-up traces by verdict
        share = np.divide(c[:, 1], n, out=np.full(3, np.nan), where=n > 0)
        rate = np.divide(c[1], post, out=np.full(2, np.nan), where=post > 0)
        out.append({"scope": scope, "n_warmup": int(n[0]), "n_stopped": int(n[1]), "n_finished": int(n[2]),
                    "correct_share_warmup": share[0], "correct_share_stopped": share[1],
                    "correct_share_finished": share[2], "stop_rate_correct": rate[1], "stop_rate_wrong": rate[0],
                    "runs": runs})
    return pd.DataFrame(out)


# --------------------------------------------------------------------------------------------
# Causes of high-confidence wrong traces
# --------------------------------------------------------------------------------------------

CAUSE_COLUMNS = ("no_answer", "short", "repeated_lines", "degenerate", "copied_from_prompt", "template_dominated")


def cause_table(table: pd.DataFrame, measure: str = "lowest_group", keep_top_percent: float = 10.0) -> pd.DataFrame:
    """Cause fractions of high-confidence wrong traces beside correct ones, over the mixed problems.

    High confidence = kept by DeepConf's top-eta% filter on `measure` within the problem (`offline.keep_top`,
    eta = `keep_top_percent`; ties kept). Only problems with both correct and wrong traces count (elsewhere
    confidence cannot decide a vote). Rows (group): "wrong, top eta%", "correct, top eta%", "wrong, all",
    "correct, all". Columns: group, n, the share of each CAUSE_COLUMNS flag (template_dominated: lowest
    window with >= TEMPLATE_DOMINATED template tokens), template_share (mean over the group's lowest windows),
    lowest_window_position (mean, 0 = start, 1 = end), median_tokens. Raises ValueError on an empty table or
    one without mixed problems, KeyError on a missing column.
    """
    _need(table, ["problem_id", "correct", "mixed", "n_tokens", measure, "no_answer", "short", "repeated_lines",
                  "degenerate", "copied_from_prompt", "lowest_window_template_share", "lowest_window_position"],
          "cause_table")
    t = table[table["mixed"].astype(bool) & table["correct"].notna()].copy()
    if t.empty:
        raise ValueError("cause_table: no problem has both correct and wrong traces")
    t["top"] = False
    for _, g in t.groupby("problem_id", sort=False):
        t.loc[g.index, "top"] = keep_top(_score(g, measure), keep_top_percent)
    share = t["lowest_window_template_share"]
    t["template_dominated"] = _flag(share >= TEMPLATE_DOMINATED, share.isna())
    groups = {f"wrong, top {keep_top_percent:g}%": t[(t.correct == 0) & t.top],
              f"correct, top {keep_top_percent:g}%": t[(t.correct == 1) & t.top],
              "wrong, all": t[t.correct == 0], "correct, all": t[t.correct == 1]}
    rows = []
    for name, g in groups.items():
        row: dict[str, Any] = {"group": name, "n": int(len(g))}
        for c in CAUSE_COLUMNS:
            v = g[c].astype("boolean")
            row[c] = float(v.mean()) if v.notna().any() else np.nan  # share among traces where it is defined
        row["template_share"] = float(g["lowest_window_template_share"].mean()) if len(g) else np.nan
        row["lowest_window_position"] = float(g["lowest_window_position"].mean()) if len(g) else np.nan
        row["median_tokens"] = float(g["n_tokens"].median()) if len(g) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Summary and one-call entry point
# --------------------------------------------------------------------------------------------


def _num(x) -> float | int | None:
    if x is None or pd.isna(x):
        return None
    return int(x) if isinstance(x, (int, np.integer)) else float(x)


def calibration_summary(aurocs: pd.DataFrame, lengths: pd.DataFrame, stops: pd.DataFrame,
                        causes: pd.DataFrame | None) -> dict[str, Any]:
    """Headline numbers (JSON-ready: floats, None for undefined) from the four frames of one model x benchmark.

    auroc: {measure: {pooled, within, ci, n_problems}} (LENGTH included); best_measure (highest within-problem
    AUROC), best_beats_chance (its CI lies above 0.5) and length_as_good_as_best (the length baseline's within
    AUROC >= the best measure's); spearman_length:
    {measure: pooled rho}; stops: the "mixed problems" row of `stop_shares` (all problems when none is mixed);
    causes: {group: {flag: share}}, None when no problem is mixed.
    """
    a = aurocs.set_index("measure")
    conf = a.drop(index=LENGTH)
    finite = conf["within_auroc"].dropna()
    best = str(finite.idxmax()) if len(finite) else None
    length_ok = (bool(a.loc[LENGTH, "within_auroc"] >= finite.max())
                 if best is not None and np.isfinite(a.loc[LENGTH, "within_auroc"]) else None)
    scope = stops[stops["scope"] == "mixed problems"].iloc[0]
    if scope["n_warmup"] == 0:
        scope = stops[stops["scope"] == "all problems"].iloc[0]
    return {
        "auroc": {m: {"pooled": _num(r.pooled_auroc), "within": _num(r.within_auroc),
                      "ci": [_num(r.ci_low), _num(r.ci_high)], "n_problems": int(r.n_problems)} for m, r in a.iterrows()},
        "resamples": int(a["resamples"].iloc[0]),
        "best_measure": best, "best_beats_chance": None if best is None else bool(conf.loc[best, "ci_low"] > 0.5),
        "length_as_good_as_best": length_ok,
        "spearman_length": {r.measure: _num(r.spearman_rho) for r in lengths.itertuples()},
        "stops": {k: (v if k == "scope" else _num(v)) for k, v in scope.items()},
        "causes": None if causes is None else {
            r["group"]: {k: _num(v) for k, v in r.items() if k != "group"} for r in causes.to_dict(orient="records")},
    }


def diagnose(pools: Sequence[ProblemPool], problems: Sequence[Mapping[str, Any]], settings: OnlineSettings, *,
             runs: int = 64, seed: int = 0, resamples: int = 1000, ci_level: float = 0.95,
             measure: str = "lowest_group") -> dict[str, Any]:
    """Every diagnostic of one model x benchmark: {"traces", "auroc", "length", "stops", "causes", "summary"}.

    `settings`: the online variant to replay (`experiment.online_variants(cfg)["deepconf-low"]`); its eta also
    sets the cause table's top share. "causes" is None when no problem has both correct and wrong traces.
    """
    table = trace_table(pools, problems)
    aurocs = auroc_table(table, resamples=resamples, ci_level=ci_level, seed=seed)
    lengths = length_correlation(table)
    stops = stop_shares(pools, settings, runs=runs, seed=seed)
    causes = cause_table(table, measure, settings.keep_top_percent) if table["mixed"].any() else None
    summary = calibration_summary(aurocs, lengths, stops, causes)
    return {"traces": table, "auroc": aurocs, "length": lengths, "stops": stops, "causes": causes,
            "summary": {**summary, "measure": measure, "keep_top_percent": settings.keep_top_percent, "runs": runs}}


__all__ = ["CAUSE_COLUMNS", "DETAIL_COLUMNS", "LENGTH", "TEMPLATE_DOMINATED", "TEMPLATE_PIECES", "auroc",
           "auroc_table", "calibration_summary", "cause_table", "copied_from_prompt", "diagnose", "length_correlation",
           "lowest_window", "repeated_line_share", "stop_shares", "template_token_mask", "trace_details", "trace_table"]
