"""Whether notebook 04's RL run is done, resumable or stale: what it read and how that is identified.

The SFT model RL starts from (``sft_model_path``), what its pool takes from notebook 02 (``upstream_digest``),
the run fingerprint over both and every training-relevant field (``run_fingerprint``; ``resume_neutral`` lists
the fields a checkpoint may be resumed under), the finished run's record (``done_record``) and the checkpoint
folder stamped with the fingerprint (``checkpoint_folder``). ``rl.stage.run`` asks these before it trains.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from falcon_h1r_lib import stages
from falcon_h1r_lib.config import ConfigError
from falcon_h1r_lib.configs import RLStageConfig
from falcon_h1r_lib.models.identity import weights_fingerprint
from falcon_h1r_lib.paths import repo_relative, resolve_path
from falcon_h1r_lib.rl import data as rl_data


def sft_model_path(cfg: RLStageConfig) -> Path:
    """The SFT checkpoint RL starts from: ``sft_model_path`` when set, else what notebook 03 wrote. Notebook 03's
    own output must be complete (``stages.require``: MissingStageOutput naming notebook 03 when it is not)."""
    if not cfg.sft_model_path:
        return stages.require("03_sft", "sft", cfg.profile)
    path = resolve_path(cfg.sft_model_path)
    if path == stages.output_path("03_sft", "sft", cfg.profile) and not path.exists():
        stages.require("03_sft", "sft", cfg.profile)  # raises, naming the notebook to run
    return path


def sft_model_ref(cfg: RLStageConfig) -> str:
    """The SFT model as records name it (``reads``, evaluation labels): the config's value, else repo-relative."""
    return cfg.sft_model_path or repo_relative(sft_model_path(cfg))


# Fields that do not change what a step computes: a checkpoint stays resumable when only these differ
# (``max_steps`` only under a constant schedule: ``resume_neutral``).
_RESUME_NEUTRAL = ("max_steps", "save_steps", "save_total_limit", "logging_steps", "resume", "num_threads",
                   "eval_benchmarks", "eval_max_problems", "eval_samples_per_problem", "headroom_samples",
                   "headroom_max_problems", "report_to")
# Of those, the ones notebook 04's evaluation and headroom check read: when they change, the results
# ``report.record_accuracy`` / ``record_headroom`` added to metrics.json no longer describe this config.
EVALUATION_FIELDS = ("eval_benchmarks", "eval_max_problems", "eval_samples_per_problem", "headroom_samples",
                     "headroom_max_problems")
EVALUATION_KEYS = ("sft_accuracy", "rl_accuracy", "rl_minus_sft", "headroom")  # what those report functions add
_CONSTANT_SCHEDULES = ("constant", "constant_with_warmup")


def resume_neutral(cfg: RLStageConfig) -> tuple[str, ...]:
    """The config fields a checkpoint may be resumed under when they change: ``_RESUME_NEUTRAL``, without
    ``max_steps`` when the learning-rate schedule depends on it (linear, cosine, ...: every step's rate would
    differ)."""
    if cfg.lr_scheduler_type in _CONSTANT_SCHEDULES:
        return _RESUME_NEUTRAL
    return tuple(k for k in _RESUME_NEUTRAL if k != "max_steps")


def upstream_digest(cfg: RLStageConfig) -> dict[str, Any]:
    """What the RL pool takes from notebook 02 (``_pool``): the recorded config's fields ``build_pool`` reads
    (``rl_data.POOL_FIELDS_FROM_02``: the held-out sets and decontamination settings) and, by content, its
    ``rl_problems`` and ``sft`` datasets (``data.build.output_digest``, from their manifests: no data file is
    read), as SFT's fingerprint takes only what SFT reads. Raises MissingStageOutput naming notebook 02 (or its
    command) when it has not run or a dataset RL reads is missing."""
    from falcon_h1r_lib.data import build

    cfg02 = stages.recorded_config("02_data_curation", cfg.profile)
    recorded = cfg02.to_dict()
    out: dict[str, Any] = {"02_data_curation": {k: recorded[k] for k in rl_data.POOL_FIELDS_FROM_02}}
    for name in ("rl_problems", "sft"):
        stages.require("02_data_curation", name, cfg.profile)
        out[name] = build.output_digest(cfg02, name)
    return out


