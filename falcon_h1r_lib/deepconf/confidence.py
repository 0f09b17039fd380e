"""Confidence measures of DeepConf ([P] = Fu et al. 2025, arXiv 2508.15260, §2-3), from raw top-k log-probs.

One set of functions serves calibration (warm-up threshold), stopping (online) and voting weights, so
the threshold is never calibrated with one definition and applied with another (reference deepconf.md
§8.4). Decisions taken where the paper and the official code differ or are silent (§1.3):
- C_i = -(1/k) sum_{j<=k} log P_i(j) over the k largest RAW log-probs (k = 20), unrounded (the official
  post-hoc code rounds to 3 dp and averages the k or k+1 entries of vLLM's dict; the patched vLLM does not).
- Group confidences: stride-1 windows of n tokens, full windows only; a trace shorter than n has one
  group, the mean of all its tokens (official offline rule); it is never stopped online (no full window).
- An empty trace (no generated token) scores 0.0: C_i >= 0 always, so 0 is the least confident value
  (the official code's `[0]` rule), and such a trace falls below any calibrated threshold.
- Log-probs are validated once, in `token_confidence` (every path reaches C_i through it): a non-finite
  value or vLLM's -9999.0 stand-in for -inf raises, naming the trace; nothing is clamped.
- C_i sums the k log-probs in rank order, and window means come from a float64 running sum (`np.cumsum`,
  a sequential sum); the online stopper and the vLLM logits processor (`vllm_stop`) add in the same
  order, so online, in-engine and offline window means are bit-identical.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

SCORE_NAMES = ("mean", "bottom10", "lowest_group", "tail")  # [P] Eq. 3, 5, 6, 7
DEFAULT_TOPK = 20  # k of C_i ([P] App. G.3, official code conf_topk=20)
# vLLM's OpenAI-compatible server writes a -inf log-prob as -9999.0 (JSON has no -inf): `max(logprob, -9999.0)`
# in vllm/entrypoints/openai/completion/serving.py and chat_completion/serving.py (vllm 0.31).
VLLM_LOGPROB_FLOOR = -9999.0


def trace_name(trace) -> str:
    """How errors name a `generation.Trace`: its problem id and sample index."""
    return f"problem {getattr(trace, 'problem_id', None)!r} sample {getattr(trace, 'sample_index', None)}"


def token_confidence(topk_logprobs, k: int | None = DEFAULT_TOPK, *, trace: str | Callable[[int], str] | None = None
                     ) -> np.ndarray:
    """C_i = -mean of the k largest raw log-probs at each position: (n, K) -> (n,) float64 ([P] Eq. 2).

    The columns must be sorted by decreasing log-prob (as `generation.Trace` stores them); k=None uses
    every column. A position with fewer than k columns is an error, not a silent shorter mean.
    The one entry point for log-probs, so it refuses what is not a finite log-prob above VLLM_LOGPROB_FLOOR
    (-inf, NaN, +inf, and -9999.0, vLLM's JSON stand-in for -inf), naming `trace` (a name, or row -> name for
    a batch of decode steps): there C_i is infinite (and every later window NaN), or the clamp adds 9999/k
    (~500 at k = 20) to C_i at that token, either way ranking traces by an artefact. Raw log-probs of a full vocabulary
    (log_softmax of finite logits, vLLM logprobs_mode="raw_logprobs") are always finite, so this only fires on
    processed (top-k / top-p masked) or server-clamped log-probs; no clamp is applied anywhere.
    """
    lp = np.asarray(topk_logprobs)
    if lp.ndim != 2:
        raise ValueError(f"token_confidence: expected (n_tokens, k) log-probs, got shape {lp.shape}")
    if k is not None:
        if lp.shape[0] and lp.shape[1] < k:
            raise ValueError(f"token_confidence: the trace stores top-{lp.shape[1]} log-probs, k={k} needed")
        lp = lp[:, :k]
    if lp.shape[0] and lp.shape[1] == 0:
        raise ValueError("token_confidence: the trace stores no top-k log-probs (logprobs_topk=0)")
    lp = np.ascontiguousarray(lp, dtype=np.float64)
    bad = ~(lp > VLLM_LOGPROB_FLOOR) | ~np.isfinite(lp)  # NaN fails the comparison, +inf the finiteness
    if bad.any():
        i, j = (int(x) for x in np.argwhere(bad)[0])
        name = (trace(i) if callable(trace) else trace) or "an unnamed trace"
        where = "its current token" if callable(trace) else f"token {i}"  # a batch of steps: row i is a trace
        raise ValueError(
            f"token_confidence: {name}: top-{lp.shape[1]} log-prob at {where}, rank {j} is {lp[i, j]!r} "
            f"({int(bad.sum())} such values): not a finite log-prob above {VLLM_LOGPROB_FLOOR} (vLLM's stand-in "
            "for -inf); store raw log-probs of the full vocabulary (vLLM logprobs_mode='raw_logprobs')")
    total = np.zeros(lp.shape[0])
    for j in range(lp.shape[1]):  # sequential in rank order, as the vLLM stop processor sums on its device
        total += lp[:, j]
    return -(total / lp.shape[1])


def _cumsum(conf: np.ndarray) -> np.ndarray:
    """S with S[0] = 0, S[j] = C_0 + ... + C_{j-1} (sequential float64 sum): (n + 1,)."""
    out = np.zeros(len(conf) + 1)
    np.cumsum(conf, out=out[1:])
    return out


def group_confidences(conf, window: int) -> np.ndarray:
    """C_G of every full stride-1 window of n = `window` tokens (window j ends at token j + n - 1) ([P] Eq. 4).

    (n_tokens,) -> (max(1, n_tokens - n + 1),); shorter than the window: one group, the mean of all
    tokens; empty: [0.0].
    """
    conf = np.asarray(conf, dtype=np.float64)
    if window < 1:
        raise ValueError(f"group_confidences: window must be >= 1, got {window}")
    if len(conf) == 0:
        return np.zeros(1)
    s = _cumsum(conf)
    if len(conf) < window:
        return np.array([s[-1] / len(conf)])
    return (s[window:] - s[:-window]) / window


def first_window_below(conf, window: int, threshold: float) -> int | None:
    """Index of the LAST token of the first full window whose mean is below `threshold` (None: never).

    The online stop point ([P] Alg. 2): a trace stopped there keeps that token, so it costs index + 1.
    """
    conf = np.asarray(conf, dtype=np.float64)
    if len(conf) < window:
        return None
    below = np.flatnonzero(group_confidences(conf, window) < threshold)
    return int(below[0]) + window - 1 if below.size else None


def mean_confidence(conf) -> float:
    """C_avg, the mean over all tokens ([P] Eq. 3); 0.0 for an empty trace."""
    conf = np.asarray(conf, dtype=np.float64)
    return float(_cumsum(conf)[-1] / len(conf)) if len(conf) else 0.0


def lowest_group_confidence(conf, window: int) -> float:
    """C_least, the lowest window mean ([P] Eq. 6): the only score DeepConf online uses."""
    return float(group_confidences(conf, window).min())


def bottom_group_confidence(conf, window: int, percent: float = 10.0) -> float:
    """C_bottom-q: mean of the floor(q% x #windows) lowest window means, at least one ([P] Eq. 5)."""
    if not 0 < percent <= 100:
        raise ValueError(f"bottom_group_confidence: percent must be in (0, 100], got {percent}")
    groups = group_confidences(conf, window)
    m = max(1, int(len(groups) * percent / 100.0))
    return float(np.sort(groups)[:m].mean())


def tail_confidence(conf, tail: int) -> float:
    """C_tail, the mean of the last `tail` tokens (all when shorter) ([P] Eq. 7); 0.0 when empty."""
    if tail < 1:
        raise ValueError(f"tail_confidence: tail must be >= 1, got {tail}")
    return mean_confidence(np.asarray(conf, dtype=np.float64)[-tail:])


def trace_scores(conf, window: int, tail: int, bottom_percent: float = 10.0) -> dict[str, float]:
    """The four trace-level scores of `SCORE_NAMES` from one trace's token confidences."""
    return {"mean": mean_confidence(conf), "bottom10": bottom_group_confidence(conf, window, bottom_percent),
            "lowest_group": lowest_group_confidence(conf, window), "tail": tail_confidence(conf, tail)}


@dataclass
class RunningGroupConfidence:
    """Online twin of `group_confidences` for one growing trace: O(1) per token, bit-identical means.

    `push(C_i)` returns the mean of the full window ending at token i, or None while the window is not
    yet full (a trace shorter than the window is never stopped, reference §1.3).
    """

    window: int
    sums: list[float] = field(default_factory=lambda: [0.0])  # running sum S (as `_cumsum`)

    def push(self, c: float) -> float | None:
        self.sums.append(self.sums[-1] + float(c))  # same sequential float64 addition as np.cumsum
        n = len(self.sums) - 1
        if n < self.window:
            return None
        return (self.sums[n] - self.sums[n - self.window]) / self.window

    @property
    def n_tokens(self) -> int:
        return len(self.sums) - 1


def confidences_of(traces: Sequence, k: int | None = DEFAULT_TOPK) -> list[np.ndarray]:
    """Token confidences of several `generation.Trace` records (their raw `topk_logprobs`)."""
    return [token_confidence(t.topk_logprobs, k, trace=trace_name(t)) for t in traces]


__all__ = ["DEFAULT_TOPK", "SCORE_NAMES", "VLLM_LOGPROB_FLOOR", "RunningGroupConfidence", "bottom_group_confidence",
           "confidences_of", "first_window_below", "group_confidences", "lowest_group_confidence",
           "mean_confidence", "tail_confidence", "token_confidence", "trace_name", "trace_scores"]
