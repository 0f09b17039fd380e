"""Mamba2 SSD kernels: sequential reference, chunked scan, one-step decode; optional mamba-ssm dispatch
and a patch that runs transformers' FalconH1 on our chunked scan. Knows nothing of our models."""

from .dispatch import quiet_cpu_fallback_notices, ssd_chunked_auto
from .ssd import segsum, ssd_chunked, ssd_sequential, ssd_step
from .transformers_patch import falcon_h1_chunk_scan, falcon_h1_patched, patch_falcon_h1, unpatch_falcon_h1

__all__ = [
    "falcon_h1_chunk_scan",
    "falcon_h1_patched",
    "patch_falcon_h1",
    "quiet_cpu_fallback_notices",
    "segsum",
    "ssd_chunked",
    "ssd_chunked_auto",
    "ssd_sequential",
    "ssd_step",
    "unpatch_falcon_h1",
]

quiet_cpu_fallback_notices()  # every user of these kernels runs FalconH1 on CPU or on CUDA: see CPUFallbackNotices
