"""Strict stage configs: every profile YAML loads, bad keys, types and values are named, the registry is complete."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import subprocess
import sys
import typing
from dataclasses import dataclass
from typing import ClassVar

import pytest
import yaml

from falcon_h1r_lib import config as C
from falcon_h1r_lib.configs import (
    ArchitectureConfig,
    CurationConfig,
    DeepConfConfig,
    EvaluationConfig,
    RLStageConfig,
    SFTStageConfig,
)
from falcon_h1r_lib.paths import profiles_dir, repo_root
from falcon_h1r_lib.stages import recorded_config

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
    """Values just past each end of the interval ``text`` (ints step by 1, floats by one ulp); past an open
    infinite end lies the infinity itself, which a float key must refuse too."""
    low, high, low_closed, high_closed = C._interval(text)
    step = (lambda x, d: x + d) if numeric is int else (lambda x, d: math.nextafter(x, x + d))
    out = []
    for bound, closed, direction in ((low, low_closed, -1), (high, high_closed, +1)):
        if math.isinf(bound):
            out += [bound] if numeric is float and not closed else []
        else:
            out.append(step(numeric(bound), direction) if closed else numeric(bound))
    return out


def _number_type(tp) -> type:
    """int or float: the number inside ``int``, ``float | None``, ``tuple[int, ...]`` or ``dict[str, float]``."""
    if typing.get_origin(tp) is dict:
        return typing.get_args(tp)[1]
    args = [a for a in typing.get_args(tp) if a is not type(None) and a is not Ellipsis]
    return _number_type(args[0]) if args else tp


def _shaped(cls, key: str, value):
    """``value`` as ``key`` holds it: the one item of a list, the one value of a mapping (under a key of the
    default mapping), or itself."""
    origin = typing.get_origin(typing.get_type_hints(cls)[key])
    if origin is tuple:
        return (value,)
    return {next(iter(getattr(cls(), key))): value} if origin is dict else value


def _table_cases():
    """(class, key, value) for a value just outside each RANGES interval, not among the CHOICES, not matching
    the PATTERNS, and an empty list or mapping where the key holds several values."""
    for stage in NOTEBOOK_STAGES:
        cls = C.STAGE_CONFIGS[stage]
        hints = typing.get_type_hints(cls)
        cases = [(key, _shaped(cls, key, value)) for key, text in cls.RANGES.items()
                 for value in _just_outside(text, _number_type(hints[key]))]
        cases += [(key, _shaped(cls, key, "not-a-choice")) for key in cls.CHOICES]
        cases += [(key, "not-a-match") for key in cls.PATTERNS]
        cases += [(key, typing.get_origin(hints[key])()) for key in [*cls.RANGES, *cls.CHOICES]
                  if typing.get_origin(hints[key]) in (tuple, dict)]
        for key, value in cases:
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


INF, NAN = float("inf"), float("nan")
# Values a break test found accepted: (config class, values, the key the error must name).
ONCE_ACCEPTED = [
    (SFTStageConfig, {"learning_rate": INF}, "learning_rate"),
    (SFTStageConfig, {"num_train_epochs": INF}, "num_train_epochs"),
    (SFTStageConfig, {"rope_theta": 0.0}, "rope_theta"),
    (SFTStageConfig, {"adam_beta1": 1.0}, "adam_beta1"),
    (SFTStageConfig, {"adam_beta2": -0.5}, "adam_beta2"),
    (SFTStageConfig, {"weight_decay": -0.01}, "weight_decay"),
    (SFTStageConfig, {"max_grad_norm": -0.5}, "max_grad_norm"),
    (SFTStageConfig, {"lr_scheduler_type": "linear_warmup"}, "lr_scheduler_type"),
    (SFTStageConfig, {"seed": -1}, "seed"),
    (RLStageConfig, {"temperature": INF}, "temperature"),
    (RLStageConfig, {"max_grad_norm": -1.0}, "max_grad_norm"),
    (RLStageConfig, {"vllm_server_port": 0}, "vllm_server_port"),
    (RLStageConfig, {"vllm_server_port": 65536}, "vllm_server_port"),
    (RLStageConfig, {"epsilon": 0.3, "epsilon_high": 0.2}, "epsilon_high"),
    (RLStageConfig, {"backfill": True, "cache_size": 0}, "cache_size"),
    (RLStageConfig, {"lr_scheduler_type": "constant_warmup"}, "lr_scheduler_type"),
    (RLStageConfig, {"seed": 2**32}, "seed"),
    (EvaluationConfig, {"temperature": INF}, "temperature"),
    (DeepConfConfig, {"temperature": -0.1}, "temperature"),
    (DeepConfConfig, {"temperature": NAN}, "temperature"),
    (DeepConfConfig, {"top_p": 0.0}, "top_p"),
    (DeepConfConfig, {"top_p": 1.5}, "top_p"),
    (CurationConfig, {"teacher_error_slope": INF}, "teacher_error_slope"),
    (CurationConfig, {"teacher_error_slope": NAN}, "teacher_error_slope"),
    (CurationConfig, {"teacher_error_slope": -0.5}, "teacher_error_slope"),  # data.teacher refuses it at run time
    (CurationConfig, {"decontam_near_threshold": 1.5}, "decontam_near_threshold"),
    (CurationConfig, {"domain_token_shares": {"math": INF}}, "domain_token_shares"),
    (CurationConfig, {"domain_token_shares": {"math": NAN, "code": 1.0}}, "domain_token_shares"),
    (CurationConfig, {"max_total_tokens": 0}, "max_total_tokens"),
    (CurationConfig, {"max_rows_per_source": 0}, "max_rows_per_source"),
    (CurationConfig, {"rl_domains": []}, "rl_domains"),
    (CurationConfig, {"teacher_style": "terse"}, "teacher_style"),
    (CurationConfig, {"hard_weight_max": INF}, "hard_weight_max"),
    (ArchitectureConfig, {"analytic_context_lens": []}, "analytic_context_lens"),
    (ArchitectureConfig, {"decode_context_lens": [256, 0]}, "decode_context_lens"),
    (ArchitectureConfig, {"bench_lengths": [-1]}, "bench_lengths"),
    (ArchitectureConfig, {"device": "gpu"}, "device"),
    (ArchitectureConfig, {"device": "cuda:"}, "device"),
    (ArchitectureConfig, {"seed": 2**32}, "seed"),
]


@pytest.mark.parametrize("cls, values, key", ONCE_ACCEPTED,
                         ids=[f"{c.STAGE}-{v}" for c, v, _ in ONCE_ACCEPTED])
def test_values_once_accepted_are_rejected_naming_the_key(cls, values, key):
    with pytest.raises(C.ConfigError, match=f"'{key}'"):
        cls.from_dict(values)


def test_values_at_the_new_bounds_pass():
    assert SFTStageConfig(adam_beta1=0.0, weight_decay=0.0, seed=2**32 - 1).seed == 2**32 - 1
    assert RLStageConfig(vllm_server_port=65535, epsilon_high=0.2, backfill=False, cache_size=0).cache_size == 0
    assert DeepConfConfig(temperature=0.0, top_p=1.0).temperature == 0.0
    assert CurationConfig(decontam_near_threshold=None, max_total_tokens=None, teacher_style="verbose",
                          teacher_error_slope=0.0).max_total_tokens is None
    assert ArchitectureConfig(device="cuda:1").device == "cuda:1"
    assert EvaluationConfig(device="cuda").device == "cuda"


def test_open_infinite_bounds_exclude_infinity():
    assert not C._in_interval(INF, "(0, inf)") and not C._in_interval(-INF, "(-inf, inf)")
    assert C._in_interval(INF, "[0, inf]") and C._in_interval(1e308, "(0, inf)")


def test_scheduler_names_are_transformers_scheduler_types():
    """The static list (config.py must not import transformers: seconds) is transformers' SchedulerType."""
    from transformers import SchedulerType

    assert set(C.LR_SCHEDULER_TYPES) == {s.value for s in SchedulerType}
    for cls in (SFTStageConfig, RLStageConfig):
        assert cls.CHOICES["lr_scheduler_type"] == C.LR_SCHEDULER_TYPES


