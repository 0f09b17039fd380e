"""Evaluation protocol of [P] §4: benchmark registry, grading with the reward verifiers, pass@1 averaged
over n samples, unbiased pass@k, majority vote, bootstrap CIs, paper-vs-ours tables (Tables 4-6), and the
problems x samples a claim needs (power).

``python -m falcon_h1r_lib.evaluation --config FILE`` runs it on a cluster; ``pipeline.run(cfg)`` in process.
The pipeline (which pulls in torch and the generation backends) is imported on first use.
"""

from falcon_h1r_lib.evaluation.benchmarks import BENCHMARKS, Benchmark, benchmark_names, get_benchmark
from falcon_h1r_lib.evaluation.grading import Grade, completion_text, grade, grade_all, ungradable_reason
from falcon_h1r_lib.evaluation.metrics import (
    Vote,
    bootstrap_ci,
    maj_at_k,
    mean_pass_at_1,
    paired_difference,
    pass_at_k,
    problem_table,
    summarize,
)
from falcon_h1r_lib.evaluation.power import (
    DifferenceStats,
    PairedVariance,
    difference_stats,
    paired_variance,
    paired_variance_from_grades,
    paired_variance_from_rates,
    paper_rl_gain,
    power_noninferior,
    power_paired,
    power_table,
    problems_needed,
    problems_needed_noninferior,
)
from falcon_h1r_lib.evaluation.tables import paper_vs_ours, results_records, to_markdown, write_table


def stage_config(profile: str, **overrides):
    """Notebook 05's ``EvaluationConfig`` for ``profile`` (backend, sampling, vLLM settings, sources file, pinning)
    with ``overrides`` laid over it and validated: the one way another stage (SFT's base-vs-SFT check, RL's
    SFT-vs-RL check) builds its evaluation settings, so they can never drift from notebook 05's."""
    from falcon_h1r_lib.config import load_config

    return load_config("05_evaluation", profile, overrides=overrides)


def models_to_compare(cfg, models=None) -> dict[str, str]:
    """The models notebook 05 and ``python -m falcon_h1r_lib.evaluation`` evaluate: {label: checkpoint or Hub id}.

    ``models`` when given (``--model``), else ``cfg.model_name_or_path`` as {"model": ...}, else each training
    notebook's final model in pipeline order: notebook 03's ``base`` (tiny: pretrained there; a Hub base is no
    folder of 03 and is left out) and ``sft``, then notebook 04's ``rl`` once notebook 04 has started. Each that is
    a stage's output must be complete (``stages.require_models``): MissingStageOutput names the notebook (tiny) or
    command to run, also for a half-written stage (a model saved, ``metrics.json`` not yet written).
    """
    from falcon_h1r_lib import stages

    if models:
        return stages.require_models(models)
    if cfg.model_name_or_path:
        return stages.require_models({"model": cfg.model_name_or_path})
    base = stages.output_path("03_sft", "base", cfg.profile)
    wanted = {**({"base": str(base)} if base.exists() else {}),
              "sft": str(stages.output_path("03_sft", "sft", cfg.profile)),
              "rl": str(stages.output_path("04_rl", "rl", cfg.profile))}
    return stages.require_models(wanted, optional=("04_rl",))


def run(cfg, models=None, out_dir=None, backends=None):
    """See ``pipeline.run``: evaluate models (default: ``models_to_compare(cfg)``) on ``cfg.benchmarks``, write
    traces, metrics.json and tables."""
    from falcon_h1r_lib.evaluation.pipeline import run as _run

    return _run(cfg, models=models, out_dir=out_dir, backends=backends)


__all__ = [
    "BENCHMARKS", "Benchmark", "Grade", "Vote", "benchmark_names", "bootstrap_ci", "completion_text",
    "get_benchmark", "grade", "grade_all", "maj_at_k", "mean_pass_at_1", "models_to_compare", "paired_difference", "paper_vs_ours", "pass_at_k",
    "problem_table", "results_records", "run", "stage_config", "summarize", "to_markdown", "ungradable_reason", "write_table",
    # power and sample size of the paper's claims (power.py)
    "DifferenceStats", "PairedVariance", "difference_stats", "paired_variance", "paired_variance_from_grades",
    "paired_variance_from_rates", "paper_rl_gain", "power_noninferior", "power_paired", "power_table", "problems_needed",
    "problems_needed_noninferior",
]
