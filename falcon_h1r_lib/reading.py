"""The notebooks' **Reading** paragraphs, rendered from the results they interpret.

A typed paragraph keeps the numbers of the run it was written after, and the next run on another CPU type or seed
contradicts it (issue 16 found notebook 04 printing +0.1 points under a Reading that said +1.8). Here each
paragraph is a function of the frames and ``metrics.json`` records the notebook has just produced: the method and
the interpretation rules are fixed text, every number is read, and the verdict follows from the numbers by the same
rules the claim tables use. Each returns Markdown for ``IPython.display.Markdown``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from falcon_h1r_lib.deepconf.replay import CLAIM_MIN_TOKENS_SAVED_PERCENT, deepconf_claim_holds

STAGES = ("base", "sft", "rl")  # notebook 05's checkpoints in pipeline order


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _ci(ci: Sequence[float] | None) -> str:
    if ci is None or len(ci) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in ci):
        return "[no interval]"
    return f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _separated(a: Sequence[float] | None, b: Sequence[float] | None) -> bool:
    """True when the two 95% intervals do not overlap (a conservative reading of a difference)."""
    if not a or not b:
        return False
    return a[1] < b[0] or b[1] < a[0]


def evaluation_reading(results: pd.DataFrame) -> str:
    """Notebook 05's Reading from its ``results`` frame (one row per model x benchmark: ``model``, ``benchmark``,
    ``pass_at_1``, ``pass_at_1_ci``, ``n_problems``, ``samples_per_problem``): per benchmark, pass@1 of each
    checkpoint with its 95% bootstrap CI, and which consecutive stages differ by non-overlapping intervals (the
    paper's base < SFT < RL ordering, [P] Tables 4-6). Raises KeyError naming a missing column."""
    need = ("model", "benchmark", "pass_at_1", "pass_at_1_ci", "n_problems", "samples_per_problem")
    missing = [c for c in need if c not in results.columns]
    if missing:
        raise KeyError(f"evaluation_reading: results have no column(s) {missing}")
    lines = ["**Reading** (every number below is read from this run's results; other CPU types and seeds move them "
             "by points, so the text states only what the intervals support).", ""]
    for bench, rows in results.groupby("benchmark", sort=False):
        rows = rows.set_index("model")
        order = [m for m in STAGES if m in rows.index] + [m for m in rows.index if m not in STAGES]
        parts = [f"{m} {_pct(rows.loc[m, 'pass_at_1'])} {_ci(rows.loc[m, 'pass_at_1_ci'])}" for m in order]
        first = rows.iloc[0]
        steps = []
        for a, b in zip(order, order[1:]):
            pa, pb = rows.loc[a, "pass_at_1"], rows.loc[b, "pass_at_1"]
            sep = _separated(rows.loc[a, "pass_at_1_ci"], rows.loc[b, "pass_at_1_ci"])
            word = ("above" if pb > pa else "below") if sep else "within noise of"
            steps.append(f"{b} is {word} {a}")
        lines.append(f"- **{bench}** ({int(first['n_problems'])} problems x {int(first['samples_per_problem'])} "
                     f"samples): {', '.join(parts)}; {'; '.join(steps) if steps else 'one checkpoint only'}.")
    lines += ["", "Non-overlapping 95% intervals are a conservative test; notebook 04 gives the paired RL - SFT "
              "difference on more samples, and its power analysis says how many problems a gain of the paper's size "
              "would need."]
    return "\n".join(lines)


def deepconf_reading(models: Mapping[str, Mapping[str, Mapping[str, Any]]], budget: int,
                     over_seeds: pd.DataFrame | None = None, power: pd.DataFrame | None = None,
                     margin_points: float | None = None) -> str:
    """Notebook 06's Reading from ``metrics["models"]`` ({model: {benchmark: entry}}, each entry with
    ``at_budget`` (`replay.summary_at`) and ``calibration`` (`calibration.diagnose`'s summary)), the claim over
    seeds (`replay.claim_over_seeds`) and the power table (`replay.claim_power`). The claim ([D] §4.3, [P] §5):
    DeepConf-low at K saves at least `CLAIM_MIN_TOKENS_SAVED_PERCENT` of majority@K's tokens and loses at most
    ``margin_points`` (`replay.deepconf_claim_holds`, default 1 point). Entries without ``at_budget`` (live-only
    runs) are skipped."""
    from falcon_h1r_lib.evaluation.power import DEEPCONF_MARGIN

    margin = 100.0 * DEEPCONF_MARGIN if margin_points is None else float(margin_points)
    lines = [f"**Reading** (rendered from this run's `metrics.json`; K = {budget}).", ""]
    for label, benches in models.items():
        for bench, entry in benches.items():
            s = entry.get("at_budget")
            if not s:
                continue
            saved, diff = s["tokens_saved_percent"], s["accuracy_difference_points"]
            verdict = ("meets the claim" if deepconf_claim_holds(saved, diff, margin) else
                       f"misses the claim (it saves tokens but loses more than {margin:g} point)"
                       if saved >= CLAIM_MIN_TOKENS_SAVED_PERCENT else
                       f"misses the claim (it saves less than {CLAIM_MIN_TOKENS_SAVED_PERCENT:g}%)")
            lines.append(f"- **{label} / {bench}.** DeepConf-low uses {saved:.0f}% fewer tokens than majority@{budget} "
                         f"and moves accuracy from {_pct(s['majority_accuracy'])} to "
                         f"{_pct(s['deepconf_low_accuracy'])} ({diff:+.1f} points): the point estimate {verdict}.")
            cal = entry.get("calibration") or {}
            best = cal.get("best_measure")
            if best:
                a = cal["auroc"][best]
                chance = "better than chance" if cal.get("best_beats_chance") else "no better than chance"
                lines.append(f"  Within a problem the best confidence measure ({best}) separates correct from wrong "
                             f"traces with AUROC {a['within']:.2f} {_ci_plain(a.get('ci'))} over {a['n_problems']} "
                             f"problems: {chance}.")
            stops = cal.get("stops") or {}
            if stops.get("stop_rate_correct") is not None and stops.get("stop_rate_wrong") is not None:
                lines.append(f"  The online stop cuts {stops['stop_rate_correct']:.0%} of correct and "
                             f"{stops['stop_rate_wrong']:.0%} of wrong traces after warm-up ({stops['scope']}).")
            causes = cal.get("causes") or {}
            wrong, right = causes.get("wrong, top 10%"), causes.get("correct, all")
            if wrong and right and wrong.get("n"):
                lines.append(f"  Of the wrong traces its top-10% filter keeps, {wrong['short']:.0%} are shorter than "
                             f"the problem's shortest correct trace (correct traces: {right['short']:.0%}) and "
                             f"{wrong['copied_from_prompt']:.0%} copy a number from the prompt "
                             f"({right['copied_from_prompt']:.0%}).")
    if over_seeds is not None and not over_seeds.empty:
        per_seed = over_seeds[pd.to_numeric(over_seeds["seed"], errors="coerce").notna()]
        for (label, bench), rows in per_seed.groupby(["model", "benchmark"], sort=False):
            d = rows["accuracy_difference_points"]
            lines.append(f"- **Over {len(rows)} seeds ({label} / {bench}):** the point estimate meets the claim for "
                         f"{int(rows['claim_holds'].sum())} of {len(rows)}; accuracy difference {d.mean():+.1f} "
                         f"points (range {d.min():+.1f} to {d.max():+.1f}), tokens saved "
                         f"{rows['tokens_saved_percent'].mean():.0f}%.")
    if power is not None and not power.empty:
        for _, row in power.iterrows():
            if pd.notna(row.get("problems_needed")):
                lines.append(f"- **Power ({row['model']} / {row['benchmark']}):** at the measured per-problem SD "
                             f"({row['sd_points']:.0f} points) a test of 'within {row['margin_points']:g} point' with "
                             f"80% power needs about {int(row['problems_needed']):,} problems; this run has "
                             f"{int(row['n_problems'])}.")
    lines.append("- **Verdict.** The claims line above judges each model-seed pair on the bootstrap CI of its "
                 "accuracy difference (`falcon_h1r_lib.claims.deepconf_low`), not on the point estimate: at this "
                 "many problems the CIs span tens of points.")
    return "\n".join(lines)


def _ci_plain(ci: Sequence[float] | None) -> str:
    if ci is None or len(ci) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in ci):
        return "(no interval)"
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def sft_reading(table: pd.DataFrame, metrics: Mapping[str, Any], by_level: Mapping[str, Mapping[str, Any]] | None = None
                ) -> str:
    """Notebook 03's Reading from `sft.report.accuracy_table` (one row per benchmark: ``domain``, ``problems``,
    ``samples/problem``, ``base pass@1`` / ``base CI``, ``SFT pass@1`` / ``SFT CI``), the stage metrics (``sft``:
    ``rows``, ``steps``, ``epochs``, ``global_batch``; no wall time: timings live in the Runtime lines) and the
    SFT model's math accuracy by difficulty level (``{level: {"pass_at_1", "n_problems"}}``). Raises KeyError naming a missing column."""
    need = ("domain", "problems", "samples/problem", "base pass@1", "base CI", "SFT pass@1", "SFT CI")
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise KeyError(f"sft_reading: the accuracy table has no column(s) {missing}")
    tuned = metrics["sft"]
    lines = ["**Reading** (rendered from this run's results; other CPU types and seeds move them by points).", "",
             f"SFT ran {tuned['epochs']:g} epochs over {tuned['rows']:,} curated traces ({tuned['steps']:,} steps at "
             f"batch {tuned['global_batch']}). Held-out pass@1, base -> SFT, 95% "
             "bootstrap CIs:", ""]
    for bench, row in table.iterrows():
        sep = _separated(row["base CI"], row["SFT CI"])
        word = ("above" if row["SFT pass@1"] > row["base pass@1"] else "below") if sep else "within noise of"
        lines.append(f"- **{row['domain']}** ({bench}, {int(row['problems'])} problems x {int(row['samples/problem'])} "
                     f"samples): {_pct(row['base pass@1'])} {_ci(row['base CI'])} -> {_pct(row['SFT pass@1'])} "
                     f"{_ci(row['SFT CI'])}: SFT is {word} the base.")
    if by_level:
        levels = ", ".join(f"level {lv} {_pct(v['pass_at_1'])} ({v['n_problems']})" for lv, v in sorted(
            by_level.items(), key=lambda kv: int(kv[0])) if v.get("pass_at_1") is not None)
        lines += ["", f"Math by difficulty level (problems in brackets): {levels}. The tiny model learns the short "
                  "procedures first; the multi-step levels stay near 0 at this budget."]
    lines += ["", "The base answers in one shot, so its math accuracy is what guessing a number gives; SFT teaches "
              "the digit-by-digit procedures of the traces. The 4-way science set starts at chance (25%). The DP "
              "token-balance effect (Fig. 4) needs several ranks: the arms above compare it on 2 processes, and "
              "`tests/test_dp_balance.py` checks its mechanism as a gradient identity."]
    return "\n".join(lines)


