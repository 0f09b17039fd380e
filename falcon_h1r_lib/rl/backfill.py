"""Backfilling of zero-advantage groups with a bounded cache of surplus groups ([P] §3.1), trainer-free parts.

A group (one prompt, its G rollouts) whose rewards are all equal (all correct or all wrong) has zero
group-normalised advantage, hence no policy gradient. The paper compared Backfill / Reject / Duplicate
and kept Backfill: drop such groups and pull more prompts until the batch holds only learning groups.
Refill rounds yield surplus valid groups; instead of discarding them (DAPO's dynamic sampling) a bounded
cache keeps them for the next steps (fixed size, oldest evicted, too-old entries expired: the Kimi k1.5
style "partial rollout" bound on staleness), which the paper credits with ~30% fewer generation calls.

Here: one scored batch from TRL is a dict of tensors (B*G rows, groups contiguous); ``split_groups`` cuts
it into groups, ``merge_groups`` re-pads groups from different rounds into one batch, ``GroupCache`` is
the bounded cache, ``PromptStream`` the source of later prompts, ``BackfillStats`` the counters, and
``rounds_without_cache`` replays the observed round yields without a cache to count the calls it saves.

Under data parallelism every rank fills its own share of the step (prompts_per_step / world_size groups) from its
own cache, and the refill rounds are synchronised (a round runs on all ranks while any rank is short). So the
cache is per rank, sized ``per_rank_cache_size`` (the configured total over the ranks) and held in host memory
(a cached group of 48K-token rollouts should not pin accelerator memory between steps), and the counters record
every rank's yield of every round, which the no-cache replay consumes rank by rank.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

# How each per-row key of TRL's scored batch is padded when groups of different rounds are merged.
LEFT_PADDED = {"prompt_ids": "pad", "prompt_mask": 0}  # (B, P), prompts are left-padded
RIGHT_PADDED = {  # (B, C) completion-aligned; (B, 1) sequence-level importance ratios pad nothing
    "completion_ids": "pad", "completion_mask": 0, "old_per_token_logps": 0.0, "sampling_per_token_logps": 0.0,
    "ref_per_token_logps": 0.0, "importance_sampling_ratio": 1.0, "tool_mask": 1,
}
PER_ROW = ("advantages", "positive")  # (B,)
RECOMPUTED = ("num_items_in_batch", "num_positive_tokens")  # batch totals, recomputed after merging


def group_has_signal(advantages: torch.Tensor, group_size: int) -> torch.Tensor:
    """(n_groups,) bool: the group has a non-zero advantage (not all-correct / all-wrong / unscorable)."""
    if advantages.dim() != 1 or advantages.numel() % group_size:
        raise ValueError(f"advantages of shape {tuple(advantages.shape)} do not split into groups of {group_size}")
    return (advantages.view(-1, group_size) != 0).any(dim=1)


def _check_keys(batch: Mapping[str, Any]) -> None:
    known = set(LEFT_PADDED) | set(RIGHT_PADDED) | set(PER_ROW) | set(RECOMPUTED)
    unknown = sorted(k for k, v in batch.items() if v is not None and k not in known)
    if unknown:
        raise ValueError(f"backfill cannot re-pad batch key(s) {unknown} (multimodal or a newer TRL); "
                         "turn backfill off for this run")


def split_groups(batch: Mapping[str, Any], group_size: int) -> list[dict[str, torch.Tensor]]:
    """Cut a scored batch (rows = groups of ``group_size`` consecutive completions) into per-group dicts."""
    _check_keys(batch)
    n = batch["prompt_ids"].size(0)
    if n % group_size:
        raise ValueError(f"batch of {n} rows does not hold whole groups of {group_size}")
    rows = [k for k in (*LEFT_PADDED, *RIGHT_PADDED, *PER_ROW) if batch.get(k) is not None]
    return [{k: batch[k][g * group_size:(g + 1) * group_size] for k in rows} for g in range(n // group_size)]


def _pad_to(t: torch.Tensor, width: int, value: float, left: bool) -> torch.Tensor:
    extra = width - t.size(1)
    if extra <= 0:
        return t
    fill = torch.full((t.size(0), extra), value, dtype=t.dtype, device=t.device)
    return torch.cat([fill, t] if left else [t, fill], dim=1)


def merge_groups(groups: Sequence[Mapping[str, torch.Tensor]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """One batch from groups of different rounds: prompts re-left-padded, completions re-right-padded.

    Every group must carry the same keys (a key present in some groups only would be silently wrong)."""
    if not groups:
        raise ValueError("merge_groups: no groups")
    keys = list(groups[0])
    for i, g in enumerate(groups):
        if set(g) != set(keys):
            raise ValueError(f"merge_groups: group {i} has keys {sorted(g)}, group 0 has {sorted(keys)}")
    out: dict[str, torch.Tensor] = {}
    for k in keys:
        parts = [g[k] for g in groups]
        if k in PER_ROW:
            out[k] = torch.cat(parts)
            continue
        spec = LEFT_PADDED.get(k, RIGHT_PADDED.get(k))
        value = pad_token_id if spec == "pad" else spec
        width = max(p.size(1) for p in parts)
        out[k] = torch.cat([_pad_to(p, width, value, left=k in LEFT_PADDED) for p in parts])
    return out


def per_rank_cache_size(cache_size: int, world_size: int) -> int:
    """Groups one rank caches: the configured ``cache_size`` counts groups over all ranks; ValueError unless the
    ranks split it evenly (each rank serves only its own share of the batch)."""
    if world_size < 1 or cache_size < 0 or cache_size % world_size:
        raise ValueError(f"backfill: cache_size {cache_size} (groups over all ranks) does not split evenly over "
                         f"{world_size} ranks; make it a multiple of the world size")
    return cache_size // world_size


def to_host(group: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The group's tensors in host memory (cached groups wait there, not on the accelerator); other values as is."""
    return {k: v.to("cpu") if hasattr(v, "to") else v for k, v in group.items()}


