"""vLLM backend (GPU clusters): the same `generate(requests, sampling, stop_hook) -> list[Trace]`.

vllm is imported lazily (it cannot be installed beside the CPU torch), so this module imports anywhere
and `request_output_to_traces`, the conversion of vLLM outputs to Traces, is tested on CPU with objects
shaped like vLLM's `RequestOutput` / `CompletionOutput` / `Logprob`.

Facts relied on (read in the vllm 0.33.0 wheel's source):
- `SamplingParams(logprobs=k)` returns per position a dict {token_id: Logprob(logprob, rank)} holding the
  top-k tokens plus the sampled one (k or k + 1 entries); with the default `logprobs_mode="raw_logprobs"`
  they come from the logits before temperature / top-p, as our traces require (we set it explicitly).
- A request with `n > 1` and `seed=s` fans out into children seeded `s + i` (v1 `parallel_sampling`), which
  is `sampling.sample_seed`: sample i of a problem has the same seed as in the HF backend.
- The stop token is the last entry of `token_ids` (v1 `check_stop` appends, then stops).
- `LLM(data_parallel_size > 1)` is refused in a single process: data parallelism here is one process per
  replica (`data_parallel_rank` of `data_parallel_size`), each taking every `size`-th request.
- The stop hook runs in this process between engine steps (`LLMEngine.add_request` / `step` /
  `abort_request`, DELTA outputs): the same StopHook callable as the HF backend, at the cost of a Python
  round trip per step. (vLLM's in-engine logits processors would run the hook in the engine process,
  where a Python closure cannot follow it.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
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
    request_seed,
    sample_seed,
)
from falcon_h1r_lib.generation.traces import Trace


@dataclass(frozen=True)
class VLLMConfig:
    """Engine settings from the full profile; every field maps onto a `vllm.LLM` argument."""

    model: str  # Hub id or local path, e.g. "tiiuae/Falcon-H1R-7B"
    revision: str | None = None  # pin the Hub revision (data_manifests/full)
    tokenizer: str | None = None
    tokenizer_revision: str | None = None
    dtype: str = "bfloat16"  # the paper serves bf16
    tensor_parallel_size: int = 1  # GPUs per replica
    pipeline_parallel_size: int = 1
    data_parallel_size: int = 1  # replicas, one process each
    data_parallel_rank: int = 0  # this process's replica
    max_model_len: int | None = None  # None: the model's (Falcon-H1R 262144)
    gpu_memory_utilization: float = 0.9
    enable_prefix_caching: bool = True  # the n samples of a prompt share its prefill
    max_num_seqs: int | None = None
    enforce_eager: bool = False
    trust_remote_code: bool = False
    seed: int = 0  # engine seed; per-sample seeds come from SamplingConfig
    engine_kwargs: dict[str, Any] = field(default_factory=dict)  # any other `vllm.LLM` keyword

    def __post_init__(self) -> None:
        for name in ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"VLLMConfig.{name} must be an int >= 1, got {value!r}")
        if not 0 <= self.data_parallel_rank < self.data_parallel_size:
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
        return cls(**dict(values))


def shard_requests(requests: Sequence[GenerationRequest], rank: int, size: int) -> list[GenerationRequest]:
    """This replica's share of the requests: every `size`-th one from `rank`."""
    return list(requests)[rank::size]


def _position_logprobs(position: Mapping[int, Any], token_id: int, k: int, where: str
                       ) -> tuple[float, list[int], list[float]]:
    """(sampled token's log-prob, top-k ids, top-k log-probs) of one vLLM per-position logprob dict."""
    if token_id not in position:
        raise ValueError(f"{where}: sampled token {token_id} missing from the logprob entries")
    ranked = sorted(((lp.rank if lp.rank is not None else 0, -lp.logprob, tid) for tid, lp in position.items()
                     if lp.rank is None or lp.rank <= k))
    if len(ranked) < k:
        raise ValueError(f"{where}: {len(ranked)} top-ranked entries, expected k={k}")
    top = ranked[:k]
    return (float(position[token_id].logprob), [tid for _, _, tid in top],
            [float(position[tid].logprob) for _, _, tid in top])


