"""Run transformers' FalconH1 on our chunked SSD scan instead of its reference torch fallback.

Without mamba-ssm, `modeling_falcon_h1.FalconH1Mixer` calls the module-level `mamba2_chunk_scan`
(its torch stand-in for `mamba_chunk_scan_combined`) for training and prefill; the mixer looks the name
up at call time, so rebinding it swaps the scan. Ours computes the same function (parity-tested, logits
equal within float32 rounding) and is faster on CPU (see `kernels.bench`). When mamba-ssm imports,
transformers already uses its fused kernel and we leave it alone.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util

import torch
import torch.nn.functional as F

from .ssd import ssd_chunked_core, validate_sequence

__all__ = ["falcon_h1_chunk_scan", "falcon_h1_patched", "patch_falcon_h1", "transformers_chunk_scan",
           "unpatch_falcon_h1"]

_MODULE = "transformers.models.falcon_h1.modeling_falcon_h1"
_NAME = "mamba2_chunk_scan"
_original = None  # transformers' function while patched


def falcon_h1_chunk_scan(
    hidden_states,
    dt,
    A,
    B,
    C,
    chunk_size,
    D=None,
    dt_bias=None,
    initial_states=None,
    dt_softplus=False,
    dt_limit=(0.0, float("inf")),
    return_final_states=False,
    z=None,
    seq_idx=None,
    cu_seqlens=None,
    **kwargs,
):
    """Drop-in for transformers' `mamba2_chunk_scan` (same arguments and float32 outputs) on `ssd_chunked`."""
    if seq_idx is not None or cu_seqlens is not None:
        raise ValueError(
            "falcon_h1_chunk_scan: `seq_idx`/`cu_seqlens` (packed sequences) are not supported by the torch "
            "scan; install mamba_ssm to train on packed sequences"
        )
    # Δ preprocessing exactly as transformers does it, in dt's own dtype: bias, softplus, clamp.
    if dt_bias is not None:
        dt = dt + dt_bias.to(dt.dtype)
    if dt_softplus:
        dt = F.softplus(dt)
    dt = torch.clamp(dt, min=dt_limit[0], max=dt_limit[1])
    dims = validate_sequence("falcon_h1_chunk_scan", hidden_states, dt, A, B, C, D, initial_states)
    y, final_state = ssd_chunked_core(hidden_states, dt, A, B, C, int(chunk_size), D, initial_states, dims)
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return (y, final_state) if return_final_states else y


def patch_falcon_h1(force: bool = False) -> bool:
    """Rebind FalconH1's chunk scan to ours; returns whether it is patched. No-op when mamba-ssm is
    installed (transformers then uses the fused kernel) unless `force`."""
    global _original
    module = importlib.import_module(_MODULE)
    if getattr(module, _NAME) is falcon_h1_chunk_scan:
        return True
    if importlib.util.find_spec("mamba_ssm") is not None and not force:
        return False
    _original = getattr(module, _NAME)
    setattr(module, _NAME, falcon_h1_chunk_scan)
    return True


def transformers_chunk_scan():
    """transformers' own FalconH1 chunk scan, patched or not: the function ``patch_falcon_h1`` replaced while ours is
    in, else the module's current one. Raises ImportError when transformers has no FalconH1."""
    return _original if _original is not None else getattr(importlib.import_module(_MODULE), _NAME)


def unpatch_falcon_h1() -> None:
    """Restore transformers' own chunk scan (no-op when not patched)."""
    global _original
    if _original is None:
        return
    setattr(importlib.import_module(_MODULE), _NAME, _original)
    _original = None


@contextlib.contextmanager
def falcon_h1_patched(force: bool = False):
    """`with falcon_h1_patched(): ...` runs FalconH1 on our scan and restores transformers' after."""
    was_patched = getattr(importlib.import_module(_MODULE), _NAME) is falcon_h1_chunk_scan
    patched = patch_falcon_h1(force=force)
    try:
        yield patched
    finally:
        if patched and not was_patched:
            unpatch_falcon_h1()
