"""Parquet + manifest: exact round trip of heterogeneous rows, hashes checked, paths repo-relative."""

from __future__ import annotations

import json

import pytest

from falcon_h1r_lib.data import manifests as M
from falcon_h1r_lib.data import tasks
from falcon_h1r_lib.data.funnel import StepReport
from falcon_h1r_lib.paths import repo_root


def _rows() -> list[dict]:
    rows = [
        p for d in tasks.DOMAINS for p in tasks.generate(d, 3, 0)
    ]  # dict choices, list tests, nested rules
    rows[0] = {**rows[0], "weight": 1, "note": None}  # int weight here, float below: a mixed column
    rows[1] = {**rows[1], "weight": 1.25}
    return rows


def test_round_trip_is_exact(tmp_path):
    rows = _rows()
    man = M.write_dataset(rows, tmp_path / "sft.parquet", {"source": {"kind": "generated", "seed": 0}})
    back = M.load_dataset_checked(tmp_path / "sft.parquet")
    assert back == rows
    assert [sorted(r) for r in back] == [sorted(r) for r in rows]  # absent keys stay absent (order aside)
    assert {"choices", "tests", "rules", "params", "solution_steps", "weight"} <= set(man["json_columns"])
    assert "prompt" not in man["json_columns"]
    assert M.load_dataset_checked(M.manifest_path_for(tmp_path / "sft.parquet")) == rows
    assert M.load_dataset_checked(man) == rows


def test_manifest_contents(tmp_path):
    rows = _rows()
    rep = StepReport("quality", 10, 9, {"empty_answer": 1})
    info = {
        "name": "sft",
        "source": {"kind": "generated", "generator": "falcon_h1r_lib.data.tasks", "seed": 3},
        "funnel": [rep],
        "notes": "tiny",
    }
    man = M.write_dataset(rows, tmp_path / "d.parquet", info, count_tokens=len, token_counter="chars")
    on_disk = json.loads(M.manifest_path_for(tmp_path / "d.parquet").read_text())
    assert on_disk == man
    assert man["rows"] == len(rows) and man["rows_per_domain"] == {d: 3 for d in sorted(tasks.DOMAINS)}
    assert man["funnel"][0]["dropped_by_reason"] == {"empty_answer": 1} and man["notes"] == "tiny"
    assert man["token_counter"] == "chars"
    assert man["tokens_per_domain"]["math"] == sum(len(r["prompt"]) for r in rows if r["domain"] == "math")
    assert len(man["files"][0]["sha256"]) == 64
    default = M.write_dataset(rows, tmp_path / "e.parquet", info)
    assert "whitespace" in default["token_counter"] and "no tokenizer" in default["token_counter"]


def test_paths_are_repo_relative(tmp_path):
    target = repo_root() / "runs" / "tiny" / "_test_manifests" / "x.parquet"
    try:
        man = M.write_dataset(_rows(), target, {"source": {"kind": "generated"}})
        assert man["files"][0]["path"] == "runs/tiny/_test_manifests/x.parquet"
        man2 = M.write_dataset(
            _rows(), "runs/tiny/_test_manifests/y.parquet", {"source": {"kind": "generated"}}
        )
        assert man2["files"][0]["path"] == "runs/tiny/_test_manifests/y.parquet"
    finally:
        for p in target.parent.glob("*"):
            p.unlink()
        target.parent.rmdir()


def test_tampered_file_is_named(tmp_path):
    path = tmp_path / "t.parquet"
    M.write_dataset(_rows(), path, {"source": {"kind": "generated"}})
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(M.ManifestError, match="t.parquet.*sha256 mismatch"):
        M.load_dataset_checked(path)


def test_refusals(tmp_path):
    with pytest.raises(M.ManifestError, match="source"):
        M.write_dataset(_rows(), tmp_path / "a.parquet", {})
    with pytest.raises(M.ManifestError, match="column 'pair'"):
        M.write_dataset(
            [{"id": "a", "pair": (1, 2)}, {"id": "b", "pair": [1]}],
            tmp_path / "b.parquet",
            {"source": {"k": 1}},
        )
    with pytest.raises(M.ManifestError, match="manifest not found"):
        M.load_dataset_checked(tmp_path / "nothing.parquet")


def test_empty_dataset_round_trips(tmp_path):
    man = M.write_dataset([], tmp_path / "e.parquet", {"source": {"kind": "generated"}})
    assert man["rows"] == 0 and M.load_dataset_checked(man) == []
