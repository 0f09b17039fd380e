"""What a row is: the problem and trace row schema every curation step relies on, checked before anything else."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from falcon_h1r_lib.data.funnel import StepReport, step_report

DOMAINS = ("math", "code", "science", "other")  # == data.tasks.DOMAINS (a test pins it)
LEVELS = (1, 2, 3, 4, 5)

Row = dict[str, Any]


def _is_str(v: Any, nonempty: bool = False) -> bool:
    return isinstance(v, str) and (bool(v.strip()) or not nonempty)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def schema_errors(row: Any, kind: str = "problem") -> list[tuple[str, str]]:
    """``(field, why)`` for every schema violation of one row; empty when the row is well formed.

    ``difficulty`` is 1..5 for generated tasks and None for real data without a level (we never
    invent one; the pass-rate weighting step does not need it).
    """
    if kind not in ("problem", "trace"):
        raise ValueError(f"kind must be 'problem' or 'trace', got {kind!r}")
    if not isinstance(row, dict):
        return [("<row>", f"expected a dict, got {type(row).__name__}")]
    errs: list[tuple[str, str]] = []

    def need(name: str, ok: bool, why: str) -> None:
        if name not in row:
            errs.append((name, "missing"))
        elif not ok:
            errs.append((name, f"{why}, got {row[name]!r:.60}"))

    need("id", _is_str(row.get("id"), nonempty=True), "expected a non-empty string")
    need("domain", row.get("domain") in DOMAINS, f"expected one of {DOMAINS}")
    need("family", _is_str(row.get("family"), nonempty=True), "expected a non-empty string")
    d = row.get("difficulty")
    need("difficulty", d is None or (_is_int(d) and d in LEVELS), "expected an int in 1..5 or null")
    need("prompt", _is_str(row.get("prompt"), nonempty=True), "expected a non-empty string")
    need("answer", _is_str(row.get("answer")), "expected a string")
    dom = row.get("domain")
    if dom == "code":
        tests = row.get("tests")
        need("tests", isinstance(tests, list) and len(tests) > 0, "expected a non-empty list")
        ep = row.get("entry_point")
        need(
            "entry_point", ep is None or _is_str(ep, nonempty=True), "expected a name or null (stdin program)"
        )
    elif dom == "science":
        ch = row.get("choices")
        # real science traces may come without options (free-form questions): a mapping or list, maybe empty
        need(
            "choices",
            isinstance(ch, (dict, list)) and len(ch) != 1,
            "expected a list or mapping of >= 2 choices (or none)",
        )
    elif dom == "other":
        need("rules", isinstance(row.get("rules"), (dict, list)), "expected a list or mapping of rules")
    if kind == "trace":
        need("response", _is_str(row.get("response")), "expected a string")
        need("rollout", _is_int(row.get("rollout")) and row.get("rollout", -1) >= 0, "expected an int >= 0")
        need("teacher", _is_str(row.get("teacher"), nonempty=True), "expected a non-empty string")
    return errs


def validate_schema(
    rows: Sequence[Row], kind: str = "problem", max_listed: int = 50
) -> tuple[list[Row], StepReport]:
    """Drop malformed rows; the report names each by index and field (first ``max_listed`` listed)."""
    kept, reasons, malformed = [], Counter(), []
    for i, row in enumerate(rows):
        errs = schema_errors(row, kind)
        if errs:
            reasons[f"malformed:{errs[0][0]}"] += 1
            if len(malformed) < max_listed:
                rid = row.get("id") if isinstance(row, dict) else None
                malformed.append({"index": i, "id": rid, "errors": [f"{f}: {w}" for f, w in errs]})
        else:
            kept.append(row)
    return kept, step_report(f"schema[{kind}]", len(rows), kept, reasons, malformed=malformed)


def first_rows(rows: Sequence[Row]) -> dict[str, Row]:
    """Problem id -> its first row (trace rows repeat the problem once per rollout)."""
    out: dict[str, Row] = {}
    for row in rows:
        out.setdefault(row["id"], row)
    return out
