"""What notebook 04 shows from the stage's files: the Fig. 6 curves, the SFT-vs-RL accuracy (added to the stage's
``metrics.json``) and [P] Table 2 beside this run's recipe. Separate from ``stage`` because it reads results and
never trains.
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
    from falcon_h1r_lib.rl.stage import sft_model_ref

    return {"sft": sft_model_ref(cfg), "rl": metrics["model_dir"]}


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
    grades: dict[str, dict[str, str]] = {}
    for name, label in labels.items():
        try:
            benches = eval_record["metrics"]["models"][label]["benchmarks"]
        except KeyError as err:
            raise KeyError(f"evaluation record has no model labelled {label!r}") from err
        out[f"{name}_accuracy"] = {b["domain"]: {"benchmark": bname, "pass_at_1": b["pass_at_1"],
                                                 "ci": b["pass_at_1_ci"], "n_problems": b["n_problems"],
                                                 "samples_per_problem": b["samples_per_problem"]}
                                   for bname, b in benches.items()}
        grades[name] = {b["domain"]: b["grades_file"] for b in benches.values() if b.get("grades_file")}
    if {"sft", "rl"} <= set(grades):
        out["rl_minus_sft"] = {
            domain: paired_difference(pd.read_parquet(resolve_path(path)), pd.read_parquet(resolve_path(grades["rl"][domain])))
            for domain, path in grades["sft"].items() if domain in grades["rl"]}
    return out


def record_accuracy(cfg: RLStageConfig, accuracy: Mapping[str, Any]) -> dict[str, Any]:
    """Add SFT-vs-RL accuracies to ``runs/<profile>/04_rl/metrics.json`` (written by ``run``)."""
    from falcon_h1r_lib.metrics import read_metrics, write_metrics

    record = read_metrics(cfg.STAGE, cfg.profile)
    if record.get("config_hash") != cfg.config_hash():
        raise ValueError(f"{cfg.STAGE}: metrics.json was written by another config ({record.get('config_hash')}); "
                         "run the stage first")
    metrics = {**record["metrics"], **accuracy}
    write_metrics(cfg, metrics, wall_time_s=record["wall_time_s"], reads=record.get("reads", []))
    return metrics


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
