"""Exact and near-duplicate problems: normalised-prompt equality, then shingle Jaccard (pairwise or MinHash LSH)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from falcon_h1r_lib.data.funnel import StepReport, drop_ids
from falcon_h1r_lib.data.schema import Row, first_rows
from falcon_h1r_lib.data.text import (
    MinHasher,
    jaccard,
    lsh_band_keys,
    normalize_prompt,
    number_signature,
    shingles,
)


def dedup_exact(rows: Sequence[Row]) -> tuple[list[Row], StepReport]:
    """Drop problems whose normalised prompt equals an earlier problem's (all rows of that id)."""
    seen: dict[str, str] = {}
    drop: dict[str, str] = {}
    for pid, row in first_rows(rows).items():
        key = normalize_prompt(row["prompt"])
        if key in seen:
            drop[pid] = "exact_duplicate"
        else:
            seen[key] = pid
    return drop_ids(rows, drop, "dedup_exact", problems_dropped=len(drop))


def dedup_near(
    rows: Sequence[Row],
    threshold: float = 0.8,
    shingle_n: int = 3,
    method: str = "pairwise",
    require_same_numbers: bool = True,
    num_perm: int = 64,
    lsh_bands: int = 16,
    seed: int = 0,
    max_pairwise_block: int = 5000,
) -> tuple[list[Row], StepReport]:
    """Drop problems whose prompt shingles have Jaccard >= ``threshold`` with an earlier kept problem.

    ``require_same_numbers``: also require the same number signature, so template problems that differ
    only in their operands (the whole tiny world) are never merged. ``method``: "pairwise" compares exact
    Jaccard within blocks (the number signature, or everything), bounded by ``max_pairwise_block``;
    "lsh" finds candidates by MinHash banding and accepts on the MinHash estimate (full scale).
    """
    if method not in ("pairwise", "lsh"):
        raise ValueError(f"method must be 'pairwise' or 'lsh', got {method!r}")
    firsts = first_rows(rows)
    drop: dict[str, str] = {}
    if method == "pairwise":
        blocks: dict[tuple, list[str]] = defaultdict(list)
        for pid, row in firsts.items():
            blocks[number_signature(row["prompt"]) if require_same_numbers else ()].append(pid)
        for key, pids in blocks.items():
            if len(pids) > max_pairwise_block:
                raise ValueError(
                    f"dedup_near: block {key!r:.40} has {len(pids)} problems > max_pairwise_block "
                    f"{max_pairwise_block}; use method='lsh'"
                )
            kept_sh: list[set[str]] = []
            for pid in pids:
                sh = shingles(firsts[pid]["prompt"], shingle_n)
                if any(jaccard(sh, other) >= threshold for other in kept_sh):
                    drop[pid] = "near_duplicate"
                else:
                    kept_sh.append(sh)
    else:
        hasher = MinHasher(num_perm, seed)
        buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)
        kept_sigs: list[tuple[np.ndarray, tuple]] = []
        for pid, row in firsts.items():
            sig = hasher.signature(shingles(row["prompt"], shingle_n))
            nums = number_signature(row["prompt"]) if require_same_numbers else ()
            keys = lsh_band_keys(sig, lsh_bands)
            cands = {j for key in keys for j in buckets.get(key, ())}
            if any(
                kept_sigs[j][1] == nums and MinHasher.estimate(sig, kept_sigs[j][0]) >= threshold
                for j in cands
            ):
                drop[pid] = "near_duplicate"
                continue
            kept_sigs.append((sig, nums))
            for key in keys:
                buckets[key].append(len(kept_sigs) - 1)
    return drop_ids(rows, drop, "dedup_near", problems_dropped=len(drop), method=method)