class GroupCache:
    """Bounded FIFO of surplus valid groups: ``capacity`` groups at most (the oldest is evicted when
    full), each served at most ``max_age`` optimizer steps after it was generated (older ones expire).
    Groups are kept on the CPU; ``take`` returns them there (the trainer moves them back to its device)."""

    def __init__(self, capacity: int, max_age: int):
        if capacity < 0 or max_age < 0:
            raise ValueError(f"GroupCache: capacity and max_age must be >= 0, got {capacity}, {max_age}")
        self.capacity, self.max_age = capacity, max_age
        self._items: deque[tuple[int, dict[str, torch.Tensor]]] = deque()
        self.evicted = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, group: dict[str, torch.Tensor], step: int) -> None:
        if self.capacity == 0:
            self.evicted += 1
            return
        if len(self._items) == self.capacity:
            self._items.popleft()
            self.evicted += 1
        self._items.append((step, to_host(group)))

    def expire(self, step: int) -> None:
        while self._items and step - self._items[0][0] > self.max_age:
            self._items.popleft()
            self.expired += 1

    def take(self, n: int, step: int) -> list[dict[str, torch.Tensor]]:
        """Up to ``n`` groups, oldest first, after dropping those older than ``max_age`` at ``step``."""
        self.expire(step)
        out = []
        while self._items and len(out) < n:
            out.append(self._items.popleft()[1])
        return out

    def clear(self) -> None:
        self._items.clear()


class PromptStream:
    """Endless seeded passes over the RL rows: where refill rounds take their "later prompts" from.

    Its own ``random.Random`` (never the global RNG); ``start`` skips that many rows, so a resumed run
    continues the stream rather than replaying it."""

    def __init__(self, rows: Sequence[Mapping[str, Any]], seed: int, start: int = 0):
        if not rows:
            raise ValueError("PromptStream: no rows")
        self.rows, self.seed = rows, seed
        self.consumed = 0
        self._it = self._cycle()
        for _ in range(start):
            next(self._it)
        self.consumed = start

    def _cycle(self) -> Iterator[Mapping[str, Any]]:
        epoch = 0
        while True:
            order = list(range(len(self.rows)))
            random.Random(f"rl-refill|{self.seed}|{epoch}").shuffle(order)
            for i in order:
                yield self.rows[i]
            epoch += 1

    def take(self, n: int) -> list[Mapping[str, Any]]:
        self.consumed += n
        return [next(self._it) for _ in range(n)]