def run_fingerprint(cfg: RLStageConfig) -> str:
    """SFT weights + what the pool takes from notebook 02 (``upstream_digest``) + every training-relevant field:
    checkpoints and results are reused only when it matches, so a rerun of 02 or 03 that changed what RL reads
    retrains it. Raises MissingStageOutput naming notebook 03 or 02 when their outputs are missing."""
    import hashlib

    neutral = resume_neutral(cfg)
    fields = {k: v for k, v in cfg.to_dict().items() if k not in neutral}
    blob = json.dumps({"sft": weights_fingerprint(sft_model_path(cfg)), "upstream": upstream_digest(cfg),
                       "cfg": fields}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def done_record(cfg: RLStageConfig, fingerprint: str) -> dict[str, Any] | None:
    """The finished run's record when ``rl/`` was trained for ``fingerprint`` to ``max_steps``; else None (also
    for an unreadable or malformed record: the stage then runs, resuming from its checkpoints).

    Fields outside the fingerprint (``resume_neutral``: evaluation sizes, logging, threads) do not retrain: the
    main process rewrites the record with the current config and keeps the training results, so a re-entered
    finished run neither trains again nor leaves a record of the old settings. The evaluation results notebook 04
    added (``EVALUATION_KEYS``) are dropped when an ``EVALUATION_FIELDS`` value changed; ``trained_with`` keeps
    the git commit and config hash the model was trained under."""
    from falcon_h1r_lib.metrics import read_metrics, write_metrics

    if not (stages.output_path(cfg.STAGE, "rl", cfg.profile) / "config.json").exists() or not stages.output_path(cfg.STAGE, "metrics", cfg.profile).exists():
        return None
    try:
        record = read_metrics(cfg.STAGE, cfg.profile)
        metrics, old_cfg = dict(record["metrics"]), dict(record["config"])
        wall = float(record["wall_time_s"])
    except (ConfigError, KeyError, TypeError, ValueError, AttributeError):
        return None
    if metrics.get("fingerprint") != fingerprint or metrics.get("global_steps") != cfg.max_steps:
        return None
    if record.get("config_hash") == cfg.config_hash():
        return record
    if any(old_cfg.get(k) != v for k, v in cfg.to_dict().items() if k in EVALUATION_FIELDS):
        metrics = {k: v for k, v in metrics.items() if k not in EVALUATION_KEYS}
    metrics.setdefault("trained_with", {"git_commit": record.get("git_commit"), "config_hash": record.get("config_hash")})
    try:  # checked on every rank, so all ranks agree: a record write_metrics would refuse is "not done"
        reads = [str(r) for r in (record.get("reads") or [])]
        json.dumps(metrics, allow_nan=False)
    except (TypeError, ValueError):
        return None
    if int(os.environ.get("RANK", "0")) == 0:  # one writer under accelerate launch
        write_metrics(cfg, metrics, wall_time_s=wall, reads=reads)
    return {**record, "config": cfg.to_dict(), "config_hash": cfg.config_hash(), "metrics": metrics}


def checkpoint_folder(ckpt_dir: Path, fingerprint: str, state=None, fresh: bool = False) -> Path:
    """The checkpoint folder ``ckpt_dir``, emptied when it holds another run's checkpoints (other SFT model or recipe)
    or when ``fresh`` (``run(force=True)``: train from the SFT model again).

    A collective under data parallelism (``state``: accelerate's ``PartialState``): the main process cleans and
    stamps, then every rank waits, so no rank looks for a checkpoint while the folder is being removed."""
    import shutil

    from accelerate import PartialState

    state = PartialState() if state is None else state
    stamp = ckpt_dir / "FINGERPRINT"
    if state.is_main_process:
        if ckpt_dir.exists() and (fresh or not stamp.exists() or stamp.read_text().strip() != fingerprint):
            shutil.rmtree(ckpt_dir)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        stamp.write_text(fingerprint + "\n")
    state.wait_for_everyone()
    return ckpt_dir


__all__ = ["EVALUATION_FIELDS", "EVALUATION_KEYS", "checkpoint_folder", "done_record", "resume_neutral",
           "run_fingerprint", "sft_model_path", "sft_model_ref", "upstream_digest"]
