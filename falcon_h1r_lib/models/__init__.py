"""Falcon-H1 presets (the paper's 7B and a tiny one-dial twin), same-size Transformer baselines, and
parameter / decode-cache accounting checked against real `transformers` models.

The architecture reading (parallel attention + Mamba2 summed, then a SwiGLU MLP; muP multipliers) is the
docstring of `presets`.
"""

from falcon_h1r_lib.models.accounting import (
    cache_bytes,
    cache_bytes_breakdown,
    count_parameters,
    mamba_dims,
    parameter_breakdown,
)
from falcon_h1r_lib.models.identity import weights_fingerprint
from falcon_h1r_lib.models.measure import (
    build_model,
    compare_decode,
    decode_throughput,
    measured_cache_bytes,
)
from falcon_h1r_lib.models.presets import (
    ASSUMPTIONS_7B,
    ASSUMPTIONS_QWEN3_8B,
    PAPER_7B,
    PRESETS_FALCON,
    PRESETS_TRANSFORMER,
    QWEN3_8B_GIVEN,
    TINY_RULES,
    TWIN_RULES,
    config_diff,
    falcon_h1_config,
    tiny_falcon_h1_config,
    transformer_config,
    twin_transformer_config,
)

__all__ = [
    "ASSUMPTIONS_7B", "ASSUMPTIONS_QWEN3_8B", "PAPER_7B", "PRESETS_FALCON", "PRESETS_TRANSFORMER",
    "QWEN3_8B_GIVEN", "TINY_RULES", "TWIN_RULES", "build_model", "cache_bytes", "cache_bytes_breakdown",
    "compare_decode", "config_diff", "count_parameters", "decode_throughput", "falcon_h1_config",
    "mamba_dims", "measured_cache_bytes", "parameter_breakdown", "tiny_falcon_h1_config",
    "transformer_config", "twin_transformer_config", "weights_fingerprint",
]
