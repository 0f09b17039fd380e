"""What notebook 04 shows from the stage's files: the Fig. 6 curves, the SFT-vs-RL accuracy and the RL headroom
check (pass@k curves of SFT and RL on held-out problems and on a sample of the problems RL trained on), both added
to the stage's ``metrics.json``, and [P] Table 2 beside this run's recipe. Separate from ``stage`` because it reads
results and samples checkpoints, but never trains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from falcon_h1r_lib.config import load_config
from falcon_h1r_lib.configs import RLStageConfig
from falcon_h1r_lib.paths import resolve_path

CURVE_KEYS = {  # Fig. 6 analogs and the recipe's own counters: our name -> TRL / subclass log key
    "reward": "reward", "reward_std": "reward_std", "accuracy": "rewards/accuracy",
    "format_ok": "rewards/format_ok_frac", "no_verdict": "rewards/no_verdict_frac",
    "response_length": "completions/mean_length", "truncated": "completions/clipped_ratio",
    "entropy": "entropy", "clip_fraction": "clip_ratio/region_mean", "clip_high": "clip_ratio/high_mean",
    "clip_low": "clip_ratio/low_mean", "zero_std_fraction": "frac_reward_zero_std", "loss": "loss",
    "grad_norm": "grad_norm", "learning_rate": "learning_rate", "aux_ce_nll": "aux_ce/mean_token_nll",
    "positive_frac": "aux_ce/positive_frac", "backfill_rounds": "backfill/rounds",
    "from_cache": "backfill/from_cache", "unfilled": "backfill/unfilled", "step_time": "step_time",
}


def curves(log_history: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
    """Per logged step: the Fig. 6 quantities (reward, response length, entropy, clip fraction, ...)."""
    out = []
    for rec in log_history:
        if "reward" not in rec:
            continue
        row = {"step": int(rec["step"])}
        row.update({name: float(rec[key]) for name, key in CURVE_KEYS.items() if rec.get(key) is not None})
        out.append(row)
    return out


def evaluation_config(cfg: RLStageConfig):
    """The profile's own evaluation config (``05_evaluation``: backend, vLLM settings, sources file, pinning)
    narrowed to the SFT-vs-RL comparison: ``cfg.eval_benchmarks``, problem and sample counts, the stage's seed
    and system turn."""
    from falcon_h1r_lib.evaluation import stage_config
    from falcon_h1r_lib.tokenizer import system_turn

    return stage_config(cfg.profile, seed=cfg.seed, benchmarks=list(cfg.eval_benchmarks),
                        max_problems=cfg.eval_max_problems, samples_per_problem=cfg.eval_samples_per_problem,
                        system_prompt=system_turn(cfg.system_prompt))


def compared_models(cfg: RLStageConfig, metrics: Mapping[str, Any]) -> dict[str, str]:
    """``{"sft": ..., "rl": ...}``: the two checkpoints the SFT-vs-RL evaluation samples (``metrics``: ``run``'s)."""
    from falcon_h1r_lib.rl.resume import sft_model_ref

    return {"sft": sft_model_ref(cfg), "rl": metrics["model_dir"]}


def grades_files(eval_record: Mapping[str, Any], labels: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """``{name: {domain: grades file}}`` of an evaluation record (``evaluation.run``) whose models are labelled
    ``labels`` ({"sft": label, "rl": label}). Raises KeyError naming a label the record lacks, ValueError naming
    two benchmarks of one domain (the RL claim is one benchmark per domain)."""
    out: dict[str, dict[str, str]] = {}
    for name, label in labels.items():
        out[name] = {b["domain"]: b["grades_file"] for b in _benchmarks(eval_record, label).values()
                     if b.get("grades_file")}
    return out


def _benchmarks(eval_record: Mapping[str, Any], label: str) -> Mapping[str, Any]:
    """The record's benchmarks of model ``label``: {benchmark: result}, at most one per domain."""
    try:
        benchmarks = eval_record["metrics"]["models"][label]["benchmarks"]
    except KeyError as err:
        raise KeyError(f"evaluation record has no model labelled {label!r}") from err
    seen: dict[Any, str] = {}
    for bname, b in benchmarks.items():
        domain = b.get("domain") if isinstance(b, Mapping) else None
        if domain is None:
            raise ValueError(f"evaluation record: model {label!r}, benchmark {bname!r} has no 'domain'")
        if domain in seen:
            raise ValueError(f"evaluation record: model {label!r} has two {domain!r} benchmarks "
                             f"({seen[domain]!r}, {bname!r}); the SFT-vs-RL comparison takes one per domain")
        seen[domain] = bname
    return benchmarks


def accuracy_from_evaluation(eval_record: Mapping[str, Any], labels: Mapping[str, str]) -> dict[str, Any]:
    """``{"sft_accuracy": {domain: {"pass_at_1", "ci", ...}}, "rl_accuracy": ..., "rl_minus_sft": {domain:
    paired difference}}`` from an evaluation record (``evaluation.run``) whose models are labelled ``labels``
    ({"sft": label, "rl": label}).

    ``rl_minus_sft`` compares the two models problem by problem on the same held-out set (paired bootstrap,
    ``evaluation.paired_difference``): the honest test of an RL gain, as the per-problem difficulty that
    dominates each model's own interval cancels out.
    """
    import pandas as pd

    from falcon_h1r_lib.evaluation import paired_difference

    out: dict[str, Any] = {}
    for name, label in labels.items():
        out[f"{name}_accuracy"] = {b["domain"]: {"benchmark": bname, "pass_at_1": b["pass_at_1"],
                                                 "ci": b["pass_at_1_ci"], "n_problems": b["n_problems"],
                                                 "samples_per_problem": b["samples_per_problem"]}
                                   for bname, b in _benchmarks(eval_record, label).items()}
    grades = grades_files(eval_record, labels)
    if {"sft", "rl"} <= set(grades):
        out["rl_minus_sft"] = {
            domain: paired_difference(pd.read_parquet(resolve_path(path)), pd.read_parquet(resolve_path(grades["rl"][domain])))
            for domain, path in grades["sft"].items() if domain in grades["rl"]}
    return out


def power_analysis(eval_record: Mapping[str, Any], labels: Mapping[str, str], domain: str = "math",
                   ns: Sequence[int] = (4, 16, 32, 64), rl_domains: Sequence[str] = ("math",)):
    """The RL claim's power analysis (``evaluation.power.power_table``): problems needed to see the paper's RL
    gain ([P] Table 3: the row of the domains RL trained on, ``rl_domains`` via ``PAPER_RL_ROW_OF_DOMAINS``; the
    column of the evaluated ``domain`` via ``PAPER_BENCHMARK_OF_DOMAIN``) with 80% power, per
    samples-per-problem n, from the variance components of this run's paired SFT and RL grades on ``domain``.
    Returns (table, components). Raises ValueError for a domain Table 3 has no column for or RL domains it has no
    row for, KeyError when the record lacks the SFT or RL grades of ``domain``."""
    import pandas as pd

    from falcon_h1r_lib.evaluation.power import (
        PAPER_BENCHMARK_OF_DOMAIN,
        PAPER_RL_ROW_OF_DOMAINS,
        paired_variance_from_grades,
        power_table,
    )

    if domain not in PAPER_BENCHMARK_OF_DOMAIN:
        raise ValueError(f"power_analysis: domain must be one of {sorted(PAPER_BENCHMARK_OF_DOMAIN)} "
                         f"([P] Table 3's columns), got {domain!r}")
    rl_row = PAPER_RL_ROW_OF_DOMAINS.get(tuple(sorted(rl_domains)))
    if rl_row is None:
        raise ValueError(f"power_analysis: [P] Table 3 has no row for RL on {sorted(rl_domains)}; rows: "
                         f"{sorted(map(list, PAPER_RL_ROW_OF_DOMAINS))}")

    grades = grades_files(eval_record, labels)
    try:
        sft, rl = (pd.read_parquet(resolve_path(grades[name][domain])) for name in ("sft", "rl"))
    except KeyError as err:
        raise KeyError(f"evaluation record has no {domain!r} grades for both 'sft' and 'rl' ({grades})") from err
    components = paired_variance_from_grades(sft, rl)
    return power_table(components, ns=ns, benchmark=PAPER_BENCHMARK_OF_DOMAIN[domain], rl_row=rl_row), components


def record_accuracy(cfg: RLStageConfig, accuracy: Mapping[str, Any]) -> dict[str, Any]:
    """Add SFT-vs-RL accuracies to ``runs/<profile>/04_rl/metrics.json`` (written by ``run``)."""
    return _add_to_metrics(cfg, accuracy)


def _add_to_metrics(cfg: RLStageConfig, extra: Mapping[str, Any]) -> dict[str, Any]:
    """Lay ``extra`` over the metrics of ``runs/<profile>/04_rl/metrics.json``; ValueError when another config
    wrote that file (the stage must run with this one first)."""
    from falcon_h1r_lib.metrics import read_metrics, write_metrics

    record = read_metrics(cfg.STAGE, cfg.profile)
    if record.get("config_hash") != cfg.config_hash():
        raise ValueError(f"{cfg.STAGE}: metrics.json was written by another config ({record.get('config_hash')}); "
                         "run the stage first")
    metrics = {**record["metrics"], **extra}
    write_metrics(cfg, metrics, wall_time_s=record["wall_time_s"], reads=record.get("reads", []))
    return metrics


# --------------------------------------------------------------------------------------------
# RL headroom: pass@k curves of SFT and RL on held-out problems and on the problems RL trained on
# --------------------------------------------------------------------------------------------

HELD_OUT, RL_POOL = "held-out", "rl-pool"  # the two kinds of headroom set


def headroom_seed(cfg: RLStageConfig) -> int:
    """Root seed of the headroom samples: the stage's seed + 1. The Fig. 9 filter sampled each pool problem with
    ``cfg.seed`` at the evaluation's temperature and top-p and kept problems by those very outcomes; per-sample
    seeds (``generation.sample_seed``) would replay them, inflating the SFT model's pass@k on the kept problems."""
    return cfg.seed + 1


def headroom_config(cfg: RLStageConfig, max_problems: int | None):
    """The SFT-vs-RL evaluation settings (``evaluation_config``) with ``headroom_samples`` samples per problem,
    ``max_problems`` problems per set (None: all of a given list) and the headroom's own seed (``headroom_seed``)."""
    from falcon_h1r_lib.evaluation import stage_config
    from falcon_h1r_lib.evaluation.headroom import power_of_two_ks
    from falcon_h1r_lib.tokenizer import system_turn

    return stage_config(cfg.profile, seed=headroom_seed(cfg), benchmarks=list(cfg.eval_benchmarks),
                        max_problems=max_problems, samples_per_problem=cfg.headroom_samples,
                        pass_ks=power_of_two_ks(cfg.headroom_samples), system_prompt=system_turn(cfg.system_prompt))


def headroom_sets(cfg: RLStageConfig, trained: Sequence[Mapping[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """The problem sets of the headroom check, ``{name: {"kind", "benchmark", "config"}}``: every held-out
    ``eval_benchmarks`` set (its first ``headroom_max_problems``), then per RL domain ``rl-pool-<domain>``, a seeded
    sample of at most ``headroom_max_problems`` of the problems RL trained on (``trained``; default
    ``stage.trained_problems``: the Fig. 9 filter's kept rows), split evenly over ``cfg.domains``
    (``rl.data.cap_per_domain``). Both kinds are sampled with the same protocol; the pool's response budget is
    RL's own ``max_completion_length``."""
    from falcon_h1r_lib.evaluation.benchmarks import ProblemSet, get_benchmark
    from falcon_h1r_lib.rl import data as rl_data
    from falcon_h1r_lib.rl.stage import trained_problems

    held = headroom_config(cfg, cfg.headroom_max_problems)
    sets = {name: {"kind": HELD_OUT, "benchmark": get_benchmark(name, cfg.profile), "config": held}
            for name in cfg.eval_benchmarks}
    trained = list(trained_problems(cfg) if trained is None else trained)
    sample = (rl_data.cap_per_domain(trained, cfg.headroom_max_problems, cfg.domains, cfg.seed)
              if len(trained) > cfg.headroom_max_problems else trained)
    pool = headroom_config(cfg, None)
    for domain in cfg.domains:
        problems = tuple(p for p in sample if p["domain"] == domain)
        if not problems:
            raise ValueError(f"{cfg.STAGE}: RL trained on no {domain!r} problem; nothing to sample for its headroom")
        bench = ProblemSet(name=f"{RL_POOL}-{domain}", profile=cfg.profile, domain=domain,
                           samples_per_problem=cfg.headroom_samples, max_new_tokens=cfg.max_completion_length,
                           paper_table="", problems=problems,
                           note=f"a seeded sample of the {len(trained)} problems RL trained on (Fig. 9 filter kept)")
        sets[bench.name] = {"kind": RL_POOL, "benchmark": bench, "config": pool}
    return sets


def headroom(cfg: RLStageConfig, metrics: Mapping[str, Any], sets: Mapping[str, Mapping[str, Any]] | None = None,
             ) -> dict[str, Any]:
    """Sample the SFT and the RL model ``headroom_samples`` times on every ``headroom_sets`` set, store traces and
    grades under ``runs/<profile>/04_rl/headroom/`` (``evaluation.pipeline.evaluate_benchmark``: reused when model,
    problems, prompts and sampling are unchanged) and return a JSON-ready record: ``{"seed", "samples_per_problem",
    "wall_s", "sets": {name: {"kind", "domain", "n_problems", "max_new_tokens", "note", "models": {"sft" | "rl":
    {"model", "grades_file", "traces_file", "traces_reused", "sample_wall_s", "pass_at_1", "n_samples"}}}}}``.
    ``metrics``: ``run``'s (the RL model's folder)."""
    from falcon_h1r_lib import stages
    from falcon_h1r_lib.evaluation.pipeline import evaluate_benchmark, make_backend
    from falcon_h1r_lib.generation import close_backend
    from falcon_h1r_lib.metrics import Stopwatch

    watch = Stopwatch()
    sets = headroom_sets(cfg) if sets is None else sets
    out = stages.output_path(cfg.STAGE, "headroom", cfg.profile)
    record: dict[str, Any] = {"seed": headroom_seed(cfg), "samples_per_problem": cfg.headroom_samples, "sets": {
        name: {"kind": s["kind"], "domain": s["benchmark"].domain, "note": s["benchmark"].note, "models": {}}
        for name, s in sets.items()}}
    for label, model in compared_models(cfg, metrics).items():
        backend, tokenizer = make_backend(next(iter(sets.values()))["config"], model)
        try:
            for name, s in sets.items():
                summary = evaluate_benchmark(s["config"], s["benchmark"], backend, tokenizer, model, label, out)
                record["sets"][name].update(n_problems=summary["n_problems"], max_new_tokens=summary["max_new_tokens"])
                record["sets"][name]["models"][label] = {
                    "model": model, **{k: summary[k] for k in ("grades_file", "traces_file", "traces_reused",
                                                              "sample_wall_s", "pass_at_1", "n_samples")}}
        finally:
            close_backend(backend)
    record["wall_s"] = round(watch.seconds(), 3)
    return record


def headroom_tables(cfg: RLStageConfig, record: Mapping[str, Any]) -> tuple[Any, Any]:
    """(curves, change) frames from a ``headroom`` record's grade files. ``curves``: one row per (set, model,
    level, k) with ``evaluation.headroom.CURVE_COLUMNS`` (group = "all" or the level); ``change``: RL minus SFT per
    (set, level, k) with ``COMPARE_COLUMNS`` (``evaluation.headroom.compare_curves``, paired over problems).
    Levels come from the graded problems' ``difficulty``; a set without levels has the "all" curve only.
    Bootstrap seeded with ``cfg.seed``."""
    import pandas as pd

    from falcon_h1r_lib.evaluation.headroom import compare_curves, pass_at_k_curve

    curves, change = [], []
    for name, s in record["sets"].items():
        grades = {label: pd.read_parquet(resolve_path(m["grades_file"])) for label, m in s["models"].items()}
        by = "difficulty" if all(g["difficulty"].notna().all() for g in grades.values()) else None
        for label, g in grades.items():
            curves.append(pass_at_k_curve(g, by=by, seed=cfg.seed).assign(set=name, kind=s["kind"], model=label))
        if {"sft", "rl"} <= set(grades):
            change.append(compare_curves(grades["sft"], grades["rl"], by=by, seed=cfg.seed)
                          .assign(set=name, kind=s["kind"]))
    first = ["set", "kind"]
    curves_df = pd.concat(curves, ignore_index=True)
    curves_df = curves_df[first + ["model"] + [c for c in curves_df.columns if c not in (*first, "model")]]
    change_df = pd.concat(change, ignore_index=True) if change else pd.DataFrame(columns=first)
    change_df = change_df[first + [c for c in change_df.columns if c not in first]]
    return curves_df, change_df


def record_headroom(cfg: RLStageConfig, record: Mapping[str, Any], curves, change) -> dict[str, Any]:
    """Write ``curves`` and ``change`` (``headroom_tables``) as ``runs/<profile>/04_rl/headroom_pass_at_k.csv`` and
    ``headroom_rl_minus_sft.csv`` and add ``{"headroom": {**record, "curves": [...], "rl_minus_sft": [...]}}`` to the
    stage's ``metrics.json`` (ValueError when another config wrote it); returns the metrics."""
    from falcon_h1r_lib import stages
    from falcon_h1r_lib.paths import repo_relative

    files = {}
    for key, frame in (("headroom_curves", curves), ("headroom_change", change)):
        path = stages.output_path(cfg.STAGE, key, cfg.profile)
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)
        files[key] = repo_relative(path)
    return _add_to_metrics(cfg, {"headroom": {**record, "files": files, "curves": curves.to_dict(orient="records"),
                                              "rl_minus_sft": change.to_dict(orient="records")}})


# [P] Table 2 row -> our config field (paper_results.yaml names the rows)
TABLE2_FIELDS = {
    "clip_ratio_low": "epsilon", "clip_ratio_high": "epsilon_high", "group_size": "num_generations",
    "temperature": "temperature", "max_response_length": "max_completion_length", "batch_size": "prompts_per_step",
    "ppo_mini_batch_size": "prompts_per_step", "learning_rate": "learning_rate", "lr_warmup_steps": "warmup_steps",
    "entropy_coefficient": "entropy_coef", "kl_coefficient": "beta", "tis_max_cap": "tis_cap",
}


def recipe_table(cfg: RLStageConfig, full: RLStageConfig | None = None):
    """[P] Table 2 beside this run's values (and the full profile's), plus the settings the paper leaves open."""
    import pandas as pd

    from falcon_h1r_lib.paper_results import paper_table

    full = full or load_config(cfg.STAGE, "full")
    paper = paper_table("table2_rl_hyperparameters")
    rows = []
    for name, fld in TABLE2_FIELDS.items():
        value = getattr(cfg, fld)
        if name == "tis_max_cap" and not cfg.use_vllm:
            value = f"{value} (inactive: no vLLM)"
        rows.append({"parameter": name, "paper": paper.loc[name, "value"], cfg.profile: value,
                     "full": getattr(full, fld), "field": fld})
    for fld, paper_says in (("loss_type", "not stated"), ("aux_ce_coef", "not stated"),
                            ("format_weight", "not stated"), ("cache_size", "fixed size, not stated"),
                            ("max_steps", "not stated"), ("domains", "math (final run)")):
        rows.append({"parameter": fld, "paper": paper_says, cfg.profile: getattr(cfg, fld),
                     "full": getattr(full, fld), "field": fld})
    return pd.DataFrame(rows).set_index("parameter")
