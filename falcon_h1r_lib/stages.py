"""The pipeline's stages and what each one hands to the next: one table of stage names and output paths.

Stages meet only through files under ``runs/<profile>/<NN_stage>/``, never through each other's code or YAML. A later stage asks this
module for an earlier stage's output and gets its path, or the config that stage ran with (recorded in its
``metrics.json``), or an error that names the missing folder and the notebook or command that writes it.
Nothing here re-runs a stage: if notebook 02 ran with other parameters, SFT trains on what 02 wrote, and a later
stage's fingerprint holds a digest of what it read (``recorded_hash``, ``data.build.output_digest``), so its saved
model is retrained rather than kept stale. ``require_models`` checks the checkpoints notebooks 05 and 06 compare
against this table. A profile runs the stages it has a YAML for (the rehearsal has none for notebook 01).

Every stage is importable and launchable the same way: ``falcon_h1r_lib.<package>.run(cfg)`` and
``python -m falcon_h1r_lib.<package> --config FILE``: one entry-point pattern.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from falcon_h1r_lib.config import STAGE_CONFIGS, ConfigError, StageConfig, profile_path
from falcon_h1r_lib.paths import PROFILES, notebooks_dir, repo_relative, resolve_path, runs_root, stage_dir


class MissingStageOutput(ConfigError):
    """An upstream stage has not written what a later stage reads; the message names the notebook to run."""


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: notebook ``notebooks/<name>.ipynb``, folder ``runs/<profile>/<name>/``, config
    ``profiles/<profile>/<name>.yaml``, code ``falcon_h1r_lib.<package>``."""

    name: str
    package: str
    outputs: Mapping[str, str] = field(default_factory=dict)  # key -> path inside the stage folder

    @property
    def notebook(self) -> Path:
        return notebooks_dir() / f"{self.name}.ipynb"

    def command(self, profile: str) -> str:
        """The shell command that (re)writes this stage's outputs for ``profile``. A profile runs the stages it has a
        YAML for (the rehearsal has none for notebook 01: ``rehearsal.SLURM_STAGES`` does not rehearse it); for
        any other stage this raises ConfigError naming the missing file."""
        config = profile_path(self.name, profile)
        if not config.exists():
            raise ConfigError(f"{self.name}: no {repo_relative(config)}: the {profile} profile does not run "
                              f"{self.name}")
        return f"python -m falcon_h1r_lib.{self.package} --config {repo_relative(config)}"


_METRICS = {"metrics": "metrics.json"}
STAGES: tuple[Stage, ...] = (
    Stage("01_architecture", "architecture", {**_METRICS}),
    Stage("02_data_curation", "data", {
        **_METRICS,
        "sft": "sft.parquet",  # curated SFT traces ([P] §2)
        "rl_problems": "rl_problems.parquet",  # problems left for RL, disjoint from SFT
        "eval": "eval.parquet",  # held-out problems curation decontaminated against
        "raw_traces": "raw_traces.parquet",  # the tiny teacher's rollouts before curation
        "tokenizer": "tokenizer",  # the tiny tokenizer (tiny profile only)
    }),
    Stage("03_sft", "sft", {
        **_METRICS,
        "base": "base",  # the base model SFT started from (tiny: pretrained here)
        "sft": "sft",  # the SFT model + tokenizer ([P] §3)
        "data": "data",  # tokenized SFT rows (disk-backed dataset)
        "checkpoints": "checkpoints",
        "pretrain_checkpoints": "pretrain_checkpoints",
        "eval": "eval",  # base-vs-SFT evaluation traces
    }),
    Stage("04_rl", "rl", {
        **_METRICS,
        "rl": "rl",  # the RL policy + tokenizer ([P] §4)
        "checkpoints": "checkpoints",
        "train_log": "train_log.jsonl",  # one line per logging step (Fig. 6 curves)
        "filter": "rl_filter_rollouts.parquet",  # the Fig. 9 filter: each pool problem's k outcomes and decision
        "eval": "eval",  # SFT-vs-RL evaluation traces
        "headroom": "headroom",  # SFT/RL traces and grades of the pass@k headroom check (held-out + RL pool sample)
        "headroom_curves": "headroom_pass_at_k.csv",  # pass@k per set, model, level and k, with bootstrap CIs
        "headroom_change": "headroom_rl_minus_sft.csv",  # RL - SFT pass@k per set, level and k, paired CIs
    }),
    Stage("05_evaluation", "evaluation", {**_METRICS}),
    Stage("06_deepconf_scaling", "deepconf", {**_METRICS}),
)
_BY_NAME = {s.name: s for s in STAGES}


