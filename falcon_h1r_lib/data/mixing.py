"""Mixing traces to target domain token shares ([P] Fig. 3), with the token counter the shares are measured by."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence

from falcon_h1r_lib.data.funnel import StepReport, step_report
from falcon_h1r_lib.data.schema import DOMAINS, Row


def whitespace_token_count(text: str) -> int:
    """Default token counter when no tokenizer is given: whitespace-separated pieces."""
    return len(text.split())


def row_tokens(row: Row, count_tokens: Callable[[str], int]) -> int:
    return count_tokens(row["prompt"]) + (count_tokens(row["response"]) if "response" in row else 0)


def mix_to_shares(
    rows: Sequence[Row],
    target_shares: dict[str, float],
    count_tokens: Callable[[str], int] = whitespace_token_count,
    seed: int = 0,
    max_total_tokens: int | None = None,
) -> tuple[list[Row], StepReport]:
    """Subsample rows so each domain's share of tokens approaches ``target_shares``.

    The largest total T with share_d * T <= pool_d for every domain is what the pool allows (the
    scarcest domain relative to its target binds); each domain then fills share_d * T from a seeded
    shuffle. A domain with a positive target but no rows is reported and the others renormalised.
    """
    unknown = set(target_shares) - set(DOMAINS)
    if unknown:
        raise ValueError(f"target_shares: unknown domain(s) {sorted(unknown)}")
    if any(v < 0 for v in target_shares.values()) or sum(target_shares.values()) <= 0:
        raise ValueError(f"target_shares must be non-negative with a positive sum, got {target_shares}")
    toks = [row_tokens(r, count_tokens) for r in rows]
    pool: Counter = Counter()
    for r, t in zip(rows, toks, strict=True):
        pool[r["domain"]] += t
    absent = sorted(d for d, s in target_shares.items() if s > 0 and pool[d] == 0)
    shares = {d: s for d, s in target_shares.items() if s > 0 and pool[d] > 0}
    z = sum(shares.values())
    shares = {d: s / z for d, s in shares.items()} if z else {}
    total = min((pool[d] / s for d, s in shares.items()), default=0.0)
    if max_total_tokens is not None:
        total = min(total, float(max_total_tokens))
    budget = {d: s * total for d, s in shares.items()}
    order = list(range(len(rows)))
    random.Random(f"mix_to_shares|{seed}").shuffle(order)
    taken, keep = Counter(), set()
    for i in order:  # greedy fill; rows that would overshoot are skipped so smaller ones can still fit
        d = rows[i]["domain"]
        if d in budget and taken[d] + toks[i] <= budget[d] + 1e-9:
            taken[d] += toks[i]
            keep.add(i)
    kept = [r for i, r in enumerate(rows) if i in keep]
    reasons = Counter(f"mixing:{rows[i]['domain']}" for i in range(len(rows)) if i not in keep)
    got = sum(taken.values())
    return kept, step_report(
        "mix_to_shares",
        len(rows),
        kept,
        reasons,
        target_share={d: target_shares[d] for d in sorted(target_shares)},
        achieved_share={d: (taken[d] / got if got else 0.0) for d in sorted(target_shares)},
        tokens={d: int(taken[d]) for d in sorted(target_shares)},
        pool_tokens={d: int(pool[d]) for d in sorted(pool)},
        absent_domains=absent,
        binding_domain=min(shares, key=lambda d: pool[d] / shares[d]) if shares else None,
    )
