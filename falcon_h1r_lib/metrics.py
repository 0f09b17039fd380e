"""Stage records: each stage writes one ``metrics.json`` that later notebooks read.

A record holds the measured numbers plus what is needed to trust them: the config and its hash,
seed, git commit, package versions and wall time (stages meet only through files, so a later stage reads
this record, never the YAML the stage was planned with).
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from .config import ConfigError, StageConfig
from .errors import MissingRun
from .paths import repo_root, stage_dir

TRACKED_PACKAGES = ("torch", "transformers", "trl", "datasets", "accelerate", "tokenizers", "math-verify", "vllm")


def git_commit() -> str | None:
    """The checkout's HEAD (with ``+dirty`` when files changed), or None outside git."""
    try:
        root = repo_root()
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _finite(obj: Any, where: str = "metrics") -> Any:
    """JSON has no NaN: refuse silently-broken numbers instead of writing them."""
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"{where}: non-finite value {obj!r}")
    if isinstance(obj, dict):
        return {str(k): _finite(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return _finite(obj.item(), where)
    return obj


class Stopwatch:
    """Wall time of a stage (``time.perf_counter``)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.start


def write_metrics(
    cfg: StageConfig,
    metrics: dict[str, Any],
    *,
    wall_time_s: float,
    reads: list[str] | None = None,
) -> Path:
    """Write ``runs/<profile>/<stage>/metrics.json`` and return its path."""
    record = {
        "stage": cfg.STAGE,
        "profile": cfg.profile,
        "seed": cfg.seed,
        "config": cfg.to_dict(),
        "config_hash": cfg.config_hash(),
        "git_commit": git_commit(),
        "packages": package_versions(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "wall_time_s": round(float(wall_time_s), 3),
        "reads": list(reads or []),
        "metrics": _finite(metrics),
    }
    return write_json_atomic(stage_dir(cfg.STAGE, cfg.profile) / "metrics.json", record)


def write_json_atomic(path: Path, obj: Any, **dumps_kwargs: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` through ``<path>.tmp`` and ``os.replace``, so a killed run leaves
    the old file or the whole new one, never half of one. ``dumps_kwargs`` go to ``json.dumps`` (e.g.
    ``allow_nan=False``: NaN or infinity raise ValueError before anything is written). Returns ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, **{"indent": 2, **dumps_kwargs}) + "\n")
    os.replace(tmp, path)
    return path


def clear_record(cfg: StageConfig) -> None:
    """Remove the stage's ``metrics.json`` before the stage (re)writes any output.

    ``metrics.json`` is written last, and later stages take its presence to mean "finished" (``stages.require``):
    a rerun that stopped halfway must not leave the old record beside half-rewritten outputs. Under ``accelerate
    launch`` every rank may call this (a missing file is fine)."""
    (stage_dir(cfg.STAGE, cfg.profile, create=False) / "metrics.json").unlink(missing_ok=True)


def read_metrics(stage: str, profile: str = "tiny") -> dict[str, Any]:
    """The full record a stage wrote; fails naming the file when the stage has not run."""
    path = stage_dir(stage, profile, create=False) / "metrics.json"
    if not path.exists():
        raise MissingRun(f"{path}: no metrics yet; run the {stage} notebook first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from err
