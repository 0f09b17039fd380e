"""Parameter and decode-cache accounting, computed from a config alone (no weights are built).

Why: the paper's efficiency claim (Fig. 8) rests on two numbers, the per-token KV cache (2 KV heads
in Falcon-H1R-7B vs 8 in Qwen3-8B) and the constant-size Mamba state. Both follow from the config; the
tests check them against `sum(p.numel())` and against the bytes of a real `transformers` cache.

Cache layout in transformers 5.17 (`DynamicCache`; FalconH1 layers are
`LinearAttentionAndFullAttentionLayer`, Qwen3/Llama layers `DynamicLayer`), per layer:
    keys, values       (B, n_kv, T, head_dim)        grown by concatenation each step, not preallocated
    conv_states[0]     (B, d_ssm + 2*G*N, d_conv)    fixed size, model dtype
    recurrent_states[0] (B, H, P, N)                  fixed size, float32 (the SSD scan runs in float32)
"""

from __future__ import annotations

import torch
from transformers import PretrainedConfig

SUPPORTED_MODEL_TYPES = ("falcon_h1", "qwen3", "llama")


def _model_type(config: PretrainedConfig) -> str:
    mt = getattr(config, "model_type", None)
    if mt not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"config.model_type={mt!r} is not supported; known: {list(SUPPORTED_MODEL_TYPES)}")
    return mt


def _head_dim(config: PretrainedConfig) -> int:
    hd = getattr(config, "head_dim", None)  # FalconH1 declares none; same fallback as transformers
    return int(hd) if hd else config.hidden_size // config.num_attention_heads


def _linear(n_in: int, n_out: int, bias: bool) -> int:
    return n_in * n_out + (n_out if bias else 0)


def mamba_dims(config: PretrainedConfig) -> dict[str, int]:
    """Mamba2 sizes of a FalconH1 config: d_ssm, H, P, N, G, conv channels (d_ssm + 2GN), d_conv."""
    d_ssm = config.mamba_d_ssm
    if d_ssm is None:
        d_ssm = int(config.mamba_expand * config.hidden_size)
    groups, state = config.mamba_n_groups, config.mamba_d_state
    return {"d_ssm": d_ssm, "H": config.mamba_n_heads, "P": config.mamba_d_head, "N": state, "G": groups,
            "conv_dim": d_ssm + 2 * groups * state, "d_conv": config.mamba_d_conv}


def parameter_breakdown(config: PretrainedConfig) -> dict[str, int]:
    """Parameters by part: embedding, lm_head (0 when tied), attention, mamba, mlp, norms (all layers)."""
    mt = _model_type(config)
    d, layers, hd = config.hidden_size, config.num_hidden_layers, _head_dim(config)
    nh, nkv = config.num_attention_heads, config.num_key_value_heads
    ab = bool(getattr(config, "attention_bias", False))
    attn = (_linear(d, nh * hd, ab) + 2 * _linear(d, nkv * hd, ab)  # q_proj, k_proj, v_proj
            + _linear(nh * hd, d, ab))  # o_proj
    if mt == "qwen3":
        attn += 2 * hd  # q_norm, k_norm over the head dim
    mlp_bias = bool(getattr(config, "mlp_bias", False)) and mt != "qwen3"  # Qwen3's MLP has no bias switch
    inter = config.intermediate_size
    mlp = 2 * _linear(d, inter, mlp_bias) + _linear(inter, d, mlp_bias)  # gate_proj, up_proj, down_proj
    mamba = 0
    if mt == "falcon_h1":
        m = mamba_dims(config)
        proj = m["d_ssm"] + m["conv_dim"] + m["H"]  # in_proj -> [z | xBC | dt]
        mamba = (_linear(d, proj, config.mamba_proj_bias)
                 + m["conv_dim"] * m["d_conv"]  # depthwise conv1d weight
                 + (m["conv_dim"] if config.mamba_conv_bias else 0)
                 + 3 * m["H"]  # dt_bias, A_log, D
                 + (m["d_ssm"] if config.mamba_rms_norm else 0)  # gated RMSNorm weight
                 + _linear(m["d_ssm"], d, config.projectors_bias))  # out_proj
    vocab = config.vocab_size * d
    return {
        "embedding": vocab,
        "lm_head": 0 if config.tie_word_embeddings else vocab,
        "attention": layers * attn,
        "mamba": layers * mamba,
        "mlp": layers * mlp,
        "norms": layers * 2 * d + d,  # input + pre-MLP RMSNorm per layer, final RMSNorm
    }


def count_parameters(config: PretrainedConfig) -> int:
    """Total parameters of the model the config builds; equals `sum(p.numel())` (tied counted once)."""
    return sum(parameter_breakdown(config).values())


def _itemsize(dtype: torch.dtype) -> int:
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"expected a torch.dtype, got {dtype!r}")
    return dtype.itemsize


def cache_bytes_breakdown(config: PretrainedConfig, context_len: int, batch: int = 1,
                          kv_dtype: torch.dtype = torch.bfloat16, conv_dtype: torch.dtype | None = None,
                          ssm_state_dtype: torch.dtype = torch.float32) -> dict[str, int]:
    """Decode-cache bytes {kv, conv_state, ssm_state} for `batch` sequences holding `context_len` tokens.

    conv_dtype defaults to kv_dtype (both are the model dtype); the SSM state is float32 in transformers.
    """
    mt = _model_type(config)
    if not isinstance(context_len, int) or context_len < 0:
        raise ValueError(f"context_len must be an int >= 0, got {context_len!r}")
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an int >= 1, got {batch!r}")
    if getattr(config, "use_sliding_window", False):
        raise ValueError("config.use_sliding_window=True is not supported: sliding layers keep a window")
    layers = config.num_hidden_layers
    # keys + values, (B, n_kv, T, head_dim) each, per layer
    kv = layers * 2 * batch * config.num_key_value_heads * context_len * _head_dim(config)
    kv *= _itemsize(kv_dtype)
    conv = ssm = 0
    if mt == "falcon_h1":
        m = mamba_dims(config)
        conv = layers * batch * m["conv_dim"] * m["d_conv"] * _itemsize(conv_dtype or kv_dtype)
        ssm = layers * batch * m["H"] * m["P"] * m["N"] * _itemsize(ssm_state_dtype)
    return {"kv": kv, "conv_state": conv, "ssm_state": ssm}


def cache_bytes(config: PretrainedConfig, context_len: int, batch: int = 1,
                kv_dtype: torch.dtype = torch.bfloat16, conv_dtype: torch.dtype | None = None,
                ssm_state_dtype: torch.dtype = torch.float32) -> int:
    """Total decode-cache bytes: KV + conv state + SSM state (KV only for a Transformer)."""
    parts = cache_bytes_breakdown(config, context_len, batch, kv_dtype, conv_dtype, ssm_state_dtype)
    return sum(parts.values())
