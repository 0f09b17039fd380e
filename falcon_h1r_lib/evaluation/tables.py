"""Tables laid out like the paper's Tables 4-6, with our measured pass@1 beside the published numbers.

Rows are the table's benchmarks (the paper's columns, transposed so that "ours" is a column next to
"paper"), plus any tiny stand-in benchmark filed under that table; every row states samples per problem,
problems, the seed and the "no verdict" count. Paper numbers come from ``data_manifests/paper_results.yaml``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from falcon_h1r_lib.evaluation.benchmarks import BENCHMARKS, Benchmark
from falcon_h1r_lib.paper_results import paper_table

RESULTS_TABLES = ("table4_math", "table5_code", "table6_general")
_CAPTION_TABLE = {"table4_math": "Table 4", "table5_code": "Table 5", "table6_general": "Table 6"}


def results_records(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Flatten ``{"models": {label: {"benchmarks": {name: summary}}}}`` (an evaluation metrics record)
    into one dict per (model, benchmark)."""
    models = metrics.get("models")
    if not isinstance(models, Mapping):
        raise KeyError("results_records: expected a 'models' mapping (evaluation metrics.json 'metrics')")
    out = []
    for label, entry in models.items():
        for name, summary in entry.get("benchmarks", {}).items():
            out.append({"model": label, "benchmark": name, **summary})
    return out


def _registry_entry(name: str) -> Benchmark | None:
    for profile in BENCHMARKS.values():
        if name in profile:
            return profile[name]
    return None


def _pct(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(100.0 * float(x), 1)


def _text(v: Any) -> str:
    """Counts print as integers even after a DataFrame made them floats; missing prints as ''."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _joined(values: Sequence[Any]) -> str:
    seen = []
    for v in values:
        s = "/".join(_text(x) for x in v) if isinstance(v, (list, tuple)) else _text(v)
        if s not in seen:
            seen.append(s)
    return " / ".join(s for s in seen if s)


def paper_vs_ours(
    results: pd.DataFrame | Sequence[Mapping[str, Any]],
    table: str = "table4_math",
    paper_models: Sequence[str] = ("Falcon-H1R-7B",),
) -> pd.DataFrame:
    """The benchmarks of ``table`` with paper pass@1 (%) per ``paper_models`` and ours per evaluated model.

    ``results``: one record per (model, benchmark) with ``pass_at_1`` (a fraction) and, optionally,
    ``pass_at_1_ci``, ``samples_per_problem``, ``n_problems``, ``seed``, ``no_verdict``, ``note``.
    """
    if table not in RESULTS_TABLES:
        raise KeyError(f"paper_vs_ours: table must be one of {RESULTS_TABLES}, got {table!r}")
    res = pd.DataFrame(list(results) if not isinstance(results, pd.DataFrame) else results)
    for col in ("model", "benchmark", "pass_at_1"):
        if not res.empty and col not in res:
            raise KeyError(f"paper_vs_ours: results lack column {col!r}")
    paper = paper_table(table)
    missing = [m for m in paper_models if m not in paper.index]
    if missing:
        raise KeyError(f"paper_vs_ours: {table} has no model(s) {missing}; rows: {list(paper.index)}")
    labels = list(dict.fromkeys(res["model"])) if not res.empty else []
    names = list(paper.columns)
    for name in (res["benchmark"].unique() if not res.empty else []):
        entry = _registry_entry(name)
        if name not in names and entry is not None and entry.paper_table == table:
            names.append(name)
    rows = []
    for name in names:
        entry = _registry_entry(name)
        ours = res[res["benchmark"] == name] if not res.empty else res
        row: dict[str, Any] = {"benchmark": name}
        for m in paper_models:
            row[f"paper: {m}"] = float(paper.loc[m, name]) if name in paper.columns else None
        for label in labels:
            r = ours[ours["model"] == label]
            rec = r.iloc[0].to_dict() if len(r) else {}
            row[f"ours: {label}"] = _pct(rec.get("pass_at_1"))
            ci = rec.get("pass_at_1_ci")
            row[f"CI: {label}"] = (f"[{_pct(ci[0])}, {_pct(ci[1])}]"
                                   if isinstance(ci, (list, tuple)) and len(ci) == 2 else "")
        recs = ours.to_dict("records") if len(ours) else []
        row["samples/problem"] = _joined([r.get("samples_per_problem") for r in recs])
        row["problems"] = _joined([r.get("n_problems") for r in recs])
        row["seed"] = _joined([r.get("seed") for r in recs])
        row["no verdict"] = _joined([r.get("no_verdict") for r in recs])
        row["note"] = _note(name, entry, recs)
        rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs.update(
        name=f"{table}_paper_vs_ours",
        caption=(f"{paper.attrs['caption']} ({_CAPTION_TABLE[table]}): {paper.attrs['unit']}, averaged over the "
                 f"samples per problem; paper numbers from {paper.attrs['source']}; CI = bootstrap over problems"),
    )
    return df


def _note(name: str, entry: Benchmark | None, recs: list[dict]) -> str:
    notes = [_text(r.get("note")) for r in recs if _text(r.get("note"))]
    if entry is not None:
        if not entry.gradable:
            notes.append(f"not graded here: {entry.why_not_gradable}")
        if entry.note:
            notes.append(entry.note)
    elif not recs:
        notes.append("not evaluated (outside this repository's evaluation)")
    if entry is not None and entry.gradable and not recs:
        notes.append("not run")
    return "; ".join(dict.fromkeys(notes))


def to_markdown(df: pd.DataFrame, floatfmt: str = ".1f") -> str:
    """A GitHub Markdown table (no ``tabulate`` dependency); empty cells for missing values."""
    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, float):
            return format(v, floatfmt)
        return str(v).replace("|", "\\|").replace("\n", " ")

    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for rec in df.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in rec) + " |")
    caption = df.attrs.get("caption")
    return (f"{caption}\n\n" if caption else "") + "\n".join(lines) + "\n"


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``<path>.csv`` and ``<path>.md`` (suffix of ``path`` ignored); returns both paths."""
    stem = Path(path)
    stem = stem.with_suffix("") if stem.suffix in (".csv", ".md") else stem
    stem.parent.mkdir(parents=True, exist_ok=True)
    csv, md = stem.with_suffix(".csv"), stem.with_suffix(".md")
    df.to_csv(csv, index=False)
    md.write_text(to_markdown(df))
    return csv, md


__all__ = ["RESULTS_TABLES", "paper_vs_ours", "results_records", "to_markdown", "write_table"]
