"""DeepConf early stopping inside vLLM without a fork: a batch-level custom logits processor that forces EOS.

Two routes, both through vLLM's public extension points (pinned vllm 0.33.0, read in its wheel source):
1. **abort** (no engine change): `generation.VLLMBackend.generate(..., stop_hook=ConfidenceStopHook)` runs
   the hook in this process between engine steps and aborts a request at its stop point.
2. **logits processor** (this module): `LLM(logits_processors=[logits_processor_class()])`; requests carry
   `SamplingParams.extra_args = deepconf_extra_args(...)`. In vLLM V1 the raw log-probs are taken before
   any logits processor (`Sampler.forward`: `compute_logprobs(logits)` first, then
   `apply_logits_processors`), and a processor whose `is_argmax_invariant()` is False sees float32 raw
   logits before penalties and temperature. At each step it computes C_i = -mean(top-k log_softmax) for
   every DeepConf row at once, updates a window ring buffer on the device, and where the full window's
   mean is below s it masks every logit but EOS: the sampled token at the stop position becomes EOS.
   No host sync per step (the official processor calls `.item()` per request per step).
The trace then ends in EOS at the stop index, with the same token count as the hook route; DeepConf
classifies it as stopped from its recorded log-probs (`online.OnlineController.add_wave`).
vLLM refuses custom logits processors with speculative decoding. On preemption a request is re-added and
its window restarts, which can only delay a stop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from falcon_h1r_lib.deepconf.confidence import DEFAULT_TOPK

ARG_THRESHOLD = "deepconf_threshold"
ARG_WINDOW = "deepconf_window"
ARG_TOPK = "deepconf_topk"
ARG_EOS = "deepconf_eos_token_id"


def deepconf_extra_args(threshold: float, window: int, eos_token_id: int, topk: int = DEFAULT_TOPK) -> dict:
    """`SamplingParams.extra_args` that switch the processor on for one request (all four required)."""
    if window < 1 or topk < 1 or eos_token_id < 0:
        raise ValueError(f"deepconf_extra_args: window={window}, topk={topk}, eos={eos_token_id} out of range")
    return {ARG_THRESHOLD: float(threshold), ARG_WINDOW: int(window), ARG_TOPK: int(topk),
            ARG_EOS: int(eos_token_id)}


@dataclasses.dataclass
class _Row:
    threshold: float
    window: int
    topk: int
    eos: int
    output_ids: list  # vLLM's live reference to the request's output token ids
    ring: torch.Tensor  # (window,) float64 token confidences, position p at p % window
    total: torch.Tensor  # () float64 running sum of the ring


class ConfidenceStopCore:
    """The processor's logic in plain torch (testable without vllm): state per persistent-batch row,
    updated by vLLM `BatchUpdate`s (added, removed, moved), applied to the (rows, vocab) raw logits."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.rows: dict[int, _Row] = {}

    def is_argmax_invariant(self) -> bool:
        return False  # forcing EOS changes greedy decoding too; also puts it before temperature

    def _new_row(self, params, output_ids: list) -> _Row | None:
        args = getattr(params, "extra_args", None) or {}
        keys = (ARG_THRESHOLD, ARG_WINDOW, ARG_TOPK, ARG_EOS)
        present = [k for k in keys if k in args]
        if not present:
            return None
        if len(present) != len(keys):
            raise ValueError(f"DeepConf logits processor: extra_args has {present}, needs all of {list(keys)}")
        w = int(args[ARG_WINDOW])
        return _Row(float(args[ARG_THRESHOLD]), w, int(args[ARG_TOPK]), int(args[ARG_EOS]), output_ids,
                    torch.zeros(w, dtype=torch.float64, device=self.device),
                    torch.zeros((), dtype=torch.float64, device=self.device))

    def update_state(self, batch_update) -> None:
        """vLLM order (builtin.process_dict_updates): added, then removed, then moved (a->b or a<->b)."""
        if not batch_update:
            return
        for index, params, _prompt_ids, output_ids in batch_update.added:
            row = self._new_row(params, output_ids)
            if row is None:
                self.rows.pop(index, None)
            else:
                self.rows[index] = row
        for index in batch_update.removed:
            self.rows.pop(index, None)
        for a, b, direction in batch_update.moved:
            ra, rb = self.rows.pop(a, None), self.rows.pop(b, None)
            if ra is not None:
                self.rows[b] = ra
            if rb is not None and getattr(direction, "name", str(direction)).endswith("SWAP"):
                self.rows[a] = rb

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        """logits (R, V) raw float32: push C_i of every DeepConf row; force EOS where the window is low."""
        if not self.rows:
            return logits
        for (k,), group in _by(self.rows, lambda r: (r.topk,)).items():
            idx = torch.tensor(group, device=logits.device)
            lp = torch.log_softmax(logits.index_select(0, idx).float(), dim=-1)  # (M, V)
            conf = -lp.topk(k, dim=-1).values.double().mean(-1)  # (M,) C_i, [P] Eq. 2
            for j, r in enumerate(group):
                row = self.rows[r]
                pos = len(row.output_ids)  # this step samples output token number `pos`
                slot = pos % row.window
                row.total += conf[j] - row.ring[slot]
                row.ring[slot] = conf[j]
                if pos + 1 >= row.window:  # the window is full: stop if its mean is below s
                    low = (row.total / row.window) < row.threshold  # () bool, stays on the device
                    eos_only = torch.full_like(logits[r], float("-inf"))
                    eos_only[row.eos] = logits[r, row.eos]
                    logits[r] = torch.where(low, eos_only, logits[r])
        return logits


