"""Notebook 05's config: benchmarks, sampling and scoring of the evaluation ([P] §4, Table 9)."""

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
class EvaluationConfig(StageConfig):
    """Notebook 05: sample checkpoints on the benchmarks, grade with the reward verifiers, score ([P] §4)."""

    STAGE: ClassVar[str] = "05_evaluation"

    benchmarks: tuple[str, ...] = ("tiny-math", "tiny-code", "tiny-science", "tiny-other")  # evaluation registry names; paper: Tables 4-6
    max_problems: int | None = 32  # first n problems per benchmark, None = all; paper: all (AIME 30, GPQA-D 198)
    samples_per_problem: int | None = None  # None = the benchmark's (tiny 4); paper Table 9: 16 AIME/HMMT/AMO, 5 GPQA-D, 3 LCB/MMLU-Pro, 1 MATH500/IFBench
    max_new_tokens: int | None = None  # None = the benchmark's (tiny 192); paper Table 9: 65,536 or 32,768
    temperature: float = 0.6  # sampling temperature; paper §4.1: 0.6
    top_p: float = 0.95  # nucleus mass; paper §4.1: 0.95
    system_prompt: str | None = "Think inside <think> </think>, then answer."  # system turn (= tokenizer.TINY_SYSTEM_PROMPT); None = the Falcon prompt ([P] §3.4, §4.1; full profile)
    prompt_template: str = "{prompt}"  # user turn built around the problem text; paper: not given
    logprobs_topk: int = 20  # top-k raw log-probs kept per token, for DeepConf reuse; [P] App. G.3: 20
    pass_ks: tuple[int, ...] = (1, 4)  # pass@k reported where k <= samples per problem; paper: pass@1
    bootstrap_resamples: int = 1000  # problem resamples of the bootstrap CI; paper: no CI given
    ci_level: float = 0.95  # CI coverage
    backend: typing.Literal["hf", "vllm"] = "hf"  # sampler: transformers (CPU/GPU) or vLLM; paper: vLLM
    model_name_or_path: str = ""  # checkpoint dir or Hub id; "" = given by the notebook or --model
    model_revision: str | None = None  # Hub revision of the model (pin it for full runs)
    tokenizer_name_or_path: str = ""  # "" = the model's own
    batch_size: int = 64  # HF backend: sequences decoded together
    device: str = "cpu"  # HF backend device ("cuda" on GPUs)
    dtype: str = "float32"  # model weights dtype; paper serves bfloat16
    vllm: dict[str, Any] = field(default_factory=dict)  # VLLMConfig fields (tensor/data parallel, max_model_len, ...)
    eval_sources_file: str = "data_manifests/full/eval_benchmarks.yaml"  # full: dataset ids and revisions
    allow_unpinned: bool = False  # full: permit benchmark sources whose revision is not a commit hash
    local_files: dict[str, str] = field(default_factory=dict)  # full: source name -> offline mirror file
    grade_workers: int = 2  # threads verifying code samples in the sandbox
    reuse_traces: bool = True  # skip sampling when traces of the same model, problems and sampling exist

    RANGES: ClassVar[dict[str, str]] = {
        **dict.fromkeys(("max_problems", "samples_per_problem", "max_new_tokens", "bootstrap_resamples",
                         "batch_size", "grade_workers", "pass_ks"), "[1, inf)"),
        "logprobs_topk": "[0, inf)",
        "temperature": "[0, inf)",
        "top_p": "(0, 1]",
        "ci_level": "(0, 1)",
    }
    PATTERNS: ClassVar[dict[str, str]] = {"device": DEVICE_PATTERN}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_system_prompt(self.STAGE, self.system_prompt)
        if not self.benchmarks:
            raise ConfigError(f"{self.STAGE}: key 'benchmarks' must name at least one benchmark")
        if "{prompt}" not in self.prompt_template:
            raise ConfigError(f"{self.STAGE}: key 'prompt_template' must contain '{{prompt}}'")
