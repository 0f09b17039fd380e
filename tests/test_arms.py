"""Arms (``falcon_h1r_lib.arms``): notebook 04's stage rerun beside the notebook's own run, never over it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from falcon_h1r_lib import arms
from falcon_h1r_lib.config import ConfigError
from falcon_h1r_lib.paths import runs_root
from falcon_h1r_lib.stages import MissingStageOutput


def _sft_model(root):
    """Notebook 03 finished, with an SFT folder holding (stand-in) weights that can be fingerprinted."""
    sft = _finished(root, "03_sft") / "sft"
    sft.mkdir()
    (sft / "model.safetensors").write_bytes(b"weights")
    return sft


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
    with pytest.raises(ConfigError, match="is not a link"):
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
    _sft_model(tmp_path)
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
    assert summary["sft_weights"] == arms.notebook_sft_weights()
    with pytest.raises(ConfigError, match="learning_rat"):  # a typo fails before anything is created
        arms.run_arm("typo", {"learning_rat": 1e-5})
    assert not (tmp_path / "tiny" / "arms" / "typo").exists()
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
    with pytest.raises(ConfigError, match=r"done/arm\.json cannot be read as JSON"):
        arms.read_arms()
    (base / "done" / "arm.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match=r"done/arm\.json is not an arm summary"):
        arms.read_arms()
    (base / "done" / "arm.json").write_text(json.dumps({"name": "done"}))
    (base / ".ipynb_checkpoints").mkdir()
    (base / ".ipynb_checkpoints" / "arm.json").write_text("{}")
    (base / "bad name").mkdir()
    assert arms.read_arms() == [{"name": "done"}]  # folders that are no arm name are no arms


def test_claims_over_arms_gives_each_runs_paired_ci_and_the_spread_over_runs():
    runs = [{"name": "notebook", "seed": 0, "domains": ["math"], **_accuracy(0.10, 0.14, 0.04, (0.01, 0.07))},
            {"name": "seed-1", "seed": 1, "domains": ["math"], **_accuracy(0.10, 0.12, 0.02, (-0.01, 0.05))},
            {"name": "seed-2", "seed": 2, "domains": ["math"], **_accuracy(0.10, 0.13, 0.03, (0.005, 0.06))}]
    table = arms.claims_over_arms(runs)
    assert table["rl_minus_sft"].iloc[:3].round(6).tolist() == [4.0, 2.0, 3.0]
    assert table["ci_excludes_0"].tolist() == [True, False, True, False]  # last row: not every run's CI excludes 0
    assert table["rl_minus_sft"].iloc[3] == pytest.approx(3.0) and table["sd_over_runs"].iloc[3] == pytest.approx(1.0)
    assert len(arms.claims_over_arms(runs[:1])) == 1  # one run: no spread row
    assert table["seed"].tolist()[:3] == [0, 1, 2] and str(table["seed"].dtype) == "Int64"
    odd = arms.claims_over_arms([{**runs[0], "seed": 1.5}, {**runs[1], "seed": None}])
    assert odd["seed"].iloc[0] == 1.5  # shown as given
    with pytest.raises(KeyError, match="'seed-1' has no rl_minus_sft result for domain 'code'"):
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
    assert not any("mean over seeds" in str(i) for i in table.index)  # one run per arm: no spread


def test_the_ablation_table_summarises_an_arm_over_its_seeds():
    def run(name, diffs):
        return {"name": name, "domains": ["math"], "rl_minus_sft": {
            d: {"difference": x, "ci": [x - 0.03, x + 0.03], "n_problems": 50} for d, x in diffs.items()}}

    table = arms.ablation_table([run("table3-math", {"math": 0.01, "code": 0.0}),
                                 run("table3-math-seed-1", {"math": 0.03, "code": 0.02}),
                                 run("table3-math-seed-2", {"math": -0.01}),
                                 run("table3-mixed", {"math": 0.05})])
    assert list(table.index) == ["table3-math", "table3-math-seed-1", "table3-math-seed-2", "table3-mixed",
                                 "table3-math: mean over seeds"]
    summary = table.loc["table3-math: mean over seeds"]
    assert summary["math"] == "+1.0 (SD 2.0, 3 seeds)" and summary["code"] == "+1.0 (SD 1.4, 2 seeds)"


def test_a_cpu_launch_puts_the_fsdp_shim_on_a_tiny_jobs_path_and_only_then():
    from falcon_h1r_lib import launch

    plan = launch.LaunchConfig(profile="tiny", cpu=True, processes_per_node=2)
    env = launch.job_env("tiny", {}, launch=plan)
    assert env["FALCON_H1R_FSDP_ON_CPU"] == "1" and str(launch.FSDP_ON_CPU) in env["PYTHONPATH"]
    assert env["HF_HUB_OFFLINE"] == "1"
    assert "FALCON_H1R_FSDP_ON_CPU" not in launch.job_env("tiny", {})  # tiny has no launch.yaml: no shim


def _sft_world(tmp_path):
    _finished(tmp_path, "02_data_curation")
    (_finished(tmp_path, "03_sft") / "base").mkdir()


def test_an_sft_arm_launches_the_full_profiles_job_on_cpu_ranks_inside_its_root(monkeypatch, tmp_path):
    """The job is `accelerate launch` over 2 ranks with the FSDP-on-CPU shim, reads the arm's YAML (notebook 03's
    base, the override) and writes under the arm's root; a batch that does not add up fails before any rank."""
    from falcon_h1r_lib import launch

    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    _sft_world(tmp_path)
    seen = {}

    def fake_execute(argv, log, profile, env):  # stands in for the 2 ranks: writes what the SFT stage writes
        import yaml

        seen.update(argv=argv, log=log, env=env, config=yaml.safe_load(open(argv[argv.index("--config") + 1])))
        out = tmp_path / "tiny" / "arms" / "off" / "tiny" / "03_sft"
        (out / "sft").mkdir(parents=True)
        (out / "metrics.json").write_text(json.dumps({"metrics": {"sft": {
            "world_size": 2, "steps": 5, "global_batch": 8, "loss_log": [{"step": 5, "loss": 1.0}]}}}))

    monkeypatch.setattr(launch, "execute", fake_execute)
    summary = arms.run_sft_arm("off", {"per_device_train_batch_size": 4, "average_tokens_across_devices": False})
    argv = seen["argv"]
    assert argv[1:3] == ["-m", "accelerate.commands.launch"] and argv[argv.index("--num_processes") + 1] == "2"
    assert argv[argv.index("-m", 3) + 1] == "falcon_h1r_lib.sft"
    assert seen["env"]["FALCON_H1R_FSDP_ON_CPU"] == "1"
    assert seen["env"]["FALCON_H1R_RUNS"] == str(tmp_path / "tiny" / "arms" / "off")
    assert seen["config"]["average_tokens_across_devices"] is False
    assert seen["config"]["base_model_name_or_path"] == str((tmp_path / "tiny" / "03_sft" / "base").resolve())
    assert seen["log"] == tmp_path / "tiny" / "arms" / "off" / "tiny" / "03_sft" / "job.log"
    assert (summary["world_size"], summary["stage"]) == (2, "03_sft")
    assert json.loads((tmp_path / "tiny" / "arms" / "off" / "arm.json").read_text())["steps"] == 5
    assert not (tmp_path / "tiny" / "03_sft" / "sft").exists()  # notebook 03's own folder untouched

    monkeypatch.setattr(launch, "execute", lambda *a, **k: pytest.fail("a rank started"))
    with pytest.raises(ConfigError, match="global"):  # 2 ranks x 8 x 1 != global batch 8
        arms.run_sft_arm("bad", {"per_device_train_batch_size": 8})
    with pytest.raises(ConfigError, match="processes"):
        arms.run_sft_arm("bad", {}, processes=0)


