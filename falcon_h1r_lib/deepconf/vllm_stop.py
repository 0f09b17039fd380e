"""DeepConf early stopping inside vLLM without a fork: the logic of a batch-level logits processor that forces EOS.

Two routes, both through vLLM's public extension points (vllm 0.31.0, read in its wheel source):
1. **abort** (no engine change): `generation.VLLMBackend.generate(..., stop_hook=ConfidenceStopHook)` runs
   the hook in this process between engine steps and aborts a request at its stop point.
2. **logits processor**: `LLM(logits_processors=[PROCESSOR_FQCN])` loads `vllm_processor.
   DeepConfStopLogitsProcessor` by name in the spawned engine (a class must be importable there, a closure
   is not picklable); requests opt in with `SamplingParams.extra_args = deepconf_extra_args(...)`.
   vLLM 0.31 loads only the V1 batch-level interface (`vllm.v1.sample.logits_processor.LogitsProcessor`:
   `__init__(vllm_config, device, is_pin_memory)`, `update_state(BatchUpdate)`, `apply(logits)`,
   `is_argmax_invariant()`, `validate_params`); the legacy per-request callables
   (`SamplingParams.logits_processors`) are gone from V1 and survive only wrapped in an
   `AdapterLogitsProcessor` subclass. Raw log-probs are taken before any processor (`Sampler.forward`:
   `compute_logprobs(logits)`, then `apply_logits_processors`), and a processor that is not argmax
   invariant sees float32 logits after only the builtin min-tokens / logit-bias processors (DeepConf sets
   neither) and before penalties and temperature.
At each step `ConfidenceStopCore.apply` computes C_i = -mean(top-k log_softmax) for every DeepConf row
([P] Eq. 2), in the same sequential float64 order as `confidence.token_confidence`, adds it to a running
prefix sum kept in a ring of `window + 1` entries, and where the full window's mean
(S_{i+1} - S_{i+1-n}) / n is below s it masks every logit but EOS: the token sampled at the stop position
is EOS, so the trace has the same length as on the abort route, and DeepConf classifies it as stopped from
its recorded log-probs (`online.OnlineController.add_wave`). No host sync per step.
**Preemption**: vLLM removes a request from the persistent batch when it is preempted or not scheduled
for a step, and re-adds it later with the output so far. Its state is kept per request (keyed by the
identity of its `SamplingParams`, which vLLM's cached request state holds for the request's lifetime;
a weak reference drops the state when the request is gone), so a re-added request resumes its window
exactly. Should a state be missing (another worker, a restart), the window restarts empty at the re-add
position: a stop can then only come later, never earlier.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch

from falcon_h1r_lib.deepconf.confidence import DEFAULT_TOPK

ARG_THRESHOLD = "deepconf_threshold"
ARG_WINDOW = "deepconf_window"
ARG_TOPK = "deepconf_topk"
ARG_EOS = "deepconf_eos_token_id"
ARGS = (ARG_THRESHOLD, ARG_WINDOW, ARG_TOPK, ARG_EOS)
PROCESSOR_FQCN = "falcon_h1r_lib.deepconf.vllm_processor:DeepConfStopLogitsProcessor"


def deepconf_extra_args(threshold: float, window: int, eos_token_id: int, topk: int = DEFAULT_TOPK) -> dict:
    """`SamplingParams.extra_args` that switch the processor on for one request (all four required)."""
    if window < 1 or topk < 1 or eos_token_id < 0:
        raise ValueError(f"deepconf_extra_args: window={window}, topk={topk}, eos={eos_token_id} out of range")
    return {ARG_THRESHOLD: float(threshold), ARG_WINDOW: int(window), ARG_TOPK: int(topk),
            ARG_EOS: int(eos_token_id)}


def parse_extra_args(extra_args: dict | None) -> tuple[float, int, int, int] | None:
    """(s, window, topk, eos) of a request's extra_args, None when DeepConf is off; ValueError when partial."""
    args = extra_args or {}
    present = [k for k in ARGS if k in args]
    if not present:
        return None
    if len(present) != len(ARGS):
        raise ValueError(f"DeepConf logits processor: extra_args has {present}, needs all of {list(ARGS)}")
    threshold, window, topk, eos = (args[k] for k in ARGS)
    if int(window) < 1 or int(topk) < 1 or int(eos) < 0:
        raise ValueError(f"DeepConf logits processor: window={window}, topk={topk}, eos={eos} out of range")
    return float(threshold), int(window), int(topk), int(eos)


@dataclass
class RequestWindow:
    """One request's stopping state: S_p (prefix sums of C_i, float64) for the last window + 1 positions."""

    threshold: float
    window: int
    topk: int
    eos: int
    prefix: torch.Tensor  # (window + 1,) float64; S_p at slot p % (window + 1), S_0 = 0
    start: int = 0  # first position whose C_i this state holds (> 0 only after a lost state, see module doc)
    seen: int = 0  # one past the last position pushed (a resumed request must have exactly this many outputs)

    @classmethod
    def new(cls, threshold: float, window: int, topk: int, eos: int, device, start: int = 0) -> RequestWindow:
        return cls(threshold, window, topk, eos, torch.zeros(window + 1, dtype=torch.float64, device=device),
                   start, start)


