"""Side-by-side tables of the architecture notebook: preset vs paper Table 8, cache memory vs context.

Pure functions of configs and the quoted numbers, so every number in notebook 01 is either computed
here from a config or measured (``measure``), and the paper's value sits beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch
from transformers import PretrainedConfig

from falcon_h1r_lib.models.accounting import cache_bytes_breakdown, count_parameters

# paper Table 8 key (data_manifests/paper_results.yaml) -> (FalconH1Config field, how to read it)
TABLE8_FIELDS: dict[str, str] = {
    "layers": "num_hidden_layers",
    "d_model": "hidden_size",
    "vocab_size": "vocab_size",
    "attention_heads_q": "num_attention_heads",
    "attention_heads_kv": "num_key_value_heads",
    "ssm_heads": "mamba_n_heads",
    "head_dim_attention": "head_dim",
    "head_dim_ssm": "mamba_d_head",
    "d_state": "mamba_d_state",
}


def table8_comparison(config: PretrainedConfig, table8: Mapping[str, Any]) -> pd.DataFrame:
    """One row per Table 8 entry: the paper's value, the preset's, and whether they agree."""
    rows = []
    for key, field in TABLE8_FIELDS.items():
        if key not in table8:
            raise KeyError(f"paper Table 8 has no {key!r}; have {sorted(table8)}")
        ours = getattr(config, field)
        rows.append({"quantity": key, "config field": field, "paper (Table 8)": table8[key],
                     "preset": ours, "match": ours == table8[key]})
    params = count_parameters(config)
    paper_params = float(table8["total_parameters_billions"]) * 1e9
    rows.append({"quantity": "total_parameters", "config field": "count_parameters(config)",
                 "paper (Table 8)": f"{paper_params / 1e9:.2f}B", "preset": f"{params / 1e9:.4f}B",
                 "match": abs(params - paper_params) / paper_params <= 0.005})
    return pd.DataFrame(rows)


def cache_memory_table(configs: Mapping[str, PretrainedConfig], context_lens, batch: int = 1,
                       kv_dtype: torch.dtype = torch.bfloat16) -> pd.DataFrame:
    """Analytic cache bytes (KV + conv + SSM state) per model and context length, one sequence by default."""
    rows = []
    for name, cfg in configs.items():
        for length in context_lens:
            parts = cache_bytes_breakdown(cfg, int(length), batch, kv_dtype=kv_dtype)
            total = sum(parts.values())
            rows.append({"model": name, "context_len": int(length), **{f"{k}_bytes": v for k, v in parts.items()},
                         "total_bytes": total, "total_GiB": total / 2**30})
    return pd.DataFrame(rows)


def kv_bytes_per_token(config: PretrainedConfig, kv_dtype: torch.dtype = torch.bfloat16) -> int:
    """KV-cache bytes added by one more token of one sequence (the slope of the memory curve)."""
    one = cache_bytes_breakdown(config, 1, 1, kv_dtype=kv_dtype)
    two = cache_bytes_breakdown(config, 2, 1, kv_dtype=kv_dtype)
    return sum(two.values()) - sum(one.values())


def constant_state_bytes(config: PretrainedConfig, kv_dtype: torch.dtype = torch.bfloat16) -> int:
    """Per-sequence bytes that do not grow with context (conv + SSM state; 0 for a Transformer)."""
    one = cache_bytes_breakdown(config, 1, 1, kv_dtype=kv_dtype)
    return sum(one.values()) - kv_bytes_per_token(config, kv_dtype)
