"""Offline DeepConf ([P] §3.2, Alg. 1): majority and confidence-weighted votes, with top-eta% filtering.

Answers are normalised before voting with the shared verifiers' equivalence (`rewards.answers_equivalent`,
so "0.5" and "\\frac{1}{2}" are one vote; the official code keys votes by raw strings, issue #15).
Rules fixed here (reference deepconf.md §8.7-8.8):
- only traces with an extracted answer vote; a trace joins the first earlier answer group it is
  equivalent to (groups are numbered by first appearance in trace order);
- ties (equal vote mass up to 1e-12 relative) go to the group that appeared first in trace order;
- filtering keeps traces whose score >= np.percentile(scores, 100 - eta) over the voters (numpy's linear
  interpolation, as the official code), so eta = 10 sets s at the 90th percentile;
- when no trace has an answer the vote returns no answer (`label = -1`), flagged as a fallback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from falcon_h1r_lib.deepconf.confidence import SCORE_NAMES
from falcon_h1r_lib.rewards import NO_ANSWER, AnswerBook, answer_groups  # noqa: F401  (re-exported: votes)

KEEP_TOP_PERCENTS = (10.0, 90.0)  # eta of DeepConf-low / -high ([P] §3.2, §4)
_TIE_RTOL = 1e-12


@dataclass(frozen=True)
class VoteResult:
    """Outcome of one vote: the winning answer group and its share of the vote mass."""

    label: int  # winning group id, NO_ANSWER when nobody voted
    index: int | None  # position (in the traces given) of the group's first voter: its answer is the vote
    mass: float  # V(a_hat): votes (majority) or summed confidences (weighted)
    total: float  # sum_a V(a)
    n_voters: int
    tied: bool  # another group had the same mass (the first-appearance rule decided)
    fallback: bool = False  # no voter: nothing to vote on (or the online fallback was used)

    @property
    def beta(self) -> float:
        """Consensus beta = V(a_hat) / sum_a V(a) ([P] Alg. 2); 0 when nobody voted."""
        return self.mass / self.total if self.total > 0 else 0.0


def weighted_vote(labels, weights=None, mask=None) -> VoteResult:
    """Vote of the traces with `mask` (default all) and an answer: sum of `weights` (default 1) per group.

    labels, weights, mask: (n,). Deterministic: ties go to the group whose first voter comes first.
    """
    labels = np.asarray(labels, dtype=np.int64)
    voters = labels != NO_ANSWER
    if mask is not None:
        voters &= np.asarray(mask, dtype=bool)
    idx = np.flatnonzero(voters)
    if idx.size == 0:
        return VoteResult(NO_ANSWER, None, 0.0, 0.0, 0, False, fallback=True)
    w = np.ones(idx.size) if weights is None else np.asarray(weights, dtype=np.float64)[idx]
    if np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError("weighted_vote: weights must be finite and >= 0 (confidences are)")
    groups, first = np.unique(labels[idx], return_index=True)  # first voter position of each group
    mass = np.zeros(groups.size)
    np.add.at(mass, np.searchsorted(groups, labels[idx]), w)
    top = mass.max()
    close = np.flatnonzero(mass >= top - _TIE_RTOL * max(abs(top), 1.0))
    win = close[np.argmin(first[close])]  # earliest-appearing group among the tied
    return VoteResult(label=int(groups[win]), index=int(idx[first[win]]), mass=float(mass[win]),
                      total=float(mass.sum()), n_voters=int(idx.size), tied=bool(close.size > 1))


def keep_top(scores, keep_top_percent: float, mask=None) -> np.ndarray:
    """Mask of traces kept by top-eta% filtering: score >= np.percentile(scores[mask], 100 - eta).

    eta = `keep_top_percent` is the share KEPT ([P] η; the official main branch calls it
    `confidence_percentile`, the reproduce branch uses the raw percentile: opposite meanings). Ties at
    the threshold are all kept.
    """
    if not 0 < keep_top_percent <= 100:
        raise ValueError(f"keep_top: keep_top_percent (eta) must be in (0, 100], got {keep_top_percent}")
    scores = np.asarray(scores, dtype=np.float64)
    pool = np.ones(scores.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if not pool.any():
        return pool.copy()
    s = threshold_from(scores[pool], keep_top_percent)
    return pool & (scores >= s)


def threshold_from(scores, keep_top_percent: float) -> float:
    """s = Percentile_{100 - eta}(scores) (numpy linear): keeps about the top eta% ([P] Alg. 2 calibration)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        raise ValueError("threshold_from: no scores to calibrate on")
    if not 0 < keep_top_percent <= 100:
        raise ValueError(f"threshold_from: keep_top_percent (eta) must be in (0, 100], got {keep_top_percent}")
    return float(np.percentile(scores, 100.0 - keep_top_percent))


@dataclass(frozen=True)
class OfflineMethod:
    """One offline aggregation: weights from `score` (None: majority), filter eta (None: no filter)."""

    score: str | None = None  # one of SCORE_NAMES, or None for majority
    keep_top_percent: float | None = None  # eta
    weighted: bool = True  # False: unweighted majority over the kept traces ([C-main]'s final_answer)

    def __post_init__(self) -> None:
        if self.score is not None and self.score not in SCORE_NAMES:
            raise ValueError(f"OfflineMethod.score {self.score!r} not in {SCORE_NAMES}")
        if self.score is None and self.keep_top_percent is not None:
            raise ValueError("OfflineMethod: filtering needs a score")

    @property
    def name(self) -> str:
        if self.score is None:
            return "majority"
        base = self.score if self.keep_top_percent is None else f"{self.score}@{self.keep_top_percent:g}"
        return base if self.weighted else f"majority|{base}"


def offline_methods(keep_top_percents: Sequence[float] = KEEP_TOP_PERCENTS) -> list[OfflineMethod]:
    """Majority, the four weighted votes, each filtered at every eta (weighted and unweighted after)."""
    out = [OfflineMethod()]
    for s in SCORE_NAMES:
        out.append(OfflineMethod(s))
        for eta in keep_top_percents:
            out += [OfflineMethod(s, float(eta)), OfflineMethod(s, float(eta), weighted=False)]
    return out


def offline_vote(labels, scores: dict[str, np.ndarray] | None, method: OfflineMethod) -> VoteResult:
    """[P] Alg. 1 on one working set: filter the answered traces by score, then (weighted) vote."""
    labels = np.asarray(labels, dtype=np.int64)
    if method.score is None:
        return weighted_vote(labels)
    if scores is None or method.score not in scores:
        raise KeyError(f"offline_vote: method {method.name!r} needs scores[{method.score!r}]")
    s = np.asarray(scores[method.score], dtype=np.float64)
    answered = labels != NO_ANSWER
    mask = answered if method.keep_top_percent is None else keep_top(s, method.keep_top_percent, answered)
    return weighted_vote(labels, s if method.weighted else None, mask)


__all__ = ["AnswerBook", "KEEP_TOP_PERCENTS", "NO_ANSWER", "OfflineMethod", "VoteResult", "answer_groups", "keep_top",
           "offline_methods", "offline_vote", "threshold_from", "weighted_vote"]