def test_sft_arms_need_notebook_03s_base_and_compare_only_sft_arms(monkeypatch, tmp_path):
    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    _finished(tmp_path, "02_data_curation")
    with pytest.raises(MissingStageOutput, match="03_sft"):
        arms.run_sft_arm("x", {"per_device_train_batch_size": 4})
    with pytest.raises(ConfigError, match="no arms of stage '05_evaluation'"):
        arms.prepare("x", stage="05_evaluation")
    base = tmp_path / "tiny" / "arms"
    for name, stage in (("rl-arm", "04_rl"), ("sft-arm", "03_sft")):
        (base / name).mkdir(parents=True)
        (base / name / "arm.json").write_text(json.dumps({"name": name, "stage": stage, "overrides": {}}))
    with pytest.raises(ConfigError, match="'rl-arm' is not an SFT arm"):
        arms.compare_sft_arms("sft-arm", "rl-arm")


def test_a_failed_rerun_leaves_no_summary_behind(monkeypatch, tmp_path):
    """Break test: a rerun that failed in training kept the last arm.json, so read_arms called the arm finished."""
    from falcon_h1r_lib import evaluation, rl
    from falcon_h1r_lib.rl import report

    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    _finished(tmp_path, "02_data_curation")
    _sft_model(tmp_path)
    monkeypatch.setattr(rl, "run", lambda cfg, force=False: {"global_steps": 1, "model_dir": "runs/tiny/04_rl/rl"})
    monkeypatch.setattr(evaluation, "run", lambda *a, **k: {})
    monkeypatch.setattr(report, "accuracy_from_evaluation", lambda *a: _accuracy(0.1, 0.1, 0.0, (-0.01, 0.01)))
    arms.run_arm("a", {"seed": 3})

    def crash(cfg, force=False):
        raise RuntimeError("killed in training")

    monkeypatch.setattr(rl, "run", crash)
    with pytest.raises(RuntimeError):
        arms.run_arm("a", {"seed": 4})
    assert arms.read_arms() == []
    assert not list((tmp_path / "tiny" / "arms" / "a").glob("arm.json*"))


