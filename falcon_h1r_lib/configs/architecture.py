"""Notebook 01's config: what the architecture notebook measures and at which sizes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from falcon_h1r_lib.config import DEVICE_PATTERN, StageConfig, register_stage


@register_stage
@dataclass(frozen=True)
class ArchitectureConfig(StageConfig):
    """Notebook 01: the hybrid's parameter and memory accounting and its measured speed."""

    STAGE: ClassVar[str] = "01_architecture"

    tiny_width: int = 128  # the one size dial of the tiny hybrid (hidden size); 7B: 3072
    vocab_size: int = 512  # tiny tokenizer vocabulary; 7B: 130,048
    analytic_context_lens: tuple[int, ...] = (4096, 16384, 32768, 65536, 131072, 262144)  # Fig. 8 regime
    kv_dtype: str = "bfloat16"  # dtype of the KV cache in the analytic comparison (paper serves bf16)
    decode_context_lens: tuple[int, ...] = (256, 1024, 2048, 4096)  # measured decode, tiny models
    decode_batch: int = 4  # sequences decoded together in the measured comparison
    decode_new_tokens: int = 32  # decode steps timed per context length
    decode_repeats: int = 3  # interleaved repeats per model and length (median kept)
    bench_lengths: tuple[int, ...] = (256, 1024, 4096)  # SSD kernel benchmark lengths
    device: str = "cpu"  # "cuda" on the full profile
    model_name_or_path: str = ""  # full profile: a local path or hub id whose config is checked vs Table 8
    fig8_batches: tuple[int, ...] = (16, 64)  # vLLM Fig. 8: sequences decoded together; paper 2-128
    fig8_output_lens: tuple[int, ...] = (256,)  # vLLM Fig. 8: generated tokens per sequence; paper 16K-32K
    fig8_prompt_len: int = 512  # vLLM Fig. 8: prompt tokens; paper 512 (and 8K)
    fig8_repeats: int = 1  # engine rounds per model, order flipped each round (median kept)
    fig8_threads: int = 1  # OpenMP threads of the vLLM CPU worker (0: vLLM's auto binding); GPU: unused

    RANGES: ClassVar[dict[str, str]] = {
        **dict.fromkeys(("tiny_width", "vocab_size", "decode_batch", "decode_new_tokens", "decode_repeats",
                         "fig8_prompt_len", "fig8_repeats", "fig8_batches", "fig8_output_lens",
                         "analytic_context_lens", "decode_context_lens", "bench_lengths"), "(0, inf)"),
        "fig8_threads": "[0, inf)",
    }
    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {
        "kv_dtype": ("float32", "bfloat16", "float16", "float8_e4m3fn"),
    }
    PATTERNS: ClassVar[dict[str, str]] = {"device": DEVICE_PATTERN}
