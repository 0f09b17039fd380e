"""What to sample and how: requests, the sampling config, per-sample seeds, the stop-hook and backend
interfaces shared by the HF and vLLM backends.

Seeds: every sampled completion owns its random stream, seeded by `sample_seed(seed, problem_id, i)`,
so a completion does not depend on which other requests share its batch, nor on the batch size. The
derivation (`request_seed + i`) is the one vLLM applies to the children of an `n > 1` request, so both
backends give sample i of a problem the same seed (not the same tokens: their RNG streams differ).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

    from falcon_h1r_lib.generation.traces import Trace

_SEED_BITS = 62  # room for request_seed + sample index below 2**63 (int64 columns, torch / vLLM seeds)


def request_seed(seed: int, problem_id: str) -> int:
    """A 62-bit seed for one problem: blake2b of (seed, problem_id), stable across processes and runs."""
    digest = hashlib.blake2b(f"{int(seed)}\x1f{problem_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> (64 - _SEED_BITS)


def sample_seed(seed: int, problem_id: str, sample_index: int) -> int:
    """Seed of sample `sample_index` of `problem_id` (vLLM seeds child i of a request with seed + i)."""
    return request_seed(seed, problem_id) + int(sample_index)


@dataclass(frozen=True)
class SamplingConfig:
    """Decoding settings shared by every backend. Defaults: the paper's evaluation protocol (§4)."""

    n: int = 1  # samples per request; paper: 16 (AIME24/25, HMMT25, AMO-Bench), 5 GPQA-D, 3 LCB v6
    temperature: float = 0.6  # paper evaluation 0.6, RL rollouts 0.85 (Table 2); 0 = greedy
    top_p: float = 0.95  # paper evaluation 0.95
    max_new_tokens: int = 256  # paper: up to 64K-token outputs (Table 9); tiny: hundreds
    min_new_tokens: int = 0  # stop tokens are masked before this many tokens (benchmarks force length)
    seed: int = 0  # root seed; sample i of problem p uses sample_seed(seed, p, i)
    logprobs_topk: int = 20  # k of the stored top-k raw log-probs; DeepConf uses k = 20 ([P] App. G.3)
    stop_token_ids: tuple[int, ...] | None = None  # None: the tokenizer's eos (`<|im_end|>`)
    first_sample_index: int = 0  # samples are indices [first, first + n): a later wave of the same pool

    def __post_init__(self) -> None:
        checks = (
            ("n", isinstance(self.n, int) and self.n >= 1, "an int >= 1"),
            ("temperature", isinstance(self.temperature, (int, float)) and self.temperature >= 0, ">= 0"),
            ("top_p", isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1, "in (0, 1]"),
            ("max_new_tokens", isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1,
             "an int >= 1"),
            ("min_new_tokens", isinstance(self.min_new_tokens, int)
             and 0 <= self.min_new_tokens <= self.max_new_tokens, "an int in [0, max_new_tokens]"),
            ("seed", isinstance(self.seed, int) and self.seed >= 0, "an int >= 0"),
            ("first_sample_index", isinstance(self.first_sample_index, int) and self.first_sample_index >= 0,
             "an int >= 0"),
            ("logprobs_topk", isinstance(self.logprobs_topk, int) and 0 <= self.logprobs_topk <= 20,
             "an int in [0, 20] (vLLM's default max_logprobs is 20)"),
        )
        for name, ok, what in checks:
            if not ok:
                raise ValueError(f"SamplingConfig.{name} must be {what}, got {getattr(self, name)!r}")
        if self.stop_token_ids is not None:
            ids = tuple(self.stop_token_ids)
            if not ids or not all(isinstance(i, int) and i >= 0 for i in ids):
                raise ValueError(f"SamplingConfig.stop_token_ids must be non-negative ints, got {ids!r}")
            object.__setattr__(self, "stop_token_ids", ids)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "<dict>") -> SamplingConfig:
        """Strict: an unknown key raises, naming it and `source`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{source}: unknown SamplingConfig key(s) {unknown}; known: {sorted(known)}")
        try:
            return cls(**dict(values))
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from err

    @property
    def sample_indices(self) -> range:
        return range(self.first_sample_index, self.first_sample_index + self.n)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["stop_token_ids"] = list(self.stop_token_ids) if self.stop_token_ids else None
        return out


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to complete `SamplingConfig.n` times. `prompt` is the fully rendered text."""

    problem_id: str
    prompt: str
    prompt_token_ids: tuple[int, ...] | None = None  # given: used as is; else tokenized without specials

    def __post_init__(self) -> None:
        if not isinstance(self.problem_id, str) or not self.problem_id:
            raise ValueError(f"GenerationRequest.problem_id must be a non-empty str, got {self.problem_id!r}")
        if not isinstance(self.prompt, str):
            raise TypeError(f"request {self.problem_id!r}: prompt must be a str, got {type(self.prompt).__name__}")
        if self.prompt_token_ids is not None:
            object.__setattr__(self, "prompt_token_ids", tuple(int(i) for i in self.prompt_token_ids))
            if not self.prompt_token_ids:
                raise ValueError(f"request {self.problem_id!r}: prompt_token_ids is empty")