def test_the_pooled_row_needs_every_ci_on_the_side_of_the_mean_and_bad_runs_are_named():
    up, down = _accuracy(0.1, 0.15, 0.05, (0.01, 0.09)), _accuracy(0.1, 0.05, -0.05, (-0.09, -0.01))
    table = arms.claims_over_arms([{"name": "u", **up}, {"name": "d", **down}])
    assert table["ci_excludes_0"].tolist() == [True, True, False]  # each excludes 0, on opposite sides
    table = arms.claims_over_arms([{"name": "u", **up}, {"name": "u2", **up}])
    assert table["ci_excludes_0"].iloc[-1]
    nan = _accuracy(0.1, 0.1, float("nan"), (0.0, 0.1))
    with pytest.raises(ValueError, match="'n': RL - SFT on 'math' is not finite"):
        arms.claims_over_arms([{"name": "u", **up}, {"name": "n", **nan}])
    with pytest.raises(ValueError, match="no runs"):
        arms.claims_over_arms([])
    with pytest.raises(KeyError, match="'x' has no rl_minus_sft result"):
        arms.claims_over_arms([{"name": "x", "sft_accuracy": {}}])
    with pytest.raises(KeyError, match="'x' has no rl_minus_sft results"):
        arms.ablation_table([{"name": "x"}])
    assert arms.ablation_table([]).empty
    assert arms.ablation_table([{"name": "s", "domains": "math", **up}]).loc["s", "RL domains"] == "math"


def test_seed_arms_count_each_seed_once_and_only_from_the_same_sft_model():
    import dataclasses

    from falcon_h1r_lib.config import load_config

    cfg = load_config("04_rl", "tiny")

    def arm(name, seed, weights="w1"):
        h = dataclasses.replace(cfg, seed=seed).config_hash() if isinstance(seed, int) and seed >= 0 else "h"
        return {"name": name, "seed": seed, "config_hash": h, "sft_weights": weights}

    found = [arm("seed-1", 1), arm("x-seed-1", 1), arm("seed-2", 2, weights="w0"), arm("odd", "2"),
             arm("neg", -1), arm("none", None), arm("seed-0", 0)]
    assert [a["name"] for a in arms.seed_arms(cfg, found, sft_weights="w1")] == ["seed-1"]
    assert [a["name"] for a in arms.seed_arms(cfg, found)] == ["seed-1", "seed-2"]


