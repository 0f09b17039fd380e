"""Repo-rooted paths: every file the pipeline reads or writes is found from here, never from the working directory
(nbval starts kernels in ``notebooks/``; papermill users start anywhere). Separate from ``config`` so that code
which only needs a folder does not load the config machinery.
"""

from __future__ import annotations

import os
from pathlib import Path

from falcon_h1r_lib.errors import ConfigError

PROFILES = ("tiny", "full", "rehearsal")  # each names a folder of profiles/ and of the runs root


def check_profile(profile: str) -> None:
    """Raise ConfigError unless ``profile`` is one of PROFILES."""
    if profile not in PROFILES:
        raise ConfigError(f"profile: unknown profile {profile!r}; known: {', '.join(PROFILES)}")


def repo_root() -> Path:
    """The repository root: ``$FALCON_H1R_ROOT`` if set, else the folder above this package.

    The package is installed editable (``pip install -e .``), so ``__file__`` sits in the checkout.
    """
    env = os.environ.get("FALCON_H1R_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").exists():
        return here
    for parent in [Path.cwd(), *Path.cwd().parents]:  # non-editable install: look around the cwd
        if (parent / "pyproject.toml").exists() and (parent / "falcon_h1r_lib").is_dir():
            return parent
    raise ConfigError(
        "cannot locate the repository root: set FALCON_H1R_ROOT to the checkout that holds pyproject.toml"
    )


def package_dir() -> Path:
    return Path(__file__).resolve().parent


def profiles_dir() -> Path:
    return package_dir() / "profiles"


def runs_root() -> Path:
    """Where every run writes: ``$FALCON_H1R_RUNS`` if set (a cluster's shared filesystem), else ``runs/``."""
    env = os.environ.get("FALCON_H1R_RUNS")
    return Path(env).expanduser().resolve() if env else repo_root() / "runs"


def runs_dir(profile: str = "tiny") -> Path:
    """``<runs root>/<profile>/``: every artefact (ignored by git)."""
    check_profile(profile)
    return runs_root() / profile


def stage_dir(stage: str, profile: str = "tiny", create: bool = True) -> Path:
    """``runs/<profile>/<stage>/``, where one stage writes its artefacts and ``metrics.json``."""
    path = runs_dir(profile) / stage
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def figures_dir(create: bool = True) -> Path:
    path = repo_root() / "figures"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def manifests_dir() -> Path:
    return repo_root() / "data_manifests"


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


def resolve_path(path: str | os.PathLike) -> Path:
    """Absolute paths pass through; ``runs/...`` is taken from the runs root (``runs_root``); other relative
    paths from the repo root."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    if p.parts and p.parts[0] == "runs":
        return runs_root().joinpath(*p.parts[1:])
    return repo_root() / p


def repo_relative(path: str | os.PathLike) -> str:
    """``path`` as records store it: relative to the repo root when inside it and when ``resolve_path`` reads
    that relative form back as the same file (records and fingerprints that survive moving the checkout), else
    absolute. (With ``$FALCON_H1R_RUNS`` at ``<repo>/runs/exp``, ``runs/exp/x`` would read back as
    ``<repo>/runs/exp/exp/x``: such paths stay absolute.)"""
    p = resolve_path(path)
    if p.is_relative_to(repo_root()):
        rel = p.relative_to(repo_root())
        if resolve_path(rel) == p:
            return str(rel)
    return str(path) if not Path(path).is_absolute() and not p.is_relative_to(repo_root()) else str(p)