class ConfidenceStopCore:
    """The processor's logic in plain torch (testable without vllm): per-request windows mapped to
    persistent-batch rows, updated by vLLM `BatchUpdate`s (added, removed, moved), applied to raw logits."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.rows: dict[int, tuple[RequestWindow, list]] = {}  # batch row -> (state, live output ids)
        self._states: dict[int, tuple[weakref.ref, RequestWindow]] = {}  # id(params) -> (ref, state)

    def is_argmax_invariant(self) -> bool:
        return False  # forcing EOS changes greedy decoding too; also puts it before temperature

    @classmethod
    def validate_params(cls, params) -> None:
        """Reject a partial or out-of-range DeepConf `extra_args` when the request is submitted."""
        parse_extra_args(getattr(params, "extra_args", None))

    def _state_for(self, params, output_ids: list) -> RequestWindow | None:
        parsed = parse_extra_args(getattr(params, "extra_args", None))
        if parsed is None:
            return None
        key = id(params)
        known = self._states.get(key)
        if (known is not None and known[0]() is params and known[1].seen == len(output_ids)
                and all(state is not known[1] for state, _ in self.rows.values())):
            return known[1]  # re-added after a preemption or a skipped step: resume the same window
        # new request, or params shared by several live requests (unseeded n > 1 in one process): fresh window
        state = RequestWindow.new(*parsed, device=self.device, start=len(output_ids))
        if known is None or known[0]() is not params:
            try:
                ref = weakref.ref(params, lambda _, key=key: self._states.pop(key, None))
            except TypeError:  # not weak-referenceable (vLLM's SamplingParams is): no resume for it
                return state
            self._states[key] = (ref, state)
        return state

    def update_state(self, batch_update) -> None:
        """vLLM reuses removed rows for added requests first (`BatchUpdateBuilder.pop_removed`), so added,
        removed, moved is a safe order (as `builtin.process_dict_updates`)."""
        if not batch_update:
            return
        for index, params, _prompt_ids, output_ids in batch_update.added:
            state = self._state_for(params, output_ids)
            if state is None:
                self.rows.pop(index, None)
            else:
                self.rows[index] = (state, output_ids)
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
        by_k: dict[int, list[int]] = {}
        for r, (state, _) in sorted(self.rows.items()):
            by_k.setdefault(state.topk, []).append(r)
        for k, group in by_k.items():
            idx = torch.tensor(group, device=logits.device)
            top = torch.log_softmax(logits.index_select(0, idx).float(), dim=-1).topk(k, dim=-1).values.double()
            total = torch.zeros(len(group), dtype=torch.float64, device=logits.device)
            for j in range(k):  # sequential, as confidence.token_confidence: the same float64 sums
                total += top[:, j]
            conf = -(total / k)  # (M,) C_i, [P] Eq. 2
            for j, r in enumerate(group):
                state, output_ids = self.rows[r]
                pos = len(output_ids)  # this step samples output token number `pos` (idempotent if repeated)
                if pos < state.start:  # should not happen; never stop on a window we cannot see whole
                    continue
                w1 = state.window + 1
                s_next = state.prefix[pos % w1] + conf[j] if pos > state.start else conf[j]
                state.prefix[(pos + 1) % w1] = s_next
                state.seen = pos + 1
                if pos + 1 - state.start >= state.window:  # a full window ends here: stop if its mean is below s
                    s_old = state.prefix[(pos + 1 - state.window) % w1] if pos + 1 - state.window > state.start \
                        else torch.zeros((), dtype=torch.float64, device=logits.device)
                    low = ((s_next - s_old) / state.window) < state.threshold  # () bool, stays on the device
                    eos_only = torch.full_like(logits[r], float("-inf"))
                    eos_only[state.eos] = logits[r, state.eos]
                    logits[r] = torch.where(low, eos_only, logits[r])
        return logits


class VLLMLogitsStopBackend:
    """A `generation.Backend` over a VLLMBackend whose engine loaded `PROCESSOR_FQCN`: `generate(requests,
    sampling, stop_hook)` with an `online.ConfidenceStopHook` tags each planned sample with the hook's
    threshold, window and EOS in `extra_args` and lets the engine stop it; without a hook it is the plain
    backend."""

    def __init__(self, backend):
        self.backend = backend

    def close(self) -> None:
        self.backend.close()

    def generate(self, requests, sampling, stop_hook=None) -> list:
        if stop_hook is None:
            return self.backend.generate(requests, sampling)
        if sampling.min_new_tokens:
            # vLLM's min_tokens masks EOS before our processor keeps only EOS: the row is all -inf and vLLM
            # samples token 0 until min_tokens; neither stop route can stop before min_tokens anyway
            raise ValueError(f"DeepConf logits processor: min_new_tokens={sampling.min_new_tokens} cannot be "
                             "combined with early stopping (set it to 0)")
        eos = self.backend.stop_ids(sampling)
        if not eos:
            raise ValueError("DeepConf logits processor: no stop token to force (tokenizer has no eos)")

        def extra_args(request, sample_index: int):
            s, lo, hi = stop_hook.plan[request.problem_id]
            if not lo <= sample_index < hi:
                raise ValueError(f"{request.problem_id!r}: sample {sample_index} outside its planned wave [{lo}, {hi})")
            return deepconf_extra_args(s, stop_hook.window, eos[0], stop_hook.topk)

        return self.backend.generate(requests, sampling, extra_args=extra_args)


__all__ = ["ARGS", "ARG_EOS", "ARG_THRESHOLD", "ARG_TOPK", "ARG_WINDOW", "PROCESSOR_FQCN", "ConfidenceStopCore",
           "RequestWindow", "VLLMLogitsStopBackend", "deepconf_extra_args", "parse_extra_args"]
