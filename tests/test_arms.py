"""Arms (``falcon_h1r_lib.arms``): notebook 04's stage rerun beside the notebook's own run, never over it."""

from __future__ import annotations

import json
import os

import pytest

from falcon_h1r_lib import arms
from falcon_h1r_lib.config import ConfigError
from falcon_h1r_lib.paths import runs_root
from falcon_h1r_lib.stages import MissingStageOutput


def _finished(root, stage, files=("metrics.json",)):
    d = root / "tiny" / stage
    d.mkdir(parents=True, exist_ok=True)
    for f in files:
        (d / f).write_text("{}")
    return d


@pytest.mark.parametrize("name", ["", ".hidden", "-x", "a/b", "../up", "a b", "x" * 65, None, 3])
def test_arm_names_are_plain_folder_names(name):
    with pytest.raises(ConfigError, match="plain folder name"):
        arms.arm_root(name)


def test_runs_root_is_restored_after_the_block_also_on_errors(monkeypatch, tmp_path):
    monkeypatch.delenv("FALCON_H1R_RUNS", raising=False)
    with pytest.raises(RuntimeError), arms.runs_root_at(tmp_path):
        assert runs_root() == tmp_path.resolve()
        raise RuntimeError
    assert "FALCON_H1R_RUNS" not in os.environ
    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path / "outer"))
    with arms.runs_root_at(tmp_path / "inner"):
        assert runs_root() == (tmp_path / "inner").resolve()
    assert os.environ["FALCON_H1R_RUNS"] == str(tmp_path / "outer")


def test_prepare_links_the_finished_upstream_stages_and_refuses_unfinished_ones(monkeypatch, tmp_path):
    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    with pytest.raises(MissingStageOutput, match=r"02_data_curation/metrics\.json does not exist.*02_data_curation\.ipynb"):
        arms.prepare("seed-1")
    src02 = _finished(tmp_path, "02_data_curation")
    with pytest.raises(MissingStageOutput, match="03_sft"):
        arms.prepare("seed-1")
    src03 = _finished(tmp_path, "03_sft")
    root = arms.prepare("seed-1")
    assert root == tmp_path / "tiny" / "arms" / "seed-1"
    for up, src in (("02_data_curation", src02), ("03_sft", src03)):
        link = root / "tiny" / up
        assert link.is_symlink() and link.resolve() == src.resolve()
    assert arms.prepare("seed-1") == root  # idempotent
    (root / "tiny" / "03_sft").unlink()
    (root / "tiny" / "03_sft").mkdir()
    with pytest.raises(ConfigError, match="is a folder, not a link"):
        arms.prepare("seed-1")


def _accuracy(sft, rl, diff, ci):
    def one(p):
        return {"benchmark": "tiny-math", "pass_at_1": p, "ci": [p - 0.05, p + 0.05], "n_problems": 50,
                "samples_per_problem": 16}

    return {"sft_accuracy": {"math": one(sft)}, "rl_accuracy": {"math": one(rl)},
            "rl_minus_sft": {"math": {"difference": diff, "ci": list(ci), "n_problems": 50}}}


def test_run_arm_runs_the_stage_inside_the_arms_root_and_writes_its_summary(monkeypatch, tmp_path):
    """The stage (here a stand-in that records where it wrote) runs with the arm's runs root, never the notebook's,
    with the profile's config plus the overrides; the summary lands in arm.json and read_arms finds it."""
    from falcon_h1r_lib import evaluation, rl
    from falcon_h1r_lib.rl import report

    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    _finished(tmp_path, "02_data_curation")
    (_finished(tmp_path, "03_sft") / "sft").mkdir()
    seen = {}

    def fake_rl_run(cfg, force=False):
        seen.update(stage_dir=cfg.run_dir(), seed=cfg.seed, domains=cfg.domains, force=force)
        return {"global_steps": cfg.max_steps, "model_dir": "runs/tiny/04_rl/rl"}

    monkeypatch.setattr(rl, "run", fake_rl_run)
    monkeypatch.setattr(evaluation, "run", lambda ecfg, models, out_dir: seen.update(models=models, out=out_dir) or {})
    monkeypatch.setattr(report, "accuracy_from_evaluation", lambda record, labels: _accuracy(0.1, 0.14, 0.04, (0.01, 0.07)))
    summary = arms.run_arm("mixed", {"seed": 3, "domains": ["math", "code"]})
    root = tmp_path / "tiny" / "arms" / "mixed"
    assert seen["stage_dir"] == root / "tiny" / "04_rl" and seen["out"] == root / "tiny" / "04_rl" / "eval"
    assert (seen["seed"], seen["domains"], seen["force"]) == (3, ("math", "code"), False)
    assert not (tmp_path / "tiny" / "04_rl").exists()  # the notebook's own stage folder is untouched
    assert os.environ["FALCON_H1R_RUNS"] == str(tmp_path)
    assert summary["domains"] == ["math", "code"] and summary["seed"] == 3
    assert seen["models"]["sft"].endswith("arms/mixed/tiny/03_sft/sft")  # the SFT model through the arm's link
    assert json.loads((root / "arm.json").read_text())["rl_minus_sft"]["math"]["difference"] == 0.04
    assert [s["name"] for s in arms.read_arms()] == ["mixed"]
    with pytest.raises(ConfigError, match="learning_rat"):  # a typo fails before any training
        arms.run_arm("typo", {"learning_rat": 1e-5})
    with pytest.raises(ConfigError, match="profile"):
        arms.run_arm("p", {"profile": "full"})