@dataclass
class BackfillStats:
    """Counters of one run, summed over all ranks. A *round* is one generation call over a full batch of
    prompts (synchronised: every rank generates in it), so ``steps`` and ``rounds`` are the same on every rank."""

    steps: int = 0  # batches assembled
    rounds: int = 0  # generation calls (the first of each step plus its refill rounds)
    groups_generated: int = 0  # over all ranks
    groups_valid: int = 0  # groups with a non-zero advantage, over all ranks
    groups_from_cache: int = 0  # valid groups served from the ranks' caches
    groups_unfilled: int = 0  # slots filled with zero-advantage groups after max_rounds (no signal), all ranks
    cache_evicted: int = 0  # this rank's cache
    cache_expired: int = 0  # this rank's cache
    round_yields: list[list[int]] = field(default_factory=list)  # per round, in order: valid groups of each rank

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> BackfillStats:
        values = dict(values)  # checkpoints written before per-rank yields hold one int per round
        values["round_yields"] = [[y] if isinstance(y, int) else list(y) for y in values.get("round_yields", [])]
        return cls(**values)


def rounds_without_cache(round_yields: Sequence[Sequence[int] | int], groups_per_rank: int,
                         max_rounds: int) -> tuple[int, int]:
    """Replay the observed valid-group yields of each round (one entry per rank) through backfill *without* a cache.

    Each step consumes rounds until every rank holds ``groups_per_rank`` valid groups (or ``max_rounds`` rounds),
    as the synchronised refill does; each rank's surplus of the last round is discarded. A bare int per round is
    one rank. Returns (steps completed, rounds used by them)."""
    if groups_per_rank < 1 or max_rounds < 1:
        raise ValueError("groups_per_rank and max_rounds must be >= 1")
    yields = [(y,) if isinstance(y, int) else tuple(y) for y in round_yields]
    if len({len(y) for y in yields}) > 1:
        raise ValueError("rounds_without_cache: rounds record different numbers of ranks")
    steps = rounds = i = 0
    while True:
        have: list[int] = []
        used = 0
        while (not have or min(have) < groups_per_rank) and used < max_rounds:
            if i == len(yields):
                return steps, rounds
            have = [h + y for h, y in zip(have, yields[i])] if have else list(yields[i])
            i += 1
            used += 1
        steps += 1
        rounds += used


def generation_calls_saved(stats: BackfillStats, groups_per_rank: int, max_rounds: int) -> dict[str, float | int | None]:
    """Generation calls per step with the cache (measured) vs without it (replayed on the same per-rank yields).

    ``groups_per_rank``: groups each rank contributes to a step (prompts_per_step / world size), the quota the
    recorded per-rank yields are replayed against. Undefined ratios (no step recorded) are None."""
    with_cache = stats.rounds / stats.steps if stats.steps else None
    steps, rounds = rounds_without_cache(stats.round_yields, groups_per_rank, max_rounds)
    without = rounds / steps if steps else None
    saved = 1 - with_cache / without if with_cache is not None and without else None
    return {"rounds_per_step_with_cache": with_cache, "rounds_per_step_without_cache": without,
            "replayed_steps_without_cache": steps, "calls_saved_fraction": saved}


__all__ = ["BackfillStats", "GroupCache", "LEFT_PADDED", "PER_ROW", "PromptStream", "RECOMPUTED", "RIGHT_PADDED",
           "generation_calls_saved", "group_has_signal", "merge_groups", "per_rank_cache_size", "rounds_without_cache",
           "split_groups", "to_host"]
