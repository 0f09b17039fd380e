"""The paper's published numbers (`data_manifests/paper_results.yaml`), checked and served as tables.

They are the "paper" column beside every measured result; the YAML holds quoted values only, each table with
its source tag, so nothing here computes or invents a number.
"""

from __future__ import annotations

import os
from numbers import Real
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from .paths import manifests_dir, resolve_path

PAPER_RESULTS_FILE = "paper_results.yaml"
SCHEMA_VERSION = 1
_TABLE_KINDS = ("parameters", "grid")
_FIELD_TYPES = {"str": (str,), "int": (int,), "float": (int, float)}  # bool is rejected separately


class PaperResultsError(ValueError):
    """The paper-results file is malformed; the message names the file and the table/row/field."""


def default_path() -> Path:
    return manifests_dir() / PAPER_RESULTS_FILE


def load_paper_results(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Read and schema-check the paper-results YAML (default: `data_manifests/paper_results.yaml`)."""
    path = default_path() if path is None else resolve_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"paper results file not found: {path}")
    with path.open(encoding="utf-8") as fh:
        try:
            data = yaml.safe_load(fh)
        except yaml.YAMLError as err:
            raise PaperResultsError(f"{path}: not valid YAML: {err}") from err
    validate_paper_results(data, where=str(path))
    return data


def validate_paper_results(data: Any, where: str = PAPER_RESULTS_FILE) -> None:
    """Raise `PaperResultsError` naming the first malformed table, row or field."""
    _mapping(data, where, "<top level>")
    _keys(data, where, "<top level>", required={"schema_version", "sources", "tables", "figures"})
    if data["schema_version"] != SCHEMA_VERSION:
        raise PaperResultsError(
            f"{where}: schema_version: expected {SCHEMA_VERSION}, got {data['schema_version']!r}"
        )
    for tag, text in _mapping(data["sources"], where, "sources").items():
        _text(text, where, f"sources.{tag}")
    for name, table in _mapping(data["tables"], where, "tables").items():
        _check_table(table, where, f"tables.{name}")
    for name, figure in _mapping(data["figures"], where, "figures").items():
        _check_figure(figure, where, f"figures.{name}")


def table_names(path: str | os.PathLike | None = None) -> list[str]:
    return list(load_paper_results(path)["tables"])


def paper_table(name: str, path: str | os.PathLike | None = None) -> pd.DataFrame:
    """One table as a DataFrame: grid -> rows x columns ((column, metric) if it has metrics);
    parameters -> index `parameter`, columns `value`, `note`. `df.attrs` keeps source, caption, unit."""
    table = _table(name, path)
    if table["kind"] == "parameters":
        notes = table.get("notes", {})
        names = list(table["values"])
        df = pd.DataFrame(
            {"value": [table["values"][k] for k in names], "note": [notes.get(k, "") for k in names]},
            index=pd.Index(names, name="parameter"),
            dtype=object,
        )
    elif "metrics" in table:
        cols = pd.MultiIndex.from_product([table["columns"], table["metrics"]], names=["column", "metric"])
        data = [[row[c][m] for c, m in cols] for row in table["rows"].values()]
        df = pd.DataFrame(data, index=pd.Index(list(table["rows"]), name=table["row_label"]), columns=cols)
    else:
        data = [[row[c] for c in table["columns"]] for row in table["rows"].values()]
        df = pd.DataFrame(
            data, index=pd.Index(list(table["rows"]), name=table["row_label"]), columns=table["columns"]
        )
    df.attrs.update(name=name, source=table["source"], caption=table["caption"], unit=table.get("unit"))
    return df


def paper_value(
    table: str, row: str, column: str, metric: str | None = None, path: str | os.PathLike | None = None
) -> float:
    """One quoted grid cell, e.g. `paper_value("table7_deepconf", "Falcon-H1R-7B", "AIME24", "accuracy")`."""
    spec = _table(table, path)
    if spec["kind"] != "grid":
        raise KeyError(f"{table} is a parameters table: use paper_parameter")
    if row not in spec["rows"]:
        raise KeyError(f"{table}: no row {row!r}; rows: {', '.join(spec['rows'])}")
    if column not in spec["columns"]:
        raise KeyError(f"{table}: no column {column!r}; columns: {', '.join(spec['columns'])}")
    cell = spec["rows"][row][column]
    if "metrics" in spec:
        if metric not in spec["metrics"]:
            raise KeyError(f"{table}: metric must be one of {', '.join(spec['metrics'])}, got {metric!r}")
        return cell[metric]
    if metric is not None:
        raise KeyError(f"{table} has no metrics, got metric={metric!r}")
    return cell


def paper_parameter(table: str, name: str, path: str | os.PathLike | None = None) -> Any:
    """One quoted hyper-parameter, e.g. `paper_parameter("table2_rl_hyperparameters", "group_size")`."""
    spec = _table(table, path)
    if spec["kind"] != "parameters":
        raise KeyError(f"{table} is a grid table: use paper_value")
    if name not in spec["values"]:
        hint = " (the paper does not give it)" if name in spec.get("not_found", []) else ""
        raise KeyError(f"{table}: no parameter {name!r}{hint}")
    return spec["values"][name]


def figure_points(name: str, path: str | os.PathLike | None = None) -> pd.DataFrame:
    """A quoted figure's points (e.g. ``fig3_sft_mixture``), one row per point, source in ``attrs``."""
    figures = load_paper_results(path)["figures"]
    if name not in figures:
        raise PaperResultsError(f"{path or default_path()}: no figure {name!r}; have {sorted(figures)}")
    figure = figures[name]
    df = pd.DataFrame(figure["points"], columns=list(figure["fields"]))
    df.attrs.update(name=name, source=figure["source"], caption=figure["caption"])
    return df


def fig8_points(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The Fig. 8 throughput points (tokens/s/GPU by model, setting, batch), one row per point."""
    return figure_points("fig8_throughput", path)


def _table(name: str, path: str | os.PathLike | None) -> dict[str, Any]:
    tables = load_paper_results(path)["tables"]
    if name not in tables:
        raise KeyError(f"no paper table {name!r}; known: {', '.join(tables)}")
    return tables[name]


# --- schema checks: each names `where` (the file) and the dotted field path ---


def _check_table(table: Any, where: str, at: str) -> None:
    _mapping(table, where, at)
    kind = table.get("kind")
    if kind not in _TABLE_KINDS:
        raise PaperResultsError(f"{where}: {at}.kind: expected one of {_TABLE_KINDS}, got {kind!r}")
    common = {"source", "caption", "kind"}
    if kind == "parameters":
        _keys(table, where, at, required=common | {"values"}, optional={"notes", "not_found", "remarks"})
        values = _mapping(table["values"], where, f"{at}.values", nonempty=True)
        for key, value in values.items():
            items = value if isinstance(value, list) else [value]
            for item in items:
                if not isinstance(item, (str, Real)):
                    raise PaperResultsError(f"{where}: {at}.values.{key}: expected a scalar, got {value!r}")
        for key, note in _mapping(table.get("notes", {}), where, f"{at}.notes").items():
            if key not in values:
                raise PaperResultsError(f"{where}: {at}.notes.{key}: note for an unknown parameter")
            _text(note, where, f"{at}.notes.{key}")
        for key in _names(table.get("not_found", []), where, f"{at}.not_found", nonempty=False):
            if key in values:
                raise PaperResultsError(f"{where}: {at}.not_found: {key!r} also has a value")
    else:
        _keys(
            table,
            where,
            at,
            required=common | {"row_label", "unit", "columns", "rows"},
            optional={"metrics", "cell_notes", "remarks"},
        )
        _text(table["row_label"], where, f"{at}.row_label")
        _text(table["unit"], where, f"{at}.unit")
        columns = _names(table["columns"], where, f"{at}.columns")
        metrics = _names(table["metrics"], where, f"{at}.metrics") if "metrics" in table else None
        rows = _mapping(table["rows"], where, f"{at}.rows", nonempty=True)
        for row_name, row in rows.items():
            row_at = f"{at}.rows[{row_name!r}]"
            _keys(_mapping(row, where, row_at), where, row_at, required=set(columns), what="column")
            for col in columns:
                cell_at = f"{row_at}.{col}"
                if metrics is None:
                    _number(row[col], where, cell_at)
                else:
                    _keys(
                        _mapping(row[col], where, cell_at),
                        where,
                        cell_at,
                        required=set(metrics),
                        what="metric",
                    )
                    for metric in metrics:
                        _number(row[col][metric], where, f"{cell_at}.{metric}")
        for i, note in enumerate(_list(table.get("cell_notes", []), where, f"{at}.cell_notes")):
            note_at = f"{at}.cell_notes[{i}]"
            _keys(_mapping(note, where, note_at), where, note_at, required={"row", "column", "note"})
            if note["row"] not in rows:
                raise PaperResultsError(f"{where}: {note_at}.row: unknown row {note['row']!r}")
            if note["column"] not in columns:
                raise PaperResultsError(f"{where}: {note_at}.column: unknown column {note['column']!r}")
            _text(note["note"], where, f"{note_at}.note")
    _text(table["source"], where, f"{at}.source")
    _text(table["caption"], where, f"{at}.caption")
    for i, remark in enumerate(_list(table.get("remarks", []), where, f"{at}.remarks")):
        _text(remark, where, f"{at}.remarks[{i}]")


def _check_figure(figure: Any, where: str, at: str) -> None:
    _mapping(figure, where, at)
    _keys(figure, where, at, required={"source", "caption", "fields", "points"}, optional={"remarks"})
    _text(figure["source"], where, f"{at}.source")
    _text(figure["caption"], where, f"{at}.caption")
    fields = _mapping(figure["fields"], where, f"{at}.fields", nonempty=True)
    for field, type_name in fields.items():
        if type_name not in _FIELD_TYPES:
            raise PaperResultsError(f"{where}: {at}.fields.{field}: type must be one of {list(_FIELD_TYPES)}")
    points = _list(figure["points"], where, f"{at}.points", nonempty=True)
    for i, point in enumerate(points):
        point_at = f"{at}.points[{i}]"
        _keys(_mapping(point, where, point_at), where, point_at, required=set(fields), what="field")
        for field, type_name in fields.items():
            value = point[field]
            if isinstance(value, bool) or not isinstance(value, _FIELD_TYPES[type_name]):
                raise PaperResultsError(f"{where}: {point_at}.{field}: expected {type_name}, got {value!r}")
    for i, remark in enumerate(_list(figure.get("remarks", []), where, f"{at}.remarks")):
        _text(remark, where, f"{at}.remarks[{i}]")


def _mapping(value: Any, where: str, at: str, nonempty: bool = False) -> dict:
    if not isinstance(value, dict) or (nonempty and not value):
        raise PaperResultsError(
            f"{where}: {at}: expected a {'non-empty ' if nonempty else ''}mapping, got {value!r}"
        )
    return value


def _list(value: Any, where: str, at: str, nonempty: bool = False) -> list:
    if not isinstance(value, list) or (nonempty and not value):
        raise PaperResultsError(
            f"{where}: {at}: expected a {'non-empty ' if nonempty else ''}list, got {value!r}"
        )
    return value


def _names(value: Any, where: str, at: str, nonempty: bool = True) -> list[str]:
    items = _list(value, where, at, nonempty=nonempty)
    for item in items:
        _text(item, where, at)
    if len(set(items)) != len(items):
        raise PaperResultsError(f"{where}: {at}: duplicate names in {items}")
    return items


def _text(value: Any, where: str, at: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise PaperResultsError(f"{where}: {at}: expected non-empty text, got {value!r}")


def _number(value: Any, where: str, at: str) -> None:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise PaperResultsError(f"{where}: {at}: expected a number, got {value!r}")


def _keys(
    mapping: dict,
    where: str,
    at: str,
    required: set[str],
    optional: frozenset | set = frozenset(),
    what: str = "key",
) -> None:
    missing = sorted(str(k) for k in required - set(mapping))
    if missing:
        raise PaperResultsError(f"{where}: {at}: missing {what} {', '.join(repr(k) for k in missing)}")
    unknown = sorted(str(k) for k in set(mapping) - required - set(optional))
    if unknown:
        raise PaperResultsError(f"{where}: {at}: unknown {what} {', '.join(repr(k) for k in unknown)}")
