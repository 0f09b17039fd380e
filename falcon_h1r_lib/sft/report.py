"""What notebook 03 shows: base vs SFT accuracy through notebook 05's harness (added to the stage's
``metrics.json``), paper Table 1 beside our values, and the accuracy table. No training code here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from falcon_h1r_lib import stages
from falcon_h1r_lib.configs import SFTStageConfig


def evaluation_config(cfg: SFTStageConfig, benchmark: str, n_problems: int):
    """Notebook 05's settings (temperature 0.6, top-p 0.95, [P] §4.1) for one benchmark, with our system turn."""
    from falcon_h1r_lib.evaluation import stage_config
    from falcon_h1r_lib.tokenizer import system_turn

    return stage_config(cfg.profile, benchmarks=(benchmark,), max_problems=n_problems,
                        samples_per_problem=cfg.eval_samples_per_problem, system_prompt=system_turn(cfg.system_prompt),
                        batch_size=cfg.eval_batch_size, seed=cfg.seed)


def evaluate_base_and_sft(cfg: SFTStageConfig, models: Mapping[str, str] | None = None) -> dict[str, Any]:
    """pass@1 (with bootstrap CI) of the base and SFT models on ``cfg.eval_problems``; stored in metrics.json.

    Returns {"base_accuracy": {domain: p}, "sft_accuracy": {...}, "evaluation": {label: {benchmark: summary}}}.
    """
    from falcon_h1r_lib.evaluation.benchmarks import get_benchmark
    from falcon_h1r_lib.evaluation.pipeline import evaluate_benchmark, make_backend
    from falcon_h1r_lib.generation import close_backend
    from falcon_h1r_lib.kernels import patch_falcon_h1
    from falcon_h1r_lib.metrics import Stopwatch, read_metrics, write_metrics

    patch_falcon_h1()
    out_dir = {key: stages.output_path(cfg.STAGE, key, cfg.profile) for key in ("base", "sft", "eval")}
    models = dict(models or {"base": str(out_dir["base"]) if not cfg.base_model_name_or_path
                             else cfg.base_model_name_or_path, "sft": str(out_dir["sft"])})
    evaluation: dict[str, dict[str, Any]] = {}
    accuracy: dict[str, dict[str, float | None]] = {}
    ci: dict[str, dict[str, list[float] | None]] = {}
    counts: dict[str, dict[str, int]] = {}
    clock = Stopwatch()
    for label, path in models.items():
        first = evaluation_config(cfg, next(iter(cfg.eval_problems)), 1)
        backend, tokenizer = make_backend(first, path)
        evaluation[label], accuracy[label], ci[label] = {}, {}, {}
        try:
            for bench_name, n in cfg.eval_problems.items():
                ecfg = evaluation_config(cfg, bench_name, n)
                bench = get_benchmark(bench_name, cfg.profile)
                summary = evaluate_benchmark(ecfg, bench, backend, tokenizer, path, label, out_dir["eval"])
                evaluation[label][bench_name] = summary
                accuracy[label][bench.domain] = summary["pass_at_1"]
                ci[label][bench.domain] = summary["pass_at_1_ci"]
                counts[bench.domain] = {"benchmark": bench_name, "problems": summary["n_problems"],
                                        "samples_per_problem": summary["samples_per_problem"],
                                        "samples": summary["n_samples"]}
        finally:
            close_backend(backend)  # one engine at a time: base's is gone before SFT's starts
    out = {"base_accuracy": accuracy.get("base", {}), "sft_accuracy": accuracy.get("sft", {}),
           "base_accuracy_ci": ci.get("base", {}), "sft_accuracy_ci": ci.get("sft", {}),
           "eval_counts": counts, "evaluation": evaluation, "eval_wall_time_s": round(clock.seconds(), 3)}
    record = read_metrics(cfg.STAGE, cfg.profile)
    metrics = {**record["metrics"], **out}
    metrics["wall_time_s"] = {**record["metrics"].get("wall_time_s", {}), "evaluation": out["eval_wall_time_s"]}
    write_metrics(cfg, metrics, wall_time_s=record["wall_time_s"] + clock.seconds(), reads=record["reads"])
    return out


