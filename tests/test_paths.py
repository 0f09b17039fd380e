"""Repo-rooted paths: they never depend on the working directory, and the env vars move them."""

from __future__ import annotations

import pytest

from falcon_h1r_lib import paths
from falcon_h1r_lib.config import ConfigError


def test_repo_root_is_the_checkout():
    root = paths.repo_root()
    assert (root / "pyproject.toml").exists()
    assert (root / "falcon_h1r_lib").is_dir()


def test_paths_do_not_depend_on_cwd(tmp_path, monkeypatch):
    before = paths.figures_dir(create=False)
    monkeypatch.chdir(tmp_path)
    assert paths.figures_dir(create=False) == before
    assert paths.resolve_path("runs/x") == paths.repo_root() / "runs" / "x"
    assert paths.resolve_path(tmp_path) == tmp_path


def test_env_override_of_root(tmp_path, monkeypatch):
    monkeypatch.setenv("FALCON_H1R_ROOT", str(tmp_path))
    assert paths.repo_root() == tmp_path.resolve()
    assert paths.runs_dir("tiny") == tmp_path.resolve() / "runs" / "tiny"


def test_runs_env_moves_runs_but_not_the_repo(tmp_path, monkeypatch):
    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    assert paths.stage_dir("03_sft", "full", create=False) == tmp_path.resolve() / "full" / "03_sft"
    assert paths.resolve_path("runs/tiny/x") == tmp_path.resolve() / "tiny" / "x"
    assert paths.repo_relative("runs/tiny/x") == "runs/tiny/x"  # outside the checkout: as given
    assert paths.repo_relative("notebooks/01_architecture.ipynb") == "notebooks/01_architecture.ipynb"


def test_records_round_trip_when_the_runs_root_sits_inside_the_repo(monkeypatch):
    """FALCON_H1R_RUNS=<repo>/runs/exp/s1 (a side experiment): a stored path read back must be the same file.
    Before, ``repo_relative`` gave ``runs/exp/s1/tiny/x`` and ``resolve_path`` read it as
    ``<runs root>/exp/s1/tiny/x`` (the prefix twice); outside the repo, paths stay as they were given."""
    root = paths.repo_root() / "runs" / "exp" / "s1"
    monkeypatch.setenv("FALCON_H1R_RUNS", str(root))
    stored = root / "tiny" / "04_rl" / "eval" / "grades.parquet"
    assert paths.resolve_path(paths.repo_relative(stored)) == stored.resolve()
    assert paths.repo_relative(stored) == str(stored)  # no relative form reads back as this file
    assert paths.repo_relative("notebooks/01_architecture.ipynb") == "notebooks/01_architecture.ipynb"


def test_unknown_profile_is_named():
    with pytest.raises(ConfigError, match="'huge'"):
        paths.runs_dir("huge")
