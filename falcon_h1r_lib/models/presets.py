"""Falcon-H1R-7B and Qwen3-8B configs, and their tiny CPU twins, on `transformers`' own model classes.

An annotated reading of the architecture (paper arXiv 2601.02346, Appendix B, Table 8; block structure
from transformers' `modeling_falcon_h1.py`, which we run rather than re-implement):

    x = embed(ids) * embedding_multiplier                                # (B, T, d)
    per layer (all 44 are "hybrid": attention AND Mamba2, in parallel):
        h = RMSNorm(x)                                                   # both branches read the SAME h
        # SSM branch (Mamba2 / SSD)
        zxbcdt = in_proj(h * ssm_in_multiplier) * mup_vector             # in_proj -> [z | x | B | C | dt]
                                                                         #   widths  d_ssm, d_ssm, G*N, G*N, H
        xBC = SiLU(causal depthwise conv1d(xBC, k=d_conv))               # (B, T, d_ssm + 2*G*N)
        y = SSD scan(x, dt=softplus(dt + dt_bias), A=-exp(A_log), B, C) + D*x   # state (B, H, P, N)
        m = out_proj(y * SiLU(z)) * ssm_out_multiplier      # (B, T, d); a gated RMSNorm if mamba_rms_norm
        # attention branch: GQA, 12 query / 2 KV heads of dim 128, RoPE
        q, k, v = projections of h * attention_in_multiplier
        a = o_proj(attn(q, k * key_multiplier, v)) * attention_out_multiplier
        x = x + m + a                                                    # the two mixers are SUMMED
        x = x + down(up(h') * SiLU(gate(h') * mlp_mult[0])) * mlp_mult[1]   # SwiGLU MLP on h' = RMSNorm(x)
    logits = lm_head(RMSNorm(x)) * lm_head_multiplier

Symbols: d = hidden_size, H = mamba_n_heads, P = mamba_d_head, N = mamba_d_state, G = mamba_n_groups.
The Falcon-H1 report calls the mixer "concatenated and projected"; one output projection per branch
followed by a sum is the same map, and is what the code does.

Departures and gaps, each written down where it is decided:
- muP multipliers scale each branch; their 7B values were not found in any public source, so every one
  stays at 1.0 (`ASSUMPTIONS_7B`, with every other value Table 8 does not give).
- No gated RMSNorm in the SSM branch (`mamba_rms_norm=False`, as in public Falcon-H1 small configs);
  with it, transformers 5.17 (pinned) to 5.20 mixes batch rows during cached decode (a test pins this).
- The tiny model scales the 7B by one dial, `width`; `TINY_RULES` says how each size follows it and
  `config_diff` prints the result next to the 7B. `TWIN_RULES` builds its same-size Transformer.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from transformers import FalconH1Config, PretrainedConfig, Qwen3Config

from falcon_h1r_lib.models.accounting import count_parameters

# Paper Table 8 (Appendix B), Falcon-H1R-7B. Each entry: field -> (value, source).
PAPER_7B: dict[str, tuple[Any, str]] = {
    "num_hidden_layers": (44, "Table 8: layers"),
    "hidden_size": (3072, "Table 8: d_model"),
    "vocab_size": (130048, "Table 8: vocabulary"),
    "num_attention_heads": (12, "Table 8: attention heads Q"),
    "num_key_value_heads": (2, "Table 8: attention heads KV"),
    "head_dim": (128, "Table 8: attention head dimension"),
    "mamba_n_heads": (24, "Table 8: SSM heads"),
    "mamba_d_head": (128, "Table 8: SSM head dimension"),
    "mamba_d_ssm": (3072, "derived: 24 SSM heads x 128"),
    "mamba_d_state": (256, "Table 8: state dimension"),
    "max_position_embeddings": (262144, "Table 8: 256K context; model card vLLM max-model-len 262144"),
}

# Every 7B value the paper does not give: field -> (value, source / why).
ASSUMPTIONS_7B: dict[str, tuple[Any, str]] = {
    "intermediate_size": (12288, "third-party fixtures of the Falcon-H1-7B config; gives the paper's 7.59B"),
    "tie_word_embeddings": (False, "untied gives 7.586B = Table 8's 7.59B; tied would give 7.19B"),
    "mamba_n_groups": (1, "third-party fixtures of the Falcon-H1-7B config"),
    "mamba_d_conv": (4, "fixtures; Falcon-H1 report (arXiv 2507.22448) found kernel 4 best"),
    "mamba_chunk_size": (128, "fixtures say 128, a summary of the Falcon-H1 report says 256; speed only"),
    "mamba_conv_bias": (True, "transformers default; included in the derived 7.5856B count"),
    "mamba_proj_bias": (False, "transformers default; not found for 7B"),
    "projectors_bias": (False, "transformers default; not found for 7B"),
    "attention_bias": (False, "transformers default; not found for 7B"),
    "mlp_bias": (False, "transformers default; not found for 7B"),
    "mamba_rms_norm": (False, (
        "not found for 7B; False in third-party copies of Falcon-H1-0.5B and -Tiny configs. True adds 3072 "
        "params/layer (7.5856B) and breaks batched decode in transformers 5.17-5.20 (the gated norm squeezes "
        "(B, 1, D) to (B, D), which then broadcasts against the attention branch's (B, 1, d))")),
    "mamba_norm_before_gate": (False, "not found for 7B; False in the same third-party configs"),
    "rope_theta": (1e11, "Falcon-H1 report RoPE base 10^11; vLLM falcon_h1.py default; unverified for 7B"),
    "rms_norm_eps": (1e-5, "transformers default; not found for 7B"),
    "embedding_multiplier": (1.0, "muP multiplier: real 7B value NOT FOUND, left neutral"),
    "lm_head_multiplier": (1.0, "muP multiplier: real 7B value NOT FOUND, left neutral"),
    "attention_in_multiplier": (1.0, "muP multiplier: real 7B value NOT FOUND, left neutral"),
    "attention_out_multiplier": (1.0, "muP multiplier: real 7B value NOT FOUND, left neutral"),
    "key_multiplier": (1.0, "muP multiplier: real 7B value NOT FOUND, left neutral"),
    "ssm_in_multiplier": (1.0, "muP multiplier: real 7B value NOT FOUND, left neutral"),
    "ssm_out_multiplier": (1.0, "muP multiplier: real 7B value NOT FOUND, left neutral"),
    "mlp_multipliers": ([1.0, 1.0], "muP multipliers (gate, down): real 7B values NOT FOUND, left neutral"),
    "ssm_multipliers": ([1.0] * 5, "muP (z, x, B, C, dt): real 7B values NOT FOUND, left neutral"),
}

# Qwen3-8B, the paper's same-class Transformer rival in the throughput comparison (Fig. 8).
QWEN3_8B_GIVEN: dict[str, tuple[Any, str]] = {
    "num_hidden_layers": (36, "issue 2 / Qwen3-8B config"),
    "hidden_size": (4096, "issue 2 / Qwen3-8B config"),
    "num_attention_heads": (32, "issue 2 / Qwen3-8B config"),
    "num_key_value_heads": (8, "issue 2 / Qwen3-8B config"),
    "head_dim": (128, "issue 2 / Qwen3-8B config"),
    "intermediate_size": (12288, "issue 2 / Qwen3-8B config"),
    "vocab_size": (151936, "issue 2 / Qwen3-8B config"),
    "tie_word_embeddings": (False, "issue 2 / Qwen3-8B config"),
}
ASSUMPTIONS_QWEN3_8B: dict[str, tuple[Any, str]] = {
    "max_position_embeddings": (40960, "Qwen/Qwen3-8B config.json as recalled; not re-read offline"),
    "rope_theta": (1e6, "Qwen/Qwen3-8B config.json as recalled; not re-read offline"),
    "rms_norm_eps": (1e-6, "Qwen/Qwen3-8B config.json as recalled (also the Qwen3Config default)"),
    "attention_bias": (False, "Qwen3Config default; Qwen3 dropped Qwen2's qkv bias"),
    "use_sliding_window": (False, "Qwen/Qwen3-8B config.json as recalled"),
}

# How the one tiny dial (`width`, the hidden size d) sets every size, and why.
TINY_RULES: dict[str, str] = {
    "hidden_size": "d = width (default 128, the size trained to ~100% on CoT addition in 3 CPU minutes)",
    "num_hidden_layers": "2 (7B: 44); an override, not the dial, because CPU time grows with depth",
    "num_attention_heads": "4 query heads of dim d/4 (7B: 12 x 128 = d/2; dim 32 keeps attention usable)",
    "num_key_value_heads": "1, Q:KV = 4:1 (7B: 6:1); so the Transformer twin can hold 4x, as Qwen3-8B",
    "mamba_n_heads": "8 = 2x the attention heads (7B: 24 = 2 x 12)",
    "mamba_d_ssm": "d (7B: 3072 = d), so the SSM head dim is d/8",
    "mamba_d_state": "2x the SSM head dim (7B: 256 = 2 x 128)",
    "intermediate_size": "4d (7B: 12288 = 4d)",
    "mamba_chunk_size": "32 for CPU speed (7B: 128 assumed); the scan pads to a multiple of it",
    "tie_word_embeddings": "True at tiny scale (7B: untied); untied, the embedding would dominate the count",
    "vocab_size": "512 by default; set it to the tiny tokenizer's size",
    "max_position_embeddings": "8192, enough for the 4K-context decode comparison (7B: 262144)",
}

# Twin rule (tiny Transformer next to the tiny hybrid), fixed in `twin_transformer_config`.
TWIN_RULES: dict[str, str] = {
    "hidden_size / head_dim / num_attention_heads": "same as the hybrid",
    "num_key_value_heads": "4x the hybrid's (Qwen3-8B 8 vs Falcon-H1R 2), capped at the query heads",
    "num_hidden_layers": "hybrid's non-embedding params / one twin layer at Qwen3-8B's MLP ratio 3d, rounded",
    "intermediate_size": "then solved so the parameter counts match (rounded to a multiple of 8)",
    "vocab_size / tie_word_embeddings / max_position_embeddings": "same as the hybrid",
    "rope_theta": "Qwen3-8B's 1e6",
}

PRESETS_FALCON = ("falcon-h1r-7b", "tiny")
PRESETS_TRANSFORMER = ("qwen3-8b", "tiny")
TINY_DEFAULT_WIDTH = 128
TINY_DEFAULT_VOCAB = 512
_KV_RATIO_QWEN3_TO_FALCON = 4  # Qwen3-8B 8 KV heads vs Falcon-H1R-7B 2 KV heads
_QWEN3_MLP_RATIO = 3  # Qwen3-8B: 12288 / 4096

# Keys accepted as overrides besides the config classes' declared fields.
_EXTRA_KEYS = {"head_dim", "rope_theta"}
_BOOKKEEPING = {"transformers_version", "architectures", "_name_or_path", "dtype", "model_type",
                "output_hidden_states", "return_dict", "output_attentions", "chunk_size_feed_forward",
                "problem_type", "id2label", "label2id", "is_encoder_decoder", "tokenizer_class"}


def _check_overrides(cls: type[PretrainedConfig], overrides: dict[str, Any],
                     extra: set[str] = frozenset()) -> None:
    """Reject keys the config class would silently store as unknown attributes."""
    known = {f.name for f in dataclasses.fields(cls)} | _EXTRA_KEYS | set(extra)
    for key in overrides:
        if key not in known:
            raise ValueError(f"unknown override {key!r} for {cls.__name__}; known keys include "
                             f"{sorted(known - _BOOKKEEPING)}")


def _values(table: dict[str, tuple[Any, str]]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, list) else v) for k, (v, _) in table.items()}


def _build(cls: type[PretrainedConfig], fields: dict[str, Any]) -> PretrainedConfig:
    fields = dict(fields)
    theta = fields.pop("rope_theta", None)
    if theta is not None:
        fields["rope_parameters"] = {"rope_type": "default", "rope_theta": float(theta)}
    return cls(**fields)


def tiny_falcon_h1_fields(width: int = TINY_DEFAULT_WIDTH,
                          vocab_size: int = TINY_DEFAULT_VOCAB) -> dict[str, Any]:
    """The tiny hybrid's fields as a function of the one dial `width` (see `TINY_RULES`)."""
    if not isinstance(width, int) or width < 32 or width % 16:
        raise ValueError(f"width must be an int >= 32 and a multiple of 16, got {width!r}")
    attn_head_dim = width // 4
    ssm_head_dim = width // 8
    return {
        "vocab_size": vocab_size,
        "hidden_size": width,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": attn_head_dim,
        "intermediate_size": 4 * width,
        "mamba_d_ssm": width,
        "mamba_n_heads": 8,
        "mamba_d_head": ssm_head_dim,
        "mamba_d_state": 2 * ssm_head_dim,
        "mamba_n_groups": 1,
        "mamba_d_conv": 4,
        "mamba_chunk_size": 32,
        "mamba_conv_bias": True,
        "mamba_proj_bias": False,
        "mamba_rms_norm": False,  # as the 7B preset; True breaks batched decode in transformers 5.17-5.20
        "mamba_norm_before_gate": False,
        "tie_word_embeddings": True,
        "max_position_embeddings": 8192,
        "rope_theta": 1e11,
    }


