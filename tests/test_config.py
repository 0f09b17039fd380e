"""Strict stage configs: every profile YAML loads, bad keys, types and values are named, the registry is complete."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import typing
from dataclasses import dataclass
from typing import ClassVar

import pytest

from falcon_h1r_lib import config as C
from falcon_h1r_lib.configs import ArchitectureConfig, DeepConfConfig, RLStageConfig
from falcon_h1r_lib.paths import profiles_dir, repo_root

NOTEBOOK_STAGES = ["01_architecture", "02_data_curation", "03_sft", "04_rl", "05_evaluation", "06_deepconf_scaling"]


@pytest.mark.parametrize("profile", C.PROFILES)
def test_every_profile_yaml_loads_into_its_dataclass(profile):
    yamls = sorted((profiles_dir() / profile).glob("[0-9][0-9]_*.yaml"))
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
        ArchitectureConfig.from_dict({"tiny_widht": 64})


def test_wrong_type_is_named():
    with pytest.raises(C.ConfigError, match="decode_batch"):
        ArchitectureConfig.from_dict({"decode_batch": "four"})
    with pytest.raises(C.ConfigError, match="decode_context_lens"):
        ArchitectureConfig.from_dict({"decode_context_lens": [256, "1k"]})
    with pytest.raises(C.ConfigError, match="tiny_width"):
        ArchitectureConfig.from_dict({"tiny_width": True})  # bool is not an int here


def test_bad_values_are_named():
    with pytest.raises(C.ConfigError, match="decode_batch"):
        ArchitectureConfig.from_dict({"decode_batch": 0})
    with pytest.raises(C.ConfigError, match="profile"):
        ArchitectureConfig.from_dict({"profile": "huge"})


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "01_architecture.yaml"
    bad.write_text("tiny_width: 64\nextra_key: 1\n")
    with pytest.raises(C.ConfigError, match=str(bad)):
        ArchitectureConfig.from_yaml(bad)
    with pytest.raises(C.ConfigError, match="not found"):
        ArchitectureConfig.from_yaml(tmp_path / "missing.yaml")


def test_ints_are_accepted_as_floats_and_lists_as_tuples():
    cfg = ArchitectureConfig.from_dict({"decode_context_lens": [8, 16]})
    assert cfg.decode_context_lens == (8, 16)


def test_config_hash_is_stable_and_sensitive():
    a, b = ArchitectureConfig(), ArchitectureConfig()
    assert a.config_hash() == b.config_hash()
    assert a.config_hash() != ArchitectureConfig(seed=1).config_hash()


def test_config_from_parameters_reads_notebook_namespace():
    ns = ArchitectureConfig().to_dict()
    ns["unrelated_variable"] = 3
    cfg = C.config_from_parameters(ArchitectureConfig, ns)
    assert cfg == ArchitectureConfig()
    del ns["seed"]
    with pytest.raises(C.ConfigError, match="seed"):
        C.config_from_parameters(ArchitectureConfig, ns)


def test_unknown_stage_is_named():
    with pytest.raises(C.ConfigError, match="99_nothing"):
        C.load_config("99_nothing")


# ------------------------------------------------------------------------------ the declarative range checks


def _just_outside(text: str, numeric: type) -> list[float]:
    """Values just past each finite end of the interval ``text`` (ints step by 1, floats by one ulp)."""
    low, high, low_closed, high_closed = C._interval(text)
    step = (lambda x, d: x + d) if numeric is int else (lambda x, d: math.nextafter(x, x + d))
    out = []
    if not math.isinf(low):
        out.append(numeric(low) if not low_closed else step(numeric(low), -1))
    if not math.isinf(high):
        out.append(numeric(high) if not high_closed else step(numeric(high), +1))
    return out


def _number_type(tp) -> type:
    """int or float: the number inside ``int``, ``float | None`` or ``tuple[int, ...]``."""
    args = [a for a in typing.get_args(tp) if a is not type(None) and a is not Ellipsis]
    return _number_type(args[0]) if args else tp


def _table_cases():
    for stage in NOTEBOOK_STAGES:
        cls = C.STAGE_CONFIGS[stage]
        hints = typing.get_type_hints(cls)
        for key, text in cls.RANGES.items():
            number = _number_type(hints[key])
            is_list = typing.get_origin(hints[key]) is tuple
            for value in _just_outside(text, number):
                yield pytest.param(cls, key, (value,) if is_list else value, id=f"{stage}-{key}-{value}")
            if is_list:
                yield pytest.param(cls, key, (), id=f"{stage}-{key}-empty")
        for key in cls.CHOICES:
            is_list = typing.get_origin(hints[key]) is tuple
            for value in ((("not-a-choice",), ()) if is_list else ("not-a-choice",)):
                yield pytest.param(cls, key, value, id=f"{stage}-{key}-{value}")


@pytest.mark.parametrize("cls, key, value", list(_table_cases()))
def test_value_just_outside_a_table_bound_is_rejected_naming_the_key(cls, key, value):
    with pytest.raises(C.ConfigError, match=f"'{key}'"):
        cls.from_dict({key: value})


def test_every_notebook_config_has_a_table():
    for stage in NOTEBOOK_STAGES:
        assert C.STAGE_CONFIGS[stage].RANGES, stage


def test_closed_bounds_pass_and_messages_say_the_interval():
    assert RLStageConfig(num_generations=2, extra_problems_seed=999_999_999, pool_max_difficulty=5).num_generations == 2
    assert RLStageConfig(pool_max_difficulty=None, epsilon=0.0, top_p=1.0).pool_max_difficulty is None
    assert DeepConfConfig(topk=20, keep_top_percent=100, consensus_tau=1.0).topk == 20
    with pytest.raises(C.ConfigError, match=r"'max_problems' must be in \[1, inf\) or null, got 0"):
        DeepConfConfig(max_problems=0)
    with pytest.raises(C.ConfigError, match=r"'fig8_batches' must be a non-empty list with every item in \(0, inf\)"):
        ArchitectureConfig(fig8_batches=(16, 0))


def test_nan_is_outside_every_range():
    for key in ("temperature", "epsilon_high", "learning_rate", "epsilon"):
        with pytest.raises(C.ConfigError, match=key):
            RLStageConfig.from_dict({key: float("nan")})


@pytest.mark.parametrize(("ranges", "error", "match"), [
    ({"tiny_widht": "(0, inf)"}, TypeError, "tiny_widht"),  # a table naming no field
    ({"tiny_width": "0..inf"}, ValueError, "not an interval"),  # a bound that is not an interval
])
def test_a_bad_range_table_fails_at_class_definition(ranges, error, match):
    with pytest.raises(error, match=match):
        @dataclass(frozen=True)
        class Bad(C.StageConfig):
            STAGE: ClassVar[str] = "bad"
            tiny_width: int = 1
            RANGES: ClassVar[dict[str, str]] = ranges


def test_cross_key_checks_still_name_their_keys():
    with pytest.raises(C.ConfigError, match="n_init"):
        DeepConfConfig(n_init=64)
    with pytest.raises(C.ConfigError, match="vllm_max_model_length"):
        RLStageConfig(vllm_max_model_length=128)
    assert [f.name for f in dataclasses.fields(RLStageConfig)][:3] == ["profile", "seed", "sft_model_path"]


# ------------------------------------------------------------------------------ the registry


def _fresh(code: str) -> str:
    """Run ``code`` in a fresh interpreter (nothing imported yet) and return its stdout."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo_root(), timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_registry_is_complete_in_a_fresh_interpreter():
    out = _fresh("from falcon_h1r_lib.config import STAGE_CONFIGS; print(','.join(STAGE_CONFIGS))")
    assert out.split(",") == NOTEBOOK_STAGES
    out = _fresh("import falcon_h1r_lib.launch; from falcon_h1r_lib.config import STAGE_CONFIGS; "
                 "print(','.join(STAGE_CONFIGS))")
    assert out.split(",") == [*NOTEBOOK_STAGES, "launch"]
    out = _fresh("from falcon_h1r_lib.config import STAGE_CONFIGS, load_config; "
                 "print(load_config('03_sft').STAGE, STAGE_CONFIGS['04_rl'].__name__)")
    assert out == "03_sft RLStageConfig"


def test_an_inheriting_profile_file_is_laid_over_its_parent_in_a_fresh_interpreter():
    out = _fresh("from falcon_h1r_lib.configs.rl import RLStageConfig; from falcon_h1r_lib.config import profile_path, "
                 "load_config; c = RLStageConfig.from_yaml(profile_path('04_rl', 'rehearsal')); "
                 "print(c == load_config('04_rl', 'rehearsal'))")
    assert out == "True"