def _by(rows: dict[int, _Row], key) -> dict[tuple, list[int]]:
    out: dict[tuple, list[int]] = {}
    for r, row in sorted(rows.items()):
        out.setdefault(key(row), []).append(r)
    return out


def logits_processor_class():
    """The vLLM `LogitsProcessor` subclass (imports vllm): pass it as `LLM(logits_processors=[cls])`."""
    from vllm.v1.sample.logits_processor import LogitsProcessor

    class DeepConfStopLogitsProcessor(ConfidenceStopCore, LogitsProcessor):
        """DeepConf online early stop ([P] Alg. 2) as a vLLM V1 batch-level logits processor."""

        def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
            ConfidenceStopCore.__init__(self, device)

    return DeepConfStopLogitsProcessor


class VLLMLogitsStopBackend:
    """A `generation.Backend` on a VLLMBackend whose engine has the processor: `generate(requests,
    sampling, stop_hook)` with an `online.ConfidenceStopHook` sends one n=1 request per planned sample
    (seed = `sample_seed`, so exactly the sample indices of the plan), with the hook's threshold in
    `extra_args`; the engine stops them itself. Without a hook it is the plain backend."""

    def __init__(self, backend):
        self.backend = backend

    def generate(self, requests: Sequence, sampling, stop_hook=None) -> list:
        if stop_hook is None:
            return self.backend.generate(requests, sampling)
        from falcon_h1r_lib.generation.sampling import sample_seed
        from falcon_h1r_lib.generation.vllm_backend import completion_to_trace, sampling_params

        llm = self.backend.llm
        tokenizer = llm.get_tokenizer()
        stop_ids = self.backend._stop_ids(sampling, tokenizer)
        prompts, params, keys = [], [], []
        for r in requests:
            s, lo, hi = stop_hook.plan[r.problem_id]
            prompt = self.backend._prompt(r, tokenizer)
            for i in range(lo, hi):
                p = sampling_params(sampling, r.problem_id, stop_ids, n=1, seed=sample_seed(sampling.seed, r.problem_id, i))
                p.extra_args = deepconf_extra_args(s, stop_hook.window, stop_ids[0], stop_hook.topk)
                prompts.append(prompt)
                params.append(p)
                keys.append((r, i, len(prompt["prompt_token_ids"])))
        outputs = llm.generate(prompts, params, use_tqdm=self.backend.progress)
        traces = []
        for (r, i, n_prompt), out in zip(keys, outputs, strict=True):
            t = completion_to_trace(out.outputs[0], r, sampling.seed, sampling.logprobs_topk, n_prompt, stop_ids)
            t.sample_index = i
            traces.append(t)
        return traces


def vllm_engine_kwargs() -> dict[str, Any]:
    """Extra `vllm.LLM` keywords for the logits-processor route (VLLMConfig.engine_kwargs)."""
    return {"logits_processors": [logits_processor_class()]}


__all__ = ["ARG_EOS", "ARG_THRESHOLD", "ARG_TOPK", "ARG_WINDOW", "ConfidenceStopCore", "VLLMLogitsStopBackend",
           "deepconf_extra_args", "logits_processor_class", "vllm_engine_kwargs"]
