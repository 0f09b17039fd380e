"""The DeepConf replay protocol over scored trace pools: runs, curves, per-problem accuracies, claim tables.

Protocol ([P] §4.1): a pool of complete traces per problem; each of R runs draws a random working set
(a permutation of the pool, seeded numpy Generator) and applies every method to its first b traces:
pass@1, majority@b, the offline votes of `offline.offline_methods()`, and online DeepConf-low/-high with
and without the consensus stop (`online.replay_online`, b >= N_init). Accuracy is averaged over runs and
problems, with a bootstrap CI over problems; tokens are totals over the benchmark, averaged over runs.
No model runs here: `experiment` generates the pools and writes the stage's files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from falcon_h1r_lib.config import ConfigError
from falcon_h1r_lib.configs import DeepConfConfig
from falcon_h1r_lib.deepconf.confidence import SCORE_NAMES, token_confidence, trace_name, trace_scores
from falcon_h1r_lib.deepconf.offline import (
    NO_ANSWER,
    AnswerBook,
    OfflineMethod,
    offline_methods,
    offline_vote,
    weighted_vote,
)
from falcon_h1r_lib.deepconf.online import OnlineSettings, OnlineTrace, replay_online

PASS1, MAJORITY = "pass@1", "majority"
TABLE7_COLUMNS = {"AIME24": "AIME24", "AIME25": "AIME25", "GPQA-Diamond": "GPQA-Diamond", "AMO-Bench": "AMO-Bench-39"}


@dataclass
class ProblemPool:
    """One problem's pool, scored: per trace (P,) arrays in sample order, answer groups, verdicts."""

    problem_id: str
    n_tokens: np.ndarray  # (P,) generated tokens per trace
    labels: np.ndarray  # (P,) answer group (offline.AnswerBook in pool order), NO_ANSWER = -1
    correct: np.ndarray  # (P,) 1.0 / 0.0 / nan (no verdict) per trace
    label_correct: dict[int, float]  # answer group -> verdict of its first trace; NO_ANSWER -> 0.0
    scores: dict[str, np.ndarray]  # score name -> (P,)
    online: list[OnlineTrace]  # the same traces for the online controller
    details: pd.DataFrame | None = None  # (P rows) calibration.trace_details: answer, finish reason, cause features

    def __len__(self) -> int:
        return len(self.n_tokens)

    def verdict(self, label: int) -> float:
        return self.label_correct.get(int(label), 0.0)


def score_pool(problem_id: str, traces: Sequence, answers: Sequence[str | None], correct: Sequence[bool | None],
               domain: str, window: int, tail: int, bottom_percent: float = 10.0, topk: int = 20) -> ProblemPool:
    """Score one problem's traces (generation.Trace, sample order) with their extracted answers and verdicts."""
    if not len(traces) == len(answers) == len(correct):
        raise ValueError(f"problem {problem_id!r}: {len(traces)} traces, {len(answers)} answers, {len(correct)} verdicts")
    book = AnswerBook(domain)
    labels = np.array([book.label(a) for a in answers], dtype=np.int64)
    verdicts = np.array([np.nan if c is None else float(bool(c)) for c in correct])
    confs = [token_confidence(t.topk_logprobs, topk, trace=trace_name(t)) for t in traces]
    per = [trace_scores(c, window, tail, bottom_percent) for c in confs]
    label_correct: dict[int, float] = {NO_ANSWER: 0.0}
    for lab, v in zip(labels.tolist(), verdicts.tolist(), strict=True):
        label_correct.setdefault(lab, v)
    return ProblemPool(
        problem_id=problem_id, n_tokens=np.array([t.n_tokens for t in traces], dtype=np.int64), labels=labels,
        correct=verdicts, label_correct=label_correct,
        scores={s: np.array([p[s] for p in per]) for s in SCORE_NAMES},
        online=[OnlineTrace.from_conf(c, window, lab, int(t.sample_index))
                for c, lab, t in zip(confs, labels.tolist(), traces, strict=True)])