def falcon_h1_config(preset: str = "tiny", **overrides: Any) -> FalconH1Config:
    """A FalconH1Config for `"falcon-h1r-7b"` (Table 8 + `ASSUMPTIONS_7B`) or `"tiny"` (dial `width=`)."""
    if preset == "falcon-h1r-7b":
        _check_overrides(FalconH1Config, overrides)
        fields = _values(PAPER_7B) | _values(ASSUMPTIONS_7B)
    elif preset == "tiny":
        _check_overrides(FalconH1Config, overrides, extra={"width"})
        width = overrides.pop("width", TINY_DEFAULT_WIDTH)
        fields = tiny_falcon_h1_fields(width, overrides.pop("vocab_size", TINY_DEFAULT_VOCAB))
    else:
        raise ValueError(f"unknown Falcon-H1 preset {preset!r}; known presets: {list(PRESETS_FALCON)}")
    return _build(FalconH1Config, fields | overrides)


def tiny_falcon_h1_config(width: int = TINY_DEFAULT_WIDTH, vocab_size: int = TINY_DEFAULT_VOCAB,
                          **overrides: Any) -> FalconH1Config:
    """Shorthand for `falcon_h1_config("tiny", width=..., vocab_size=...)`."""
    return falcon_h1_config("tiny", width=width, vocab_size=vocab_size, **overrides)


