"""Build seeded models and measure what decoding really holds and costs: cache bytes and decode speed.

Why: the paper's Fig. 8 compares Falcon-H1R-7B and Qwen3-8B throughput as outputs grow; at tiny scale we
measure the same two quantities (cache bytes, decode tokens/s) for the hybrid and its same-size
Transformer twin. Timings are decode-only: the prompt's prefill is run and timed separately, and the
reported tokens/s covers only the `new_tokens` one-token cached forward passes after it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Mapping

import torch
from transformers import AutoModelForCausalLM, PretrainedConfig

from falcon_h1r_lib.models.accounting import cache_bytes_breakdown, count_parameters

TIMING_NOTE = "decode only: prefill of the prompt is excluded from tokens/s (reported apart as prefill_s)"


def build_model(config: PretrainedConfig, seed: int = 0, dtype: torch.dtype = torch.float32,
                device: str | torch.device = "cpu") -> torch.nn.Module:
    """Instantiate the config's causal LM with a seeded init, in eval mode.

    transformers' init draws from torch's global RNG, so it runs inside `fork_rng`: the caller's global
    RNG state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    return model.to(device=device, dtype=dtype).eval()


def _state_tensors(states) -> list[torch.Tensor]:
    if states is None:
        return []
    if isinstance(states, torch.Tensor):
        return [states]
    if isinstance(states, Mapping):
        states = states.values()
    return [s for s in states if isinstance(s, torch.Tensor)]


def _nbytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def measured_cache_bytes(cache) -> dict[str, int]:
    """Bytes held by a real transformers cache, {kv, conv_state, ssm_state}: tensor sizes, not allocator."""
    layers = getattr(cache, "layers", None)
    if layers is None:
        raise TypeError(f"expected a transformers Cache with .layers, got {type(cache).__name__}")
    out = {"kv": 0, "conv_state": 0, "ssm_state": 0}
    for layer in layers:
        out["kv"] += _nbytes(_state_tensors([getattr(layer, "keys", None), getattr(layer, "values", None)]))
        out["conv_state"] += _nbytes(_state_tensors(getattr(layer, "conv_states", None)))
        out["ssm_state"] += _nbytes(_state_tensors(getattr(layer, "recurrent_states", None)))
    return out


def _prompt(model: torch.nn.Module, context_len: int, batch: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.config.vocab_size, (batch, context_len), generator=gen)  # (B, T)
    return ids.to(next(model.parameters()).device)


@torch.inference_mode()
def _prefill_and_decode(model: torch.nn.Module, prompt: torch.Tensor, new_tokens: int):
    """Prefill `prompt`, then `new_tokens` greedy cached steps; returns (prefill_s, decode_s, cache)."""
    t0 = time.perf_counter()
    out = model(input_ids=prompt, use_cache=True, logits_to_keep=1)
    cache = out.past_key_values
    token = out.logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
    t1 = time.perf_counter()
    for _ in range(new_tokens):
        out = model(input_ids=token, past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        token = out.logits[:, -1].argmax(-1, keepdim=True)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, cache


def _check_sizes(context_len: int, batch: int, new_tokens: int, repeats: int) -> None:
    for name, value, low in (("context_len", context_len, 1), ("batch", batch, 1),
                             ("new_tokens", new_tokens, 1), ("repeats", repeats, 1)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def _summary(model: torch.nn.Module, context_len: int, batch: int, new_tokens: int,
             prefill_s: list[float], decode_s: list[float], cache) -> dict:
    median = statistics.median(decode_s)
    measured = measured_cache_bytes(cache)
    dtype = next(model.parameters()).dtype
    predicted = cache_bytes_breakdown(model.config, context_len + new_tokens, batch, kv_dtype=dtype)
    return {
        "model_type": model.config.model_type,
        "params": count_parameters(model.config),
        "context_len": context_len,
        "batch": batch,
        "new_tokens": new_tokens,
        "repeats": len(decode_s),
        "decode_s": decode_s,
        "decode_s_median": median,
        "tokens_per_s": batch * new_tokens / median,
        "ms_per_step": 1e3 * median / new_tokens,
        "prefill_s_median": statistics.median(prefill_s),
        "cache_tokens": context_len + new_tokens,
        "cache_bytes": measured,
        "cache_bytes_total": sum(measured.values()),
        "cache_bytes_predicted": predicted,
        "timing": TIMING_NOTE,
    }


def _warm_up(model: torch.nn.Module, seed: int) -> None:
    """One short untimed run, so one-off costs (kernel fallback lookups, allocator growth) are not timed."""
    _prefill_and_decode(model, _prompt(model, 8, 1, seed), 2)


def decode_throughput(model: torch.nn.Module, context_len: int, batch: int = 1, new_tokens: int = 32,
                      repeats: int = 3, seed: int = 0, warmup: bool = True) -> dict:
    """Prefill a random `context_len`-token prompt, then time `new_tokens` cached greedy decode steps.

    tokens_per_s = batch * new_tokens / median decode time over `repeats` fresh prefill+decode runs.
    """
    _check_sizes(context_len, batch, new_tokens, repeats)
    if warmup:
        _warm_up(model, seed)
    prompt = _prompt(model, context_len, batch, seed)
    prefill_s, decode_s, cache = [], [], None
    for _ in range(repeats):
        p, d, cache = _prefill_and_decode(model, prompt, new_tokens)
        prefill_s.append(p)
        decode_s.append(d)
    return _summary(model, context_len, batch, new_tokens, prefill_s, decode_s, cache)


def compare_decode(models: Mapping[str, torch.nn.Module], context_lens: Iterable[int], batch: int = 1,
                   new_tokens: int = 32, repeats: int = 3, seed: int = 0) -> list[dict]:
    """Decode throughput of several models, interleaved per context length and repeat (side by side).

    Each row also carries `speed_ratio`: its tokens/s over the first model's at the same context length.
    """
    if not models:
        raise ValueError("models is empty")
    names = list(models)
    for name in names:
        _warm_up(models[name], seed)
    rows = []
    for context_len in context_lens:
        _check_sizes(context_len, batch, new_tokens, repeats)
        prompts = {n: _prompt(models[n], context_len, batch, seed) for n in names}
        prefill_s = {n: [] for n in names}
        decode_s = {n: [] for n in names}
        caches = {}
        for _ in range(repeats):
            for n in names:  # interleaved, so drifts in machine load hit every model alike
                p, d, caches[n] = _prefill_and_decode(models[n], prompts[n], new_tokens)
                prefill_s[n].append(p)
                decode_s[n].append(d)
        first = None
        for n in names:
            row = {"model": n} | _summary(models[n], context_len, batch, new_tokens,
                                          prefill_s[n], decode_s[n], caches[n])
            first = first or row["tokens_per_s"]
            row["speed_ratio"] = row["tokens_per_s"] / first
            row["speed_ratio_to"] = names[0]
            rows.append(row)
    return rows
