"""Every dataset the pipeline writes is Parquet (through ``datasets``) plus a JSON manifest.

The manifest says where the rows came from (generator + version + seed, or hub id + resolved revision
+ split), how many there are, the curation funnel, tokens per domain, and the sha256 of each file, so a
later stage (or a reader of ``data_manifests/``) can tell whether it holds the very same data.
``load_dataset_checked`` refuses a file whose hash differs and names it.

Parquet wants one type per column; task rows are heterogeneous (``choices`` is a mapping, ``tests`` a
list, ``rules`` nested, ``answer`` absent or typed differently by domain). Such columns are JSON-encoded
on write and decoded on load (listed in the manifest as ``json_columns``); keys absent from a row are
recorded in ``_absent_keys`` so the round trip gives back exactly the rows that went in.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from falcon_h1r_lib.paths import repo_root, resolve_path

MANIFEST_VERSION = 1
ABSENT_COLUMN = "_absent_keys"
_ABSENT = object()
_PLAIN = (str, int, float, bool)


class ManifestError(ValueError):
    """A dataset file or manifest is missing, tampered with or inconsistent; the message names the file."""


# --------------------------------------------------------------------------------------------
# Paths and hashes
# --------------------------------------------------------------------------------------------


def repo_relative(path: str | os.PathLike) -> str:
    """Path as written into a manifest: relative to the repo root (POSIX) when inside it, else absolute
    (full-profile data on cluster storage may live outside the checkout)."""
    p = Path(path).expanduser().resolve()
    try:
        return p.relative_to(repo_root()).as_posix()
    except ValueError:
        return str(p)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def manifest_path_for(data_path: str | os.PathLike) -> Path:
    """``runs/.../sft.parquet`` -> ``runs/.../sft.manifest.json`` (the default manifest location)."""
    p = Path(data_path)
    return p.with_name(p.name.split(".")[0] + ".manifest.json")


# --------------------------------------------------------------------------------------------
# Row encoding for Parquet
# --------------------------------------------------------------------------------------------


def _column_kind(values: list[Any]) -> str:
    """'plain' if every present, non-null value has one scalar type; else 'json'."""
    types = {type(v) for v in values if v is not _ABSENT and v is not None}
    if not types:
        return "plain"
    return "plain" if len(types) == 1 and types.pop() in _PLAIN else "json"


def encode_rows(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """(Parquet-ready rows with one column set, names of JSON-encoded columns)."""
    columns: dict[str, None] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ManifestError(f"row {i}: expected a dict, got {type(row).__name__}")
        for k in row:
            if not isinstance(k, str):
                raise ManifestError(f"row {i}: column name {k!r} is not a string")
            columns.setdefault(k, None)
    if ABSENT_COLUMN in columns:
        raise ManifestError(f"column name {ABSENT_COLUMN!r} is reserved for the absent-key record")
    values = {c: [row.get(c, _ABSENT) for row in rows] for c in columns}
    json_cols = [c for c in columns if _column_kind(values[c]) == "json"]
    any_absent = any(v is _ABSENT for vals in values.values() for v in vals)
    out = []
    for i, row in enumerate(rows):
        enc: dict[str, Any] = {}
        for c in columns:
            v = row.get(c, _ABSENT)
            if c in json_cols and v is not _ABSENT:
                text = json.dumps(v, ensure_ascii=False)
                if json.loads(text) != v or _has_tuple(v):
                    raise ManifestError(
                        f"row {i} ({row.get('id')!r}): column {c!r} does not survive JSON: {v!r:.80}"
                    )
                enc[c] = text
            else:
                enc[c] = None if v is _ABSENT else v
        if any_absent:
            enc[ABSENT_COLUMN] = json.dumps([c for c in columns if c not in row])
        out.append(enc)
    return out, json_cols


def _has_tuple(v: Any) -> bool:
    if isinstance(v, tuple):
        return True
    if isinstance(v, list):
        return any(_has_tuple(x) for x in v)
    if isinstance(v, dict):
        return any(_has_tuple(x) for x in v.values())
    return False


def decode_rows(rows: Sequence[dict[str, Any]], json_columns: Sequence[str]) -> list[dict[str, Any]]:
    """Inverse of ``encode_rows``."""
    out = []
    for row in rows:
        absent = set(json.loads(row[ABSENT_COLUMN])) if row.get(ABSENT_COLUMN) else set()
        dec = {}
        for c, v in row.items():
            if c == ABSENT_COLUMN or c in absent:
                continue
            dec[c] = json.loads(v) if c in json_columns and v is not None else v
        out.append(dec)
    return out


# --------------------------------------------------------------------------------------------
# Write and load
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def quiet_datasets():
    """``with quiet_datasets(): ...``: no ``datasets`` progress bars ("Creating parquet", "Map") in notebooks while
    it runs; the previous setting is restored after. Raises ImportError without the ``datasets`` package."""
    import datasets

    was = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was:
            datasets.enable_progress_bars()


def _package_versions() -> dict[str, str]:
    import datasets
    import pyarrow

    return {"datasets": datasets.__version__, "pyarrow": pyarrow.__version__}


def token_counts(
    rows: Sequence[dict[str, Any]],
    count_tokens: Callable[[str], int],
    text_fields: Sequence[str] = ("prompt", "response"),
) -> dict[str, int]:
    """Tokens of ``text_fields`` summed per ``domain`` (rows without a domain count under "unknown")."""
    out: Counter = Counter()
    for row in rows:
        out[row.get("domain") or "unknown"] += sum(
            count_tokens(row[f]) for f in text_fields if isinstance(row.get(f), str)
        )
    return dict(sorted(out.items()))


def write_dataset(
    rows: Sequence[dict[str, Any]],
    path: str | os.PathLike,
    manifest_info: dict[str, Any],
    count_tokens: Callable[[str], int] | None = None,
    token_counter: str | None = None,
    manifest_path: str | os.PathLike | None = None,
    text_fields: Sequence[str] = ("prompt", "response"),
) -> dict[str, Any]:
    """Write ``rows`` to Parquet at ``path`` and its manifest (default: ``<stem>.manifest.json`` beside it).

    ``manifest_info`` must hold ``source`` (a mapping: generator/version/seed or hub_id/revision/split)
    and may hold ``name``, ``funnel`` (StepReports or dicts) and any notes. ``count_tokens`` defaults to
    a whitespace split, and the manifest says so. Returns the manifest dict.
    """
    from datasets import Dataset

    from falcon_h1r_lib.data.mixing import whitespace_token_count

    if (
        not isinstance(manifest_info, dict)
        or not isinstance(manifest_info.get("source"), dict)
        or not manifest_info["source"]
    ):
        raise ManifestError(
            f"{path}: manifest_info needs a non-empty 'source' mapping (where the rows came from)"
        )
    path = resolve_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encoded, json_cols = encode_rows(rows)
    with quiet_datasets():
        Dataset.from_list(encoded).to_parquet(str(path))
    if count_tokens is None:
        count_tokens, token_counter = whitespace_token_count, "whitespace split (no tokenizer given)"
    token_counter = token_counter or getattr(count_tokens, "__name__", repr(count_tokens))
    funnel = [f.to_dict() if hasattr(f, "to_dict") else f for f in manifest_info.get("funnel", [])]
    extra = {k: v for k, v in manifest_info.items() if k not in ("source", "funnel", "name")}
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "name": manifest_info.get("name", path.name.split(".")[0]),
        "source": manifest_info["source"],
        "files": [
            {
                "path": repo_relative(path),
                "sha256": sha256_file(path),
                "bytes": path.stat().st_size,
                "rows": len(rows),
            }
        ],
        "rows": len(rows),
        "rows_per_domain": dict(sorted(Counter(r.get("domain") or "unknown" for r in rows).items())),
        "columns": [c for c in (encoded[0] if encoded else {}) if c != ABSENT_COLUMN],
        "json_columns": json_cols,
        "token_counter": token_counter,
        "token_fields": list(text_fields),
        "tokens_per_domain": token_counts(rows, count_tokens, text_fields),
        "funnel": funnel,
        "writer": _package_versions(),
        **extra,
    }
    mpath = resolve_path(manifest_path) if manifest_path is not None else manifest_path_for(path)
    mpath.parent.mkdir(parents=True, exist_ok=True)
    mpath.write_text(json.dumps(manifest, indent=2, sort_keys=False, ensure_ascii=False) + "\n")
    return manifest


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    path = resolve_path(path)
    if not path.exists():
        raise ManifestError(f"{path}: manifest not found")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ManifestError(f"{path}: not valid JSON: {err}") from err
    for key in ("files", "json_columns", "rows"):
        if key not in manifest:
            raise ManifestError(f"{path}: manifest lacks {key!r}")
    return manifest


def load_dataset_checked(path_or_manifest: str | os.PathLike | dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of a dataset written by ``write_dataset``, after checking every file's sha256 and row count.

    Accepts a manifest dict, a manifest path (``*.json``) or a data path (its manifest is found beside).
    """
    import pyarrow.parquet as pq

    if isinstance(path_or_manifest, dict):
        manifest = path_or_manifest
    else:
        p = resolve_path(path_or_manifest)
        manifest = read_manifest(p if p.name.endswith(".json") else manifest_path_for(p))
    rows: list[dict[str, Any]] = []
    for entry in manifest["files"]:
        fpath = resolve_path(entry["path"])
        if not fpath.exists():
            raise ManifestError(f"{fpath}: data file named in the manifest is missing")
        digest = sha256_file(fpath)
        if digest != entry["sha256"]:
            raise ManifestError(
                f"{fpath}: sha256 mismatch (manifest {entry['sha256'][:12]}..., file {digest[:12]}...)"
            )
        part = pq.read_table(fpath).to_pylist()
        if len(part) != entry["rows"]:
            raise ManifestError(f"{fpath}: {len(part)} rows, manifest says {entry['rows']}")
        rows += part
    if len(rows) != manifest["rows"]:
        raise ManifestError(
            f"{manifest['files'][0]['path'] if manifest['files'] else '<no files>'}: {len(rows)} rows, manifest says {manifest['rows']}"
        )
    return decode_rows(rows, manifest["json_columns"])