# Table 1 row -> (our config field or a derived value, how ours relates)
_TABLE1_ROWS = {
    "base_model": "base_model",
    "learning_rate": "learning_rate",
    "lr_schedule": "lr_scheduler_type",
    "warmup_ratio": "warmup_ratio",
    "batch_size": "global_batch",
    "epochs": "num_train_epochs",
    "max_context": "max_length",
    "optimizer": "optimizer",
    "weight_decay": "weight_decay",
    "grad_clip": "max_grad_norm",
    "precision": "precision",
    "parallelism": "parallelism",
}


def table1_beside_ours(cfg: SFTStageConfig, world_size: int = 1):
    """Paper Table 1 (quoted) beside this profile's values, one row per hyper-parameter."""
    import pandas as pd

    from falcon_h1r_lib.paper_results import paper_table

    paper = paper_table("table1_sft_hyperparameters")
    derived = {
        "base_model": cfg.base_model_name_or_path or f"tiny Falcon-H1 (width {cfg.model_width}), pretrained here",
        "global_batch": cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * world_size,
        "optimizer": f"AdamW (betas {cfg.adam_beta1}, {cfg.adam_beta2})",
        "precision": "bfloat16" if cfg.bf16 else "float32 (CPU)",
        "parallelism": ("FSDP / ZeRO-3 via accelerate, no context parallelism"
                        if world_size > 1 or cfg.profile == "full" else "1 CPU process"),
    }
    rows = []
    for name, field in _TABLE1_ROWS.items():
        ours = derived[field] if field in derived else getattr(cfg, field)
        rows.append({"parameter": name, "paper (Table 1)": paper.loc[name, "value"], "ours": ours,
                     "paper note": paper.loc[name, "note"]})
    rows.append({"parameter": "balanced DP token normalization", "paper (Table 1)": "yes (§2.3, Fig. 4)",
                 "ours": f"average_tokens_across_devices={cfg.average_tokens_across_devices}", "paper note": ""})
    rows.append({"parameter": "difficulty weighting", "paper (Table 1)": "x0.5 .. x1.75 (§2.2)",
                 "ours": f"difficulty_weighting={cfg.difficulty_weighting}", "paper note": ""})
    return pd.DataFrame(rows).set_index("parameter")


def _rounded(ci, digits: int = 3):
    """A CI as shown in a table: ``[0.0, 0.026]``, not ``[0.0, 0.026041666666666668]``; None stays None."""
    return None if ci is None else [round(float(x), digits) for x in ci]


def accuracy_table(result: Mapping[str, Any]):
    """Base vs SFT pass@1 per benchmark with bootstrap CIs (rounded to 3 decimals), from
    ``evaluate_base_and_sft``'s result."""
    import pandas as pd

    ev = result["evaluation"]
    rows = []
    for bench, base in ev["base"].items():
        tuned = ev["sft"][bench]
        rows.append({
            "benchmark": bench, "domain": base["domain"], "problems": base["n_problems"],
            "samples/problem": base["samples_per_problem"],
            "base pass@1": base["pass_at_1"], "base CI": _rounded(base["pass_at_1_ci"]),
            "SFT pass@1": tuned["pass_at_1"], "SFT CI": _rounded(tuned["pass_at_1_ci"]),
            "SFT - base": (None if tuned["pass_at_1"] is None or base["pass_at_1"] is None
                           else tuned["pass_at_1"] - base["pass_at_1"]),
            "SFT mean tokens": tuned.get("mean_tokens"), "base mean tokens": base.get("mean_tokens"),
        })
    return pd.DataFrame(rows).set_index("benchmark")


__all__ = ["accuracy_table", "evaluate_base_and_sft", "evaluation_config", "table1_beside_ours"]
