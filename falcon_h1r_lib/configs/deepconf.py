"""Notebook 06's config: DeepConf's budgets, confidence windows and thresholds ([P] §5; Fu et al. 2025)."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from falcon_h1r_lib.config import (
    DEVICE_PATTERN,
    ConfigError,
    StageConfig,
    check_system_prompt,
    register_stage,
)


@register_stage
@dataclass(frozen=True)
class DeepConfConfig(StageConfig):
    """Notebook 06: DeepConf test-time scaling ([P] §5, Table 7, Fig. 1; Fu et al. 2025 Alg. 1-2)."""

    STAGE: ClassVar[str] = "06_deepconf_scaling"

    models: dict[str, str] = field(default_factory=lambda: {"sft": "runs/tiny/03_sft/sft", "rl": "runs/tiny/04_rl/rl"})  # label -> checkpoint dir or Hub id; paper: Falcon-H1R-7B
    model_revision: str | None = None  # Hub revision of the models (pin it for full runs)
    benchmarks: tuple[str, ...] = ("tiny-math",)  # evaluation registry names; paper Table 7: AIME24, AIME25, GPQA-Diamond, AMO-Bench
    max_problems: int | None = 16  # first n problems per benchmark, None = all; paper: all (AIME 30)
    budget: int = 32  # K, traces per problem at most (warm-up included); paper: 512
    budgets: tuple[int, ...] = (1, 2, 4, 8, 16, 32)  # budgets of the scaling curves (<= budget); paper: 1..512
    pool_size: int = 48  # traces pre-generated per problem, resampled into working sets; paper: 4,096
    runs: int = 64  # R resampled runs averaged per point; paper: 64
    n_init: int = 8  # N_init warm-up traces of online DeepConf; paper: 16
    window: int = 16  # n, sliding-window group size in tokens; paper: 2,048
    tail_tokens: int = 16  # tokens of the tail confidence; paper: 2,048
    bottom_percent: float = 10.0  # q of the bottom-q% group confidence; paper: 10
    keep_top_percent: float = 10  # eta, share of traces kept: 10 = DeepConf-low (s = 90th percentile); paper: 10
    keep_top_percent_high: float = 90  # eta of DeepConf-high (s = 10th percentile); paper: 90
    consensus_tau: float = 0.95  # tau, consensus stop at beta >= tau; paper: 0.95
    live_wave: int = 1  # live runs: traces started per problem between consensus checks (Alg. 2: 1; replay always 1)
    topk: int = 20  # k of the token confidence C_i; paper App. G.3: 20
    temperature: float = 0.6  # paper §4.1 / Falcon-H1R recommended: 0.6
    top_p: float = 0.95  # paper: 0.95
    max_new_tokens: int = 128  # per trace (tiny math traces: median 44, max ~200 tokens); paper: 64K (Falcon-H1R)
    system_prompt: str | None = "Think inside <think> </think>, then answer."  # tokenizer.TINY_SYSTEM_PROMPT; None = the Falcon prompt (full)
    mode: typing.Literal["replay", "live", "both"] = "replay"  # replay over pools (paper protocol) and/or live runs with early stopping (Falcon-H1R)
    backend: typing.Literal["hf", "vllm"] = "hf"  # sampler; paper: vLLM
    vllm_stop: typing.Literal["abort", "logits_processor"] = "abort"  # how vLLM stops a trace (engine-step abort or EOS-forcing processor)
    vllm: dict[str, Any] = field(default_factory=dict)  # VLLMConfig fields (tensor/data parallel, max_model_len, ...)
    batch_size: int = 64  # HF backend: sequences decoded together
    device: str = "cpu"  # HF backend device
    dtype: str = "float32"  # weights dtype; paper serves bfloat16
    ci_level: float = 0.95  # bootstrap CI coverage (problems resampled)
    bootstrap_resamples: int = 1000  # bootstrap resamples
    eval_sources_file: str = "data_manifests/full/eval_benchmarks.yaml"  # full: dataset ids and revisions
    allow_unpinned: bool = False  # full: permit unpinned benchmark sources
    local_files: dict[str, str] = field(default_factory=dict)  # full: source name -> offline mirror file
    reuse_pools: bool = True  # read stored pools of the same model, problems and sampling instead of sampling
    claim_seeds: tuple[int, ...] = (0, 1, 2)  # seeds of the claim over seeds (each other seed samples its own pools)

    RANGES: ClassVar[dict[str, str]] = {
        **dict.fromkeys(("budget", "pool_size", "runs", "n_init", "window", "tail_tokens", "live_wave",
                         "max_new_tokens", "batch_size", "bootstrap_resamples", "max_problems",
                         "budgets"), "[1, inf)"),  # budgets: also <= budget (__post_init__)
        "claim_seeds": f"[0, {2**32})",  # as seed: numpy seeds
        "topk": "[1, 20]",  # vLLM's max_logprobs is 20
        **dict.fromkeys(("keep_top_percent", "keep_top_percent_high", "bottom_percent"), "(0, 100]"),
        "consensus_tau": "(0, 1]",
        "ci_level": "(0, 1)",
        "temperature": "[0, inf)",  # as evaluation's: 0 = greedy
        "top_p": "(0, 1]",
    }
    PATTERNS: ClassVar[dict[str, str]] = {"device": DEVICE_PATTERN}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_system_prompt(self.STAGE, self.system_prompt)
        if not self.models or not self.benchmarks or not self.claim_seeds:
            raise ConfigError(f"{self.STAGE}: keys 'models', 'benchmarks' and 'claim_seeds' must not be empty")
        if self.n_init > self.budget:
            raise ConfigError(f"{self.STAGE}: key 'n_init' ({self.n_init}) must be <= 'budget' ({self.budget})")
        if self.mode != "live" and self.pool_size < self.budget:
            raise ConfigError(f"{self.STAGE}: key 'pool_size' ({self.pool_size}) must be >= 'budget' ({self.budget})")
        if any(b > self.budget for b in self.budgets):
            raise ConfigError(f"{self.STAGE}: key 'budgets' must lie in [1, budget={self.budget}], got {self.budgets}")
