"""``make publish`` and what it guarantees of the committed notebooks (issue 16: outputs committed, free of volatile
noise, opened without modification; nbval checks their claims lines and fails when one changes)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from falcon_h1r_lib import publish
from falcon_h1r_lib.publish import PublishError, clean_notebook, clean_text

ROOT = Path(__file__).resolve().parents[1]
BOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_clean_text_collapses_progress_residue_colours_paths_and_the_host():
    root = Path("/srv/me/falcon")
    text = ("\x1b[32mok\x1b[0m\n"
            "step 1/3\rstep 2/3\rstep 3/3\n"
            "wrote /srv/me/falcon/runs/tiny/03_sft/metrics.json on box17 from /home/me/data\n"
            "cwd /srv/me/falcon; /srv/me/falcon-old stays\n")
    out = clean_text(text, root=root, home="/home/me", host="box17")
    assert out == ("ok\nstep 3/3\nwrote runs/tiny/03_sft/metrics.json on <host> from ~/data\n"
                   "cwd .; /srv/me/falcon-old stays\n")


def test_clean_text_leaves_a_sibling_folder_with_a_longer_name_readable():
    out = clean_text("a /srv/falcon/runs b", root=Path("/srv/falcon"), home="/home/x", host="hostname-x",
                     runs=Path("/srv/falcon/runs"))
    assert out == "a runs b"


def test_clean_text_makes_a_runs_root_anywhere_relative_and_leaves_a_short_plain_host_name_alone():
    """$FALCON_H1R_RUNS may put the runs on /scratch: those paths leaked; a host called `math` rewrote words."""
    text = "wrote /scratch/me/runs-x/tiny/01_architecture/metrics.json; math accuracy on math-dominant mixes"
    out = clean_text(text, root=Path("/srv/falcon"), home="/home/x", host="math", runs=Path("/scratch/me/runs-x"))
    assert out == "wrote runs/tiny/01_architecture/metrics.json; math accuracy on math-dominant mixes"
    assert clean_text("on node-17.cluster now", root=Path("/srv/f"), home="/h", host="node-17.cluster",
                      runs=Path("/srv/f/runs")) == "on <host> now"


def executed_copy(committed: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """What papermill writes for ``committed``: its metadata, an injected-parameters cell, timings, stderr."""
    ran = nbformat.from_dict(json.loads(json.dumps(committed)))
    ran.metadata["papermill"] = {"start_time": "2026-12-03T01:02:03", "duration": 12.5}
    injected = new_code_cell("profile = 'tiny'")
    injected.metadata["tags"] = ["injected-parameters"]
    ran.cells.insert(1, injected)
    code = ran.cells[2]
    code.metadata["papermill"] = {"duration": 1.0}
    code.metadata["execution"] = {"iopub.status.busy": "2026-12-03T01:02:04"}
    code.execution_count = 7
    code.outputs = [new_output("stream", name="stderr", text="UserWarning: something for developers\n"),
                    new_output("stream", name="stdout", text=f"loading\r50%\r100%\nwrote {ROOT}/runs/tiny/x.json\n"),
                    new_output("execute_result", data={"text/plain": f"PosixPath('{ROOT}/runs')"}, execution_count=7),
                    new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})]
    return ran


def committed_notebook() -> nbformat.NotebookNode:
    nb = new_notebook(cells=[new_markdown_cell("# title"), new_code_cell("print(1)"), new_markdown_cell("end")])
    nb.metadata["kernelspec"] = {"name": "falcon-h1r", "display_name": "Falcon-H1R (.venv)", "language": "python"}
    return nb


def test_clean_notebook_keeps_the_committed_cells_and_metadata_and_cleaned_outputs():
    committed = committed_notebook()
    out = clean_notebook(executed_copy(committed), committed, "x.ipynb")
    assert out.metadata == committed.metadata and len(out.cells) == 3
    code = out.cells[1]
    assert code.metadata == {} and code.execution_count == 1
    kinds = [(o.output_type, o.get("name")) for o in code.outputs]
    assert kinds == [("stream", "stdout"), ("execute_result", None), ("display_data", None)]
    assert code.outputs[0].text == "100%\nwrote runs/tiny/x.json\n"
    assert code.outputs[1].data["text/plain"] == "PosixPath('runs')" and code.outputs[1].execution_count == 1
    assert code.outputs[2].data["image/png"] == "iVBORw0KGgo="


def test_stdout_chunks_that_meet_once_stderr_is_dropped_are_joined_as_jupyterlab_joins_them():
    committed = committed_notebook()
    ran = executed_copy(committed)
    ran.cells[2].outputs = [new_output("stream", name="stdout", text="a\n"),
                            new_output("stream", name="stderr", text="warning\n"),
                            new_output("stream", name="stdout", text="b\n")]
    out = clean_notebook(ran, committed, "x.ipynb")
    assert [(o.name, o.text) for o in out.cells[1].outputs] == [("stdout", "a\nb\n")]


def test_a_notebook_edited_since_the_run_or_a_failed_run_is_not_published():
    committed = committed_notebook()
    ran = executed_copy(committed)
    committed.cells[1].source = "print(2)"
    with pytest.raises(PublishError, match="x.ipynb: cell 1 differs"):
        clean_notebook(ran, committed, "x.ipynb")
    committed = committed_notebook()
    ran = executed_copy(committed)
    ran.cells[2].outputs.append(new_output("error", ename="AssertionError", evalue="boom", traceback=[]))
    with pytest.raises(PublishError, match="x.ipynb: cell 1 ended in AssertionError: boom"):
        clean_notebook(ran, committed, "x.ipynb")
    committed.cells.append(new_markdown_cell("new"))
    with pytest.raises(PublishError, match="the run has 3 cells, the committed notebook 4"):
        clean_notebook(executed_copy(committed_notebook()), committed, "x.ipynb")


def test_publish_needs_a_whole_finished_tiny_run(tmp_path, monkeypatch):
    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    with pytest.raises(PublishError, match="no finished run; `make reproduce` first"):
        publish.publish("tiny")
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "reproduce.json").write_text(json.dumps(
        {"notebooks": [{"notebook": "01_architecture.ipynb", "ok": True, "seconds": 1.0}]}))
    with pytest.raises(PublishError, match="a run of profile None"):
        publish.publish("tiny")
    (tmp_path / "tiny" / "reproduce.json").write_text(json.dumps({"profile": "tiny", "notebooks": [
        {"notebook": "03_sft.ipynb", "ok": True, "seconds": 1.0}]}))
    with pytest.raises(PublishError, match=r"ran only \['03_sft.ipynb'\] \(ONLY=...\); publish needs one run"):
        publish.publish("tiny")
    (tmp_path / "tiny" / "reproduce.json").write_text(json.dumps({"profile": "tiny", "notebooks": [
        {"notebook": b.name, "ok": b.name != "04_rl.ipynb", "seconds": 1.0} for b in BOOKS]}))
    with pytest.raises(PublishError, match=r"failed in \['04_rl.ipynb'\]"):
        publish.publish("tiny")
    (tmp_path / "tiny" / "reproduce.json").write_text(json.dumps([1, 2]))
    with pytest.raises(PublishError, match="not a `make reproduce` summary"):
        publish.publish("tiny")
    with pytest.raises(PublishError, match="tiny profile's outputs"):
        publish.publish("full")


def test_publish_writes_nothing_when_a_claim_cannot_be_rendered(tmp_path, monkeypatch):
    """A finished run whose metrics lack a claim's field stops before any tracked file is touched."""
    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    (tmp_path / "tiny" / "notebooks").mkdir(parents=True)
    (tmp_path / "tiny" / "reproduce.json").write_text(json.dumps({"profile": "tiny", "notebooks": [
        {"notebook": b.name, "ok": True, "seconds": 1.0} for b in BOOKS]}))
    for b in BOOKS:  # the committed notebooks stand in for their executed copies
        (tmp_path / "tiny" / "notebooks" / b.name).write_text(b.read_text(encoding="utf-8"), encoding="utf-8")
    before = {b: b.read_bytes() for b in BOOKS}
    with pytest.raises(publish.ConfigError, match="lacks the runs of"):
        publish.publish("tiny")
    assert {b: b.read_bytes() for b in BOOKS} == before