def _transformer_layer_params(hidden: int, heads: int, kv_heads: int, head_dim: int, mlp: int) -> int:
    attn = hidden * head_dim * (2 * heads + 2 * kv_heads)  # q, k, v, o (no bias)
    return attn + 3 * hidden * mlp + 2 * hidden + 2 * head_dim  # + 2 RMSNorms + q_norm, k_norm


def twin_transformer_config(hybrid: FalconH1Config, **overrides: Any) -> Qwen3Config:
    """A Qwen3 config with the hybrid's parameter count and 4x its KV heads (rules in `TWIN_RULES`)."""
    _check_overrides(Qwen3Config, overrides)
    d = hybrid.hidden_size
    heads = hybrid.num_attention_heads
    head_dim = getattr(hybrid, "head_dim", d // heads)
    kv = min(_KV_RATIO_QWEN3_TO_FALCON * hybrid.num_key_value_heads, heads)
    while heads % kv:  # GQA needs kv | heads
        kv -= 1
    embed = hybrid.vocab_size * d * (1 if hybrid.tie_word_embeddings else 2)
    target = count_parameters(hybrid) - embed - d  # non-embedding, less the final norm
    layer_at_ratio = _transformer_layer_params(d, heads, kv, head_dim, _QWEN3_MLP_RATIO * d)
    layers = max(1, round(target / layer_at_ratio))
    fixed = _transformer_layer_params(d, heads, kv, head_dim, 0)
    mlp = max(8, 8 * round((target - layers * fixed) / (3 * d * layers) / 8))
    fields = {
        "vocab_size": hybrid.vocab_size,
        "hidden_size": d,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "head_dim": head_dim,
        "intermediate_size": mlp,
        "tie_word_embeddings": hybrid.tie_word_embeddings,
        "max_position_embeddings": hybrid.max_position_embeddings,
        "rms_norm_eps": hybrid.rms_norm_eps,
        "rope_theta": ASSUMPTIONS_QWEN3_8B["rope_theta"][0],
        "pad_token_id": hybrid.pad_token_id,
        "bos_token_id": hybrid.bos_token_id,
        "eos_token_id": hybrid.eos_token_id,
    }
    return _build(Qwen3Config, fields | overrides)


def transformer_config(preset: str = "tiny", **overrides: Any) -> Qwen3Config:
    """A Qwen3Config: `"qwen3-8b"`, or `"tiny"`, the twin of `falcon_h1_config("tiny", width, vocab_size)`."""
    if preset == "qwen3-8b":
        _check_overrides(Qwen3Config, overrides)
        return _build(Qwen3Config, _values(QWEN3_8B_GIVEN) | _values(ASSUMPTIONS_QWEN3_8B) | overrides)
    if preset == "tiny":
        hybrid_keys = {k: overrides.pop(k) for k in ("width", "vocab_size") if k in overrides}
        return twin_transformer_config(falcon_h1_config("tiny", **hybrid_keys), **overrides)
    raise ValueError(f"unknown Transformer preset {preset!r}; known presets: {list(PRESETS_TRANSFORMER)}")


_ABSENT = "<absent>"


def config_diff(a: PretrainedConfig, b: PretrainedConfig) -> list[tuple[str, Any, Any]]:
    """Fields whose values differ between two configs, as (field, a_value, b_value), sorted by field."""
    da, db = a.to_dict(), b.to_dict()
    rows = []
    for key in sorted((set(da) | set(db)) - _BOOKKEEPING):
        va, vb = da.get(key, _ABSENT), db.get(key, _ABSENT)
        if isinstance(va, float) and isinstance(vb, float) and math.isclose(va, vb):
            continue
        if va != vb:
            rows.append((key, va, vb))
    return rows


__all__ = [
    "ASSUMPTIONS_7B", "ASSUMPTIONS_QWEN3_8B", "PAPER_7B", "PRESETS_FALCON", "PRESETS_TRANSFORMER",
    "QWEN3_8B_GIVEN", "TINY_RULES", "TWIN_RULES", "config_diff", "falcon_h1_config", "tiny_falcon_h1_config",
    "tiny_falcon_h1_fields", "transformer_config", "twin_transformer_config",
]