def test_read_arms_skips_unfinished_arms_and_names_broken_or_missing_ones(monkeypatch, tmp_path):
    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    base = tmp_path / "tiny" / "arms"
    (base / "running").mkdir(parents=True)
    (base / "done").mkdir()
    (base / "done" / "arm.json").write_text(json.dumps({"name": "done"}))
    assert arms.read_arms() == [{"name": "done"}]
    with pytest.raises(ConfigError, match=r"running/arm\.json does not exist.*--name running"):
        arms.read_arms(names=["running"])
    (base / "done" / "arm.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"done/arm\.json is not valid JSON"):
        arms.read_arms()


def test_claims_over_arms_gives_each_runs_paired_ci_and_the_spread_over_runs():
    runs = [{"name": "notebook", "seed": 0, "domains": ["math"], **_accuracy(0.10, 0.14, 0.04, (0.01, 0.07))},
            {"name": "seed-1", "seed": 1, "domains": ["math"], **_accuracy(0.10, 0.12, 0.02, (-0.01, 0.05))},
            {"name": "seed-2", "seed": 2, "domains": ["math"], **_accuracy(0.10, 0.13, 0.03, (0.005, 0.06))}]
    table = arms.claims_over_arms(runs)
    assert table["rl_minus_sft"].iloc[:3].round(6).tolist() == [4.0, 2.0, 3.0]
    assert table["ci_excludes_0"].tolist() == [True, False, True, False]  # last row: not every run's CI excludes 0
    assert table["rl_minus_sft"].iloc[3] == pytest.approx(3.0) and table["sd_over_runs"].iloc[3] == pytest.approx(1.0)
    assert len(arms.claims_over_arms(runs[:1])) == 1  # one run: no spread row
    with pytest.raises(KeyError, match="'seed-1' has no RL - SFT result for domain 'code'"):
        arms.claims_over_arms(runs[1:], domain="code")


def test_cli_refuses_a_set_without_a_value_and_a_call_without_arms(capsys):
    with pytest.raises(SystemExit):
        arms.main(["--name", "x", "--set", "domains"])
    assert "expected KEY=VALUE" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        arms.main([])
    assert "give --seeds, --name or both" in capsys.readouterr().err


def test_seed_arms_are_the_notebooks_config_with_another_seed_and_the_ablation_table_reads_per_domain():
    import dataclasses

    from falcon_h1r_lib.config import load_config

    cfg = load_config("04_rl", "tiny")
    same = {"name": "seed-1", "seed": 1, "config_hash": dataclasses.replace(cfg, seed=1).config_hash()}
    stale = {"name": "old", "seed": 2, "config_hash": dataclasses.replace(cfg, seed=2, max_steps=7).config_hash()}
    mixed = {"name": "mixed", "seed": 0, "config_hash": dataclasses.replace(cfg, domains=("math", "code")).config_hash()}
    assert [a["name"] for a in arms.seed_arms(cfg, [same, stale, mixed])] == ["seed-1"]
    one = _accuracy(0.1, 0.14, 0.04, (0.01, 0.07))
    runs = [{"name": "math", "domains": ["math"], **one},
            {"name": "mixed", "domains": ["math", "code"], "rl_minus_sft": {
                **one["rl_minus_sft"], "code": {"difference": -0.005, "ci": [-0.02, 0.01], "n_problems": 50}}}]
    table = arms.ablation_table(runs)
    assert table.loc["mixed", "code"] == "-0.5 [-2.0, +1.0]" and table.loc["math", "code"] == ""
    assert table.loc["math", "math"] == "+4.0 [+1.0, +7.0]" and table.loc["mixed", "RL domains"] == "math+code"