# --- the committed notebooks, as `make publish` left them --------------------------------------------------------

@pytest.mark.parametrize("path", BOOKS, ids=[p.stem for p in BOOKS])
def test_a_committed_notebook_carries_its_outputs_and_no_machine_noise(path):
    text = path.read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=4)
    assert text == nbformat.writes(nb) + "\n", "not as nbformat writes it: JupyterLab would rewrite it on save"
    assert "papermill" not in nb.metadata and nb.metadata["kernelspec"]["name"] == "falcon-h1r"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "a code cell without outputs: `make reproduce publish`"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "stream" and o.name == "stderr"]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no inline figure"
    volatile = re.compile(r"((?<![\w:/.~<])/[A-Za-z_][\w.-]*/[\w.-]|\r|\x1b\[|Loading weights|IProgress|"
                          r"pid=\d+\) (WARNING|INFO)|\d{4}-\d\d-\d\dT\d\d:\d\d)")  # abs paths, residue, times
    for c in code:
        assert not {"papermill", "execution"} & set(c.metadata), c.source[:60]
        for o in c.outputs:
            for value in [o.get("text", "")] + [v for k, v in o.get("data", {}).items() if k.startswith("text/")]:
                assert not volatile.search(value), (path.name, c.source[:60], volatile.search(value).group())


