"""Which sampler: one spec and one factory for every stage that samples a model (SFT's and RL's evaluations,
the RL Fig. 9 filter, evaluation, DeepConf), HF transformers or vLLM, so a stage never builds one its own way.

`make_backend(spec)` returns (backend, tokenizer). A vLLM backend owns an engine process and its KV cache:
close it (`with backend:` / `backend.close()`) before the next one starts, so one engine lives at a time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from falcon_h1r_lib.paths import resolve_path

BACKENDS = ("hf", "vllm")


@dataclass(frozen=True)
class BackendSpec:
    """What to sample and on which engine; the `vllm` mapping holds `VLLMConfig` fields (tp, dp, ...)."""

    model: str  # a local checkpoint (relative paths from the repo root) or a Hub id
    backend: str = "hf"  # "hf" (transformers, our decode loop) | "vllm"
    revision: str | None = None  # Hub commit of the model (and of its tokenizer)
    tokenizer: str | None = None  # None: the model's own
    dtype: str = "float32"  # torch dtype name; the paper serves bfloat16
    device: str = "cpu"  # hf only
    batch_size: int = 64  # hf only: sequences decoded together
    seed: int = 0  # vLLM engine seed (per-sample seeds come from SamplingConfig)
    vllm: Mapping[str, Any] = field(default_factory=dict)  # VLLMConfig fields besides model/revision/dtype/seed
    progress: bool = False

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"BackendSpec.backend must be one of {BACKENDS}, got {self.backend!r}")
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"BackendSpec.model must be a non-empty path or Hub id, got {self.model!r}")
        if self.backend == "hf" and self.vllm:
            raise ValueError(f"BackendSpec: vllm settings {sorted(self.vllm)} given for the hf backend")
        own = sorted(set(self.vllm) & {"model", "revision", "tokenizer", "tokenizer_revision", "dtype", "seed"})
        if own:
            raise ValueError(f"BackendSpec.vllm repeats {own}: set them on the spec itself")

    def replace(self, **changes: Any) -> BackendSpec:
        return dataclasses.replace(self, **changes)


def path_or_id(name: str) -> str:
    """A local checkpoint (relative paths from the repo root) or, failing that, a Hub id as given.

    Raises FileNotFoundError for a missing absolute or ``runs/...`` path: those are a stage's outputs, never Hub ids."""
    local = resolve_path(name)
    if local.exists():
        return str(local)
    if Path(name).is_absolute() or Path(name).parts[:1] == ("runs",):
        raise FileNotFoundError(f"{name}: no checkpoint at {local} (run the stage that writes it first)")
    return name


def load_tokenizer(spec: BackendSpec):
    """The spec's tokenizer with its chat template (ours if the checkpoint has none)."""
    from falcon_h1r_lib.tokenizer import load_falcon_tokenizer

    return load_falcon_tokenizer(path_or_id(spec.tokenizer or spec.model), revision=spec.revision)


def load_hf(spec: BackendSpec):
    """(model in eval mode on `spec.device`, tokenizer) through transformers."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = getattr(torch, spec.dtype, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"BackendSpec.dtype: {spec.dtype!r} is not a torch dtype")
    model = AutoModelForCausalLM.from_pretrained(path_or_id(spec.model), revision=spec.revision, dtype=dtype)
    return model.to(spec.device).eval(), load_tokenizer(spec)


def vllm_config(spec: BackendSpec):
    """The `VLLMConfig` of a vLLM spec (raises ValueError naming an unknown key)."""
    from falcon_h1r_lib.generation.vllm_backend import VLLMConfig

    tokenizer = path_or_id(spec.tokenizer or spec.model)
    values = {"model": path_or_id(spec.model), "revision": spec.revision, "tokenizer": tokenizer,
              "tokenizer_revision": spec.revision, "dtype": spec.dtype, "seed": spec.seed, **dict(spec.vllm)}
    return VLLMConfig.from_dict(values, source=f"vllm settings of {spec.model!r}")


def make_backend(spec: BackendSpec, model=None, tokenizer=None):
    """(backend, tokenizer) for the spec. An already-loaded HF `model` (and its tokenizer) is reused."""
    if spec.backend == "hf":
        from falcon_h1r_lib.generation.hf_backend import HFBackend

        if model is None:
            model, tokenizer = load_hf(spec)
        elif tokenizer is None:
            tokenizer = load_tokenizer(spec)
        return HFBackend(model.eval(), tokenizer, batch_size=spec.batch_size, progress=spec.progress), tokenizer
    if model is not None:
        raise ValueError("make_backend: a loaded HF model cannot serve the vllm backend; pass the path")
    from falcon_h1r_lib.generation.vllm_backend import VLLMBackend

    return VLLMBackend(vllm_config(spec), progress=spec.progress), tokenizer or load_tokenizer(spec)


def close_backend(backend) -> None:
    """Free a backend's engine (vLLM) now; a no-op for HF backends."""
    close = getattr(backend, "close", None)
    if callable(close):
        close()


__all__ = ["BACKENDS", "BackendSpec", "close_backend", "load_hf", "load_tokenizer", "make_backend", "path_or_id",
           "vllm_config"]
