"""SFT and RL problems kept disjoint ([P] §3.1: RL data deduplicated against SFT): the split, the check,
and the overlap removal, all keyed on problem id and normalised prompt.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from falcon_h1r_lib.data.funnel import StepReport, step_report
from falcon_h1r_lib.data.schema import Row, first_rows
from falcon_h1r_lib.data.text import normalize_prompt


def split_sft_rl(
    rows: Sequence[Row], rl_fraction: float, rl_domains: Sequence[str] = ("math",), seed: int = 0
) -> tuple[list[Row], list[Row], StepReport]:
    """Assign whole problems (all rows sharing an id *or* a normalised prompt) to SFT or RL.

    Only ``rl_domains`` feed RL ([P] §3.4: the released model used math-only RL); of those, a seeded
    ``rl_fraction`` of the prompt groups go to RL. The report's n_out counts SFT rows + RL rows.
    """
    if not 0.0 <= rl_fraction <= 1.0:
        raise ValueError(f"rl_fraction must be in [0, 1], got {rl_fraction}")
    # the unit of assignment is the normalised prompt, so ids sharing a prompt land on the same side
    firsts = first_rows(rows)
    group_of = {pid: normalize_prompt(row["prompt"]) for pid, row in firsts.items()}
    rl_groups = sorted({group_of[pid] for pid, r in firsts.items() if r["domain"] in rl_domains})
    rng = random.Random(f"split_sft_rl|{seed}")
    rng.shuffle(rl_groups)
    chosen = set(rl_groups[: round(rl_fraction * len(rl_groups))])
    sft = [r for r in rows if group_of[r["id"]] not in chosen]
    rl = [r for r in rows if group_of[r["id"]] in chosen]
    assert_disjoint(sft, rl)
    report = StepReport(
        "split_sft_rl",
        len(rows),
        len(sft) + len(rl),
        {},
        {
            "sft_rows": len(sft),
            "rl_rows": len(rl),
            "rl_problems": len({r["id"] for r in rl}),
            "sft_problems": len({r["id"] for r in sft}),
            "rl_domains": list(rl_domains),
        },
    )
    return sft, rl, report


def assert_disjoint(a: Sequence[Row], b: Sequence[Row], names: tuple[str, str] = ("SFT", "RL")) -> None:
    """Raise naming the first shared problem id or normalised prompt."""
    ids = {r["id"] for r in a}
    prompts = {normalize_prompt(r["prompt"]): r["id"] for r in a}
    for r in b:
        if r["id"] in ids:
            raise AssertionError(f"{names[0]} and {names[1]} share problem id {r['id']!r}")
        key = normalize_prompt(r["prompt"])
        if key in prompts:
            raise AssertionError(
                f"{names[0]} problem {prompts[key]!r} and {names[1]} problem {r['id']!r} share a prompt"
            )


def remove_overlap(
    rows: Sequence[Row], reference: Sequence[Row], name: str = "dedup_vs_sft"
) -> tuple[list[Row], StepReport]:
    """Drop rows whose id or normalised prompt occurs in ``reference`` (RL pool vs the SFT set)."""
    ids = {r["id"] for r in reference}
    prompts = {normalize_prompt(r["prompt"]) for r in reference}
    kept, reasons = [], Counter()
    for r in rows:
        if r["id"] in ids:
            reasons["overlap_id"] += 1
        elif normalize_prompt(r["prompt"]) in prompts:
            reasons["overlap_prompt"] += 1
        else:
            kept.append(r)
    return kept, step_report(name, len(rows), kept, reasons)
