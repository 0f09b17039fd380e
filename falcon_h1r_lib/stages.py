"""The pipeline's stages and what each one hands to the next: one table of stage names and output paths.

Stages meet only through files under ``runs/<profile>/<NN_stage>/`` (STYLE rule 4). A later stage asks this
module for an earlier stage's output and gets its path, or the config that stage ran with (recorded in its
``metrics.json``), or an error that names the missing folder and the notebook or command that writes it.
Nothing here re-runs a stage: if notebook 02 ran with other parameters, SFT trains on what 02 wrote.

Every stage is importable and launchable the same way: ``falcon_h1r_lib.<package>.run(cfg)`` and
``python -m falcon_h1r_lib.<package> --config FILE`` (STYLE rule 3).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from falcon_h1r_lib.config import STAGE_CONFIGS, ConfigError, StageConfig
from falcon_h1r_lib.paths import notebooks_dir, repo_relative, stage_dir


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
        """The shell command that (re)writes this stage's outputs for ``profile``."""
        return f"python -m falcon_h1r_lib.{self.package} --config falcon_h1r_lib/profiles/{profile}/{self.name}.yaml"


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
    how = (f"run notebook {repo_relative(s.notebook)}" if profile == "tiny"
           else f"run `{s.command(profile)}` (or notebook {repo_relative(s.notebook)} with the {profile} profile)")
    return MissingStageOutput(f"{what} does not exist: {how} first. Later stages read what {name} wrote; "
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
