"""Running notebook 04's stage: the batch plan and TRL's ``GRPOConfig`` carrying the recipe (explained in the package
docstring), the SFT policy, the Fig. 9 filter's training rows, and ``run``, which asks ``rl.resume`` whether the run
is done or resumable and writes
``runs/<profile>/04_rl/``. Inputs come only from the files notebooks 02 and 03 wrote (``falcon_h1r_lib.stages``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from falcon_h1r_lib import stages
from falcon_h1r_lib.config import is_tiny
from falcon_h1r_lib.configs import RLStageConfig
from falcon_h1r_lib.models.identity import weights_fingerprint
from falcon_h1r_lib.paths import repo_relative
from falcon_h1r_lib.rl import data as rl_data
from falcon_h1r_lib.rl import resume
from falcon_h1r_lib.rl.backfill import BackfillStats, generation_calls_saved
from falcon_h1r_lib.rl.resume import sft_model_path, sft_model_ref


def batch_plan(cfg: RLStageConfig, world_size: int) -> dict[str, int]:
    """One optimizer step's completions (prompts_per_step x G) as world_size x per-device batch x accumulation.

    TRL generates the step's whole batch once (generation_batch_size = per_device x world x steps_per_generation,
    steps_per_generation = accumulation, num_iterations = 1: one policy update per rollout batch, [P] Table 2),
    each rank per_device x accumulation completions, which must be whole groups of G for backfilling (TRL's
    sampler keeps a prompt's G copies contiguous; micro-steps may split groups). ValueError names the split."""
    g, accum = cfg.num_generations, cfg.gradient_accumulation_steps
    total = cfg.prompts_per_step * g
    per_rank = total // world_size if world_size >= 1 and total % world_size == 0 else None
    if per_rank is None or per_rank % g or per_rank % accum:
        raise ValueError(f"{cfg.STAGE}: prompts_per_step x num_generations = {total} completions must split over "
                         f"{world_size} ranks into whole groups of {g}, and over {accum} accumulation steps into "
                         "equal micro-batches")
    plan = {"world_size": world_size, "per_device_batch": per_rank // accum, "gradient_accumulation_steps": accum,
            "steps_per_generation": accum, "generation_batch_size": total, "completions_per_rank": per_rank,
            "groups_per_rank": per_rank // g}
    if not is_tiny(cfg.profile) and plan["per_device_batch"] != 1:  # 48K-token rollouts: one per device
        raise ValueError(f"{cfg.STAGE}: the full path trains 1 completion per device and micro-step (rollouts of up "
                         f"to {cfg.max_completion_length} tokens), got {plan['per_device_batch']} on {world_size} ranks; "
                         f"set gradient_accumulation_steps = {per_rank} (completions per rank)")
    if world_size * plan["per_device_batch"] * accum != cfg.prompts_per_step * g:  # the Table 2 batch per update
        raise AssertionError(f"{cfg.STAGE}: batch plan {plan} does not give {total} completions per step")
    return plan


def per_device_batch(cfg: RLStageConfig, world_size: int) -> int:
    """Completions per rank and micro-step (``batch_plan``)."""
    return batch_plan(cfg, world_size)["per_device_batch"]


def _force_cpu() -> bool:
    """Train on the CPU (accelerate's MULTI_CPU over gloo) when there is no GPU, except under an FSDP launch:
    accelerate 1.15 has no FSDP for MULTI_CPU ranks (it falls back to DDP), so there the launch must provide
    accelerator-type ranks (the rehearsal's CPU shim, falcon_h1r_lib/fsdp_on_cpu) and ``run`` checks it did."""
    import torch

    return not torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true"


def grpo_config(cfg: RLStageConfig, output_dir: str | os.PathLike, world_size: int = 1):
    """TRL ``GRPOConfig`` carrying the paper's recipe (Table 2) at the profile's scale (``batch_plan`` split)."""
    from trl import GRPOConfig

    plan = batch_plan(cfg, world_size)
    args = GRPOConfig(
        output_dir=str(output_dir),
        seed=cfg.seed,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=plan["per_device_batch"],
        gradient_accumulation_steps=plan["gradient_accumulation_steps"],
        steps_per_generation=plan["steps_per_generation"],
        num_iterations=1,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_steps,
        lr_scheduler_type=cfg.lr_scheduler_type,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        epsilon=cfg.epsilon,
        epsilon_high=cfg.epsilon_high,
        beta=cfg.beta,
        entropy_coef=cfg.entropy_coef,
        loss_type=cfg.loss_type,
        scale_rewards=cfg.scale_rewards,
        mask_truncated_completions=cfg.mask_truncated_completions,
        use_vllm=cfg.use_vllm,
        vllm_mode=cfg.vllm_mode,
        vllm_gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
        vllm_tensor_parallel_size=cfg.vllm_tensor_parallel_size,
        vllm_max_model_length=cfg.vllm_max_model_length,
        vllm_server_host=cfg.vllm_server_host,
        vllm_server_port=cfg.vllm_server_port,
        vllm_importance_sampling_correction=cfg.use_vllm,  # TIS: only meaningful with a separate sampler
        vllm_importance_sampling_mode=cfg.tis_mode,
        vllm_importance_sampling_clip_max=cfg.tis_cap,
        bf16=cfg.bf16,
        gradient_checkpointing=cfg.gradient_checkpointing,
        use_cpu=_force_cpu(),
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        report_to=cfg.report_to,
        disable_tqdm=False,
        dataloader_num_workers=0,
    )
    if args.world_size == world_size and args.generation_batch_size != plan["generation_batch_size"]:
        raise AssertionError(f"{cfg.STAGE}: TRL generates {args.generation_batch_size} completions per step, "
                             f"the recipe {plan['generation_batch_size']}")
    return args


def load_policy(cfg: RLStageConfig):
    """(model, tokenizer) of the SFT checkpoint; FalconH1 on CPU runs on our chunked scan."""
    import torch
    from transformers import AutoModelForCausalLM

    from falcon_h1r_lib.tokenizer import load_falcon_tokenizer

    path = sft_model_path(cfg)
    if not path.exists():
        raise FileNotFoundError(f"{cfg.STAGE}: key 'sft_model_path': no SFT checkpoint at {path} (run notebook 03)")
    if not torch.cuda.is_available():
        from falcon_h1r_lib.kernels import patch_falcon_h1

        patch_falcon_h1()
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.bfloat16 if cfg.bf16 else torch.float32)
    tokenizer = load_falcon_tokenizer(str(path))
    if tokenizer.padding_side != "left":
        raise ValueError(f"{path}: tokenizer pads on the {tokenizer.padding_side}; GRPO needs left padding")
    return model, tokenizer


def filter_backend(cfg: RLStageConfig, model=None, tokenizer=None):
    """(backend, tokenizer) sampling the SFT model for the filter (`generation.make_backend`): vLLM on
    clusters (`use_vllm`), else transformers on the already-loaded policy when given."""
    from falcon_h1r_lib.generation import BackendSpec, make_backend

    path = str(sft_model_path(cfg))
    dtype = "bfloat16" if cfg.bf16 else "float32"
    if cfg.use_vllm:
        spec = BackendSpec(model=path, backend="vllm", dtype=dtype, seed=cfg.seed, progress=True,
                           vllm={"tensor_parallel_size": cfg.vllm_tensor_parallel_size,
                                 **({"max_model_len": cfg.vllm_max_model_length} if cfg.vllm_max_model_length else {})})
        return make_backend(spec)
    if model is None:
        model, tokenizer = load_policy(cfg)
    return make_backend(BackendSpec(model=path, dtype=dtype, batch_size=256, progress=True), model, tokenizer)


def _filter_cached(out: Path, key: str) -> bool:
    key_file = out / (rl_data.FILTER_FILE + ".key")
    return (out / rl_data.FILTER_FILE).exists() and key_file.exists() and key_file.read_text().strip() == key


def _pool(cfg: RLStageConfig) -> tuple[list[dict], list[dict[str, Any]], str]:
    """(pool, funnel rows, filter key) from notebook 02's files and recorded config (``rl_data.build_pool``)."""
    from falcon_h1r_lib.data import build

    cfg02 = stages.recorded_config("02_data_curation", cfg.profile)
    for name in ("rl_problems", "sft"):
        stages.require("02_data_curation", name, cfg.profile)
    pool, funnel = rl_data.build_pool(cfg, cfg02, build.load_output(cfg02, "rl_problems"),
                                      build.load_output(cfg02, "sft"))
    return pool, funnel, rl_data.filter_key(cfg, pool, weights_fingerprint(sft_model_path(cfg)))


def trained_problems(cfg: RLStageConfig) -> list[dict]:
    """The problems GRPO trained on (the Fig. 9 filter's kept rows, pool order), rebuilt as ``prepare_data`` builds
    them from notebook 02's files and the filter file this stage wrote; never samples. Raises MissingStageOutput
    (naming notebook 04) when that filter file is missing or belongs to another SFT model, pool or filter setting."""
    import pandas as pd

    pool, _, key = _pool(cfg)
    out = cfg.run_dir(create=False)
    if not _filter_cached(out, key):
        raise stages.MissingStageOutput(
            f"{repo_relative(out / rl_data.FILTER_FILE)}: no Fig. 9 filter results for this SFT model, pool and "
            f"filter setting; run notebook 04 ({stages.stage(cfg.STAGE).notebook.name}) or "
            f"`{stages.stage(cfg.STAGE).command(cfg.profile)}` first")
    kept, _ = rl_data.apply_filter(pool, rl_data.table_outcomes(pd.read_parquet(out / rl_data.FILTER_FILE)), cfg)
    return kept


def prepare_data(cfg: RLStageConfig, out: Path, model=None, tokenizer=None) -> tuple[list[dict], dict[str, Any]]:
    """Pool -> Fig. 9 filter (k SFT rollouts, cached on disk by ``filter_key``) -> training rows + report.

    The pool comes from what notebook 02 wrote, with the config it recorded (never re-run here: MissingStageOutput
    names notebook 02 when its outputs are missing). Several ranks never sample the filter each on their own: under ``accelerate launch`` with more than one
    process the filter file must exist (run ``--filter-only`` once, single process, first)."""
    import pandas as pd

    from falcon_h1r_lib.tokenizer import system_turn

    pool, funnel, key = _pool(cfg)
    path = out / rl_data.FILTER_FILE
    cached = _filter_cached(out, key)
    if cached:
        outcomes = rl_data.table_outcomes(pd.read_parquet(path))
    else:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise RuntimeError(f"{path}: no filter results for this SFT model and pool; run "
                               "`python -m falcon_h1r_lib.rl --config FILE --filter-only` once first")
        from falcon_h1r_lib.generation import close_backend

        backend, tok = filter_backend(cfg, model, tokenizer)
        try:
            outcomes = rl_data.rollout_outcomes(pool, backend, tok, system_turn(cfg.system_prompt), cfg)
        finally:
            close_backend(backend)  # a filter engine must be gone before training starts its own
        rl_data.outcomes_table(pool, outcomes).to_parquet(path, index=False)
        (out / (rl_data.FILTER_FILE + ".key")).write_text(key + "\n")
    kept, filter_report = rl_data.apply_filter(pool, outcomes, cfg)
    if not kept:
        raise RuntimeError(f"{cfg.STAGE}: the Fig. 9 filter kept no problem of {len(pool)}; nothing to learn from")
    if len(kept) < cfg.prompts_per_step:  # TRL's sampler would yield no batch and train 0 steps
        raise RuntimeError(f"{cfg.STAGE}: the Fig. 9 filter kept {len(kept)} of {len(pool)} problems, fewer than one "
                           f"step's prompts_per_step={cfg.prompts_per_step}; add RL sources or relax the filter")
    k = cfg.filter_rollouts
    all_rates = [{"sft_pass_rate": sum(o["outcomes"]) / len(o["outcomes"])} for o in outcomes.values()]
    report = {
        "funnel": funnel + [{"step": "rl_filter", "in": filter_report["n_in"], "out": filter_report["n_out"],
                             "dropped": filter_report["n_in"] - filter_report["n_out"],
                             **{f"drop:{r}": n for r, n in filter_report["dropped_by_reason"].items()}}],
        "kept_by_reason": filter_report["details"].get("kept_by_reason", {}),
        "pass_rate_histogram_before": rl_data.pass_rate_histogram(all_rates, k),
        "pass_rate_histogram_after": rl_data.pass_rate_histogram(kept, k),
        "sft_pass_rate_pool": sum(r["sft_pass_rate"] for r in all_rates) / len(all_rates),
        "no_verdict_rollouts": int(sum(o.get("no_verdict", 0) for o in outcomes.values())),
        "kept_by_difficulty": {str(d): sum(r.get("difficulty") == d for r in kept)
                               for d in sorted({r.get("difficulty") for r in kept})},
        "filter_reused": bool(cached),
        "n_train": len(kept),
    }
    return rl_data.to_training_rows(kept, system_turn(cfg.system_prompt)), report


def _jsonl_callback(path: Path):
    from transformers import TrainerCallback

    class JsonlLog(TrainerCallback):
        """Append every log record (TRL's averaged metrics) to ``train_log.jsonl`` as it is produced."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs is not None and state.is_world_process_zero:
                with open(path, "a") as fh:
                    fh.write(json.dumps({"step": state.global_step, **logs}, default=float) + "\n")

    return JsonlLog()


def _output(cfg: RLStageConfig, key: str) -> Path:
    """``runs/<profile>/04_rl/<output>`` (the stage table in ``falcon_h1r_lib.stages`` names them)."""
    return stages.output_path(cfg.STAGE, key, cfg.profile)


def _summed(trainer, counts: Mapping[str, int]) -> dict[str, int]:
    """Integer counters summed over all ranks (a collective)."""
    import torch

    keys = sorted(counts)
    t = torch.tensor([[int(counts[k]) for k in keys]], dtype=torch.long, device=trainer.accelerator.device)
    total = trainer.accelerator.gather(t).view(-1, len(keys)).sum(dim=0).tolist() if keys else []
    return dict(zip(keys, (int(v) for v in total)))


def run(cfg: RLStageConfig, force: bool = False) -> dict[str, Any]:
    """Filter the RL data, train, save ``rl/`` and ``metrics.json``; skipped when done with this config (``_done``),
    resumed from the last checkpoint of the same run otherwise; ``force`` trains again from the SFT model."""
    import torch

    from falcon_h1r_lib.checkpoints import last_checkpoint, train_to_max_steps
    from falcon_h1r_lib.metrics import Stopwatch, clear_record, write_metrics
    from falcon_h1r_lib.rl.report import curves
    from falcon_h1r_lib.rl.rewards import RLVRReward
    from falcon_h1r_lib.rl.trainer import FalconGRPOTrainer

    out = cfg.run_dir()
    fingerprint = resume.run_fingerprint(cfg)
    if not force and (record := resume.done_record(cfg, fingerprint)) is not None:
        return record["metrics"]
    clear_record(cfg)  # until the new record is written, notebooks 05/06 see 04 as unfinished
    clock = Stopwatch()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if cfg.use_vllm:  # the filter's vLLM engine is released before the trainer builds its own
        rows, data_report = prepare_data(cfg, out)
        model, tokenizer = load_policy(cfg)
    else:
        model, tokenizer = load_policy(cfg)
        rows, data_report = prepare_data(cfg, out, model, tokenizer)
    from accelerate import PartialState
    from datasets import Dataset

    from falcon_h1r_lib.checkpoints import save_final_model

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    train_log = _output(cfg, "train_log")
    args = grpo_config(cfg, _output(cfg, "checkpoints"), world_size=world_size)  # also sets up the process group
    state = PartialState()
    if state.num_processes != world_size or (world_size > 1 and state.distributed_type == "NO"):
        raise RuntimeError(f"{cfg.STAGE}: launched with WORLD_SIZE={world_size} but accelerate set up "
                           f"{state.num_processes} process(es) ({state.distributed_type}); on CPU an FSDP launch needs "
                           "accelerator-type ranks (falcon_h1r_lib/fsdp_on_cpu), see rl.stage._force_cpu")
    ckpt_dir = resume.checkpoint_folder(_output(cfg, "checkpoints"), fingerprint, state, fresh=force)
    reward = RLVRReward(format_weight=cfg.format_weight)
    trainer = FalconGRPOTrainer(
        model=model, reward_funcs=[reward], args=args, train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer, callbacks=[_jsonl_callback(train_log)],
        aux_ce_coef=cfg.aux_ce_coef, backfill=cfg.backfill, cache_size=cfg.cache_size,
        cache_max_age=cfg.cache_max_age, max_rounds=cfg.max_rounds,
    )
    resume_from = last_checkpoint(ckpt_dir, cfg.max_steps) if cfg.resume else None  # never one past max_steps
    if resume_from is None and state.is_main_process and train_log.exists():
        train_log.unlink()  # a fresh run starts a fresh log
    state.wait_for_everyone()
    loaded = train_to_max_steps(trainer, resume_from)  # a checkpoint at max_steps is loaded: train() would step once more
    final = _output(cfg, "rl")
    save_final_model(trainer, final)  # under FSDP: the full state dict gathered to rank 0; safetensors
    stats: BackfillStats = trainer.backfill_stats
    groups_per_rank = cfg.prompts_per_step // world_size
    metrics = {
        "fingerprint": fingerprint,
        "data": data_report,
        "curves": curves(trainer.state.log_history),
        "backfill": {**stats.to_dict(),
                     **(generation_calls_saved(stats, groups_per_rank, cfg.max_rounds) if cfg.backfill else {})},
        # counted by this process's reward function: None when nothing was trained here (a finished checkpoint)
        "reward_totals": None if loaded else _summed(trainer, reward.totals),
        "resumed_from": str(Path(resume_from).name) if resume_from else None,
        "loaded_finished_checkpoint": loaded,
        "global_steps": int(trainer.state.global_step),
        "train_wall_s": None if loaded else float(sum(r.get("train_runtime", 0.0) for r in trainer.state.log_history)),
        "model_dir": repo_relative(final),
        "batch": {**batch_plan(cfg, world_size), "launch": str(state.distributed_type)},
    }
    metrics["backfill"].pop("round_yields", None)  # long list; kept in the checkpoints' backfill_state.json
    if state.is_main_process:
        tokenizer.save_pretrained(str(final))
        (final / "training_args.bin").unlink(missing_ok=True)  # a pickle; the config lives in metrics.json
        write_metrics(cfg, metrics, wall_time_s=clock.seconds(), reads=[sft_model_ref(cfg)])
    state.wait_for_everyone()
    return json.loads(_output(cfg, "metrics").read_text())["metrics"]