def test_cli_checks_every_arm_before_the_first_runs_and_reads_set_strictly(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    _finished(tmp_path, "02_data_curation")
    _sft_model(tmp_path)
    monkeypatch.setattr(arms, "run_arm", lambda *a, **k: pytest.fail("an arm ran"))
    with pytest.raises(SystemExit):
        arms.main(["--name", "x" * 57, "--seeds", "1", "10"])  # x...-seed-10 is 65 characters
    assert "plain folder name" in capsys.readouterr().err
    for bad, said in ((["--seeds", "1", "--set", "seed=2"], "give the seeds one way"),
                      (["--name", "a", "--set", "seed=1", "--set", "seed=2"], "set twice"),
                      (["--name", "a", "--set", "domains=[math, code"], "not valid YAML"),
                      (["--name", "a", "--set", "profile=full"], "'profile' is not an override"),
                      (["--seeds", "-1"], "seed"),
                      (["--seeds", "0", "1"], "the notebook's own seed")):
        with pytest.raises(SystemExit):
            arms.main(bad)
        assert said in capsys.readouterr().err
    assert not (tmp_path / "tiny" / "arms").exists()  # nothing was created for any of them


def test_sft_arms_run_on_tiny_only():
    with pytest.raises(ConfigError, match="tiny profile"):
        arms.run_sft_arm("x", {}, profile="full")


def test_the_fig4_table_shows_a_comparison_only_of_the_weights_it_compared(monkeypatch, tmp_path):
    from falcon_h1r_lib import evaluation
    from falcon_h1r_lib.rl import report

    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    _finished(tmp_path, "02_data_curation")
    assert arms.fig4_comparison() is None
    for name, flag in (("fig4-per-rank", False), ("fig4-balanced", True)):
        root = tmp_path / "tiny" / "arms" / name
        sft = root / "tiny" / "03_sft" / "sft"
        sft.mkdir(parents=True)
        (sft / "model.safetensors").write_bytes(name.encode())
        (root / "arm.json").write_text(json.dumps({
            "name": name, "stage": "03_sft", "overrides": {"average_tokens_across_devices": flag},
            "world_size": 2, "steps": 10, "wall_s": 1.0, "sft_model": str(sft)}))
    seen = {}
    monkeypatch.setattr(evaluation, "run", lambda ecfg, models, out_dir: seen.update(models=models) or {})
    monkeypatch.setattr(report, "accuracy_from_evaluation",
                        lambda record, labels: _accuracy(0.10, 0.12, 0.02, (0.005, 0.04)))
    arms.compare_sft_arms("fig4-per-rank", "fig4-balanced")
    assert list(seen["models"]) == ["fig4-per-rank", "fig4-balanced"]
    table = arms.fig4_comparison()
    assert table.loc["fig4-balanced", "average_tokens_across_devices"] is True
    assert table.loc["fig4-balanced - fig4-per-rank (paired)", "pass@1 (%)"] == pytest.approx(2.0)
    (tmp_path / "tiny" / "arms" / "fig4-per-rank" / "tiny" / "03_sft" / "sft" / "model.safetensors").write_bytes(b"new")
    assert arms.fig4_comparison() is None  # retrained since the comparison: not shown as if it were compared


def _compared_fig4_pair(monkeypatch, root, seed, diff, ci):
    """Two finished SFT arms for ``seed`` and their comparison, with ``diff`` / ``ci`` as balanced - per-rank."""
    from falcon_h1r_lib import evaluation
    from falcon_h1r_lib.rl import report

    a, b = arms.fig4_arm_names(seed)
    for name, flag in ((a, False), (b, True)):
        sft = root / "tiny" / "arms" / name / "tiny" / "03_sft" / "sft"
        sft.mkdir(parents=True)
        (sft / "model.safetensors").write_bytes(name.encode())
        (root / "tiny" / "arms" / name / "arm.json").write_text(json.dumps({
            "name": name, "stage": "03_sft", "overrides": {"average_tokens_across_devices": flag, "seed": seed},
            "seed": seed, "world_size": 2, "steps": 10, "wall_s": 1.0, "sft_model": str(sft)}))
    monkeypatch.setattr(evaluation, "run", lambda ecfg, models, out_dir: {})
    monkeypatch.setattr(report, "accuracy_from_evaluation", lambda record, labels: _accuracy(0.10, 0.10 + diff,
                                                                                             diff, ci))
    arms.compare_sft_arms(a, b)
    return a, b


def test_fig4_over_seeds_summarises_the_compared_seeds_and_says_whether_every_ci_excludes_0(monkeypatch, tmp_path):
    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    _finished(tmp_path, "02_data_curation")
    assert arms.fig4_arm_names(0) == ("fig4-per-rank", "fig4-balanced")
    assert arms.fig4_arm_names(2) == ("fig4-per-rank-seed-2", "fig4-balanced-seed-2")
    assert arms.fig4_over_seeds() is None  # nothing compared yet
    _compared_fig4_pair(monkeypatch, tmp_path, 0, 0.04, (0.005, 0.08))
    one = arms.fig4_over_seeds()
    assert list(one.index) == [0] and "sd_over_seeds" not in one  # one seed: no spread row
    _compared_fig4_pair(monkeypatch, tmp_path, 1, 0.02, (0.001, 0.04))
    a, b = _compared_fig4_pair(monkeypatch, tmp_path, 2, -0.01, (-0.03, 0.01))
    table = arms.fig4_over_seeds()
    assert list(table.index) == [0, 1, 2, "mean over 3 seeds"]
    assert table.loc[0, "balanced - per-rank"] == pytest.approx(4.0)
    assert table.loc[0, "ci_excludes_0"] and not table.loc[2, "ci_excludes_0"]
    mean = table.loc["mean over 3 seeds"]
    assert mean["balanced - per-rank"] == pytest.approx(5 / 3)
    assert mean["sd_over_seeds"] == pytest.approx(np.std([4.0, 2.0, -1.0], ddof=1))
    assert not mean["ci_excludes_0"]  # seed 2's CI includes 0: the claim does not hold over seeds
    (tmp_path / "tiny" / "arms" / b / "tiny" / "03_sft" / "sft" / "model.safetensors").write_bytes(b"retrained")
    assert list(arms.fig4_over_seeds().index) == [0, 1, "mean over 2 seeds"]  # seed 2 retrained since: left out
    assert arms.fig4_over_seeds().loc["mean over 2 seeds", "ci_excludes_0"]


def _fake_rl(monkeypatch, on_run=None):
    from falcon_h1r_lib import evaluation, rl
    from falcon_h1r_lib.rl import report

    def run(cfg, force=False):
        if on_run:
            on_run()
        return {"global_steps": 1, "model_dir": "runs/tiny/04_rl/rl"}

    monkeypatch.setattr(rl, "run", run)
    monkeypatch.setattr(evaluation, "run", lambda *a, **k: {})
    monkeypatch.setattr(report, "accuracy_from_evaluation", lambda *a: _accuracy(0.1, 0.1, 0.0, (-0.01, 0.01)))


def _fake_sft_job(monkeypatch, tmp_path):
    from falcon_h1r_lib import launch

    def execute(argv, log, profile, env):
        out = Path(env["FALCON_H1R_RUNS"]) / "tiny" / "03_sft"
        (out / "sft").mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps({"metrics": {"sft": {
            "world_size": 2, "steps": 5, "global_batch": 8, "loss_log": []}}}))

    monkeypatch.setattr(launch, "execute", execute)