def completion_to_trace(completion: Any, request: GenerationRequest, seed: int, k: int,
                        n_prompt_tokens: int, stop_ids: Sequence[int] = (), n_keep: int | None = None,
                        finish_reason: str | None = None, decode: Callable[[list[int]], str] | None = None,
                        ) -> Trace:
    """One vLLM `CompletionOutput` (index = sample index) -> Trace.

    `n_keep` truncates (a stop hook ended the sequence there; text then comes from `decode`). Finish
    reasons: "length" -> length; "stop" on eos or a stop token -> eos; a stop string, "abort" -> stopped.
    """
    token_ids = [int(t) for t in completion.token_ids]
    where = f"request {request.problem_id!r} sample {completion.index}"
    if n_keep is not None:
        token_ids = token_ids[:n_keep]
    logprobs = completion.logprobs
    if logprobs is None and token_ids:
        raise ValueError(f"{where}: no logprobs: SamplingParams(logprobs=k) was not set")
    token_lp, topk_ids, topk_lp = [], [], []
    for j, tid in enumerate(token_ids):
        lp, ids, lps = _position_logprobs(logprobs[j], tid, k, f"{where} position {j}")
        token_lp.append(lp)
        topk_ids.append(ids)
        topk_lp.append(lps)
    if finish_reason is None:
        finish_reason = _finish_reason(completion, token_ids, stop_ids, where)
    text = completion.text if decode is None else decode(token_ids)
    n = len(token_ids)
    return Trace(problem_id=request.problem_id, sample_index=int(completion.index), seed=seed,
                 prompt=request.prompt, completion=text, token_ids=np.array(token_ids, dtype=np.int32),
                 token_logprobs=np.array(token_lp, dtype=np.float32),
                 topk_ids=np.array(topk_ids, dtype=np.int32).reshape(n, k),
                 topk_logprobs=np.array(topk_lp, dtype=np.float32).reshape(n, k),
                 finish_reason=finish_reason, n_prompt_tokens=n_prompt_tokens,
                 extra={"vllm_finish_reason": completion.finish_reason,
                        "vllm_stop_reason": completion.stop_reason})


def _finish_reason(completion: Any, token_ids: list[int], stop_ids: Sequence[int], where: str) -> str:
    reason, stop_reason = completion.finish_reason, completion.stop_reason
    if reason == "length":
        return "length"
    if reason == "stop":
        if stop_reason is None or isinstance(stop_reason, int) or (token_ids and token_ids[-1] in stop_ids):
            return "eos"
        return "stopped"  # a stop string
    if reason == "abort":
        return "stopped"
    raise ValueError(f"{where}: unfinished or unknown vLLM finish_reason {reason!r}")


def request_output_to_traces(output: Any, request: GenerationRequest, sampling: SamplingConfig,
                             stop_ids: Sequence[int] = ()) -> list[Trace]:
    """A finished vLLM `RequestOutput` (n completions) -> n Traces ordered by sample index."""
    if not output.finished:
        raise ValueError(f"request {request.problem_id!r}: vLLM output is not finished")
    if len(output.outputs) != sampling.n:
        raise ValueError(f"request {request.problem_id!r}: {len(output.outputs)} completions, expected n={sampling.n}")
    n_prompt = len(output.prompt_token_ids or ())
    return [completion_to_trace(c, request, sampling.seed, sampling.logprobs_topk, n_prompt, stop_ids)
            for c in sorted(output.outputs, key=lambda c: c.index)]


