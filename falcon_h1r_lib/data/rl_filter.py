"""The RL prompt filter of [P] Fig. 9: keep or discard each RL problem from k rollouts of the SFT model.
It runs in the RL stage (it needs the SFT model), apart from the SFT curation pipeline.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from falcon_h1r_lib.data.funnel import StepReport, step_report
from falcon_h1r_lib.data.schema import Row
from falcon_h1r_lib.rewards import NO_ANSWER, AnswerBook


def rl_filter_decision(
    outcomes: Sequence[bool],
    truncated: Sequence[bool],
    answers: Sequence[str | None],
    rng: random.Random,
    keep_fraction_all_truncated: float,
    keep_fraction_minority: float,
    domain: str = "math",
) -> tuple[str, str]:
    """("keep" | "discard", reason) for one prompt, given its k rollouts ([P] Fig. 9, k = 8).

    k/k correct -> discard (too easy); some correct -> keep; none correct: all truncated -> keep a
    small random subset; else majority answer frequency f >= k/2 -> discard (consistent error, likely a
    bad label), f < k/2 -> keep a small random subset. ``rng`` is drawn only in the two sampled branches.
    Answers are counted by value, grouped as votes are (``rewards.AnswerBook`` for ``domain``: "0.5" and
    "\\frac{1}{2}" are one answer); None or blank answers never count.
    """
    k = len(outcomes)
    if k == 0:
        raise ValueError("rl_filter_decision: no rollouts")
    if len(truncated) != k or len(answers) != k:
        raise ValueError(
            f"rl_filter_decision: {k} outcomes but {len(truncated)} truncated flags, {len(answers)} answers"
        )
    for name, frac in (
        ("keep_fraction_all_truncated", keep_fraction_all_truncated),
        ("keep_fraction_minority", keep_fraction_minority),
    ):
        if not 0.0 <= frac <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {frac}")
    n_correct = sum(bool(o) for o in outcomes)
    if n_correct == k:
        return "discard", "all_correct"
    if n_correct > 0:
        return "keep", "partial"
    if all(truncated):
        return (
            ("keep", "all_truncated_sampled")
            if rng.random() < keep_fraction_all_truncated
            else ("discard", "all_truncated")
        )
    book = AnswerBook(domain)
    votes = Counter(g for g in map(book.label, answers) if g != NO_ANSWER)
    f = votes.most_common(1)[0][1] if votes else 0
    if f >= k / 2:
        return "discard", "consistent_error"
    return (
        ("keep", "no_majority_sampled")
        if rng.random() < keep_fraction_minority
        else ("discard", "no_majority")
    )


def rl_filter(
    rows: Sequence[Row],
    rollouts: dict[str, dict[str, Sequence]],
    keep_fraction_all_truncated: float = 0.1,
    keep_fraction_minority: float = 0.1,
    seed: int = 0,
) -> tuple[list[Row], StepReport]:
    """Apply ``rl_filter_decision`` to every RL problem; ``rollouts[id]`` holds its ``outcomes``,
    ``truncated`` and ``answers`` lists. Kept rows get an ``rl_filter`` column with the reason."""
    rng = random.Random(f"rl_filter|{seed}")
    kept, reasons, kept_by = [], Counter(), Counter()
    for row in rows:
        r = rollouts.get(row["id"])
        if r is None:
            raise KeyError(f"rl_filter: no rollouts for problem {row['id']!r}")
        decision, why = rl_filter_decision(
            r["outcomes"],
            r["truncated"],
            r["answers"],
            rng,
            keep_fraction_all_truncated,
            keep_fraction_minority,
            row["domain"],
        )
        if decision == "keep":
            kept.append(
                {**row, "rl_filter": why, "sft_pass_rate": sum(map(bool, r["outcomes"])) / len(r["outcomes"])}
            )
            kept_by[why] += 1
        else:
            reasons[why] += 1
    return kept, step_report("rl_filter", len(rows), kept, reasons, kept_by_reason=dict(sorted(kept_by.items())))