def test_an_arm_name_serves_one_stage_and_nothing_is_removed_for_a_refused_arm(monkeypatch, tmp_path):
    """Break test: an SFT arm under an RL arm's name wrote through the RL arm's 03_sft link into notebook 03's folder;
    an RL arm under an SFT arm's name, or an SFT arm with a bad batch, removed the finished arm's summary."""
    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    _finished(tmp_path, "02_data_curation")
    _sft_model(tmp_path)
    (tmp_path / "tiny" / "03_sft" / "base").mkdir()
    _fake_rl(monkeypatch)
    _fake_sft_job(monkeypatch, tmp_path)
    arms.run_arm("seed-1", {"seed": 1})
    with pytest.raises(ConfigError, match="arm of stage 04_rl, not 03_sft"):
        arms.run_sft_arm("seed-1", {"per_device_train_batch_size": 4})
    (tmp_path / "tiny" / "arms" / "seed-1" / "arm.json").unlink()  # even without its summary, the links tell
    with pytest.raises(ConfigError, match="is a link to another run's 03_sft"):
        arms.run_sft_arm("seed-1", {"per_device_train_batch_size": 4})
    assert sorted(p.name for p in (tmp_path / "tiny" / "03_sft").iterdir()) == ["base", "metrics.json", "sft"]

    arms.run_sft_arm("sft-a", {"per_device_train_batch_size": 4})
    summary = tmp_path / "tiny" / "arms" / "sft-a" / "arm.json"
    assert json.loads(summary.read_text())["base_model"] == str((tmp_path / "tiny" / "03_sft" / "base").resolve())
    with pytest.raises(ConfigError, match="arm of stage 03_sft, not 04_rl"):
        arms.run_arm("sft-a", {"seed": 1})
    with pytest.raises(ConfigError, match="global"):
        arms.run_sft_arm("sft-a", {"per_device_train_batch_size": 8})
    assert summary.exists()
    with pytest.raises(SystemExit):
        arms.main(["--stage", "sft", "--seeds", "5", "6", "--set", "per_device_train_batch_size=8"])
    assert not (tmp_path / "tiny" / "arms" / "seed-5").exists()
    with pytest.raises(ConfigError, match="base_model_name_or_path, check_base_config cannot be set"):
        arms.run_sft_arm("sft-b", {"per_device_train_batch_size": 4, "base_model_name_or_path": "x"})