def test_teacher_styles_are_the_teachers():
    from falcon_h1r_lib.data.teacher import STYLES

    assert set(CurationConfig.CHOICES["teacher_style"]) == set(STYLES)


# Numeric keys checked only against other keys, in __post_init__ (the cross-key rule says where each lies).
CROSS_KEY_ONLY = {"03_sft": {"max_steps"}}  # -1 (the epochs decide) or positive


@pytest.mark.parametrize("stage", NOTEBOOK_STAGES)
def test_every_numeric_key_has_a_range(stage):
    """A number with no rule is how nan, inf and negative sizes got through: each needs a RANGES interval."""
    cls = C.STAGE_CONFIGS[stage]
    hints = typing.get_type_hints(cls)
    numeric = {k for k, tp in hints.items() if k in {f.name for f in dataclasses.fields(cls)}
               and _number_type(tp) in (int, float)}
    unchecked = numeric - set(cls.RANGES) - CROSS_KEY_ONLY.get(stage, set())
    assert not unchecked, f"{cls.__name__}: numeric key(s) without a RANGES interval: {sorted(unchecked)}"


@pytest.mark.parametrize("cls", [SFTStageConfig, RLStageConfig, EvaluationConfig, DeepConfConfig])
@pytest.mark.parametrize("blank", ["", "   ", "\n\t", "\u200b", " \u200b\ufeff\u00a0", "\u3164", "\u2800"])
def test_a_blank_system_prompt_is_refused(cls, blank):
    """None asks for Falcon's prompt; an empty string would silently train or sample with an empty system turn.
    Before: a zero-width space passed the blank check."""
    with pytest.raises(C.ConfigError, match="'system_prompt' is blank.*None"):
        cls.from_dict({"system_prompt": blank})
    assert cls(system_prompt=None).system_prompt is None