def online_variants(cfg: DeepConfConfig, wave: int = 1) -> dict[str, OnlineSettings]:
    """DeepConf-low/-high ([P] eta 10 / 90), budget-only and with the consensus stop. `wave` = 1 checks
    consensus before every trace (Alg. 2; the replayed curves); live runs pass `cfg.live_wave`."""
    out = {}
    for name, eta in (("low", cfg.keep_top_percent), ("high", cfg.keep_top_percent_high)):
        for suffix, tau in (("", None), ("+consensus", cfg.consensus_tau)):
            out[f"deepconf-{name}{suffix}"] = OnlineSettings(
                budget=cfg.budget, n_init=cfg.n_init, keep_top_percent=eta, window=cfg.window,
                consensus_tau=tau, wave=wave, topk=cfg.topk)
    return out


@dataclass
class RunGrid:
    """Every method's outcome on every resampled run of one model x benchmark: for each (method, budget),
    ``accuracy`` (R, P) verdicts (1/0, nan = no verdict) and ``tokens`` (R, P) generated tokens, problems in
    pool order (``problem_ids``, (P,))."""

    problem_ids: list[str]
    accuracy: dict[tuple[str, int], np.ndarray]
    tokens: dict[tuple[str, int], np.ndarray]

    def per_problem_accuracy(self, method: str, budget: int) -> np.ndarray:
        """(P,) accuracy of ``method`` at ``budget`` per problem, averaged over runs (nan: never a verdict).
        Raises KeyError naming the pair when it was not replayed."""
        if (method, budget) not in self.accuracy:
            raise KeyError(f"no replay of method {method!r} at budget {budget}; have "
                           f"{sorted(self.accuracy)[:6]}...")
        a = self.accuracy[(method, budget)]
        with np.errstate(all="ignore"):
            return np.array([np.nanmean(col) if np.isfinite(col).any() else np.nan for col in a.T])


def scaling_curves(pools: Sequence[ProblemPool], cfg: DeepConfConfig, seed: int | None = None,
                   methods: Sequence[OfflineMethod] | None = None) -> pd.DataFrame:
    """Accuracy and tokens per (method, budget) over `cfg.runs` resampled runs of one model x benchmark.

    Columns: method, family (baseline|offline|online), budget, accuracy, ci_low, ci_high, accuracy_run_std,
    tokens (total over problems, run mean), tokens_run_std, no_verdict (problem-runs without a verdict).
    """
    return curves_from_grid(replay_grid(pools, cfg, seed, methods), cfg)


def replay_grid(pools: Sequence[ProblemPool], cfg: DeepConfConfig, seed: int | None = None,
                methods: Sequence[OfflineMethod] | None = None) -> RunGrid:
    """The runs behind `scaling_curves`: each of `cfg.runs` runs draws a seeded permutation of each pool and
    applies pass@1, majority@b, the offline votes and the online variants to its first b traces."""
    if not pools:
        raise ValueError("scaling_curves: no problem pools")
    short = [p.problem_id for p in pools if len(p) < cfg.budget]
    if short:
        raise ConfigError(f"{cfg.STAGE}: pools of {short[:3]} hold fewer than budget={cfg.budget} traces")
    if methods is None:  # plain majority is the baseline row already
        methods = [m for m in offline_methods((cfg.keep_top_percent, cfg.keep_top_percent_high)) if m.score is not None]
    variants = online_variants(cfg)
    budgets = sorted(set(cfg.budgets))
    online_budgets = [b for b in budgets if b >= cfg.n_init]
    rng = np.random.default_rng(cfg.seed if seed is None else seed)
    R, P = cfg.runs, len(pools)
    acc: dict[tuple[str, int], np.ndarray] = {}
    tok: dict[tuple[str, int], np.ndarray] = {}

    def put(name, b, r, p, a, t):
        if (name, b) not in acc:
            acc[(name, b)] = np.full((R, P), np.nan)
            tok[(name, b)] = np.zeros((R, P))
        acc[(name, b)][r, p] = a
        tok[(name, b)][r, p] = t

    for r in range(R):
        for p, pool in enumerate(pools):
            ws = rng.permutation(len(pool))[:cfg.budget]  # this run's working set, in start order
            put(PASS1, 1, r, p, np.nanmean(pool.correct[ws]) if np.isfinite(pool.correct[ws]).any() else np.nan,
                pool.n_tokens[ws].mean())
            for b in budgets:
                sub = ws[:b]
                labels, tokens = pool.labels[sub], float(pool.n_tokens[sub].sum())
                put(MAJORITY, b, r, p, pool.verdict(weighted_vote(labels).label), tokens)
                scores = {s: v[sub] for s, v in pool.scores.items()}
                for m in methods:
                    put(f"offline:{m.name}", b, r, p, pool.verdict(offline_vote(labels, scores, m).label), tokens)
            if online_budgets:
                order = [pool.online[i] for i in ws]
                for name, settings in variants.items():
                    for b, res in replay_online(order, settings, online_budgets).items():
                        put(name, b, r, p, pool.verdict(res.label), res.tokens)
    return RunGrid([p.problem_id for p in pools], acc, tok)


