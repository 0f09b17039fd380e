"""Each tiny default is written in three places: a notebook's ``parameters`` cell (what nbval and papermill run),
its stage dataclass, and ``profiles/tiny/<stage>.yaml``. These tests pin all three to each other."""

from __future__ import annotations

import ast
import dataclasses

import nbformat
import pytest

from falcon_h1r_lib.config import STAGE_CONFIGS, load_config
from falcon_h1r_lib.paths import notebooks_dir
from falcon_h1r_lib.stages import STAGES


def parameters_cell(stage: str) -> nbformat.NotebookNode:
    nb = nbformat.read(notebooks_dir() / f"{stage}.ipynb", as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{stage}.ipynb: expected one cell tagged 'parameters', found {len(cells)}"
    return cells[0]


def parameters(stage: str) -> dict[str, object]:
    """The cell's ``name: type = literal`` lines as {name: value}; anything else in the cell is an error."""
    values: dict[str, object] = {}
    for node in ast.parse(parameters_cell(stage).source).body:
        assert isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None, (
            f"{stage}.ipynb parameters cell, line {node.lineno}: only `name: type = literal` lines belong here")
        values[node.target.id] = ast.literal_eval(node.value)
    return values


def canonical(value: object) -> object:
    """Lists and tuples compare equal (YAML has no tuples; dataclasses store tuples)."""
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    return value


NOTEBOOK_STAGES = [s.name for s in STAGES]


def test_every_stage_has_a_notebook_and_a_config():
    assert sorted(p.stem for p in notebooks_dir().glob("[0-9][0-9]_*.ipynb")) == NOTEBOOK_STAGES
    assert set(NOTEBOOK_STAGES) <= set(STAGE_CONFIGS)


@pytest.mark.parametrize("stage", NOTEBOOK_STAGES)
def test_parameters_cell_is_the_dataclass_defaults(stage):
    cls = STAGE_CONFIGS[stage]
    cell = parameters(stage)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert list(cell) == list(fields), f"{stage}.ipynb parameters cell: names/order differ from {cls.__name__}"
    defaults = cls()
    for name, value in cell.items():
        assert canonical(value) == canonical(getattr(defaults, name)), (
            f"{stage}.ipynb parameter {name} = {value!r}, but {cls.__name__}.{name} defaults to "
            f"{getattr(defaults, name)!r}")


@pytest.mark.parametrize("stage", NOTEBOOK_STAGES)
def test_parameters_cell_is_the_tiny_yaml(stage):
    tiny = load_config(stage, "tiny")
    for name, value in parameters(stage).items():
        assert canonical(value) == canonical(getattr(tiny, name)), (
            f"{stage}.ipynb parameter {name} = {value!r}, but profiles/tiny/{stage}.yaml says {getattr(tiny, name)!r}")


def test_the_check_fails_on_a_drifted_cell(monkeypatch):
    """The comparison above can fail: a parameters cell with one changed literal is caught, naming the key."""
    cell = parameters("05_evaluation")
    cell["temperature"] = 0.7
    monkeypatch.setattr(f"{__name__}.parameters", lambda stage: cell)
    with pytest.raises(AssertionError, match="temperature"):
        test_parameters_cell_is_the_dataclass_defaults("05_evaluation")
