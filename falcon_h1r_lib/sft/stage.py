"""The SFT stage end to end: what the SFT model depends on (its fingerprint), training with resume and skip, and
``run(cfg)``, which reads notebook 02's files, gets the base model, trains and writes ``metrics.json``."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from falcon_h1r_lib import stages
from falcon_h1r_lib.config import ConfigError
from falcon_h1r_lib.configs import SFTStageConfig
from falcon_h1r_lib.sft.loss import LOSS_VERSION


def sft_fingerprint(cfg: SFTStageConfig, base_info: Mapping[str, Any], upstream: Mapping[str, str]) -> str:
    """What the SFT model depends on: the config minus the evaluation keys, the base model, the loss code and
    ``upstream``, what it read from notebook 02 by content (``sft.data.upstream_digest``: rows and tokenizer)."""
    keys = {k: v for k, v in cfg.to_dict().items() if not k.startswith("eval_")}
    blob = json.dumps({"cfg": keys, "base": base_info.get("fingerprint") or base_info.get("source"),
                       "loss": LOSS_VERSION, "upstream": dict(upstream)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def train_sft(cfg: SFTStageConfig, base_path: str, base_info: Mapping[str, Any], tokenizer, rows,
              callbacks=(), *, upstream: Mapping[str, str], **overrides) -> dict[str, Any]:
    """SFT from ``base_path`` on ``rows``; saves ``sft/`` (model + tokenizer); skipped when already done with the
    same ``sft_fingerprint`` (``upstream``: where ``rows`` and ``tokenizer`` came from, ``sft.data.upstream_digest``).
    Raises ConfigError on a global batch other than the config's before loading the model."""
    from accelerate import PartialState

    from falcon_h1r_lib.checkpoints import (
        checkpoint_to_resume,
        read_stage_info,
        save_final_model,
        train_to_max_steps,
        write_stage_info,
    )
    from falcon_h1r_lib.kernels import patch_falcon_h1
    from falcon_h1r_lib.metrics import Stopwatch
    from falcon_h1r_lib.progress import loss_log
    from falcon_h1r_lib.sft.base import check_global_batch, check_mup, load_model, param_group_learning_rates
    from falcon_h1r_lib.sft.data import sft_dataset_on_disk, token_counts
    from falcon_h1r_lib.sft.trainer import build_trainer
    from falcon_h1r_lib.tokenizer import system_turn

    def out(key: str) -> Path:
        return stages.output_path(cfg.STAGE, key, cfg.profile)

    fingerprint = sft_fingerprint(cfg, base_info, upstream)
    info = read_stage_info(out("sft"))
    if info is not None and info.get("fingerprint") == fingerprint and not overrides:
        return {**info, "skipped": True}
    state = PartialState()
    global_batch = check_global_batch(cfg, state.num_processes, overrides.get("per_device_train_batch_size"),
                                      overrides.get("gradient_accumulation_steps"))  # before loading a 7B model
    clock = Stopwatch()
    patch_falcon_h1()
    model = load_model(base_path, cfg)
    mup = check_mup(model.config, cfg)
    dataset = sft_dataset_on_disk(rows, system_turn(cfg.system_prompt), cfg.difficulty_weighting, out("data"), state)
    trainer = build_trainer(cfg, model, tokenizer, dataset, out("checkpoints"), callbacks, **overrides)
    bound = trainer.args.max_steps if trainer.args.max_steps > 0 else None  # SFT counts epochs unless max_steps
    last = checkpoint_to_resume(out("checkpoints"), fingerprint, state, max_steps=bound)
    train_to_max_steps(trainer, last)  # a checkpoint at max_steps is loaded: train() would step once more
    save_final_model(trainer, out("sft"))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(out("sft"))
    tokens, supervised = token_counts(trainer.train_dataset)
    info = {
        "fingerprint": fingerprint,
        "wall_time_s": round(clock.seconds(), 3),
        "resumed_from": Path(last).name if last else None,
        "steps": int(trainer.state.global_step),
        "epochs": float(trainer.state.epoch or 0.0),
        "rows": len(rows),
        "supervised_tokens_per_epoch": supervised,
        "tokens_per_epoch": tokens,
        "global_batch": global_batch,
        "world_size": int(trainer.args.world_size),
        "mup_multipliers": mup,
        "param_groups": param_group_learning_rates(trainer.optimizer),
        "loss_log": loss_log(trainer.state.log_history),
    }
    if trainer.is_world_process_zero():
        write_stage_info(out("sft"), info)
    return {**info, "skipped": False}


def run(cfg: SFTStageConfig) -> dict[str, Any]:
    """Base model then SFT; writes ``runs/<profile>/03_sft/{base,sft}`` and ``metrics.json`` (training part).

    Reads notebook 02's ``sft`` rows and (tiny) tokenizer as 02 wrote them; raises MissingStageOutput naming
    notebook 02 when they are not there. The base and SFT models are retrained when what they read from 02 changed
    (``upstream_digest``, ``pretrain_fingerprint``), kept otherwise. ``report.evaluate_base_and_sft`` adds the
    accuracies to the same record.
    """
    from falcon_h1r_lib.metrics import Stopwatch, clear_record, read_metrics, write_metrics
    from falcon_h1r_lib.sft import base as sft_base
    from falcon_h1r_lib.sft.data import eval_prompts_to_exclude, load_sft_rows, upstream_digest

    clock = Stopwatch()
    try:
        old = read_metrics(cfg.STAGE, cfg.profile).get("metrics") or {}
    except ConfigError:
        old = {}
    rows, reads = load_sft_rows(cfg)
    upstream = upstream_digest(cfg)
    tokenizer = sft_base.load_sft_tokenizer(cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # inputs read: from here on 03's outputs may be rewritten
        clear_record(cfg)  # until the new record is written, notebooks 04-06 see 03 as unfinished
    base_path, base_info = sft_base.load_base(cfg, tokenizer, eval_prompts_to_exclude(cfg))
    sft_info = train_sft(cfg, base_path, base_info, tokenizer, rows, upstream=upstream)
    metrics: dict[str, Any] = {
        "base_model": base_path,
        "sft_model": str(stages.output_path(cfg.STAGE, "sft", cfg.profile)),
        "pretrain": base_info,
        "sft": sft_info,
        "wall_time_s": {"pretrain": base_info.get("wall_time_s"), "sft": sft_info["wall_time_s"]},
    }
    if old.get("sft", {}).get("fingerprint") == sft_info["fingerprint"] and "evaluation" in old:
        metrics["evaluation"] = old["evaluation"]  # keep an evaluation already recorded for these very models
        metrics.update({k: old[k] for k in ("base_accuracy", "sft_accuracy", "base_accuracy_ci", "sft_accuracy_ci",
                                            "eval_counts", "eval_wall_time_s") if k in old})
    if int(os.environ.get("RANK", "0")) == 0:  # one writer under accelerate launch
        write_metrics(cfg, metrics, wall_time_s=clock.seconds(), reads=reads + [sft_base.tokenizer_path(cfg)])
    return metrics


__all__ = ["run", "sft_fingerprint", "train_sft"]