def per_problem_frame(grid: RunGrid, budget: int, methods: Sequence[str] = (MAJORITY, "deepconf-low")) -> pd.DataFrame:
    """One row per problem: each of ``methods``' accuracy at ``budget`` averaged over runs (columns named by
    method) and its mean tokens; the paired per-problem data behind the DeepConf claim's power analysis
    (`evaluation.power.difference_stats`)."""
    frame = pd.DataFrame({"problem_id": grid.problem_ids})
    for m in methods:
        frame[m] = grid.per_problem_accuracy(m, budget)
        frame[f"{m}_tokens"] = grid.tokens[(m, budget)].mean(axis=0)
    return frame


def claim_power(per_problem: Mapping[tuple[str, str], pd.DataFrame], budget: int, margin: float | None = None,
                power: float = 0.8, alpha: float = 0.05, low: str = "deepconf-low") -> pd.DataFrame:
    """The DeepConf claim's power analysis, one row per (model, benchmark): DeepConf-low at K = ``budget`` is
    non-inferior to majority@K within ``margin`` (fraction; default `evaluation.power.DEEPCONF_MARGIN`, the
    1-point target), tested on the per-problem accuracy differences of `per_problem_frame` (problems without a
    verdict dropped). Columns: model, benchmark, n_problems, mean_difference_points, sd_points,
    power_at_current (if the methods were truly equal), problems_needed (for ``power``), margin_points, note.

    A pair the analysis cannot size keeps its row with NaN power and a ``note`` instead of failing the table:
    fewer than 2 problems with a verdict (no SD), or SD 0 (every problem's difference equal: a degenerate pilot
    that would claim power 1 from one problem). Raises KeyError naming the pair whose frame lacks a column."""
    from falcon_h1r_lib.evaluation import power as pw

    margin = pw.DEEPCONF_MARGIN if margin is None else margin
    rows = []
    for (label, bench), frame in per_problem.items():
        missing = [c for c in (MAJORITY, low) if c not in frame.columns]
        if missing:
            raise KeyError(f"claim_power: ({label!r}, {bench!r}) has no column(s) {missing}")
        both = frame[[MAJORITY, low]].dropna()
        row = {"model": label, "benchmark": bench, "n_problems": len(both), "mean_difference_points": np.nan,
               "sd_points": np.nan, "power_at_current": np.nan, "problems_needed": np.nan,
               "margin_points": 100.0 * margin, "note": ""}
        if len(both) < 2:
            rows.append({**row, "note": f"{len(both)} problem(s) with a verdict: no SD to size the test from"})
            continue
        stats = pw.difference_stats(both[low], both[MAJORITY], n_samples=budget)
        row.update(mean_difference_points=100.0 * stats.mean_difference, sd_points=100.0 * stats.sd)
        if stats.sd == 0.0:
            rows.append({**row, "note": f"degenerate: all {stats.n_problems} differences equal (SD 0)"})
            continue
        rows.append({**row, "power_at_current": pw.power_noninferior(margin, 0.0, stats.n_problems, stats.sd, alpha),
                     "problems_needed": pw.problems_needed_noninferior(margin, 0.0, stats.sd, power, alpha)})
    out = pd.DataFrame(rows)
    if not out.empty:
        out["problems_needed"] = out["problems_needed"].astype("Int64")
    return out


