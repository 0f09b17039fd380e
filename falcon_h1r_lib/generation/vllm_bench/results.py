"""Benchmark result files (`<out>.csv` table + `<out>.json` record, schema-versioned), medians and the printed
fixed-width tables."""

from __future__ import annotations

import csv
import json
import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from falcon_h1r_lib.paths import resolve_path

SCHEMA_VERSION = 1


def median(values: Sequence[float]) -> float:
    """The median of the repeats of one measurement, as a plain float. Raises statistics.StatisticsError when
    ``values`` is empty."""
    return float(statistics.median(values))


def results_stem(out: str | os.PathLike) -> Path:
    """``out`` resolved against the repo root, without a ``.csv`` / ``.json`` suffix: the stem both result files
    share (``<stem>.csv``, ``<stem>.json``)."""
    path = resolve_path(out)
    return path.with_suffix("") if path.suffix in (".csv", ".json") else path


def write_results(result: Mapping[str, Any], out: str | os.PathLike, columns: Sequence[str]
                  ) -> tuple[Path, Path]:
    """`<out>.csv` (the table's `columns`) and `<out>.json` (everything); returns both paths."""
    stem = results_stem(out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".json")
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(result["rows"])
    try:
        text = json.dumps(result, indent=2, allow_nan=False)
    except ValueError as err:  # JSON has no NaN / inf: refuse a silently broken number
        raise ValueError(f"{json_path}: non-finite value in the results ({err})") from err
    json_path.write_text(text + "\n")
    return csv_path, json_path


def read_results(out: str | os.PathLike) -> dict[str, Any]:
    """The JSON record `write_results` wrote at `<out>.json`; fails naming the file."""
    stem = results_stem(out)
    path = stem.with_name(stem.name + ".json")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no benchmark results "
                                "(run python -m falcon_h1r_lib.generation.vllm_bench)")
    record = json.loads(path.read_text())
    if record.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path}: schema_version {record.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    return record


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Fixed-width text table; floats with 2 decimals (ratios) or 1 (tokens/s, seconds)."""
    def cell(v: Any, col: str) -> str:
        if isinstance(v, float):
            return f"{v:.2f}" if ("over" in col or v < 10) else f"{v:,.1f}"
        return str(v)

    body = [[cell(r.get(c, ""), c) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths)),
             *("  ".join(v.rjust(w) for v, w in zip(b, widths)) for b in body)]
    return "\n".join(lines)


__all__ = ["SCHEMA_VERSION", "format_table", "median", "read_results", "results_stem", "write_results"]