@pytest.mark.parametrize("line", ["system_prompt: None", "system_prompt: 'null'", "system_prompt: ' NULL '",
                                  "system_prompt: '~'"])
def test_a_null_written_as_text_is_not_a_system_prompt(tmp_path, line):
    """Before: ``system_prompt: None`` in a YAML (YAML's null is ``null``) trained with the system turn "None"."""
    import re

    path = tmp_path / "03_sft.yaml"
    path.write_text(f"profile: tiny\n{line}\n")
    with pytest.raises(C.ConfigError, match=re.escape(str(path)) + r".*'system_prompt' is the text .*, which YAML reads"):
        SFTStageConfig.from_yaml(path)
    path.write_text("profile: tiny\nsystem_prompt: null\n")
    assert SFTStageConfig.from_yaml(path).system_prompt is None
    assert SFTStageConfig(system_prompt="None of the above: think first.").system_prompt.startswith("None")


@pytest.mark.parametrize("value", ["None\u200b", "\ufeffnull", 5, ["x"]])
def test_disguised_nulls_and_non_strings_are_refused_by_name(value):
    with pytest.raises(C.ConfigError, match="'system_prompt'"):
        SFTStageConfig(system_prompt=value)


# ------------------------------------------------------------------------------ where a bad value came from


def _from_yaml(tmp_path, monkeypatch, values):
    path = tmp_path / "03_sft.yaml"
    path.write_text(yaml.safe_dump({"profile": "tiny", **values}))
    return lambda: SFTStageConfig.from_yaml(path), str(path)


def _from_rehearsal_yaml(tmp_path, monkeypatch, values):
    path = tmp_path / "03_sft.yaml"
    path.write_text(yaml.safe_dump({"profile": "rehearsal", **values}))
    return lambda: SFTStageConfig.from_yaml(path), f"{C.profile_path('03_sft', 'full')} + {path}"


def _from_notebook_parameters(tmp_path, monkeypatch, values):
    namespace = {**SFTStageConfig().to_dict(), **values}
    return lambda: C.config_from_parameters(SFTStageConfig, namespace), "03_sft notebook parameters"