def chat_request(problem_id: str, question: str, tokenizer, system_prompt: str | None = None) -> GenerationRequest:
    """A request from a user question, rendered with the tokenizer's chat template.

    `system_prompt=None` sends no system turn: our chat template then inserts the Falcon system prompt ([P] §3.4),
    another model's template whatever it defaults to. Stages pass `tokenizer.system_turn(cfg.system_prompt)`.
    """
    messages = ([{"role": "system", "content": system_prompt}] if system_prompt is not None else [])
    messages.append({"role": "user", "content": question})
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return GenerationRequest(problem_id=problem_id, prompt=text)


def check_requests(requests: Sequence[GenerationRequest]) -> None:
    """Problem ids must be unique: traces are keyed by (problem_id, sample_index)."""
    seen: set[str] = set()
    for i, r in enumerate(requests):
        if not isinstance(r, GenerationRequest):
            raise TypeError(f"requests[{i}] is {type(r).__name__}, expected GenerationRequest")
        if r.problem_id in seen:
            raise ValueError(f"requests[{i}]: duplicate problem_id {r.problem_id!r}; use n for several samples")
        seen.add(r.problem_id)


@dataclass
class DecodeStep:
    """What a stop hook sees after one new token of each running sequence (A running rows).

    All tensors are on the CPU; log-probs are raw (before temperature / top-p), as in the traces.
    """

    problem_ids: list[str]  # (A,)
    sample_indices: list[int]  # (A,)
    request_indices: list[int]  # (A,) index into the `requests` passed to generate
    n_generated: list[int]  # (A,) tokens generated so far, this one included
    token_ids: torch.Tensor  # (A,) the newest token
    token_logprobs: torch.Tensor  # (A,) its raw log-prob
    topk_ids: torch.Tensor  # (A, k) of the newest position
    topk_logprobs: torch.Tensor  # (A, k) raw, sorted decreasing
    history_fn: Callable[[int], torch.Tensor]  # row -> (n_generated[row], k) top-k log-probs so far

    def history(self, row: int) -> torch.Tensor:
        """Top-k raw log-probs of every generated position of running row `row`: (n_generated, k)."""
        return self.history_fn(row)

    def __len__(self) -> int:
        return len(self.problem_ids)


@runtime_checkable
class StopHook(Protocol):
    """Called once per decode step; returns a bool per running row (True: end it now, "stopped").

    The newest token is kept in the trace; a row that just produced a stop token ends as "eos" whatever
    the hook says. Returning None stops nothing. DeepConf online ([P] Alg. 2) is one such hook.
    """

    def __call__(self, step: DecodeStep) -> Sequence[bool] | torch.Tensor | None: ...


@runtime_checkable
class Backend(Protocol):
    """A sampler: one Trace per (request, sample index), in request order then sample order."""

    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig,
                 stop_hook: StopHook | None = None) -> list[Trace]: ...


__all__ = ["Backend", "DecodeStep", "GenerationRequest", "SamplingConfig", "StopHook", "chat_request",
           "check_requests", "request_seed", "sample_seed"]
