"""Notebook 03's config: the base model (tiny: pretrained here) and the long-CoT SFT recipe of [P] Table 1."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import ClassVar

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
class SFTStageConfig(StageConfig):
    """Notebook 03: the base model (tiny: pretrained here) and long-CoT SFT through TRL ([P] §2.3, Table 1)."""

    STAGE: ClassVar[str] = "03_sft"

    base_model_name_or_path: str = ""  # "" = pretrain the tiny hybrid here; paper Table 1: Falcon-H1-7B-Base
    base_model_revision: str | None = None  # Hub revision of the base model (pin it for full runs)
    tokenizer_name_or_path: str = ""  # "" = notebook 02's tiny tokenizer (tiny) / the base model's own (full)
    check_base_config: bool = True  # full: the base config must match the 7B preset on Table 8's fields
    system_prompt: str | None = "Think inside <think> </think>, then answer."  # system turn (= tokenizer.TINY_SYSTEM_PROMPT); None = the Falcon prompt ([P] §3.4)
    model_width: int = 128  # tiny hybrid's one dial (hidden size); 7B: 3072
    rope_theta: float = 10000.0  # tiny RoPE base: 1e4 resolves positions in 100-token chats; 7B preset: 1e11
    pretrain_docs_per_domain: dict[str, int] = field(default_factory=lambda: {"math": 6000, "code": 1500, "science": 600, "other": 600})  # tiny base corpus: problems with plain answers; paper: Falcon-H1 pretraining
    pretrain_block_size: int = 128  # tokens per pretraining sequence (documents packed, <|endoftext|>-separated)
    pretrain_max_steps: int = 120  # optimizer steps of tiny pretraining (~30 s on 2 cores)
    pretrain_batch_size: int = 32  # sequences per pretraining step
    pretrain_learning_rate: float = 2e-3  # peak lr of tiny pretraining (cosine, 5% warm-up)
    learning_rate: float = 1.5e-3  # SFT peak lr (tiny, batch 8, no muP); paper Table 1: 1024e-6 with muP
    lr_scheduler_type: str = "linear"  # paper Table 1: linear
    warmup_ratio: float = 0.04  # share of steps warming up; paper Table 1: 4%
    num_train_epochs: float = 3.0  # paper Table 1: 3 (tiny: ~2,500 steps at batch 8)
    max_steps: int = -1  # cap on optimizer steps (-1 = the epochs decide)
    per_device_train_batch_size: int = 8  # sequences per rank and micro-step (tiny: more updates per CPU second)
    gradient_accumulation_steps: int = 1  # global batch = per-device x accumulation x ranks; paper Table 1: 512
    global_batch_size: int = 8  # sequences per optimizer step, asserted = ranks x per-device x accumulation; paper Table 1: 512
    max_length: int = 256  # tokens per SFT sequence (longer ones right-trimmed); paper Table 1: 36K (48K extended)
    weight_decay: float = 0.01  # AdamW; paper Table 1: 0.01
    adam_beta1: float = 0.9  # paper: AdamW defaults
    adam_beta2: float = 0.999  # paper: AdamW defaults
    max_grad_norm: float = 1.0  # paper Table 1: 1.0
    bf16: bool = False  # paper Table 1: bfloat16 (GPU); CPU trains in fp32
    gradient_checkpointing: bool = False  # on for 36K contexts on GPUs; off for tiny speed
    use_liger_kernel: bool = False  # paper App. A: Liger kernels (fused RoPE, RMSNorm, CE); GPU only
    assistant_only_loss: bool = True  # loss on the last assistant turn only ([P] §2.1), via {% generation %}
    difficulty_weighting: bool = True  # per-sample weights from curation ([P] §2.2: hard x1.25-1.75, easy x0.5)
    average_tokens_across_devices: bool = True  # balanced data-parallel token normalization ([P] §2.3, Fig. 4)
    packing: bool = False  # paper: not stated; CPU: no padding-free packing without mamba-ssm
    group_by_length: bool = False  # length-grouped batches (seeded per epoch): 27% fewer padded tokens, but tiny math fell 13% -> 5%
    logging_steps: int = 25  # optimizer steps between loss-log lines
    save_steps: int = 250  # optimizer steps between checkpoints (resume points)
    save_total_limit: int = 2  # checkpoints kept
    eval_problems: dict[str, int] = field(default_factory=lambda: {"tiny-math": 48, "tiny-code": 16, "tiny-science": 16, "tiny-other": 16})  # base-vs-SFT evaluation: benchmark -> problems
    eval_samples_per_problem: int | None = 4  # pass@1 averaged over n samples (None = the benchmark's); paper Table 9: 16 for AIME
    eval_batch_size: int = 64  # sequences decoded together
    report_to: typing.Literal["none", "trackio", "wandb"] = "none"  # experiment tracker of the Trainer's logs (one switch)

    RANGES: ClassVar[dict[str, str]] = {
        **dict.fromkeys(("model_width", "pretrain_block_size", "pretrain_max_steps", "pretrain_batch_size",
                         "per_device_train_batch_size", "gradient_accumulation_steps", "global_batch_size",
                         "max_length", "logging_steps", "save_steps", "save_total_limit", "eval_batch_size",
                         "learning_rate", "pretrain_learning_rate", "num_train_epochs", "rope_theta"),
                        "(0, inf)"),
        "max_grad_norm": "[0, inf)",  # 0 = no clipping (transformers TrainingArguments; tests/test_dp_balance.py)
        **dict.fromkeys(("warmup_ratio", "adam_beta1", "adam_beta2"), "[0, 1)"),
        **dict.fromkeys(("eval_samples_per_problem", "eval_problems"), "[1, inf)"),
        "weight_decay": "[0, inf)",
        "pretrain_docs_per_domain": "[0, inf)",  # per domain
    }
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"lr_scheduler_type": LR_SCHEDULER_TYPES}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_system_prompt(self.STAGE, self.system_prompt)
        if self.max_steps == 0 or self.max_steps < -1:
            raise ConfigError(f"{self.STAGE}: key 'max_steps' must be -1 or positive, got {self.max_steps}")
        bad = sorted(set(self.pretrain_docs_per_domain) - set(DOMAINS))
        if bad:
            raise ConfigError(f"{self.STAGE}: key 'pretrain_docs_per_domain': unknown domain(s) {bad}")
