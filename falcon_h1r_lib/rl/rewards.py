"""The RL reward ([P] §3.2) as a TRL reward function: the shared verifier's verdict plus the format penalty.

One callable, not two, because of "no verdict": with separate correctness and format functions TRL sums
what is left when correctness is None (``nansum``), silently scoring an undecided answer as wrong. Here a
None verdict makes the whole reward None, which TRL marks unscorable: left out of its group's baseline
and given zero advantage. Every None is counted and logged (``rewards/no_verdict_frac``), never folded
into 0 (an unscorable sample is not a wrong one).

A sample is *positive* (the auxiliary cross-entropy loss learns from it, [P] §3.1) when it is verified
correct and well formed; the flags of the last call are kept for the trainer (``last_positive``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from falcon_h1r_lib.rewards import format_ok, verify_batch

PROBLEM_COLUMN = "problem"  # dataset column: the problem dict as JSON (Arrow cannot hold mixed schemas)


def completion_text(completion: Any) -> str:
    """Text of a TRL completion: a str (standard format) or ``[{"role": "assistant", "content": ...}]``."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], Mapping):
        content = completion[-1].get("content")
        if isinstance(content, str):
            return content
    raise TypeError(f"cannot read completion text from {type(completion).__name__}: {completion!r:.80}")


def problem_record(value: str | Mapping[str, Any]) -> dict[str, Any]:
    """A dataset row's problem: the JSON string of ``PROBLEM_COLUMN`` (or an already-parsed dict)."""
    if isinstance(value, Mapping):
        return dict(value)
    try:
        out = json.loads(value)
    except (TypeError, json.JSONDecodeError) as err:
        raise ValueError(f"column {PROBLEM_COLUMN!r}: not a problem JSON string: {value!r:.80}") from err
    if not isinstance(out, dict) or "domain" not in out:
        raise ValueError(f"column {PROBLEM_COLUMN!r}: a problem needs a 'domain', got {value!r:.80}")
    return out


def combine(verdict: bool | None, well_formed: bool, format_weight: float) -> float | None:
    """Reward of one sample: 1[correct] - format_weight * 1[malformed]; None when there is no verdict."""
    if verdict is None:
        return None
    return float(verdict is True) - (0.0 if well_formed else float(format_weight))


class RLVRReward:
    """``f(prompts, completions, problem, ...) -> list[float | None]`` with TRL's reward signature.

    ``format_weight``: size of the format penalty ([P] §3.2 gives none; 1.0 makes a malformed correct
    answer worth no more than a wrong one). ``max_workers``: threads for code sandboxes.
    """

    __name__ = "rlvr"  # TRL logs rewards/<name>/mean

    def __init__(self, format_weight: float = 1.0, max_workers: int = 2):
        if format_weight < 0:
            raise ValueError(f"format_weight must be >= 0, got {format_weight}")
        self.format_weight = float(format_weight)
        self.max_workers = int(max_workers)
        self.last_verdicts: list[bool | None] = []
        self.last_positive: list[bool] = []
        self.totals = {"samples": 0, "correct": 0, "malformed": 0, "no_verdict": 0}

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], problem: Sequence[Any] | None = None,
                 log_metric=None, **_: Any) -> list[float | None]:
        if problem is None:
            raise KeyError(f"RLVRReward: the dataset has no {PROBLEM_COLUMN!r} column (the problem JSON)")
        if len(problem) != len(completions):
            raise ValueError(f"RLVRReward: {len(completions)} completions but {len(problem)} problems")
        texts = [completion_text(c) for c in completions]
        problems = [problem_record(p) for p in problem]
        verdicts = verify_batch(list(zip(problems, texts)), max_workers=self.max_workers)
        formed = [format_ok(t) for t in texts]
        rewards = [combine(v, f, self.format_weight) for v, f in zip(verdicts, formed)]
        self.last_verdicts = list(verdicts)
        self.last_positive = [v is True and f for v, f in zip(verdicts, formed)]
        n = len(texts)
        counts = {"samples": n, "correct": sum(v is True for v in verdicts), "malformed": n - sum(formed),
                  "no_verdict": sum(v is None for v in verdicts)}
        for k, v in counts.items():
            self.totals[k] += v
        if log_metric is not None and n:
            log_metric("rewards/accuracy", counts["correct"] / n)
            log_metric("rewards/format_ok_frac", 1 - counts["malformed"] / n)
            log_metric("rewards/no_verdict_frac", counts["no_verdict"] / n)
        return rewards


__all__ = ["PROBLEM_COLUMN", "RLVRReward", "combine", "completion_text", "problem_record"]