def curves_from_grid(grid: RunGrid, cfg: DeepConfConfig) -> pd.DataFrame:
    """`scaling_curves`' table from a `RunGrid`: accuracy over problems (bootstrap CI over problems),
    tokens totalled over problems and averaged over runs."""
    from falcon_h1r_lib.evaluation import bootstrap_ci

    acc, tok = grid.accuracy, grid.tokens
    rows = []
    for (name, b), a in acc.items():
        per_problem = np.nanmean(np.where(np.isnan(a), np.nan, a), axis=0) if np.isfinite(a).any() else None
        finite = per_problem[np.isfinite(per_problem)] if per_problem is not None else np.zeros(0)
        lo, hi = bootstrap_ci(finite, cfg.bootstrap_resamples, cfg.ci_level, cfg.seed) if finite.size else (np.nan, np.nan)
        run_acc = np.nanmean(a, axis=1)
        totals = tok[(name, b)].sum(axis=1)
        family = "online" if name.startswith("deepconf-") else "offline" if name.startswith("offline:") else "baseline"
        rows.append({"method": name, "family": family, "budget": b, "accuracy": float(np.nanmean(finite)) if finite.size else np.nan,
                     "ci_low": lo, "ci_high": hi, "accuracy_run_std": float(np.nanstd(run_acc)),
                     "tokens": float(totals.mean()), "tokens_run_std": float(totals.std()),
                     "no_verdict": int(np.isnan(a).sum())})
    return pd.DataFrame(rows).sort_values(["family", "method", "budget"], kind="stable").reset_index(drop=True)


def at_budget(curves: pd.DataFrame, method: str, budget: int) -> pd.Series:
    rows = curves[(curves["method"] == method) & (curves["budget"] == budget)]
    if rows.empty:
        raise KeyError(f"no curve point for method {method!r} at budget {budget}")
    return rows.iloc[0]


def summary_at(curves: pd.DataFrame, budget: int, low: str = "deepconf-low") -> dict[str, float]:
    """Majority@K vs DeepConf-low at K: accuracies, tokens, tokens saved (%), accuracy difference (points)."""
    maj, dc = at_budget(curves, MAJORITY, budget), at_budget(curves, low, budget)
    return {"budget": int(budget), "majority_accuracy": float(maj["accuracy"]), "majority_tokens": float(maj["tokens"]),
            "deepconf_low_accuracy": float(dc["accuracy"]), "deepconf_low_tokens": float(dc["tokens"]),
            "tokens_saved_percent": float(100.0 * (1.0 - dc["tokens"] / maj["tokens"])) if maj["tokens"] else np.nan,
            "accuracy_difference_points": float(100.0 * (dc["accuracy"] - maj["accuracy"]))}


CLAIM_MIN_TOKENS_SAVED_PERCENT = 30.0  # our tiny-scale bar; DeepConf paper §4.3: DeepConf-low saves 43-79% at K=512


def deepconf_claim_holds(tokens_saved_percent: float, accuracy_difference_points: float,
                         margin_points: float | None = None,
                         min_saved_percent: float = CLAIM_MIN_TOKENS_SAVED_PERCENT) -> bool:
    """The DeepConf claim on one `summary_at`: DeepConf-low saves at least ``min_saved_percent`` of majority@K's
    tokens and its accuracy is at most ``margin_points`` below majority@K's (default
    `evaluation.power.DEEPCONF_MARGIN`, 1 point). The one rule behind the claim tables and notebook 06's Reading."""
    from falcon_h1r_lib.evaluation import power as pw

    margin_points = 100.0 * pw.DEEPCONF_MARGIN if margin_points is None else float(margin_points)
    return bool(tokens_saved_percent >= min_saved_percent and accuracy_difference_points >= -margin_points)


