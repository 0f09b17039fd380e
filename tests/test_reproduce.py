"""The papermill runner: order, executed copies, and the failing notebook and cell named."""

from __future__ import annotations

import json

import nbformat
import pytest

from falcon_h1r_lib import config as C
from falcon_h1r_lib import metrics as M
from falcon_h1r_lib import reproduce as R
from falcon_h1r_lib.configs import ArchitectureConfig
from falcon_h1r_lib.paths import notebooks_dir


def _notebook(path, cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("x = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params] + [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)


@pytest.fixture()
def fake_repo(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.setenv("FALCON_H1R_ROOT", str(tmp_path))
    monkeypatch.delenv("FALCON_H1R_RUNS", raising=False)  # the runs live under this root
    return tmp_path


@pytest.mark.slow
def test_runner_stops_at_failing_cell_and_names_it(fake_repo, capsys):
    _notebook(fake_repo / "notebooks" / "01_ok.ipynb", ["y = x + 1", "assert y == 2"])
    _notebook(fake_repo / "notebooks" / "02_bad.ipynb", ["z = 3", "raise RuntimeError('claim broken')", "w = 1"])
    _notebook(fake_repo / "notebooks" / "03_never.ipynb", ["pass"])
    code = R.main(["--profile", "tiny"])
    assert code == 1
    err = capsys.readouterr().err
    assert "02_bad.ipynb" in err and "cell 2" in err and "claim broken" in err
    summary = json.loads((fake_repo / "runs" / "tiny" / "reproduce.json").read_text())
    assert [n["notebook"] for n in summary["notebooks"]] == ["01_ok.ipynb", "02_bad.ipynb"]
    assert (fake_repo / "runs" / "tiny" / "notebooks" / "01_ok.ipynb").exists()


def test_discover_and_only(fake_repo):
    for name in ("02_b", "01_a", "10_c", "notes"):
        _notebook(fake_repo / "notebooks" / f"{name}.ipynb", ["pass"])
    assert [p.stem for p in R.discover_notebooks()] == ["01_a", "02_b", "10_c"]
    assert [p.stem for p in R.discover_notebooks(["02"])] == ["02_b"]
    with pytest.raises(C.ConfigError, match="07"):
        R.discover_notebooks(["07"])


def test_strip_outputs(fake_repo):
    path = fake_repo / "notebooks" / "01_a.ipynb"
    _notebook(path, ["print(1)"])
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    nb.cells[1].execution_count = 3
    nbformat.write(nb, path)
    assert R.strip_outputs() == [path]
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[1].outputs == [] and nb.cells[1].execution_count is None
    assert R.strip_outputs() == []


def test_full_profile_parameters_are_validated(fake_repo):
    params = R.parameters_for(notebooks_dir() / "01_architecture.ipynb", "full")
    assert params["profile"] == "full" and params["device"] == "cuda"
    assert R.parameters_for(notebooks_dir() / "01_architecture.ipynb", "tiny") == {}


def test_metrics_record_round_trip(fake_repo):
    cfg = ArchitectureConfig()
    path = M.write_metrics(cfg, {"ratio": 1.5, "by_len": {"256": 2}}, wall_time_s=1.234)
    record = M.read_metrics(cfg.STAGE)
    assert path.exists() and record["metrics"]["ratio"] == 1.5
    assert record["config_hash"] == cfg.config_hash() and record["packages"]["torch"]
    with pytest.raises(ValueError, match="nan"):
        M.write_metrics(cfg, {"bad": float("nan")}, wall_time_s=0.0)
    with pytest.raises(C.ConfigError, match="no metrics"):
        M.read_metrics("02_data_curation")


def test_kernels_start_offline_on_tiny_with_sleeping_openmp_threads():
    from falcon_h1r_lib.reproduce import kernel_env_defaults

    assert kernel_env_defaults("tiny") == {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                                           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "VLLM_LOGGING_LEVEL": "ERROR",
                                           "OMP_WAIT_POLICY": "PASSIVE"}
    assert kernel_env_defaults("full") == {"OMP_WAIT_POLICY": "PASSIVE"}  # the full profile reaches the Hub


@pytest.mark.slow
def test_executed_notebooks_carry_their_figures_inline(fake_repo, monkeypatch):
    """Importing `plots` must not switch a kernel off its inline backend (it once forced Agg, and the Makefile
    exported MPLBACKEND=Agg: executed notebooks held no image at all)."""
    monkeypatch.delenv("MPLBACKEND", raising=False)
    _notebook(fake_repo / "notebooks" / "01_fig.ipynb", [
        "import matplotlib.pyplot as plt\nfrom falcon_h1r_lib import plots",
        "fig, ax = plt.subplots(figsize=(2, 1))\nax.plot([0, 1], [1, 0])\nplt.show()"])
    assert R.main(["--profile", "tiny"]) == 0
    nb = nbformat.read(fake_repo / "runs" / "tiny" / "notebooks" / "01_fig.ipynb", as_version=4)
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 1


def test_the_makefile_leaves_the_matplotlib_backend_to_each_process():
    from falcon_h1r_lib.paths import repo_root

    assert "MPLBACKEND" not in (repo_root() / "Makefile").read_text()  # `make lab` kernels keep inline figures


def test_a_notebook_sets_the_kernel_environment_of_make_reproduce_itself(monkeypatch):
    """JupyterLab and nbval kernels do not go through the runner: the import cell's first call gives them its
    environment (a value already set wins) and silences tqdm.auto's IProgress warning, printed with an absolute
    venv path in every notebook's first cell."""
    import warnings

    for key in R.kernel_env_defaults("tiny"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # the user's own choice
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        R.notebook_environment("tiny")
        warnings.warn("IProgress not found. Please update jupyter and ipywidgets.", stacklevel=1)
        warnings.warn("something else", stacklevel=1)
    assert [str(w.message) for w in seen] == ["something else"]
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_every_notebook_sets_its_environment_before_anything_else():
    for path in R.discover_notebooks():
        nb = nbformat.read(path, as_version=4)
        first = next(c for c in nb.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", []))
        code = [line for line in first.source.splitlines() if line.strip() and not line.startswith(("#", "import os"))]
        assert code[:2] == ["from falcon_h1r_lib.reproduce import notebook_environment",
                            "notebook_environment(profile)  # first: `make reproduce`'s kernel environment "
                            "(tiny: offline, no load bars)"], path.name