def _from_recorded_metrics(tmp_path, monkeypatch, values):
    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    metrics = tmp_path / "tiny" / "03_sft" / "metrics.json"
    metrics.parent.mkdir(parents=True)
    metrics.write_text(json.dumps({"config": {**SFTStageConfig().to_dict(), **values}}))
    return lambda: recorded_config("03_sft", "tiny"), str(metrics)


@pytest.mark.parametrize("source", [_from_yaml, _from_rehearsal_yaml, _from_notebook_parameters,
                                    _from_recorded_metrics])
@pytest.mark.parametrize("values, key", [
    ({"learning_rate": NAN}, "learning_rate"),  # a RANGES interval
    ({"learning_rate": -0.1}, "learning_rate"),
    ({"max_steps": 0}, "max_steps"),  # a check in __post_init__
    ({"system_prompt": " "}, "system_prompt"),
])
def test_value_errors_name_their_source(tmp_path, monkeypatch, source, values, key):
    load, where = source(tmp_path, monkeypatch, values)
    with pytest.raises(C.ConfigError, match=f"^{re.escape(where)}: .*'{key}'"):
        load()


# ------------------------------------------------------------------------------ the YAML reader


@pytest.mark.parametrize("text, line, key", [
    ("profile: tiny\nseed: 0\nseed: 1\n", 3, "seed"),
    ("profile: tiny\nvllm:\n  max_model_len: 1024\n  max_model_len: 2048\n", 4, "max_model_len"),
])
def test_duplicate_yaml_keys_are_refused_naming_file_line_and_key(tmp_path, text, line, key):
    path = tmp_path / "05_evaluation.yaml"
    path.write_text(text)
    with pytest.raises(C.ConfigError, match=rf"^{re.escape(str(path))}:{line}: duplicate key '{key}'"):
        C.read_yaml_mapping(path)


def test_a_float_yaml_reads_as_a_string_gets_a_hint(tmp_path):
    """YAML 1.1 (PyYAML) reads 1e-5 as a string: it wants a dot and a signed exponent."""
    path = tmp_path / "03_sft.yaml"
    path.write_text("profile: tiny\nlearning_rate: 1e-5\n")
    with pytest.raises(C.ConfigError, match=r"'learning_rate'.*YAML 1\.1.*1\.0e-5"):
        SFTStageConfig.from_yaml(path)
    path.write_text("profile: tiny\ndecontam_near_threshold: 5e-1\n")  # a float | None key
    with pytest.raises(C.ConfigError, match=r"'decontam_near_threshold'.*YAML 1\.1.*5\.0e-1"):
        CurationConfig.from_yaml(path)


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


def test_equal_values_hash_equally():
    """Before: beta=-0.0 (equal to 0.0) gave another config hash, so a finished stage looked changed."""
    base = RLStageConfig(beta=0.0)
    assert RLStageConfig(beta=-0.0).config_hash() == base.config_hash()
    assert RLStageConfig(beta=0).config_hash() == base.config_hash()  # an int given to a float field
    assert RLStageConfig(temperature=1).config_hash() == RLStageConfig(temperature=1.0).config_hash()
    assert C._as_declared((1, 2), tuple[float, ...] | None) == (1.0, 2.0)  # inside an Optional too
    assert C._as_declared({"a": 1}, dict[str, float] | None) == {"a": 1.0} and C._as_declared(None, float | None) is None
    shares = {"math": 1, "code": 0, "science": 0, "other": 0}  # ints inside a dict[str, float] (break test)
    assert CurationConfig(domain_token_shares=shares).config_hash() == CurationConfig.from_dict(
        {"domain_token_shares": shares}).config_hash()
    for stage_name in C.STAGE_CONFIGS:  # a recorded config reads back as the same config
        cfg = C.load_config(stage_name, "tiny")
        assert type(cfg).from_dict(cfg.to_dict()).config_hash() == cfg.config_hash()
    assert RLStageConfig(beta=0.01).config_hash() != base.config_hash()