def claim_over_seeds(by_seed: Mapping[int, Mapping[tuple[str, str], Mapping[str, float]]],
                     margin_points: float | None = None,
                     min_saved_percent: float = CLAIM_MIN_TOKENS_SAVED_PERCENT) -> pd.DataFrame:
    """The DeepConf claim per seed and over seeds: DeepConf-low at K saves at least ``min_saved_percent`` of
    majority@K's tokens with accuracy no more than ``margin_points`` below it (default
    `evaluation.power.DEEPCONF_MARGIN`, 1 point). ``by_seed`` maps seed -> {(model, benchmark): `summary_at`}.
    Per (model, benchmark), one row per seed: majority@K and DeepConf-low accuracy (%), tokens saved (%), accuracy
    difference (points), ``claim_holds`` (`deepconf_claim_holds`); then, with 2 seeds or more, a row ``"mean over
    N seeds"`` with the means, the sample SDs (ddof 1) of the saving and of the difference, and ``claim_holds``
    true only when it holds for every seed. Raises ValueError for no seeds or a summary that is not finite, KeyError
    naming the seed and pair whose summary lacks a field."""
    import math

    if not by_seed:
        raise ValueError("claim_over_seeds: no seeds")
    fields = ("majority_accuracy", "deepconf_low_accuracy", "tokens_saved_percent", "accuracy_difference_points")
    rows = []
    for seed, summaries in by_seed.items():
        for (model, bench), summary in summaries.items():
            missing = [f for f in fields if f not in summary]
            if missing:
                raise KeyError(f"claim_over_seeds: seed {seed}, ({model!r}, {bench!r}) has no {missing}")
            values = {f: float(summary[f]) for f in fields}
            if not all(math.isfinite(v) for v in values.values()):
                raise ValueError(f"claim_over_seeds: seed {seed}, ({model!r}, {bench!r}) is not finite: {values}")
            rows.append({"model": model, "benchmark": bench, "seed": seed,
                         "majority_accuracy_percent": 100.0 * values["majority_accuracy"],
                         "deepconf_low_accuracy_percent": 100.0 * values["deepconf_low_accuracy"],
                         "tokens_saved_percent": values["tokens_saved_percent"],
                         "accuracy_difference_points": values["accuracy_difference_points"],
                         "claim_holds": deepconf_claim_holds(values["tokens_saved_percent"],
                                                             values["accuracy_difference_points"], margin_points,
                                                             min_saved_percent)})
    table = pd.DataFrame(rows)
    out = []
    for (model, bench), one in table.groupby(["model", "benchmark"], sort=False):  # each pair's seeds, then its mean
        out.append(one)
        if len(one) < 2:
            continue
        out.append(pd.DataFrame([{
            "model": model, "benchmark": bench, "seed": f"mean over {len(one)} seeds",
            **{c: one[c].mean() for c in ("majority_accuracy_percent", "deepconf_low_accuracy_percent",
                                          "tokens_saved_percent", "accuracy_difference_points")},
            "sd_tokens_saved": one["tokens_saved_percent"].std(ddof=1),
            "sd_accuracy_difference": one["accuracy_difference_points"].std(ddof=1),
            "claim_holds": bool(one["claim_holds"].all())}]))
    return pd.concat(out, ignore_index=True)


def table7_frame(curves: Mapping[tuple[str, str], pd.DataFrame], budget: int, method: str = "deepconf-low",
                 paper_model: str = "Falcon-H1R-7B") -> pd.DataFrame:
    """Table 7 analog: per (model, benchmark) accuracy (%) / total tokens of `method` at K, majority@K
    beside, and the paper's cell (Falcon-H1R-7B) where the benchmark is one of Table 7's columns."""
    from falcon_h1r_lib.paper_results import paper_value

    rows = []
    for (model, bench), c in curves.items():
        ours, maj = at_budget(c, method, budget), at_budget(c, MAJORITY, budget)
        col = TABLE7_COLUMNS.get(bench)
        rows.append({
            "model": model, "benchmark": bench, "method": method, "budget": budget,
            "accuracy_percent": 100 * ours["accuracy"], "tokens": ours["tokens"],
            "majority_accuracy_percent": 100 * maj["accuracy"], "majority_tokens": maj["tokens"],
            "paper_model": paper_model if col else None,
            "paper_accuracy_percent": paper_value("table7_deepconf", paper_model, col, "accuracy") if col else np.nan,
            "paper_tokens_millions": paper_value("table7_deepconf", paper_model, col, "tokens_millions") if col else np.nan,
        })
    return pd.DataFrame(rows)


def figure1_frame(curves: Mapping[tuple[str, str], pd.DataFrame], budget: int) -> pd.DataFrame:
    """Fig. 1 analog: pass@1, majority@K, offline DeepConf@K (lowest-group and tail, eta = 10) accuracy, and
    online DeepConf-low/-high tokens vs majority@K (savings in %)."""
    rows = []
    for (model, bench), c in curves.items():
        maj = at_budget(c, MAJORITY, budget)
        for method in (PASS1, MAJORITY, "offline:lowest_group@10", "offline:tail@10", "deepconf-low", "deepconf-high",
                       "deepconf-low+consensus", "deepconf-high+consensus"):
            try:
                pt = at_budget(c, method, 1 if method == PASS1 else budget)
            except KeyError:
                continue
            rows.append({"model": model, "benchmark": bench, "method": method, "accuracy": pt["accuracy"],
                         "ci_low": pt["ci_low"], "ci_high": pt["ci_high"], "tokens": pt["tokens"],
                         "tokens_vs_majority_percent": 100.0 * (pt["tokens"] / maj["tokens"] - 1.0) if maj["tokens"] else np.nan})
    return pd.DataFrame(rows)
