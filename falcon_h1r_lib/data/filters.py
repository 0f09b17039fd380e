"""Trace-level filters of [P] §2.1-2.2: quality, verification (only correct traces), difficulty-aware
weighting from the teacher's pass rate, and the per-problem rollout cap.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

from falcon_h1r_lib.data.funnel import StepReport, step_report
from falcon_h1r_lib.data.schema import Row
from falcon_h1r_lib.rewards.format import quality_issues

# --------------------------------------------------------------------------------------------
# Quality filters ([P] §2.1)
# --------------------------------------------------------------------------------------------


def quality_reason(row: Row) -> str | None:
    """Why a trace fails the paper's quality filters, or None if it passes: the first issue the shared
    response reader finds (`rewards.format.quality_issues`), so SFT keeps exactly what RL would reward."""
    issues = quality_issues(row, row["response"])
    return issues[0] if issues else None


def quality_filter(rows: Sequence[Row]) -> tuple[list[Row], StepReport]:
    """Format violations, empty reasoning / answer, answer only inside the thought, no final ``\\boxed{}``
    (math), no stated choice (science), a final block that is not parsable Python (code)."""
    kept, reasons = [], Counter()
    for row in rows:
        why = quality_reason(row)
        if why:
            reasons[why] += 1
        else:
            kept.append(row)
    return kept, step_report("quality", len(rows), kept, reasons)


# --------------------------------------------------------------------------------------------
# Verification: only correct traces ([P] §2.1: math-verify, unit tests)
# --------------------------------------------------------------------------------------------


def verify_traces(
    rows: Sequence[Row], verify_fn: Callable[[Row, str], bool | None] | None = None
) -> tuple[list[Row], StepReport]:
    """Keep traces the domain verifier accepts; ``None`` (no verdict) is dropped and counted apart,
    unless the row carries the source's own boolean label ``source_correct`` (full-profile sources)."""
    if verify_fn is None:  # the shared verifier, batched: duplicates once, code in parallel
        from falcon_h1r_lib.rewards import verify_batch

        verdicts = verify_batch([(row, row["response"]) for row in rows])
    else:
        verdicts = [verify_fn(row, row["response"]) for row in rows]
    kept, reasons, n_source_label = [], Counter(), 0
    per_domain: dict[str, Counter] = defaultdict(Counter)
    for row, verdict in zip(rows, verdicts):
        if verdict is None and isinstance(row.get("source_correct"), bool):
            verdict = row["source_correct"]  # the source's own label where our verifier abstains ([P]: judge)
            n_source_label += 1
        if verdict is None:
            why = "no_verdict"
        elif verdict is True:
            why = None
        elif verdict is False:
            why = "incorrect"
        else:
            raise TypeError(
                f"verify returned {verdict!r} for row {row.get('id')!r}; expected True/False/None"
            )
        per_domain[row["domain"]][why or "correct"] += 1
        if why:
            reasons[why] += 1
        else:
            kept.append(row)
    return kept, step_report(
        "verify",
        len(rows),
        kept,
        reasons,
        by_domain={d: dict(c) for d, c in sorted(per_domain.items())},
        decided_by_source_label=n_source_label,
    )


# --------------------------------------------------------------------------------------------
# Difficulty-aware weighting ([P] §2.2) and the per-problem rollout cap ([P] §2.2: n = 12)
# --------------------------------------------------------------------------------------------


def difficulty_weight(
    pass_rate: float,
    hard_max_pass_rate: float,
    easy_min_pass_rate: float,
    hard_weight_min: float,
    hard_weight_max: float,
    easy_weight: float,
) -> tuple[str, float]:
    """(bucket, weight): hard ramps linearly from ``hard_weight_max`` at pass rate 0 to ``hard_weight_min``
    at ``hard_max_pass_rate`` ([P]: x1.25-1.75); medium 1.0; easy ``easy_weight`` ([P]: x0.5)."""
    if not 0.0 <= pass_rate <= 1.0:
        raise ValueError(f"pass_rate must be in [0, 1], got {pass_rate}")
    if pass_rate <= hard_max_pass_rate:
        frac = pass_rate / hard_max_pass_rate if hard_max_pass_rate > 0 else 0.0
        return "hard", hard_weight_max - (hard_weight_max - hard_weight_min) * frac
    if pass_rate >= easy_min_pass_rate:
        return "easy", easy_weight
    return "medium", 1.0


def weight_by_difficulty(
    rows: Sequence[Row],
    n_rollouts: dict[str, int],
    hard_max_pass_rate: float = 0.25,
    easy_min_pass_rate: float = 0.875,
    hard_weight_min: float = 1.25,
    hard_weight_max: float = 1.75,
    easy_weight: float = 0.5,
    easy_policy: str = "downweight",
    min_rollouts: int = 1,
) -> tuple[list[Row], StepReport]:
    """Add ``pass_rate`` (correct / k teacher rollouts), ``difficulty_bucket`` and ``weight`` columns.

    ``rows`` are the verified-correct traces; ``n_rollouts[id]`` is k, the rollouts the teacher made for
    that problem, so pass rate = (rows of that id) / k. ``easy_policy``: "downweight" or "drop". With
    k < ``min_rollouts`` the pass rate (0/1 or 1/1 for single-trace sources) is not trusted: bucket
    "unrated", weight 1.0, never dropped as easy ([P] §2.2 rates difficulty over n = 12 rollouts).
    """
    if easy_policy not in ("downweight", "drop"):
        raise ValueError(f"easy_policy must be 'downweight' or 'drop', got {easy_policy!r}")
    if min_rollouts < 1:
        raise ValueError(f"min_rollouts must be >= 1, got {min_rollouts}")
    correct = Counter(r["id"] for r in rows)
    kept, reasons, buckets, unrated = [], Counter(), Counter(), set()
    for row in rows:
        k = n_rollouts.get(row["id"])
        if not k:
            raise KeyError(f"row {row['id']!r}: no rollout count in n_rollouts")
        p = correct[row["id"]] / k
        if k < min_rollouts:
            bucket, w = "unrated", 1.0
            unrated.add(row["id"])
        else:
            bucket, w = difficulty_weight(
                p, hard_max_pass_rate, easy_min_pass_rate, hard_weight_min, hard_weight_max, easy_weight
            )
        buckets[bucket] += 1
        if bucket == "easy" and easy_policy == "drop":
            reasons["easy"] += 1
            continue
        kept.append({**row, "pass_rate": p, "difficulty_bucket": bucket, "weight": float(w)})
    return kept, step_report(
        "difficulty_weight", len(rows), kept, reasons, rows_by_bucket=dict(sorted(buckets.items())),
        problems_unrated=len(unrated), min_rollouts=min_rollouts,
    )


def cap_rollouts(rows: Sequence[Row], max_per_problem: int, seed: int = 0) -> tuple[list[Row], StepReport]:
    """Keep at most ``max_per_problem`` correct rollouts per problem (seeded choice, original order kept)."""
    if max_per_problem <= 0:
        raise ValueError(f"max_per_problem must be positive, got {max_per_problem}")
    by_id: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_id[row["id"]].append(i)
    rng = random.Random(f"cap_rollouts|{seed}")
    keep_idx: set[int] = set()
    for pid in sorted(by_id):
        idx = by_id[pid]
        keep_idx.update(idx if len(idx) <= max_per_problem else rng.sample(idx, max_per_problem))
    kept = [row for i, row in enumerate(rows) if i in keep_idx]
    return kept, step_report(
        "cap_rollouts",
        len(rows),
        kept,
        Counter({"over_cap": len(rows) - len(kept)}) if len(rows) > len(kept) else Counter(),
    )
