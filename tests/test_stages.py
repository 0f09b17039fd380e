"""The stage table (falcon_h1r_lib.stages): every command it names runs, and the model-running stages (05, 06) find
their models through it, refusing missing or half-written stages by naming the notebook or command to run."""

from __future__ import annotations

import json

import pytest

from falcon_h1r_lib import stages
from falcon_h1r_lib.config import ConfigError, load_config
from falcon_h1r_lib.paths import PROFILES, repo_root
from falcon_h1r_lib.stages import STAGES, MissingStageOutput


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


def _finished(runs, profile, stage, *outputs):
    """A stage folder as a finished run leaves it: the outputs (folders with a config.json), then metrics.json."""
    folder = runs / profile / stage
    for key in outputs:
        (folder / key).mkdir(parents=True, exist_ok=True)
        (folder / key / "config.json").write_text("{}")
    (folder / "metrics.json").write_text(json.dumps({"metrics": {}}))


# --------------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", [p for p in PROFILES if p != "tiny"])
def test_every_command_names_a_config_that_exists(profile):
    """Before: rehearsal stage 01's command named profiles/rehearsal/01_architecture.yaml, which does not exist."""
    for s in STAGES:
        try:
            command = s.command(profile)
        except ConfigError as err:
            assert f"profiles/{profile}/{s.name}.yaml" in str(err) and "does not run" in str(err)
            continue
        config = command.split("--config ")[1].split()[0]
        assert (repo_root() / config).exists(), f"{s.name}: {command} names a missing config"


def test_the_rehearsal_has_commands_for_the_stages_it_runs_and_no_others():
    from falcon_h1r_lib.rehearsal import SLURM_STAGES

    rehearsed = {name for name, _ in SLURM_STAGES}
    for s in STAGES:
        if s.name in rehearsed:
            assert "profiles/rehearsal/" in s.command("rehearsal")
        else:
            with pytest.raises(ConfigError, match="does not run"):
                s.command("rehearsal")


def test_missing_output_of_a_stage_the_profile_never_runs_says_so(runs):
    with pytest.raises(MissingStageOutput, match=r"01_architecture/metrics\.json does not exist.*rehearsal profile "
                                                 r"does not run 01_architecture"):
        stages.require("01_architecture", "metrics", "rehearsal")


# --------------------------------------------------------------------------------------------
# the models notebooks 05 and 06 compare
# --------------------------------------------------------------------------------------------


def test_evaluation_without_notebook_03_names_it(runs):
    """Before: notebook 05 raised FileNotFoundError('no checkpoint under ...') from its own lookup."""
    from falcon_h1r_lib.evaluation import models_to_compare

    with pytest.raises(MissingStageOutput, match=r"03_sft/metrics\.json does not exist: run notebook "
                                                 r"notebooks/03_sft\.ipynb first"):
        models_to_compare(load_config("05_evaluation", "tiny"))


def test_evaluation_refuses_a_half_written_notebook_03(runs):
    """Before: 05 looked for config.json, so a 03 killed after saving base/ evaluated 'base' alone."""
    from falcon_h1r_lib.evaluation import models_to_compare

    (runs / "tiny" / "03_sft" / "base").mkdir(parents=True)
    (runs / "tiny" / "03_sft" / "base" / "config.json").write_text("{}")
    with pytest.raises(MissingStageOutput, match=r"03_sft/metrics\.json does not exist.*03_sft\.ipynb"):
        models_to_compare(load_config("05_evaluation", "tiny"))


def test_evaluation_compares_base_sft_and_rl_once_each_stage_finished(runs):
    from falcon_h1r_lib.evaluation import models_to_compare

    cfg = load_config("05_evaluation", "tiny")
    _finished(runs, "tiny", "03_sft", "base", "sft")
    found = models_to_compare(cfg)
    assert found == {"base": str(runs / "tiny/03_sft/base"), "sft": str(runs / "tiny/03_sft/sft")}  # 04 not run
    (runs / "tiny" / "04_rl" / "rl").mkdir(parents=True)  # 04 saved its policy, metrics.json not written yet
    with pytest.raises(MissingStageOutput, match=r"04_rl/metrics\.json.*04_rl\.ipynb"):
        models_to_compare(cfg)
    _finished(runs, "tiny", "04_rl", "rl")
    assert list(models_to_compare(cfg)) == ["base", "sft", "rl"]


def test_evaluation_models_named_by_config_or_cli_are_checked_against_the_table(runs):
    from falcon_h1r_lib.evaluation import models_to_compare

    reh = load_config("05_evaluation", "rehearsal")  # model_name_or_path: runs/rehearsal/04_rl/rl
    with pytest.raises(MissingStageOutput, match=r"run `python -m falcon_h1r_lib\.rl --config "
                                                 r"falcon_h1r_lib/profiles/rehearsal/04_rl\.yaml`"):
        models_to_compare(reh)
    _finished(runs, "rehearsal", "04_rl", "rl")
    assert models_to_compare(reh) == {"model": "runs/rehearsal/04_rl/rl"}
    hub = {"sft": "tiiuae/Falcon-H1R-7B", "mine": str(runs.parent / "elsewhere")}  # not stage outputs: as given
    assert models_to_compare(reh, hub) == hub
    with pytest.raises(MissingStageOutput, match=r"full/03_sft/metrics\.json"):
        models_to_compare(reh, {"sft": "runs/full/03_sft/sft"})


