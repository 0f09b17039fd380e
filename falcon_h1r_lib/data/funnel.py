"""The curation funnel: every step returns ``(kept_rows, StepReport)`` and counts each dropped row under
a reason. Its own module because every step module, the pipeline and the RL data stage build these reports.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StepReport:
    """What one step did: rows in, rows out, and every dropped row counted under a reason."""

    name: str
    n_in: int
    n_out: int
    dropped_by_reason: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # step-specific facts (malformed rows, shares)

    def __post_init__(self) -> None:
        lost = self.n_in - self.n_out
        counted = sum(self.dropped_by_reason.values())
        if lost != counted:
            raise AssertionError(f"step {self.name!r}: {lost} rows lost but {counted} counted by reason")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "n_in": self.n_in,
            "n_out": self.n_out,
            "dropped_by_reason": dict(self.dropped_by_reason),
            "details": self.details,
        }


def step_report(name: str, n_in: int, kept: list, reasons: Counter, **details: Any) -> StepReport:
    """The report of a step that kept ``kept`` of ``n_in`` rows; reasons sorted so reports compare stably."""
    return StepReport(name, n_in, len(kept), dict(sorted(reasons.items())), details)


def funnel_table(reports: Sequence[StepReport]) -> list[dict[str, Any]]:
    """One flat row per step (for a pandas table in the notebook)."""
    return [
        {
            "step": r.name,
            "in": r.n_in,
            "out": r.n_out,
            "dropped": r.n_in - r.n_out,
            **{f"drop:{k}": v for k, v in r.dropped_by_reason.items()},
        }
        for r in reports
    ]


def drop_ids(
    rows: Sequence[dict[str, Any]], drop: dict[str, str], name: str, **details: Any
) -> tuple[list[dict[str, Any]], StepReport]:
    """Drop every row of each problem id in ``drop`` (id -> reason): problem-level steps over trace rows."""
    kept, reasons = [], Counter()
    for row in rows:
        why = drop.get(row["id"])
        if why:
            reasons[why] += 1
        else:
            kept.append(row)
    return kept, step_report(name, len(rows), kept, reasons, **details)
