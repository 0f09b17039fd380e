"""The curation stage end to end on a small pool: outputs, manifests, skip-on-rerun, CLI errors."""

from __future__ import annotations

import json

import pytest

from falcon_h1r_lib import data
from falcon_h1r_lib.configs import CurationConfig
from falcon_h1r_lib.data import build, manifests
from falcon_h1r_lib.data.sft_rl_split import assert_disjoint


@pytest.fixture()
def small_cfg(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("")
    monkeypatch.setenv("FALCON_H1R_ROOT", str(tmp_path))
    return CurationConfig(problems_per_domain={"math": 24, "code": 24, "science": 24, "other": 24}, eval_problems_per_domain=6, rollouts_per_problem=4,
                          max_correct_per_problem=2, tokenizer_vocab_size=300)


def test_stage_writes_hash_checked_outputs_and_skips_when_unchanged(small_cfg, tmp_path):
    metrics = build.run(small_cfg)
    sft, rl = build.load_output(small_cfg, "sft"), build.load_output(small_cfg, "rl_problems")
    assert sft and rl and metrics["rows"]["sft"] == len(sft)
    assert all(r["domain"] == "math" for r in rl)  # rl_domains default: math only (paper §3.4)
    assert_disjoint(sft, rl)
    assert not any(r["injected_error"] for r in sft)  # verification caught every injected slip
    committed = tmp_path / "data_manifests" / "tiny" / "sft.manifest.json"
    assert json.loads(committed.read_text())["files"][0]["path"].startswith("runs/tiny/02_data_curation/")
    assert (tmp_path / "runs" / "tiny" / "02_data_curation" / "tokenizer").is_dir()
    record = tmp_path / "runs" / "tiny" / "02_data_curation" / "metrics.json"
    stamp = record.stat().st_mtime_ns
    # the stage entry point data.run (= build.run) skips: nothing rewritten
    assert data.run(small_cfg) == metrics and record.stat().st_mtime_ns == stamp
    parquet = tmp_path / "runs" / "tiny" / "02_data_curation" / "sft.parquet"
    parquet.write_bytes(parquet.read_bytes() + b"tampered")
    with pytest.raises(manifests.ManifestError, match="sft.parquet"):
        build.load_output(small_cfg, "sft")
    build.run(small_cfg)  # a tampered output is rebuilt, not trusted
    assert build.load_output(small_cfg, "sft") == sft


def test_cli_names_a_bad_key(tmp_path, capsys):
    from falcon_h1r_lib.data.__main__ import main

    bad = tmp_path / "02.yaml"
    bad.write_text("problems_per_domian: 3\n")
    assert main(["--config", str(bad)]) == 2
    assert "problems_per_domian" in capsys.readouterr().err
