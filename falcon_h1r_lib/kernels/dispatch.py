"""One interface over the chunked SSD scan: mamba-ssm's fused Triton kernel on CUDA when it is installed,
our plain-PyTorch `ssd_chunked` everywhere else.

mamba-ssm is imported lazily and only for CUDA tensors: on a CPU machine it must never be touched
(its Triton kernels cannot run there, and it cannot be built without nvcc).
"""

from __future__ import annotations

import functools
import importlib
import logging

from .ssd import ssd_chunked, validate_sequence

__all__ = ["BACKENDS", "CPUFallbackNotices", "mamba_ssm_chunk_scan", "quiet_cpu_fallback_notices", "ssd_chunked_auto"]

FALLBACK_NOTICE = "is falling back to its reference PyTorch implementation"  # transformers' hub_kernels wording
HUB_KERNELS_LOGGER = "transformers.integrations.hub_kernels"


class CPUFallbackNotices(logging.Filter):
    """Drops transformers' "`causal_conv1d_fn` is falling back to its reference PyTorch implementation" notices
    (``transformers/integrations/hub_kernels.py``) on a machine without CUDA: there the fused kernels (mamba-ssm,
    causal-conv1d) cannot exist, the reference path is the CPU path by design, and the chunk-scan notice is wrong
    besides once `transformers_patch` runs ours. With CUDA the notice passes: a GPU without the kernels is slow."""

    def filter(self, record: logging.LogRecord) -> bool:
        if FALLBACK_NOTICE not in record.getMessage():
            return True
        import torch

        return torch.cuda.is_available()


def quiet_cpu_fallback_notices() -> None:
    """Attach `CPUFallbackNotices` to transformers' hub-kernels logger (once)."""
    logger = logging.getLogger(HUB_KERNELS_LOGGER)
    if not any(isinstance(f, CPUFallbackNotices) for f in logger.filters):
        logger.addFilter(CPUFallbackNotices())

BACKENDS = ("auto", "torch", "mamba_ssm")


@functools.lru_cache(maxsize=1)
def mamba_ssm_chunk_scan():
    """mamba-ssm's `mamba_chunk_scan_combined`, or None when mamba-ssm does not import."""
    try:
        module = importlib.import_module("mamba_ssm.ops.triton.ssd_combined")
    except ImportError:
        return None
    return getattr(module, "mamba_chunk_scan_combined", None)


def ssd_chunked_auto(x, dt, A, B, C, chunk_size, D=None, initial_state=None, backend: str = "auto"):
    """`ssd_chunked` with the same contract, on mamba-ssm's kernel when `backend` allows and it fits.

    backend: "auto" (mamba-ssm iff it imports and `x` is on CUDA), "torch" (always ours) or
    "mamba_ssm" (required; raises when unavailable or on CPU). Returns (y in x.dtype, float32 state).
    """
    if backend not in BACKENDS:
        raise ValueError(f"ssd_chunked_auto: `backend` expected one of {BACKENDS}, got {backend!r}")
    dims = validate_sequence("ssd_chunked_auto", x, dt, A, B, C, D, initial_state)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"ssd_chunked_auto: `chunk_size` expected a positive int, got {chunk_size!r}")
    if backend == "torch":
        return ssd_chunked(x, dt, A, B, C, chunk_size, D=D, initial_state=initial_state)
    kernel = mamba_ssm_chunk_scan() if x.is_cuda else None
    if kernel is None:
        if backend == "mamba_ssm":
            why = "`x` is not on CUDA" if not x.is_cuda else "mamba_ssm does not import"
            raise RuntimeError(f"ssd_chunked_auto: backend='mamba_ssm' requested but {why}")
        return ssd_chunked(x, dt, A, B, C, chunk_size, D=D, initial_state=initial_state)
    if dims[1] == 0:  # the Triton kernel has no zero-length launch; ours defines it
        return ssd_chunked(x, dt, A, B, C, chunk_size, D=D, initial_state=initial_state)
    y, final_state = kernel(
        x.contiguous(),
        dt.contiguous(),
        A.float(),
        B.contiguous(),
        C.contiguous(),
        chunk_size,
        D=None if D is None else D.float(),
        initial_states=None if initial_state is None else initial_state.float().contiguous(),
        return_final_states=True,
    )
    return y.to(x.dtype), final_state.float()