# --- nbval checks the claims lines ---------------------------------------------------------------------------------

def claims_cell(path: Path) -> nbformat.NotebookNode:
    """The one cell of a committed notebook that nbval itself reads as ``NBVAL_CHECK_OUTPUT``."""
    from nbval.plugin import find_comment_markers

    nb = nbformat.read(str(path), as_version=4)
    checked = [c for c in nb.cells if c.cell_type == "code" and dict(find_comment_markers(c.source)).get("check")]
    assert len(checked) == 1, f"{path.name}: {len(checked)} cells nbval checks (a marker with trailing text is none)"
    return checked[0]


@pytest.mark.parametrize("path", BOOKS, ids=[p.stem for p in BOOKS])
def test_nbval_reads_each_notebooks_claims_cell_as_checked_and_it_prints_claims_lines(path):
    """A marker nbval does not recognise (``# NBVAL_CHECK_OUTPUT: ...`` with trailing text) silently turned the
    check off in all six notebooks: nbval's own parser decides here."""
    cell = claims_cell(path)
    assert f'claims.claims_lines("{path.stem}", profile)' in cell.source
    lines = [o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout"]
    assert lines and all(line.startswith("[") for line in "".join(lines).splitlines())


def run_nbval(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "--nbval-sanitize-with",
         str(ROOT / "notebooks" / "nbval_sanitize.cfg"), "-p", "no:cacheprovider", "-q", str(path)],
        cwd=path.parent, capture_output=True, text=True, timeout=600)


def test_nbval_fails_when_a_claims_line_changes_and_not_when_an_unchecked_output_does(tmp_path):
    """The claims cell the notebooks use, over a run's metrics.json: nbval passes on the published outputs, fails
    on a copy whose claims line was altered, and ignores unchecked cells whose output changes every run."""
    from nbclient import NotebookClient

    runs = tmp_path / "runs"
    (runs / "tiny" / "03_sft").mkdir(parents=True)
    (runs / "tiny" / "03_sft" / "metrics.json").write_text(json.dumps({"metrics": {
        "base_accuracy": {"math": 0.01}, "sft_accuracy": {"math": 0.1},
        "base_accuracy_ci": {"math": [0.0, 0.026]}, "sft_accuracy_ci": {"math": [0.047, 0.156]}}}))
    nb = new_notebook(cells=[
        new_code_cell(f"import os\nos.environ['FALCON_H1R_RUNS'] = {str(runs)!r}\nprofile = 'tiny'"),
        new_code_cell("import time\nprint('changes every run', time.time())"),
        new_code_cell(claims_cell(ROOT / "notebooks" / "03_sft.ipynb").source),  # the committed cell, verbatim
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, kernel_name="python3", timeout=300).execute()
    line = nb.cells[2].outputs[0].text
    assert line.startswith("[sft-lift] ") and line.rstrip().endswith("| holds")
    good = tmp_path / "good.ipynb"
    nbformat.write(nb, good)
    result = run_nbval(good)
    assert result.returncode == 0, result.stdout[-3000:]

    nb.cells[2].outputs[0].text = line.replace("| holds", "| contradicted")
    bad = tmp_path / "bad.ipynb"
    nbformat.write(nb, bad)
    result = run_nbval(bad)
    assert result.returncode == 1, result.stdout[-3000:]
    assert "contradicted" in result.stdout and "1 failed" in result.stdout


def test_paths_of_a_run_made_in_another_checkout_are_made_relative_from_what_it_recorded():
    out = clean_text("wrote /work/main/runs/tiny/x.json from /work/main/notebooks", root=Path("/tmp/other"),
                     home="/home/x", host="hostname-x", runs=Path("/tmp/other/runs"),
                     run_roots=("/work/main", "/work/main/runs"))
    assert out == "wrote runs/tiny/x.json from notebooks"