def test_checkpoints_inside_a_stage_output_and_bad_paths(runs):
    """Before: 04_rl/checkpoints/checkpoint-10 of a half-written 04 passed as "another path"; None raised a bare
    TypeError."""
    assert stages.output_of(runs / "tiny" / "04_rl" / "checkpoints" / "checkpoint-10") == ("04_rl", "checkpoints", "tiny")
    assert stages.output_of(runs / "tiny" / "04_rl" / "notes" / "x") is None
    (runs / "tiny" / "04_rl" / "checkpoints" / "checkpoint-10").mkdir(parents=True)
    with pytest.raises(MissingStageOutput, match=r"04_rl/metrics\.json does not exist"):
        stages.require_models({"mid": str(runs / "tiny" / "04_rl" / "checkpoints" / "checkpoint-10")})
    with pytest.raises(ConfigError, match=r"models\['rl'\]: a model path must be a string or a path, got None"):
        stages.require_models({"rl": None})


def test_a_rerun_stage_is_unfinished_until_it_writes_its_new_record(runs, monkeypatch):
    """Before: a rerun of 04 that stopped after rewriting rl/ kept the old metrics.json, so 05 evaluated the
    half-rewritten policy as finished. Each stage now clears its record first (02 and 04 shown; 03 likewise)."""
    from falcon_h1r_lib.data import build
    from falcon_h1r_lib.rl import resume as rl_resume
    from falcon_h1r_lib.rl import stage as rl_stage

    _finished(runs, "tiny", "04_rl", "rl")
    rl_cfg = load_config("04_rl", "tiny")
    monkeypatch.setattr(rl_resume, "run_fingerprint", lambda cfg: "new")  # another recipe: retrain

    def stopped(*a, **k):
        raise KeyboardInterrupt  # killed while preparing
    monkeypatch.setattr(rl_stage, "prepare_data", stopped)
    monkeypatch.setattr(rl_stage, "load_policy", stopped)
    with pytest.raises(KeyboardInterrupt):
        rl_stage.run(rl_cfg)
    with pytest.raises(MissingStageOutput, match=r"04_rl/metrics\.json does not exist"):
        stages.require_models({"rl": str(runs / "tiny" / "04_rl" / "rl")})

    _finished(runs, "tiny", "02_data_curation", "sft.parquet")
    monkeypatch.setattr(build, "_run_tiny", stopped)
    with pytest.raises(KeyboardInterrupt):
        build.run(load_config("02_data_curation", "tiny"))
    assert not stages.started("02_data_curation", "metrics")


def test_cli_without_the_stage_output_names_the_command(runs):
    from falcon_h1r_lib.evaluation.__main__ import main

    with pytest.raises(MissingStageOutput, match=r"python -m falcon_h1r_lib\.sft --config "
                                                 r"falcon_h1r_lib/profiles/full/03_sft\.yaml"):
        main(["--config", "falcon_h1r_lib/profiles/full/05_evaluation.yaml", "--model", "sft=runs/full/03_sft/sft"])


def test_deepconf_models_follow_the_stage_table(runs):
    """Before: notebook 06 filtered on config.json itself and raised FileNotFoundError naming no notebook."""
    from falcon_h1r_lib.deepconf.experiment import models_to_compare

    cfg = load_config("06_deepconf_scaling", "tiny")  # {sft: runs/tiny/03_sft/sft, rl: runs/tiny/04_rl/rl}
    with pytest.raises(MissingStageOutput, match=r"03_sft/metrics\.json.*notebooks/03_sft\.ipynb"):
        models_to_compare(cfg)
    _finished(runs, "tiny", "03_sft", "sft")
    assert models_to_compare(cfg) == {"sft": "runs/tiny/03_sft/sft"}  # RL not run yet: compared when it has
    _finished(runs, "tiny", "04_rl", "rl")
    assert models_to_compare(cfg) == dict(cfg.models)
    reh = load_config("06_deepconf_scaling", "rehearsal")  # its only model is the rehearsal's RL policy
    with pytest.raises(MissingStageOutput, match=r"rehearsal/04_rl/metrics\.json.*profiles/rehearsal/04_rl\.yaml"):
        models_to_compare(reh)


def test_deepconf_3d_view_reads_notebook_01_up_front_or_says_it_did_not_run(runs):
    """Before: notebook 06 read 01's metrics.json after generating every pool, and failed there on the full profile,
    whose cluster recipe never runs notebook 01."""
    from falcon_h1r_lib.deepconf.experiment import decode_throughput

    assert decode_throughput("full") is None
    folder = runs / "tiny" / "01_architecture"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"metrics": {}}))
    with pytest.raises(ConfigError, match=r"01_architecture/metrics\.json.*'decode'"):
        decode_throughput("tiny")
    rows = [{"model": "hybrid", "context_len": 64, "tokens_per_s": 10.0}]
    (folder / "metrics.json").write_text(json.dumps({"metrics": {"decode": rows}}))
    assert decode_throughput("tiny").to_dict(orient="records") == rows