def test_an_rl_arm_records_the_sft_weights_it_started_from(monkeypatch, tmp_path):
    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    _finished(tmp_path, "02_data_curation")
    sft = _sft_model(tmp_path)
    before = arms.notebook_sft_weights()
    _fake_rl(monkeypatch, on_run=lambda: (sft / "model.safetensors").write_bytes(b"retrained meanwhile"))
    assert arms.run_arm("s", {"seed": 1})["sft_weights"] == before != arms.notebook_sft_weights()


def test_comparisons_need_two_arms_and_a_readable_file(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    with pytest.raises(ConfigError, match="got 'a' and 'a' \\(one folder\\)"):
        arms.compare_sft_arms("a", "a")
    (tmp_path / "tiny" / "arms" / "b").mkdir(parents=True)
    (tmp_path / "tiny" / "arms" / "B").symlink_to(tmp_path / "tiny" / "arms" / "b")
    with pytest.raises(ConfigError, match="one folder"):  # break test: a linked name is the same arm
        arms.compare_sft_arms("b", "B")
    root = tmp_path / "tiny" / "arms" / "fig4-balanced"
    root.mkdir(parents=True)
    for bad in ("{not json", "[1, 2]", json.dumps({"weights": {}, "domain": "math"})):
        (root / "vs-fig4-per-rank.json").write_text(bad)
        with pytest.raises(ConfigError, match=r"vs-fig4-per-rank\.json is not a comparison"):
            arms.fig4_comparison()
    with pytest.raises(SystemExit):
        arms.main(["--compare", "a", "b", "--seeds", "1"])
    assert "nothing else" in capsys.readouterr().err


def test_seeds_given_twice_are_all_kept(monkeypatch, tmp_path):
    ran = []
    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    _finished(tmp_path, "02_data_curation")
    _sft_model(tmp_path)
    monkeypatch.setattr(arms, "run_arm", lambda name, over, **k: ran.append(name) or {
        "name": name, "seed": over["seed"], "domains": ["math"], "rl_minus_sft": {}, "wall_s": 0})
    assert arms.main(["--seeds", "1", "--seeds", "2", "1"]) == 0
    assert ran == ["seed-1", "seed-2"]


def test_a_refused_arm_removes_nothing_and_an_arm_is_a_folder_of_its_own(monkeypatch, tmp_path):
    """Third break test: a refused rerun (a file where a link belongs, an unfinished notebook 02) deleted the finished
    arm's summary; a linked arm name rewrote the arm it points to; a summary read under another folder's name."""
    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    _finished(tmp_path, "02_data_curation")
    _sft_model(tmp_path)
    _fake_rl(monkeypatch)
    arms.run_arm("seed-2", {"seed": 2})
    root = tmp_path / "tiny" / "arms" / "seed-2"
    link = root / "tiny" / "03_sft"
    link.unlink()
    link.write_text("not a link")
    with pytest.raises(ConfigError, match="is not a link to the notebook's 03_sft"):
        arms.run_arm("seed-2", {"seed": 2})
    assert (root / "arm.json").exists()
    link.unlink()
    link.symlink_to(tmp_path / "tiny" / "03_sft")
    (tmp_path / "tiny" / "02_data_curation" / "metrics.json").rename(tmp_path / "m.json")
    with pytest.raises(MissingStageOutput, match="02_data_curation"):
        arms.run_arm("seed-2", {"seed": 2})
    assert (root / "arm.json").exists()
    (tmp_path / "m.json").rename(tmp_path / "tiny" / "02_data_curation" / "metrics.json")
    (tmp_path / "tiny" / "arms" / "SEED-2").symlink_to(root)
    with pytest.raises(ConfigError, match="is a link to"):
        arms.run_arm("SEED-2", {"seed": 7})
    assert json.loads((root / "arm.json").read_text())["seed"] == 2
    (tmp_path / "tiny" / "arms" / "SEED-2").unlink()
    (tmp_path / "tiny" / "arms" / "copy").mkdir()
    (tmp_path / "tiny" / "arms" / "copy" / "arm.json").write_text((root / "arm.json").read_text())
    with pytest.raises(ConfigError, match="holds arm 'seed-2', not 'copy'"):
        arms.read_arms()
