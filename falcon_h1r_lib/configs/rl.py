"""Notebook 04's config: the RL problem filter ([P] Fig. 9) and the GRPO-style recipe of [P] Table 2."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, ClassVar

from falcon_h1r_lib.config import (
    DOMAINS,
    LR_SCHEDULER_TYPES,
    ConfigError,
    StageConfig,
    check_system_prompt,
    register_stage,
)


@register_stage
@dataclass(frozen=True)
class RLStageConfig(StageConfig):
    """Notebook 04: GRPO-style RLVR from the SFT checkpoint on TRL ([P] §3, Table 2, Figs. 5, 6, 9)."""

    STAGE: ClassVar[str] = "04_rl"

    sft_model_path: str = ""  # the SFT checkpoint RL starts from (model + tokenizer); "" = notebook 03's output
    system_prompt: str | None = "Think inside <think> </think>, then answer."  # system turn, as in SFT (tokenizer.TINY_SYSTEM_PROMPT); None = the Falcon prompt ([P] §3.4)
    domains: tuple[str, ...] = ("math",)  # RL domains; [P] §3.4 / Table 3: the released model is math-only
    extra_problems_per_domain: int = 1500  # generated training-seed problems added to notebook 02's rl_problems
    extra_problems_seed: int = 4_000  # training seed of those extra problems (< eval seed range)
    pool_max_difficulty: int | None = 3  # pool problems up to this generator level (None = all): tiny SFT solves ~1% of 4-5
    filter_max_problems: int | None = None  # RL pool size sent to the Fig. 9 filter (None = all)
    filter_rollouts: int = 8  # k SFT-model rollouts per problem; [P] Fig. 9: 8
    filter_temperature: float = 0.6  # [P] Fig. 9: 0.6
    filter_top_p: float = 0.95  # [P] Fig. 9: 0.95
    filter_max_new_tokens: int = 128  # [P] Fig. 9: 32K
    keep_fraction_all_truncated: float = 0.1  # 0/k correct, all truncated: share kept; [P] Fig. 9: "a small random subset"
    keep_fraction_minority: float = 0.1  # 0/k correct, majority f < k/2: share kept; [P] Fig. 9: "a small random subset"
    num_generations: int = 8  # G rollouts per prompt; [P] Table 2: 16 (G 4 -> 16 helps, 32 no better)
    prompts_per_step: int = 8  # prompts per optimizer step (= per rollout batch); [P] Table 2: 128
    max_steps: int = 40  # optimizer steps; paper: not given (Fig. 6 curves)
    temperature: float = 0.85  # rollout temperature; [P] Table 2: 0.85
    top_p: float = 1.0  # rollout nucleus; paper: not given (1.0 = plain temperature sampling)
    max_completion_length: int = 128  # tokens per rollout; [P] Table 2: 48K
    learning_rate: float = 1e-4  # AdamW lr (tiny: ~1/10 of the tiny SFT lr, fp32); [P] Table 2: 2e-6
    warmup_steps: int = 10  # linear warm-up steps; [P] Table 2: 10
    lr_scheduler_type: str = "constant_with_warmup"  # after warm-up; paper: not given
    weight_decay: float = 0.0  # paper: not given
    max_grad_norm: float = 1.0  # paper: not given (verl default 1.0)
    epsilon: float = 0.2  # lower clip eps-; [P] Table 2: 0.2
    epsilon_high: float = 0.28  # upper clip eps+ (clip-higher, DAPO); [P] Table 2: 0.28
    beta: float = 0.0  # KL coefficient (0: no reference model is loaded); [P] Table 2: 0
    entropy_coef: float = 0.0  # entropy bonus; [P] Table 2: 0
    loss_type: str = "dapo"  # aggregation: token-level over the global batch (DAPO); paper: not stated, see falcon_h1r_lib/rl/__init__.py
    scale_rewards: str = "group"  # advantage (R - mean) / std over the G rollouts; [P] §3.2: group-normalised
    mask_truncated_completions: bool = False  # paper: truncated answers simply score 0 (no mask mentioned)
    format_weight: float = 1.0  # penalty for output not in <think> ... </think> answer form; [P] §3.2: size not given
    aux_ce_coef: float = 0.1  # ASSUMPTION: weight of the SFT loss on positive samples; [P] §3.1: coefficient not given
    backfill: bool = True  # drop zero-advantage groups and refill the batch; [P] §3.1: Backfill
    cache_size: int = 16  # surplus valid groups kept over all ranks (each caches cache_size / ranks, on the CPU); [P] §3.1: "fixed size", value not given
    cache_max_age: int = 2  # optimizer steps a cached group may wait (staleness bound); paper: not given
    max_rounds: int = 3  # generation calls per step at most (first + refills); paper: not given
    gradient_accumulation_steps: int = 1  # micro-steps per optimizer step; [P] Table 2: PPO mini-batch = batch (1 update per rollout batch)
    use_vllm: bool = False  # vLLM rollouts (full); tiny: transformers generate
    vllm_mode: typing.Literal["colocate", "server"] = "colocate"  # vLLM beside the trainer or a separate `trl vllm-serve`
    vllm_gpu_memory_utilization: float = 0.3  # colocate: share of GPU memory for vLLM
    vllm_tensor_parallel_size: int = 1  # colocate: tensor parallel degree of vLLM
    vllm_max_model_length: int | None = None  # colocate: vLLM context per sequence, prompt + completion tokens (None: the model's, 262,144 for Falcon-H1R)
    vllm_server_host: str = "0.0.0.0"  # server mode: host of `trl vllm-serve`
    vllm_server_port: int = 8000  # server mode: its port
    tis_cap: float = 2.0  # truncated importance sampling cap (vLLM path only); [P] §3.1: 2
    tis_mode: str = "token_truncate"  # TIS of Yao et al. 2025: per-token ratio, truncated at the cap
    bf16: bool = False  # paper: bf16 on GPUs; CPU trains in fp32
    gradient_checkpointing: bool = False  # on for 48K rollouts on GPUs; off for tiny speed
    logging_steps: int = 1  # optimizer steps between metric-log lines
    report_to: typing.Literal["none", "trackio", "wandb"] = "none"  # live metrics logger (TrainingArguments.report_to); train_log.jsonl is always written
    save_steps: int = 20  # optimizer steps between checkpoints (resume points)
    save_total_limit: int = 2  # checkpoints kept
    resume: bool = True  # continue from the last checkpoint under runs/<profile>/04_rl/checkpoints
    num_threads: int = 1  # torch CPU threads (0 = torch's default); tiny: 1, as a 2-thread decode on a shared 2-core box runs ~10x slower
    eval_benchmarks: tuple[str, ...] = ("tiny-math",)  # SFT-vs-RL benchmarks (evaluation registry); paper: Table 3 columns
    eval_max_problems: int = 50  # problems per benchmark; paper: all
    eval_samples_per_problem: int = 16  # pass@1 averaged over n samples; paper Table 9: 16 for AIME
    headroom_samples: int = 64  # n samples per problem of the SFT/RL pass@k curves (k = 1, 2, 4, ..., n); paper: no such check (Yue et al. 2025 use k up to 256)
    headroom_max_problems: int = 50  # problems per headroom set: the first of each eval benchmark, a seeded sample of the RL training problems

    RANGES: ClassVar[dict[str, str]] = {
        **dict.fromkeys(("filter_rollouts", "filter_max_new_tokens", "prompts_per_step", "max_steps",
                         "max_completion_length", "max_rounds", "gradient_accumulation_steps", "logging_steps",
                         "save_steps", "save_total_limit", "eval_max_problems", "eval_samples_per_problem",
                         "headroom_samples", "headroom_max_problems",
                         "vllm_tensor_parallel_size", "learning_rate", "temperature", "filter_temperature",
                         "tis_cap"), "(0, inf)"),
        "max_grad_norm": "[0, inf)",  # 0 = no clipping (transformers TrainingArguments)
        **dict.fromkeys(("extra_problems_per_domain", "warmup_steps", "cache_size", "cache_max_age", "num_threads",
                         "epsilon_high", "beta", "entropy_coef", "format_weight", "aux_ce_coef", "weight_decay"),
                        "[0, inf)"),
        **dict.fromkeys(("keep_fraction_all_truncated", "keep_fraction_minority", "epsilon", "filter_top_p", "top_p",
                         "vllm_gpu_memory_utilization"), "[0, 1]"),
        "num_generations": "[2, inf)",  # group-normalised advantages need 2 rollouts at least
        "extra_problems_seed": "[0, 1e9)",  # a training seed (evaluation seeds lie above)
        "pool_max_difficulty": "[1, 5]",  # a generator level
        **dict.fromkeys(("filter_max_problems", "vllm_max_model_length"), "[1, inf)"),
        "vllm_server_port": "[1, 65535]",
    }
    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {
        "domains": DOMAINS,
        "loss_type": ("grpo", "dr_grpo", "dapo", "bnpo"),  # aggregations of the clipped surrogate of [P] §3.2
        "scale_rewards": ("group", "batch", "none"),
        "tis_mode": ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask"),  # TRL's modes
        "lr_scheduler_type": LR_SCHEDULER_TYPES,
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        check_system_prompt(self.STAGE, self.system_prompt)
        if self.epsilon_high < self.epsilon:
            raise ConfigError(f"{self.STAGE}: key 'epsilon_high' ({self.epsilon_high}) must be >= 'epsilon' "
                              f"({self.epsilon}): the clip range is [1 - epsilon, 1 + epsilon_high]")
        if self.backfill and self.cache_size < 1:
            raise ConfigError(f"{self.STAGE}: key 'cache_size' must be >= 1 with backfill on (the surplus groups "
                              f"it refills from), got {self.cache_size}")
        if self.vllm_max_model_length is not None and self.vllm_max_model_length <= self.max_completion_length:
            raise ConfigError(f"{self.STAGE}: key 'vllm_max_model_length' must exceed max_completion_length "
                              f"({self.max_completion_length}) by the prompt, got {self.vllm_max_model_length}")
