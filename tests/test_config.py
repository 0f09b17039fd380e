"""Strict stage configs: every profile YAML loads, bad keys and types are named, paths are rooted."""

from __future__ import annotations

import pytest

from falcon_h1r_lib import config as C


def test_repo_root_is_the_checkout():
    root = C.repo_root()
    assert (root / "pyproject.toml").exists()
    assert (root / "falcon_h1r_lib").is_dir()


def test_paths_do_not_depend_on_cwd(tmp_path, monkeypatch):
    before = C.figures_dir(create=False)
    monkeypatch.chdir(tmp_path)
    assert C.figures_dir(create=False) == before
    assert C.resolve_path("runs/x") == C.repo_root() / "runs" / "x"
    assert C.resolve_path(tmp_path) == tmp_path


def test_env_override_of_root(tmp_path, monkeypatch):
    monkeypatch.setenv("FALCON_H1R_ROOT", str(tmp_path))
    assert C.repo_root() == tmp_path.resolve()
    assert C.runs_dir("tiny") == tmp_path.resolve() / "runs" / "tiny"


@pytest.mark.parametrize("profile", C.PROFILES)
def test_every_profile_yaml_loads_into_its_dataclass(profile):
    yamls = sorted((C.profiles_dir() / profile).glob("[0-9][0-9]_*.yaml"))
    assert yamls, f"no {profile} profiles"
    for path in yamls:
        stage = path.stem
        assert stage in C.STAGE_CONFIGS, f"{path}: no config class registered for {stage}"
        cfg = C.load_config(stage, profile)
        assert cfg.profile == profile
        assert cfg.STAGE == stage


def test_tiny_yaml_equals_dataclass_defaults():
    """The notebook's parameter defaults are the tiny profile; the YAML must say the same."""
    for stage, cls in C.STAGE_CONFIGS.items():
        path = C.profile_path(stage, "tiny")
        if path.exists():
            assert C.load_config(stage, "tiny") == cls(), f"{path} differs from {cls.__name__} defaults"


def test_unknown_key_is_named():
    with pytest.raises(C.ConfigError, match="tiny_widht"):
        C.ArchitectureConfig.from_dict({"tiny_widht": 64})


def test_wrong_type_is_named():
    with pytest.raises(C.ConfigError, match="decode_batch"):
        C.ArchitectureConfig.from_dict({"decode_batch": "four"})
    with pytest.raises(C.ConfigError, match="decode_context_lens"):
        C.ArchitectureConfig.from_dict({"decode_context_lens": [256, "1k"]})
    with pytest.raises(C.ConfigError, match="tiny_width"):
        C.ArchitectureConfig.from_dict({"tiny_width": True})  # bool is not an int here


def test_bad_values_are_named():
    with pytest.raises(C.ConfigError, match="decode_batch"):
        C.ArchitectureConfig.from_dict({"decode_batch": 0})
    with pytest.raises(C.ConfigError, match="profile"):
        C.ArchitectureConfig.from_dict({"profile": "huge"})


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "01_architecture.yaml"
    bad.write_text("tiny_width: 64\nextra_key: 1\n")
    with pytest.raises(C.ConfigError, match=str(bad)):
        C.ArchitectureConfig.from_yaml(bad)
    with pytest.raises(C.ConfigError, match="not found"):
        C.ArchitectureConfig.from_yaml(tmp_path / "missing.yaml")


def test_ints_are_accepted_as_floats_and_lists_as_tuples():
    cfg = C.ArchitectureConfig.from_dict({"decode_context_lens": [8, 16]})
    assert cfg.decode_context_lens == (8, 16)


def test_config_hash_is_stable_and_sensitive():
    a, b = C.ArchitectureConfig(), C.ArchitectureConfig()
    assert a.config_hash() == b.config_hash()
    assert a.config_hash() != C.ArchitectureConfig(seed=1).config_hash()


def test_config_from_parameters_reads_notebook_namespace():
    ns = C.ArchitectureConfig().to_dict()
    ns["unrelated_variable"] = 3
    cfg = C.config_from_parameters(C.ArchitectureConfig, ns)
    assert cfg == C.ArchitectureConfig()
    del ns["seed"]
    with pytest.raises(C.ConfigError, match="seed"):
        C.config_from_parameters(C.ArchitectureConfig, ns)


def test_unknown_stage_is_named():
    with pytest.raises(C.ConfigError, match="99_nothing"):
        C.load_config("99_nothing")