def sampling_params(sampling: SamplingConfig, problem_id: str, stop_ids: Sequence[int] = (), n: int | None = None,
                    seed: int | None = None, delta: bool = False):
    """`vllm.SamplingParams` for one request: seed = request_seed(seed, problem_id), children seed + i."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    return SamplingParams(
        n=sampling.n if n is None else n, temperature=float(sampling.temperature), top_p=float(sampling.top_p),
        max_tokens=sampling.max_new_tokens, min_tokens=sampling.min_new_tokens,
        seed=request_seed(sampling.seed, problem_id) if seed is None else seed,
        logprobs=sampling.logprobs_topk, stop_token_ids=list(stop_ids), skip_special_tokens=True,
        output_kind=RequestOutputKind.DELTA if delta else RequestOutputKind.FINAL_ONLY,
    )


class VLLMBackend:
    """`generate(requests, sampling, stop_hook) -> list[Trace]` on `vllm.LLM` (built lazily from the config)."""

    def __init__(self, config: VLLMConfig, llm: Any = None, progress: bool = True):
        self.config = config
        self._llm = llm
        self.progress = progress

    @property
    def llm(self):
        if self._llm is None:
            from vllm import LLM  # lazy: vllm exists only on GPU machines

            self._llm = LLM(**self.config.llm_kwargs())
        return self._llm

    def _stop_ids(self, sampling: SamplingConfig, tokenizer) -> list[int]:
        if sampling.stop_token_ids is not None:
            return list(sampling.stop_token_ids)
        eos = tokenizer.eos_token_id
        return [] if eos is None else [eos]

    def _prompt(self, request: GenerationRequest, tokenizer) -> dict:
        ids = (list(request.prompt_token_ids) if request.prompt_token_ids is not None
               else tokenizer(request.prompt, add_special_tokens=False)["input_ids"])
        return {"prompt_token_ids": ids, "prompt": request.prompt}  # a vllm TokensPrompt

    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig,
                 stop_hook: StopHook | None = None) -> list[Trace]:
        """Traces of this replica's shard, by request then sample (all requests when data_parallel_size=1)."""
        check_requests(requests)
        requests = shard_requests(requests, self.config.data_parallel_rank, self.config.data_parallel_size)
        tokenizer = self.llm.get_tokenizer()
        stop_ids = self._stop_ids(sampling, tokenizer)
        prompts = [self._prompt(r, tokenizer) for r in requests]
        if stop_hook is not None:
            return self._generate_with_hook(requests, prompts, sampling, stop_ids, stop_hook, tokenizer)
        params = [sampling_params(sampling, r.problem_id, stop_ids) for r in requests]
        outputs = self.llm.generate(prompts, params, use_tqdm=self.progress)
        traces = []
        for request, output in zip(requests, outputs, strict=True):
            traces += request_output_to_traces(output, request, sampling, stop_ids)
        return traces

    def _generate_with_hook(self, requests, prompts, sampling, stop_ids, stop_hook, tokenizer) -> list[Trace]:
        """Engine-step loop: one n=1 request per sample (seed = sample_seed), aborted when the hook says so."""
        from tqdm.auto import tqdm

        engine = self.llm.llm_engine
        state: dict[str, dict] = {}
        for r_idx, (request, prompt) in enumerate(zip(requests, prompts, strict=True)):
            for i in range(sampling.n):
                rid = f"{request.problem_id}\x1f{i}"
                params = sampling_params(sampling, request.problem_id, stop_ids, n=1,
                                         seed=sample_seed(sampling.seed, request.problem_id, i), delta=True)
                engine.add_request(rid, prompt, params)
                state[rid] = {"r": r_idx, "i": i, "ids": [], "lps": [], "last": None, "reason": None,
                              "n_prompt": len(prompt["prompt_token_ids"]), "done": False}
        bar = tqdm(total=len(state), desc="generate", unit="seq", disable=not self.progress)
        k = sampling.logprobs_topk
        while engine.has_unfinished_requests():
            new: list[tuple[str, int]] = []  # (rid, position) of tokens to show the hook
            for out in engine.step():
                st = state.get(out.request_id)
                if st is None or st["done"]:
                    continue
                c = out.outputs[0]
                for tid, lp in zip(c.token_ids, c.logprobs or [None] * len(c.token_ids), strict=True):
                    st["ids"].append(int(tid))
                    st["lps"].append(lp)
                    new.append((out.request_id, len(st["ids"]) - 1))
                st["last"] = c
                if out.finished:
                    st["final_len"] = len(st["ids"])
            to_abort = self._run_hook(stop_hook, new, state, requests, k, set(stop_ids))
            for rid, st in state.items():
                if not st["done"] and ("final_len" in st or rid in to_abort):
                    st["done"] = True
                    bar.update(1)
            if to_abort:
                engine.abort_request(sorted(to_abort))
        bar.close()
        traces = []
        for st in state.values():
            completion = _Completion(st["i"], st["ids"], st["lps"], st["last"])
            n_keep = st.get("stop_at")
            traces.append(completion_to_trace(
                completion, requests[st["r"]], sampling.seed, k, st["n_prompt"], stop_ids, n_keep=n_keep,
                finish_reason="stopped" if n_keep is not None else None,
                decode=lambda ids: tokenizer.decode(ids, skip_special_tokens=True)))
        return traces

    @staticmethod
    def _run_hook(stop_hook: StopHook, new: list[tuple[str, int]], state: dict, requests, k: int,
                  stop_ids: set[int]) -> set[str]:
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
            rows = []
            for rid, pos in items:
                st = state[rid]
                lp, ids, lps = _position_logprobs(st["lps"][pos], st["ids"][pos], k, f"{rid!r} position {pos}")
                rows.append((st, pos, lp, ids, lps))
            step = DecodeStep(
                problem_ids=[requests[st["r"]].problem_id for st, *_ in rows],
                sample_indices=[st["i"] for st, *_ in rows],
                request_indices=[st["r"] for st, *_ in rows],
                n_generated=[pos + 1 for _, pos, *_ in rows],
                token_ids=torch.tensor([st["ids"][pos] for st, pos, *_ in rows]),
                token_logprobs=torch.tensor([lp for _, _, lp, _, _ in rows], dtype=torch.float32),
                topk_ids=torch.tensor([ids for *_, ids, _ in rows], dtype=torch.int32).reshape(len(rows), k),
                topk_logprobs=torch.tensor([lps for *_, lps in rows], dtype=torch.float32).reshape(len(rows), k),
                history_fn=lambda row, rows=rows: torch.tensor(
                    [_position_logprobs(rows[row][0]["lps"][j], rows[row][0]["ids"][j], k, "history")[2]
                     for j in range(rows[row][1] + 1)], dtype=torch.float32).reshape(-1, k),
            )
            answer = stop_hook(step)
            if answer is None:
                continue
            flags = torch.as_tensor(answer, dtype=torch.bool).reshape(-1).tolist()
            if len(flags) != len(rows):
                raise ValueError(f"stop_hook returned {len(flags)} flags for {len(rows)} running sequences")
            for (rid, pos), (st, *_), stop in zip(items, rows, flags, strict=True):
                if stop and st["ids"][pos] not in stop_ids:  # a stop token ends as "eos" whatever the hook says
                    st["stop_at"] = pos + 1
                    to_abort.add(rid)
        return to_abort


@dataclass
class _Completion:
    """The fields of a vLLM CompletionOutput that `completion_to_trace` reads, rebuilt from DELTA outputs."""

    index: int
    token_ids: list[int]
    logprobs: list
    last: Any

    @property
    def text(self) -> str:
        return ""

    @property
    def finish_reason(self):
        return getattr(self.last, "finish_reason", None)

    @property
    def stop_reason(self):
        return getattr(self.last, "stop_reason", None)


__all__ = ["VLLMBackend", "VLLMConfig", "completion_to_trace", "request_output_to_traces", "sampling_params",
           "shard_requests"]
