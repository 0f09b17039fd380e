"""The paper's claims, each with our value and a verdict derived from the runs' ``metrics.json`` files.

``data_manifests/paper_claims.yaml`` lists every claim this repository checks: what the paper says (with its
source), the notebook section whose run tests it, and a *rule* here that reads that run's metrics and returns a
`Finding`: ``ours`` (the tiny value, stated only as precisely as it holds across CPU types and seeds, e.g. "paired CI
includes 0"), the ``verdict`` (holds / not shown / contradicted) and ``measured`` (the exact numbers with their
CIs, which do change from one CPU type to the next).

Three places print the same findings, so they cannot disagree:

- each notebook's **Claims** cell prints `claims_lines` for its claims, one line per claim; the cell is marked
  ``# NBVAL_CHECK_OUTPUT``, so CI (nbval) fails when a rerun changes a line;
- ``CLAIMS.md``, the one-page table (every claim, paper value, tiny value with CI, verdict, link to the notebook);
- the README's results section, between ``<!-- claims:begin -->`` and ``<!-- claims:end -->``.

The last two are written by ``python -m falcon_h1r_lib.claims --profile tiny`` (``make publish`` runs it).
Claims measured by arms (``measured_by: arms``: other seeds, ablations; ``python -m falcon_h1r_lib.arms``) are
not part of ``make reproduce``, so they appear on the claims page and not in a notebook's checked lines.

Verdict rules (one each, below): a difference *holds* when its 95% CI lies above 0, is *contradicted* when it lies
below (or, for a "no worse than" claim, below the margin), and is *not shown* otherwise; over seeds, a claim holds
(or is contradicted) only when it does so on every seed. A claim the tiny profile cannot test (no rival models) is
*not shown* and says why.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from falcon_h1r_lib.config import ConfigError
from falcon_h1r_lib.errors import MissingRun
from falcon_h1r_lib.paths import notebooks_dir, repo_relative, repo_root, runs_dir, stage_dir

HOLDS, NOT_SHOWN, CONTRADICTED, NOT_RUN = "holds", "not shown", "contradicted", "not run"
VERDICTS = (HOLDS, NOT_SHOWN, CONTRADICTED)
CLAIMS_FILE = "data_manifests/paper_claims.yaml"
PAGE = "CLAIMS.md"
README_BEGIN, README_END = "<!-- claims:begin -->", "<!-- claims:end -->"
SECTION = "Claims"  # the heading of each notebook's claims cell: CLAIMS.md links to it
_FIELDS = ("id", "notebook", "section", "source", "claim", "paper", "rule")
_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
LINE = re.compile(r"^\[(?P<id>[a-z0-9-]+)\] (?P<claim>[^|]+) \| paper \((?P<source>[^|]+)\): (?P<paper>[^|]+) "
                  r"\| ours: (?P<ours>[^|]+) \| (?P<verdict>holds|not shown|contradicted|not run)$")


@dataclass(frozen=True)
class Claim:
    """One entry of ``paper_claims.yaml``."""

    id: str
    notebook: str
    section: str
    source: str
    claim: str
    paper: str
    rule: str
    measured_by: str = "notebook"
    why: str = ""


@dataclass(frozen=True)
class Finding:
    """What a rule makes of a run: ``ours`` is stable across CPU types and seeds (it goes into the checked claims
    line), ``measured`` holds the exact numbers with CIs (claims page and README only)."""

    ours: str
    verdict: str
    measured: str


def load_claims(path: str | Path | None = None) -> list[Claim]:
    """The claims of ``data_manifests/paper_claims.yaml`` (or ``path``) in file order. Raises ConfigError naming the
    file and the entry for a missing or empty field, an unknown rule or notebook, a duplicate id or a ``|``."""
    import yaml

    path = Path(path) if path else repo_root() / CLAIMS_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot be read as YAML ({err})") from None
    entries = data.get("claims") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: no 'claims' list")
    from falcon_h1r_lib.config import STAGE_CONFIGS

    out, seen = [], set()
    for i, entry in enumerate(entries):
        where = f"{path}: claim {i} ({entry.get('id') if isinstance(entry, dict) else entry!r})"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: not a mapping")
        for key in _FIELDS:
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise ConfigError(f"{where}: field {key!r} must be a non-empty string")
        unknown = set(entry) - set(_FIELDS) - {"measured_by", "why"}
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}")
        for key, value in entry.items():
            if "|" in str(value) or "\n" in str(value):
                raise ConfigError(f"{where}: field {key!r} contains '|' or a line break")
        if not _ID.fullmatch(entry["id"]) or entry["id"] in seen:
            raise ConfigError(f"{where}: id must be unique lower-case-with-dashes")
        if entry["rule"] not in RULES:
            raise ConfigError(f"{where}: unknown rule {entry['rule']!r}; known: {sorted(RULES)}")
        if entry["notebook"] not in STAGE_CONFIGS:
            raise ConfigError(f"{where}: unknown notebook {entry['notebook']!r}")
        if entry.get("measured_by", "notebook") not in ("notebook", "arms"):
            raise ConfigError(f"{where}: measured_by must be 'notebook' or 'arms'")
        if entry["rule"] == "not_testable" and not entry.get("why"):
            raise ConfigError(f"{where}: rule not_testable needs a 'why'")
        if "why" in entry and not isinstance(entry["why"], str):
            raise ConfigError(f"{where}: field 'why' must be a string")
        blank = [k for k, v in entry.items() if isinstance(v, str) and v != v.strip()]
        if blank:
            raise ConfigError(f"{where}: field(s) {blank} start or end with white space")
        reads = RULE_STAGE.get(entry["rule"])
        if reads is not None and reads != entry["notebook"]:
            raise ConfigError(f"{where}: rule {entry['rule']!r} reads notebook {reads}'s run, not {entry['notebook']}'s")
        if entry["section"] not in _headings(entry["notebook"]):
            raise ConfigError(f"{where}: section {entry['section']!r} is no heading of notebooks/{entry['notebook']}.ipynb")
        seen.add(entry["id"])
        out.append(Claim(**entry))
    return out


def _headings(notebook: str) -> set[str]:
    """The Markdown headings (text after the ``#``s) of ``notebooks/<notebook>.ipynb``."""
    cells = json.loads((notebooks_dir() / f"{notebook}.ipynb").read_text(encoding="utf-8"))["cells"]
    return {line.lstrip("#").strip() for c in cells if c["cell_type"] == "markdown"
            for line in "".join(c["source"]).splitlines() if line.startswith("#")}


# --- verdict helpers ---------------------------------------------------------------------------------------------

def ci_verdict(low: float, high: float, margin: float = 0.0) -> str:
    """For a difference claimed to be positive (``margin`` 0) or no worse than ``-margin``: holds when its CI
    ``[low, high]`` lies above ``-margin``, contradicted when it lies below, not shown otherwise. Raises
    ValueError for a non-finite or inverted interval."""
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ValueError(f"ci_verdict: not an interval: [{low}, {high}]")
    if low > -margin:
        return HOLDS
    if high < -margin:
        return CONTRADICTED
    return NOT_SHOWN


def over_runs(verdicts: Sequence[str]) -> str:
    """A claim over seeds: holds (contradicted) only when it holds (is contradicted) on every run."""
    if not verdicts:
        raise ValueError("over_runs: no runs")
    if all(v == HOLDS for v in verdicts):
        return HOLDS
    if all(v == CONTRADICTED for v in verdicts):
        return CONTRADICTED
    return NOT_SHOWN


def _pts(x: float) -> str:
    return f"{x:+.1f}"


def _pct_ci(p: float, ci: Sequence[float]) -> str:
    return f"{100 * p:.1f}% [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _m(record: Mapping[str, Any], *keys: str, where: str) -> Any:
    """``record["metrics"][k1][k2]...``; KeyError naming the file's stage and the missing key path."""
    node: Any = record.get("metrics", {})
    for i, key in enumerate(keys):
        if not isinstance(node, Mapping) or key not in node:
            raise KeyError(f"{where}: metrics.json has no {'.'.join(keys[:i + 1])}")
        node = node[key]
    return node


# --- one rule per claim kind: (claim, profile) -> Finding --------------------------------------------------------

def _read(stage: str, profile: str) -> dict[str, Any]:
    from falcon_h1r_lib.metrics import read_metrics

    return read_metrics(stage, profile)


def table8_parameters(claim: Claim, profile: str) -> Finding:
    rec = _read("01_architecture", profile)
    n = _m(rec, "falcon_h1r_7b_parameters", where=claim.notebook)
    rel = _m(rec, "falcon_h1r_7b_rel_error_vs_paper", where=claim.notebook)
    ok = abs(rel) < 0.01
    return Finding(f"the 7B preset counts {n / 1e9:.2f}B" + (" (within 1%)" if ok else " (more than 1% off)"),
                   HOLDS if ok else CONTRADICTED, f"{n:,} parameters, {100 * rel:.2f}% from 7.59B")


def cache_memory(claim: Claim, profile: str) -> Finding:
    rec = _read("01_architecture", profile)
    per_token = _m(rec, "kv_per_token_ratio_qwen3_over_falcon", where=claim.notebook)
    at_longest = _m(rec, "cache_GiB_at_longest", where=claim.notebook)
    tiny = list(_m(rec, "cache_ratio_twin_over_hybrid", where=claim.notebook).values())
    ok = per_token > 1 and min(tiny) > 1
    ours = ("less cache than the Transformer at every length (7B analytic, tiny measured)" if ok else
            "the Transformer holds less cache at some length")
    measured = (f"KV per token {per_token:.2f}x below Qwen3-8B; at the longest context "
                f"{at_longest['Falcon-H1R-7B']:.1f} vs {at_longest['Qwen3-8B']:.1f} GiB; tiny twin / hybrid "
                f"{min(tiny):.1f}-{max(tiny):.1f}x")
    return Finding(ours, HOLDS if ok else CONTRADICTED, measured)


def fig8_throughput(claim: Claim, profile: str) -> Finding:
    rec = _read("01_architecture", profile)
    rows = _m(rec, "fig8_vllm", where=claim.notebook).get("rows") or []
    ratios = [r["hybrid_tok_s"] / r["twin_tok_s"] for r in rows if r.get("twin_tok_s")]
    measured = (f"tiny hybrid / twin on vLLM-CPU {min(ratios):.2f}-{max(ratios):.2f}x (reported, not tested)"
                if ratios else "vLLM-CPU comparison not measured on this run")
    size = _m(rec, "tiny_parameters", where=claim.notebook)
    return Finding(f"not in the paper's regime (a {size / 1e6:.2f}M-parameter model on CPU), so measured but not "
                   "tested", NOT_SHOWN, measured)


def verified_traces(claim: Claim, profile: str) -> Finding:
    rec = _read("02_data_curation", profile)
    injected = _m(rec, "injected_errors_in_sft", where=claim.notebook)
    by_level = _m(rec, "teacher_pass_rate", "by_level", where=claim.notebook)
    worst = min(by_level.values())
    ok = injected == 0
    return Finding("no wrong teacher trace reaches SFT" if ok else "wrong teacher traces reach SFT",
                   HOLDS if ok else CONTRADICTED,
                   f"{injected} wrong traces in SFT; the teacher is right on {100 * worst:.0f}-"
                   f"{100 * max(by_level.values()):.0f}% of rollouts per level")


def sft_mixture(claim: Claim, profile: str) -> Finding:
    rec = _read("02_data_curation", profile)
    mix = _m(rec, "mixture_sft", where=claim.notebook)
    shares = {d: v["token_share"] for d, v in mix.items()}
    top = max(shares, key=shares.get)
    ok = top == "math"
    return Finding("math-dominant: the largest token share" if ok else f"{top} has the largest token share",
                   HOLDS if ok else CONTRADICTED,
                   ", ".join(f"{d} {100 * s:.1f}%" for d, s in sorted(shares.items(), key=lambda kv: -kv[1])))


def sft_over_base(claim: Claim, profile: str) -> Finding:
    rec = _read("03_sft", profile)
    base, sft = (_m(rec, f"{k}_accuracy", "math", where=claim.notebook) for k in ("base", "sft"))
    base_ci, sft_ci = (_m(rec, f"{k}_accuracy_ci", "math", where=claim.notebook) for k in ("base", "sft"))
    if sft_ci[0] > base_ci[1]:
        verdict, ours = HOLDS, "SFT above base, the CIs do not overlap"
    elif sft_ci[1] < base_ci[0]:
        verdict, ours = CONTRADICTED, "SFT below base, the CIs do not overlap"
    else:
        verdict, ours = NOT_SHOWN, "the base and SFT CIs overlap"
    counts = rec.get("metrics", {}).get("eval_counts", {}).get("math", {})
    size = (f" ({counts['problems']} problems x {counts['samples_per_problem']} samples)"
            if {"problems", "samples_per_problem"} <= set(counts) else "")
    return Finding(ours, verdict, f"held-out math pass@1: base {_pct_ci(base, base_ci)} -> SFT {_pct_ci(sft, sft_ci)}"
                                  + size)


def _paired(diff: Mapping[str, Any], better: str) -> tuple[str, str]:
    lo, hi = (100 * x for x in diff["ci"])
    verdict = ci_verdict(lo, hi)
    ours = {HOLDS: f"{better} higher, paired CI excludes 0", CONTRADICTED: f"{better} lower, paired CI excludes 0",
            NOT_SHOWN: "paired CI includes 0"}[verdict]
    return verdict, ours


def rl_over_sft(claim: Claim, profile: str) -> Finding:
    rec = _read("04_rl", profile)
    diff = _m(rec, "rl_minus_sft", "math", where=claim.notebook)
    sft, rl = (_m(rec, f"{k}_accuracy", "math", where=claim.notebook) for k in ("sft", "rl"))
    verdict, ours = _paired(diff, "RL")
    lo, hi = (100 * x for x in diff["ci"])
    return Finding(ours, verdict, f"RL - SFT {_pts(100 * diff['difference'])} points [{_pts(lo)}, {_pts(hi)}] "
                                  f"(SFT {100 * sft['pass_at_1']:.1f}% -> RL {100 * rl['pass_at_1']:.1f}%, "
                                  f"{diff['n_problems']} problems x {rl.get('samples_per_problem')} samples)")


def reward_rises(claim: Claim, profile: str, resamples: int = 2000) -> Finding:
    """Second half minus first half of the verified-correct fraction per step, with a percentile bootstrap over
    steps (seeded: the same curves give the same interval)."""
    curves = _m(_read("04_rl", profile), "curves", where=claim.notebook)
    early, late, lo, hi = halves_difference([float(r["accuracy"]) for r in curves], resamples)
    verdict = ci_verdict(lo, hi)
    ours = {HOLDS: "the second half beats the first, CI excludes 0", CONTRADICTED: "the reward falls, CI excludes 0",
            NOT_SHOWN: "second half vs first half: CI includes 0"}[verdict]
    return Finding(ours, verdict, f"verified-correct fraction {100 * early:.1f}% -> {100 * late:.1f}% "
                                  f"({_pts(100 * (late - early))} points [{_pts(lo)}, {_pts(hi)}], {len(curves)} steps)")


def halves_difference(values: Sequence[float], resamples: int = 2000) -> tuple[float, float, float, float]:
    """Mean of the first and second half of a per-step series (fractions) and the 95% percentile bootstrap CI of
    second minus first in points, steps resampled within each half (seeded: same series, same interval). Raises
    ValueError for fewer than 4 steps or a value that is not finite."""
    import numpy as np

    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or len(x) < 4 or not np.isfinite(x).all():
        raise ValueError(f"halves_difference: need at least 4 finite per-step values, got {len(x)}")
    early, late = x[: len(x) // 2], x[len(x) // 2:]
    rng = np.random.default_rng(0)
    boots = rng.choice(late, (resamples, len(late))).mean(1) - rng.choice(early, (resamples, len(early))).mean(1)
    lo, hi = (100 * float(v) for v in np.percentile(boots, [2.5, 97.5]))
    return float(early.mean()), float(late.mean()), lo, hi


def _arm_runs(profile: str) -> list[dict[str, Any]]:
    """Notebook 04's run and its seed arms (same config, same SFT model), as notebook 04 builds them."""
    from falcon_h1r_lib import arms
    from falcon_h1r_lib.config import load_config

    rec = _read("04_rl", profile)
    cfg = load_config("04_rl", profile)
    this = {"name": "this notebook", "seed": cfg.seed, "domains": list(cfg.domains),
            **{k: rec["metrics"][k] for k in ("sft_accuracy", "rl_accuracy", "rl_minus_sft")}}
    seeds = arms.seed_arms(cfg, arms.read_arms(profile), sft_weights=arms.notebook_sft_weights(profile))
    return [this, *seeds]


def _seed_rows(table) -> Any:
    return table[~table.iloc[:, 0].astype(str).str.startswith("mean over")]


def rl_over_seeds(claim: Claim, profile: str) -> Finding:
    from falcon_h1r_lib import arms

    runs = _arm_runs(profile)
    if len(runs) < 3:
        return Finding("fewer than 3 seeds have run", NOT_RUN, "run `python -m falcon_h1r_lib.arms --seeds 1 2`")
    table = _seed_rows(arms.claims_over_arms(runs))
    verdict = over_runs([ci_verdict(lo, hi) for lo, hi in zip(table.ci_low, table.ci_high)])
    d = table.rl_minus_sft
    return Finding(f"{sum(table.ci_low > 0)} of {len(table)} seeds with a paired CI above 0", verdict,
                   f"RL - SFT per seed {', '.join(_pts(x) for x in d)} points; mean {_pts(d.mean())} "
                   f"(SD {d.std(ddof=1):.1f})")


def fig4_over_seeds(claim: Claim, profile: str) -> Finding:
    from falcon_h1r_lib import arms

    table = arms.fig4_over_seeds(profile)
    if table is None or len(_seed_rows(table.reset_index())) < 3:
        return Finding("fewer than 3 seeds have run", NOT_RUN, "run the Fig. 4 arms (README \"Arms\")")
    rows = _seed_rows(table.reset_index())
    verdict = over_runs([ci_verdict(lo, hi) for lo, hi in zip(rows.ci_low, rows.ci_high)])
    d = rows["balanced - per-rank"]
    per_seed = ", ".join(f"{_pts(x)} [{_pts(lo)}, {_pts(hi)}]" for x, lo, hi in zip(d, rows.ci_low, rows.ci_high))
    return Finding(f"{sum(rows.ci_low > 0)} of {len(rows)} seeds with a paired CI above 0", verdict,
                   f"balanced - per-rank per seed {per_seed} points; mean {_pts(d.mean())} (SD {d.std(ddof=1):.1f})")


def table3_math_vs_mixed(claim: Claim, profile: str) -> Finding:
    import statistics

    from falcon_h1r_lib import arms

    found = arms.read_arms(profile)
    by_arm: dict[str, list[tuple[float, float, float]]] = {}
    for a in found:
        base = re.sub(r"-seed-\d+$", "", a["name"])
        if base in ("table3-math", "table3-mixed") and isinstance(a.get("rl_minus_sft"), Mapping):
            d = a["rl_minus_sft"].get("math")
            if d:
                by_arm.setdefault(base, []).append((100 * d["difference"], *(100 * x for x in d["ci"])))
    if set(by_arm) != {"table3-math", "table3-mixed"} or min(map(len, by_arm.values())) < 3:
        return Finding("fewer than 3 seeds of each arm have run", NOT_RUN, "run the Table 3 arms (README \"Arms\")")
    shown = {k: over_runs([ci_verdict(lo, hi) for _, lo, hi in v]) == HOLDS for k, v in by_arm.items()}
    mean = {k: statistics.mean(x for x, _, _ in v) for k, v in by_arm.items()}
    sd = {k: statistics.stdev(x for x, _, _ in v) for k, v in by_arm.items()}
    measured = (f"RL - SFT on math over {len(by_arm['table3-math'])} seeds: math only {_pts(mean['table3-math'])} "
                f"(SD {sd['table3-math']:.1f}), math + code {_pts(mean['table3-mixed'])} (SD {sd['table3-mixed']:.1f}) "
                "points")
    learnable = _learnable_other_prompts(sorted(a["name"] for a in found if a["name"].startswith("table3-mixed")),
                                         profile)
    if learnable and all(n < 0.05 * n_train for n, n_train in learnable.values()):
        # the SFT model solves (almost) every code prompt with all k rollouts: the Fig. 9 filter drops them
        return Finding("the mixed arms kept almost no code prompt (the SFT model solves them), so both are math only",
                       NOT_SHOWN, measured + "; code prompts the mixed arms' Fig. 9 filter could keep: "
                       + " / ".join(f"{n} of {t}" for n, t in learnable.values()) + " training prompts")
    if shown["table3-math"] and not shown["table3-mixed"]:
        verdict, ours = HOLDS, "only math-only RL lifts math on every seed"
    elif shown["table3-mixed"] and not shown["table3-math"]:
        verdict, ours = CONTRADICTED, "only mixed RL lifts math on every seed"
    else:
        verdict, ours = NOT_SHOWN, ("both lift math on every seed" if all(shown.values())
                                    else "neither lifts math on every seed")
    return Finding(ours, verdict, measured)


def _learnable_other_prompts(names: Sequence[str], profile: str) -> dict[str, tuple[int, int]]:
    """Per arm: the prompts of a domain other than math its Fig. 9 filter could keep (not solved by every one of the
    SFT model's k rollouts: a prompt all rollouts solve has zero advantage and is always dropped, [P] Fig. 9), and
    the arm's number of training prompts (0 when unrecorded). Arms that kept no filter rollouts are left out."""
    import pandas as pd

    from falcon_h1r_lib import arms

    out = {}
    for name in names:
        stage = arms.arm_root(name, profile) / profile / "04_rl"
        path = stage / "rl_filter_rollouts.parquet"
        if not path.is_file():
            continue
        rows = pd.read_parquet(path, columns=["domain", "k", "correct"])
        n = int(((rows.domain != "math") & (rows.correct < rows.k)).sum())
        try:
            n_train = json.loads((stage / "metrics.json").read_text(encoding="utf-8"))["metrics"]["data"]["n_train"]
        except (OSError, KeyError, TypeError, json.JSONDecodeError):
            n_train = 0
        out[name] = (n, int(n_train))
    return out


def rl_transfer(claim: Claim, profile: str) -> Finding:
    rec = _read("05_evaluation", profile)
    models = _m(rec, "models", where=claim.notebook)
    if not {"sft", "rl"} <= set(models):
        return Finding("the RL model has not been evaluated", NOT_RUN, "run notebook 04, then 05")
    verdicts, parts = [], []
    for domain in ("code", "science"):
        bench = next((b for b, v in models["rl"]["benchmarks"].items() if v.get("domain") == domain), None)
        if bench is None:
            raise KeyError(f"{claim.notebook}: metrics.json has no {domain} benchmark for the RL model")
        sft, rl = models["sft"]["benchmarks"][bench], models["rl"]["benchmarks"][bench]
        s_ci, r_ci = sft["pass_at_1_ci"], rl["pass_at_1_ci"]
        verdicts.append(HOLDS if r_ci[0] > s_ci[1] else CONTRADICTED if r_ci[1] < s_ci[0] else NOT_SHOWN)
        parts.append(f"{domain}: SFT {_pct_ci(sft['pass_at_1'], s_ci)} -> RL {_pct_ci(rl['pass_at_1'], r_ci)}")
    verdict = (HOLDS if all(v == HOLDS for v in verdicts) else
               CONTRADICTED if CONTRADICTED in verdicts else NOT_SHOWN)
    ours = {HOLDS: "RL above SFT on code and science, CIs apart", CONTRADICTED: "RL below SFT, CIs apart",
            NOT_SHOWN: "SFT and RL CIs overlap"}[verdict]
    return Finding(ours, verdict, "; ".join(parts))


def deepconf_low(claim: Claim, profile: str) -> Finding:
    """Notebook 06's claim over its ``claim_seeds``: per model-seed pair, DeepConf-low's accuracy minus
    majority@K's with a 95% percentile bootstrap CI over problems (``per_problem_<model>_<benchmark>.csv`` of the
    seed-0 run and of each ``seeds/seed-<S>/``, `experiment.run_seeds`) and its token saving (``metrics.json``).
    A pair holds when it saves at least `replay.CLAIM_MIN_TOKENS_SAVED_PERCENT` and the whole CI lies above
    ``-margin`` (`evaluation.power.DEEPCONF_MARGIN`, 1 point); it is contradicted when the whole CI lies below
    ``-margin``; over pairs, `over_runs`. The seeds resample the same problems, so they share its variance."""
    import numpy as np
    import pandas as pd

    from falcon_h1r_lib.deepconf.replay import CLAIM_MIN_TOKENS_SAVED_PERCENT, MAJORITY
    from falcon_h1r_lib.evaluation import power
    from falcon_h1r_lib.evaluation.metrics import bootstrap_ci

    rec = _read("06_deepconf_scaling", profile)
    own = rec["config"]["seed"]
    seeds = rec["config"].get("claim_seeds") or [own]
    folder = stage_dir("06_deepconf_scaling", profile, create=False)
    margin = 100 * power.DEEPCONF_MARGIN
    pairs = []  # (model, seed, saved %, difference points, ci low, ci high, verdict)
    for seed in seeds:
        where = folder if seed == own else folder / "seeds" / f"seed-{seed}"
        try:
            one = rec if seed == own else json.loads((where / "metrics.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"{where / 'metrics.json'}: the claim over seeds needs this seed's run ({err}); rerun "
                              "notebook 06") from None
        for model, benches in _m(one, "models", where=str(where / "metrics.json")).items():
            for bench, result in benches.items():
                saved = float(result["at_budget"]["tokens_saved_percent"])
                path = where / f"per_problem_{model}_{bench}.csv"
                try:
                    table = pd.read_csv(path)[[MAJORITY, "deepconf-low"]].dropna()
                except (OSError, KeyError, pd.errors.ParserError) as err:
                    raise ConfigError(f"{path}: per-problem accuracies of majority and deepconf-low needed ({err}); "
                                      "rerun notebook 06") from None
                diff = 100 * (table["deepconf-low"] - table[MAJORITY]).to_numpy(dtype=np.float64)
                lo, hi = bootstrap_ci(diff, resamples=2000)
                verdict = (HOLDS if saved >= CLAIM_MIN_TOKENS_SAVED_PERCENT and lo > -margin else
                           CONTRADICTED if hi < -margin else NOT_SHOWN)
                label = model if len(benches) == 1 else f"{model} {bench}"
                pairs.append((label, seed, saved, float(diff.mean()), lo, hi, verdict))
    verdict = over_runs([p[6] for p in pairs])
    ours = {HOLDS: f"within {margin:.0f} point at >= {CLAIM_MIN_TOKENS_SAVED_PERCENT:.0f}% fewer tokens on every "
                   "model-seed pair",
            CONTRADICTED: f"accuracy CI more than {margin:.0f} point below majority voting on every model-seed pair",
            NOT_SHOWN: f"the accuracy CIs do not all lie on one side of -{margin:.0f} point: too few problems to "
                       "tell"}[verdict]
    parts = [f"{label} seed {seed}: {_pts(d)} points [{_pts(lo)}, {_pts(hi)}], {saved:.0f}% tokens saved"
             for label, seed, saved, d, lo, hi, _ in pairs]
    return Finding(ours, verdict, "; ".join(parts) + f" (K = {rec['config']['budget']}, "
                                                     f"{rec['config'].get('max_problems')} problems)")


def not_testable(claim: Claim, profile: str) -> Finding:
    return Finding(f"not testable here: {claim.why}", NOT_SHOWN, claim.why)


RULE_STAGE = {"table8_parameters": "01_architecture", "cache_memory": "01_architecture",
              "fig8_throughput": "01_architecture", "verified_traces": "02_data_curation",
              "sft_mixture": "02_data_curation", "sft_over_base": "03_sft", "fig4_over_seeds": "03_sft",
              "rl_over_sft": "04_rl", "reward_rises": "04_rl", "rl_over_seeds": "04_rl", "table3_math_vs_mixed": "04_rl",
              "rl_transfer": "05_evaluation", "deepconf_low": "06_deepconf_scaling", "not_testable": None}
RULES: dict[str, Callable[[Claim, str], Finding]] = {f.__name__: f for f in (
    table8_parameters, cache_memory, fig8_throughput, verified_traces, sft_mixture, sft_over_base, rl_over_sft,
    reward_rises, rl_over_seeds, fig4_over_seeds, table3_math_vs_mixed, rl_transfer, deepconf_low, not_testable)}


# --- what the notebooks, the claims page and the README print -----------------------------------------------------

def find(claim: Claim, profile: str = "tiny") -> Finding:
    """The rule's finding for ``claim``. Raises MissingRun for a stage that has not run, ConfigError naming the
    claim, its rule and the stage for anything else wrong with the run's files (a missing field, a wrong type)."""
    try:
        return RULES[claim.rule](claim, profile)
    except MissingRun:
        raise
    except (ConfigError, KeyError, ValueError, TypeError, AttributeError, IndexError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise ConfigError(f"claim {claim.id} (rule {claim.rule}) over runs/{profile}/{RULE_STAGE.get(claim.rule)}: "
                          f"{type(err).__name__}: {message}") from None


def claim_line(claim: Claim, finding: Finding) -> str:
    """``[id] claim | paper (source): value | ours: stable value | verdict``, the line nbval checks."""
    return f"[{claim.id}] {claim.claim} | paper ({claim.source}): {claim.paper} | ours: {finding.ours} | {finding.verdict}"


def claims_lines(notebook: str, profile: str = "tiny", path: str | Path | None = None) -> str:
    """The claims lines of ``notebook`` (a stage name such as ``"03_sft"``): one per claim its own run measures
    (arms claims excluded), in file order. Raises ValueError for a notebook with no such claim, and what `find`
    raises when the notebook's run is incomplete."""
    mine = [c for c in load_claims(path) if c.notebook == notebook and c.measured_by == "notebook"]
    if not mine:
        raise ValueError(f"claims_lines: {notebook!r} has no claims in {path or CLAIMS_FILE}")
    return "\n".join(claim_line(c, find(c, profile)) for c in mine)


def arms_lines(notebook: str, profile: str = "tiny", path: str | Path | None = None) -> str:
    """The claims lines of ``notebook``'s claims measured by arms (``python -m falcon_h1r_lib.arms``, outside
    ``make reproduce``): verdict ``not run`` until the arms have run. Printed beside the checked lines, unchecked
    (CI does not run arms). Raises ValueError for a notebook with no arms claim."""
    mine = [c for c in load_claims(path) if c.notebook == notebook and c.measured_by == "arms"]
    if not mine:
        raise ValueError(f"arms_lines: {notebook!r} has no arms claims in {path or CLAIMS_FILE}")
    return "\n".join(claim_line(c, find(c, profile)) for c in mine)


def parse_line(line: str) -> dict[str, str]:
    """The fields of one claims line (`claim_line`'s format). Raises ValueError quoting a line that is not one."""
    match = LINE.match(line.strip())
    if not match:
        raise ValueError(f"not a claims line: {line!r}")
    return match.groupdict()


def findings(profile: str = "tiny", path: str | Path | None = None) -> list[tuple[Claim, Finding]]:
    """Every claim with its finding; a claim whose run is missing gets verdict ``not run`` naming what to run."""
    out = []
    for claim in load_claims(path):
        try:
            out.append((claim, find(claim, profile)))
        except MissingRun as err:
            where = str(err).split(":", 1)
            out.append((claim, Finding("its run is missing", NOT_RUN, repo_relative(where[0]) + ":" + where[1])))
    return out


def _link(claim: Claim, prefix: str) -> str:
    return f"[{claim.notebook[:2]}]({prefix}notebooks/{claim.notebook}.ipynb#{SECTION})"


def claims_page(profile: str = "tiny", path: str | Path | None = None) -> str:
    """``CLAIMS.md``: every claim with its source, the paper's value, the tiny value with its CI, the verdict and a
    link to the notebook's Claims cell."""
    rows = findings(profile, path)
    counts = {v: sum(f.verdict == v for _, f in rows) for v in (*VERDICTS, NOT_RUN)}
    out = [
        "# Paper claims vs the tiny reproduction",
        "",
        f"Generated by `python -m falcon_h1r_lib.claims --profile {profile}` from the `metrics.json` files of "
        f"`runs/{profile}/` and `data_manifests/paper_claims.yaml`; do not edit by hand. Each notebook's **Claims** "
        "cell prints the same lines: those its own run measures are checked by nbval in CI, those measured by arms "
        "are printed beside them, unchecked (CI does not run arms). Verdicts: *holds* when the 95% CI lies on the "
        "claim's side, *contradicted* when it lies on the other side, *not shown* otherwise or when the tiny "
        "profile cannot test the claim; over seeds, only when every seed agrees. Arms (other seeds, ablations) run "
        "with `python -m falcon_h1r_lib.arms`, outside `make reproduce`.",
        "",
        f"**{counts[HOLDS]} hold, {counts[NOT_SHOWN]} not shown, {counts[CONTRADICTED]} contradicted"
        + (f", {counts[NOT_RUN]} not run" if counts[NOT_RUN] else "") + f"** of {len(rows)} claims.",
        "",
        "| claim | paper | source | tiny (measured, 95% CI) | verdict | notebook |",
        "|---|---|---|---|---|---|",
    ]
    for claim, f in rows:
        by = " (arms)" if claim.measured_by == "arms" else ""
        out.append(f"| {claim.claim} | {claim.paper} | {claim.source} | {f.measured}{by} | **{f.verdict}** | "
                   f"{_link(claim, '')} |")
    return "\n".join(out) + "\n"


def readme_section(profile: str = "tiny", path: str | Path | None = None) -> str:
    """The README's results table (between the markers): claim, our stable value, verdict, notebook."""
    out = [README_BEGIN, "", "| claim | paper | ours (tiny) | verdict | notebook |", "|---|---|---|---|---|"]
    for claim, f in findings(profile, path):
        out.append(f"| {claim.claim} | {claim.paper} | {f.ours} | **{f.verdict}** | {_link(claim, '')} |")
    runs = runs_dir(profile) / "reproduce.json"
    if runs.is_file():
        summary = json.loads(runs.read_text(encoding="utf-8"))
        times = ", ".join(f"{r['notebook'][:2]} {r['seconds']:.0f} s" for r in summary.get("notebooks", []))
        out += ["", f"Wall time of the run these results come from (`runs/{profile}/reproduce.json`): {times}; "
                    f"total {summary.get('total_seconds', 0) / 60:.0f} min."]
    out += ["", f"Every claim with its measured values and CIs: [{PAGE}]({PAGE}).", "", README_END]
    return "\n".join(out)


def update_readme(text: str, section: str) -> str:
    """``text`` with the part between the claims markers replaced by ``section``. Raises ValueError when the
    markers are missing, repeated or out of order."""
    if text.count(README_BEGIN) != 1 or text.count(README_END) != 1 or text.index(README_BEGIN) > text.index(README_END):
        raise ValueError(f"README.md: needs exactly one {README_BEGIN} ... {README_END} block")
    head, rest = text.split(README_BEGIN)
    return head + section + rest.split(README_END, 1)[1]


def notebook_claims(path: str | Path) -> list[dict[str, str]]:
    """The claims lines a (committed, executed) notebook prints: its checked Claims cell (`claims_lines`) and its
    arms cell (`arms_lines`), parsed, each with ``checked`` ("yes" / "no")."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    out = []
    for cell in nb.cells:
        if cell.cell_type != "code" or not ("claims.claims_lines(" in cell.source or "claims.arms_lines(" in cell.source):
            continue
        checked = "yes" if "claims.claims_lines(" in cell.source else "no"
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stdout":
                out += [{**parse_line(line), "checked": checked} for line in output["text"].splitlines()
                        if line.startswith("[")]
    return out


def render(profile: str = "tiny", readme: Path | None = None) -> dict[Path, str]:
    """The new ``CLAIMS.md`` and README texts, written by nobody yet. Raises ConfigError when a claim the notebooks
    measure has not run (the tracked pages are never regenerated from an incomplete run) and what `find` raises."""
    rows = findings(profile)
    missing = [c.id for c, f in rows if f.verdict == NOT_RUN and c.measured_by == "notebook"]
    if missing:
        raise ConfigError(f"claims: runs/{profile}/ lacks the runs of {missing}; `make reproduce` first")
    root = repo_root()
    readme = readme or root / "README.md"
    return {root / PAGE: claims_page(profile),
            readme: update_readme(readme.read_text(encoding="utf-8"), readme_section(profile))}


def write(profile: str = "tiny", readme: Path | None = None) -> list[Path]:
    """Write ``CLAIMS.md`` and the README's results section from ``runs/<profile>/`` (`render`); returns the files
    written."""
    texts = render(profile, readme)
    for path, text in texts.items():
        path.write_text(text, encoding="utf-8")
    return list(texts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write CLAIMS.md and the README's results from runs/<profile>/.")
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--print", action="store_true", help="print the claims page instead of writing files")
    args = parser.parse_args(argv)
    try:
        if args.print:
            print(claims_page(args.profile), end="")
            return 0
        for path in write(args.profile):
            print(f"wrote {path.relative_to(repo_root())}")
    except (ConfigError, ValueError, KeyError) as err:
        print(f"claims: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