def stage(name: str) -> Stage:
    """The stage called ``name`` (``"03_sft"``); raises ConfigError listing the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ConfigError(f"stage: unknown stage {name!r}; known: {', '.join(_BY_NAME)}") from None


def output_path(name: str, key: str, profile: str = "tiny") -> Path:
    """``runs/<profile>/<stage>/<output>``: where stage ``name`` writes output ``key`` (not checked to exist)."""
    s = stage(name)
    if key not in s.outputs:
        raise ConfigError(f"{name}: no output {key!r}; it writes {', '.join(s.outputs)}")
    return stage_dir(name, profile, create=False) / s.outputs[key]


def _missing(name: str, profile: str, what: Path) -> MissingStageOutput:
    s = stage(name)
    if profile == "tiny":
        how = f"run notebook {repo_relative(s.notebook)} first"
    elif profile_path(name, profile).exists():
        how = f"run `{s.command(profile)}` (or notebook {repo_relative(s.notebook)} with the {profile} profile) first"
    else:
        how = (f"the {profile} profile does not run {name} (no {repo_relative(profile_path(name, profile))}), so "
               f"nothing of the {profile} profile may need it")
    return MissingStageOutput(f"{what} does not exist: {how}. Later stages read what {name} wrote; "
                              "they never rebuild it.")


def require(name: str, key: str, profile: str = "tiny") -> Path:
    """``output_path`` that must exist: the stage must have finished (its ``metrics.json`` is written last) and
    the output must be there. Raises MissingStageOutput naming the folder and the notebook / command to run."""
    metrics = output_path(name, "metrics", profile)
    if not metrics.exists():
        raise _missing(name, profile, metrics)
    path = output_path(name, key, profile)
    if not path.exists():
        raise _missing(name, profile, path)
    return path


def started(name: str, key: str, profile: str = "tiny") -> bool:
    """Whether stage ``name`` has begun writing output ``key`` or finished (``metrics.json``): a stage that has not
    started may be left out by a later one (``require_models``' ``optional``), a started one must be complete."""
    return output_path(name, "metrics", profile).exists() or output_path(name, key, profile).exists()


def output_of(path: str | Path) -> tuple[str, str, str] | None:
    """(stage, output key, profile) when ``path`` (``runs/...``, relative to the repo root, or absolute) is one of
    the table's outputs, ``<runs root>/<profile>/<stage>/<output>``, or lies inside one (``04_rl/checkpoints/
    checkpoint-10`` belongs to ``checkpoints``); None for any other path or a Hub id. Raises ConfigError for a
    path that is not a string or ``os.PathLike``."""
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"a model path must be a string or a path, got {path!r} ({type(path).__name__})")
    try:
        parts = resolve_path(path).resolve().relative_to(runs_root().resolve()).parts
    except ValueError:
        return None
    if len(parts) < 3 or parts[0] not in PROFILES or parts[1] not in _BY_NAME:
        return None
    keys = [k for k, rel in _BY_NAME[parts[1]].outputs.items() if rel == parts[2]]
    return (parts[1], keys[0], parts[0]) if keys else None


def require_models(models: Mapping[str, str], optional: Collection[str] = ()) -> dict[str, str]:
    """``models`` ({label: checkpoint path or Hub id}, in order) checked against the stage table: a path that is a
    stage's output, or inside one (``output_of``), must be complete (``require``: the stage's ``metrics.json`` and
    the output), so a half-written stage is refused: a stage removes its old ``metrics.json`` before it rewrites
    anything (``metrics.clear_record``). A model of a stage named in ``optional`` that has not ``started`` is left out,
    unless none would be left. Other paths and Hub ids pass as given (loading checks them).

    Returns {label: path as given}. Raises MissingStageOutput naming the notebook (tiny) or command to run.
    """
    out: dict[str, str] = {}
    skipped: list[tuple[str, str, str]] = []
    for label, path in models.items():
        try:
            found = output_of(path)
        except ConfigError as err:
            raise ConfigError(f"models[{label!r}]: {err}") from None
        if found is not None:
            name, key, profile = found
            if name in optional and not started(name, key, profile):
                skipped.append(found)
                continue
            require(name, key, profile)
        out[label] = path
    if not out and skipped:
        require(*skipped[0])  # raises, naming what to run for the first of them
    return out


def recorded_hash(name: str, profile: str = "tiny") -> str:
    """The ``config_hash`` stage ``name`` recorded in its ``metrics.json`` (what a later stage's fingerprint takes
    from it). Raises MissingStageOutput when the stage has not run, ConfigError when the record has no hash."""
    import json

    path = require(name, "metrics", profile)
    try:
        value = json.loads(path.read_text())["config_hash"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ConfigError(f"{path}: no readable 'config_hash' ({err!r}); re-run {repo_relative(stage(name).notebook)}"
                          ) from err
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path}: 'config_hash' must be a non-empty string, got {value!r}")
    return value


def recorded_config(name: str, profile: str = "tiny") -> StageConfig:
    """The config stage ``name`` last ran with, read back from its ``metrics.json`` (validated like a YAML).

    This, not the profile's YAML, is what a later stage must trust: a notebook may have run with other
    parameters. Raises MissingStageOutput when the stage has not run, ConfigError when the record is unreadable.
    """
    import json

    path = require(name, "metrics", profile)
    try:
        record = json.loads(path.read_text())
        values = record["config"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ConfigError(f"{path}: no readable 'config' record ({err!r}); re-run {repo_relative(stage(name).notebook)}"
                          ) from err
    if values.get("profile") != profile:
        raise ConfigError(f"{path}: config.profile is {values.get('profile')!r}, expected {profile!r}")
    cls = STAGE_CONFIGS[name]
    return cls.from_dict(values, source=str(path))