def rl_reading(accuracy: Mapping[str, Any], curves: Sequence[Mapping[str, float]], backfill: Mapping[str, Any],
               development_runs: Sequence[Mapping[str, Any]] = (), over_seeds: pd.DataFrame | None = None,
               domain: str = "math") -> str:
    """Notebook 04's Reading from `rl.report.accuracy_from_evaluation`'s result (``sft_accuracy``,
    ``rl_accuracy``, ``rl_minus_sft`` per domain), the training curves (``accuracy`` per step), the backfill
    counters (``calls_saved_fraction``), the development runs of `development_runs()` and the claim over seeds
    (`arms.claims_over_arms`). The claim ([P] Table 3): RL raises held-out pass@1, i.e. the paired 95% CI of
    RL - SFT excludes 0 above it. Raises KeyError naming a missing result."""
    for key in ("sft_accuracy", "rl_accuracy", "rl_minus_sft"):
        if domain not in accuracy.get(key, {}):
            raise KeyError(f"rl_reading: no {key} result for {domain!r}")
    sft, rl, d = (accuracy[k][domain] for k in ("sft_accuracy", "rl_accuracy", "rl_minus_sft"))
    lo, hi = d["ci"]
    holds = lo > 0
    title = "the paper's RL gain is shown at this scale" if holds else "the paper's RL gain is not shown at this scale"
    if len(curves) >= 4:  # the rule of the reward claim (claims.reward_rises)
        from falcon_h1r_lib.claims import halves_difference

        first, last, r_lo, r_hi = halves_difference([float(c["accuracy"]) for c in curves])
        reward = (f"The verified-correct fraction on the RL prompts goes from {first:.2f} (first half of the steps) "
                  f"to {last:.2f} (second half): {100 * (last - first):+.1f} points [{r_lo:+.1f}, {r_hi:+.1f}], "
                  + ("a rise." if r_lo > 0 else "within noise." if r_hi > 0 else "a fall."))
    else:
        reward = f"Training ran {len(curves)} steps, too few to compare halves."
    lines = [f"**Reading: {title}.** (Rendered from this run's results.) {reward} Held-out {domain} moves "
             f"from {_pct(sft['pass_at_1'])} {_ci(sft['ci'])} (SFT) to {_pct(rl['pass_at_1'])} {_ci(rl['ci'])} (RL), "
             f"{sft['n_problems']} problems x {sft['samples_per_problem']} samples: a paired difference of "
             f"{100 * d['difference']:+.1f} points [{100 * lo:+.1f}, {100 * hi:+.1f}], RL better on "
             f"{d.get('b_better')} problems and SFT on {d.get('a_better')}. The backfill cache saved "
             f"{backfill['calls_saved_fraction']:.0%} of generation calls."]
    if over_seeds is not None and len(over_seeds) >= 2:
        per_seed = over_seeds[~over_seeds["run"].astype(str).str.startswith("mean over")]
        lines += ["", f"Over {len(per_seed)} seeds the difference is {per_seed['rl_minus_sft'].mean():+.1f} points "
                  f"(SD {per_seed['rl_minus_sft'].std(ddof=1):.1f}); {int(per_seed['ci_excludes_0'].sum())} of "
                  f"{len(per_seed)} intervals exclude 0."]
    if development_runs:
        runs = pd.DataFrame(development_runs)
        table = ["| RL pool | setting | RL - SFT (points) |", "|---|---|---|"]
        for _, r in runs.iterrows():
            ci = r.get("ci")
            ci_text = f" [{ci[0]:+.1f}, {ci[1]:+.1f}]" if isinstance(ci, (list, tuple)) else ""
            seed = f", seed {int(r['seed'])}" if "seed" in r and pd.notna(r["seed"]) else ""
            table.append(f"| {r['pool']} | {r['setting']}{seed} | {r['rl_minus_sft']:+.1f}{ci_text} |")
        low_lr = runs[runs["lr"] <= 2e-4]["rl_minus_sft"]
        above = sum(1 for ci in runs.get("ci", []) if isinstance(ci, (list, tuple)) and ci[0] > 0)
        lines += ["", "Development runs from one SFT checkpoint (`data_manifests/rl_development_runs.yaml`; held-out "
                  "math, 50 x 16, an earlier CPU type):", "", *table, "",
                  f"Over the {len(low_lr)} runs with lr <= 2e-4 the mean is {low_lr.mean():+.1f} points (range "
                  f"{low_lr.min():+.1f} to {low_lr.max():+.1f}); recorded intervals above 0: {above}."]
    lines += ["", "With small pools, higher learning rates raise the pass rate on the training problems while held-out "
              "accuracy falls: the tiny model memorises problems rather than learning better procedures, which is why "
              "the default draws a larger pool of levels the SFT model partly solves and keeps a low learning rate. "
              "The tiny model's errors are slips in digit arithmetic, which a sequence-level reward corrects far more "
              "slowly than SFT's token-level signal. The power analysis above gives the problems a gain of the "
              "paper's size would need; what carries over is the machinery (the Fig. 9 filter, clip-higher GRPO "
              "without KL, the auxiliary CE on correct samples, the backfill cache)."]
    return "\n".join(lines)


def development_runs(path=None) -> list[dict[str, Any]]:
    """The RL development runs of ``data_manifests/rl_development_runs.yaml`` (or ``path``): each with ``pool``,
    ``setting``, ``lr`` and ``rl_minus_sft`` (points), optionally ``ci`` and ``seed``. Raises ValueError naming
    the file and row of an entry without those fields."""
    import yaml

    from falcon_h1r_lib.paths import repo_root

    path = path or repo_root() / "data_manifests" / "rl_development_runs.yaml"
    with open(path, encoding="utf-8") as fh:
        runs = (yaml.safe_load(fh) or {}).get("runs") or []
    for i, r in enumerate(runs):
        missing = [k for k in ("pool", "setting", "lr", "rl_minus_sft") if not isinstance(r, Mapping) or k not in r]
        if missing:
            raise ValueError(f"{path}: run {i} has no {missing}")
    return runs
