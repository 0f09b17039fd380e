"""``make publish``: a finished tiny run's executed notebooks and figures, cleaned, into the tracked tree.

``make reproduce`` executes ``notebooks/NN_*.ipynb`` into ``runs/<profile>/notebooks/`` and saves figures under
``runs/<profile>/figures/``; nothing tracked changes. Publishing then

1. checks the run finished (``runs/<profile>/reproduce.json``: every notebook ok) and that each executed copy has
   the committed notebook's cells, source for source (a notebook edited since the run must be run again first);
2. cleans each executed copy so it holds what a reader should see and nothing that changes from machine to machine
   for no reason: papermill's metadata, cell timings and injected-parameters cell go; stderr streams (library
   warnings, progress bars) go; carriage-return progress residue and ANSI colours collapse to the final text;
   absolute paths become repository-relative (``~`` for the home folder) and the host name ``<host>``; the
   notebook keeps the committed metadata (kernelspec and language_info as JupyterLab writes them, so opening a
   published notebook does not modify it);
3. renders ``CLAIMS.md`` and the README's results from the run's ``metrics.json`` files (`falcon_h1r_lib.claims`;
   a claim the notebooks measure that has not run stops everything), and only then writes the cleaned notebooks
   over ``notebooks/`` exactly as nbformat saves them, those two pages, and the run's figures into ``figures/``
   (removing tracked figures the run no longer draws).

Why our own cleaner: ``nbstripout`` removes outputs (we keep them) and ``nbconvert``'s preprocessors clear or keep
whole outputs; neither rewrites paths inside kept outputs. Errors name the notebook and cell.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import nbformat

from falcon_h1r_lib.config import ConfigError
from falcon_h1r_lib.paths import figures_dir, notebooks_dir, repo_root, runs_dir

PAPERMILL_TAGS = {"injected-parameters", "papermill-error-cell-tag"}
VOLATILE_CELL_METADATA = ("papermill", "execution", "ExecuteTime", "collapsed", "scrolled")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


class PublishError(ConfigError):
    """A run that cannot be published as it stands; the message names the notebook and cell."""


def clean_text(text: str, root: Path | None = None, home: str | None = None, host: str | None = None,
               runs: Path | None = None, run_roots: Sequence[str] = ("", "")) -> str:
    """``text`` without ANSI escapes, with each line's carriage-return progress residue collapsed to what a terminal
    would finally show, and with absolute paths made relative: the runs root (``runs``, by default `runs_root`,
    which ``$FALCON_H1R_RUNS`` may put anywhere) as ``runs``, the repository (``root``, by default this one) as
    ``.``, the home folder as ``~``; and ``host`` as ``<host>`` where it is a word of at least 6 characters or holds
    a digit, dot or dash (a short plain word such as ``math`` could be any text). ``run_roots``: the repository and
    the runs root the run itself recorded in ``reproduce.json`` (empty strings when it did not), for a run made in
    another checkout."""
    from falcon_h1r_lib.paths import runs_root

    root = Path(root) if root else repo_root()
    runs = Path(runs) if runs else runs_root()
    home = home if home is not None else os.path.expanduser("~")
    host = host if host is not None else socket.gethostname()
    text = _ANSI.sub("", text)
    lines = []
    for line in text.split("\n"):
        if "\r" in line:
            segments = [s for s in line.split("\r") if s.strip()]
            line = segments[-1] if segments else ""
        lines.append(line)
    text = "\n".join(lines)
    run_repo, run_runs = ({str(Path(r))} if r else set() for r in run_roots)
    for prefix in sorted({str(runs), str(runs.resolve())} | run_runs, key=len, reverse=True):
        text = text.replace(prefix + os.sep, "runs" + os.sep)
    for prefix in sorted({str(root), str(root.resolve())} | run_repo, key=len, reverse=True):
        text = text.replace(prefix + os.sep, "")
        text = re.sub(re.escape(prefix) + r"(?![\w.-])", ".", text)  # the root itself, not a sibling's longer name
    if home and len(home) > 1:
        text = text.replace(home + os.sep, "~" + os.sep)
    if host and (len(host) >= 6 or not host.isalpha()):
        text = re.sub(rf"(?<![\w.-]){re.escape(host)}(?![\w-])", "<host>", text)
    return text


def _clean_output(output: dict, **kw) -> dict | None:
    kind = output.get("output_type")
    if kind == "stream":
        if output.get("name") == "stderr":
            return None
        text = clean_text(output["text"], **kw)
        return {**output, "text": text} if text.strip() else None
    if kind in ("display_data", "execute_result"):
        data = dict(output.get("data", {}))
        for mime, value in data.items():
            if mime.startswith("text/") or mime in ("application/json",):
                data[mime] = clean_text(value, **kw) if isinstance(value, str) else value
        out = {**output, "data": data}
        out["metadata"] = output.get("metadata", {})
        return out
    return output


def clean_notebook(executed: nbformat.NotebookNode, committed: nbformat.NotebookNode, name: str = "notebook",
                   **kw) -> nbformat.NotebookNode:
    """The published form of ``executed`` (papermill's copy of ``committed``): ``committed``'s cells and metadata
    with the executed outputs, cleaned (`clean_text`). Raises PublishError naming the cell when the two differ in
    cells or sources (the notebook changed since the run) or when a cell ended in an error."""
    cells = [c for c in executed.cells if not PAPERMILL_TAGS & set(c.get("metadata", {}).get("tags", []))]
    if len(cells) != len(committed.cells):
        raise PublishError(f"{name}: the run has {len(cells)} cells, the committed notebook {len(committed.cells)}; "
                           "it changed since the run: `make reproduce` it again, then publish")
    out = nbformat.from_dict(json.loads(json.dumps(committed)))
    count = 0
    for i, (ran, cell) in enumerate(zip(cells, out.cells)):
        if ran.source != cell.source or ran.cell_type != cell.cell_type:
            raise PublishError(f"{name}: cell {i} differs from the committed notebook (it changed since the run): "
                               "`make reproduce` it again, then publish")
        if cell.cell_type != "code":
            continue
        errors = [o for o in ran.get("outputs", []) if o.get("output_type") == "error"]
        if errors:
            raise PublishError(f"{name}: cell {i} ended in {errors[0].get('ename')}: {errors[0].get('evalue')}; "
                               "a failed run is not published")
        outputs = [o for o in (_clean_output(dict(o), **kw) for o in ran.get("outputs", [])) if o is not None]
        cell.outputs = [nbformat.from_dict(o) for o in _merge_streams(outputs)]
        count += 1
        cell.execution_count = count
        for o in cell.outputs:
            if o.get("output_type") == "execute_result":
                o["execution_count"] = count
        for key in VOLATILE_CELL_METADATA:
            cell.metadata.pop(key, None)
    return out


def _merge_streams(outputs: list[dict]) -> list[dict]:
    """Consecutive stream outputs of one name joined into one, as JupyterLab joins them when it opens a notebook
    (so saving a published notebook from the lab does not change it). Dropping stderr makes stdout chunks meet."""
    out: list[dict] = []
    for o in outputs:
        if (out and o.get("output_type") == "stream" and out[-1].get("output_type") == "stream"
                and out[-1].get("name") == o.get("name")):
            out[-1] = {**out[-1], "text": out[-1]["text"] + o["text"]}
        else:
            out.append(o)
    return out


def check_run(profile: str = "tiny") -> tuple[list[Path], list[str]]:
    """The executed notebooks of a finished run, in order, and the repository and runs roots it recorded. Raises
    PublishError when ``reproduce.json`` is missing, malformed, of another profile, or names a failed or missing
    notebook."""
    summary_path = runs_dir(profile) / "reproduce.json"
    if not summary_path.is_file():
        raise PublishError(f"{summary_path}: no finished run; `make reproduce` first")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise PublishError(f"{summary_path}: not valid JSON ({err})") from None
    entries = summary.get("notebooks") if isinstance(summary, dict) else None
    if not isinstance(entries, list) or not all(isinstance(r, dict) and isinstance(r.get("notebook"), str)
                                                 for r in entries):
        raise PublishError(f"{summary_path}: not a `make reproduce` summary (an object whose 'notebooks' list holds "
                           "{'notebook', 'ok', ...} entries); run `make reproduce` again")
    if summary.get("profile") != profile:
        raise PublishError(f"{summary_path}: a run of profile {summary.get('profile')!r}, not {profile!r}")
    done = {r["notebook"]: r for r in entries}
    books = sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
    failed = [b.name for b in books if b.name in done and not done[b.name].get("ok")]
    skipped = [b.name for b in books if b.name not in done]
    if failed or skipped:
        raise PublishError(f"{summary_path}: the last `make reproduce` " + (f"failed in {failed}" if failed else
                           f"ran only {sorted(done)} (ONLY=...)") + "; publish needs one run of every notebook")
    return [runs_dir(profile) / "notebooks" / b.name for b in books], [
        str(summary.get(k) or "") for k in ("repo_root", "runs_root")]


def publish(profile: str = "tiny", claims_page: bool = True) -> list[Path]:
    """Clean and copy the run's notebooks and figures into ``notebooks/`` and ``figures/``, and regenerate
    ``CLAIMS.md`` and the README's results; returns the files written or removed. Nothing is written unless every
    notebook cleans and every claim renders (PublishError / ConfigError otherwise)."""
    from falcon_h1r_lib import claims
    from falcon_h1r_lib.config import is_tiny

    if not is_tiny(profile):
        raise PublishError(f"publish: the committed notebooks carry the tiny profile's outputs (CI re-executes them "
                           f"and checks their claims lines); a {profile!r} run stays in runs/{profile}/notebooks/")
    executed, run_roots = check_run(profile)
    texts: dict[Path, str] = {}
    for path in executed:
        committed_path = notebooks_dir() / path.name
        if not path.is_file():
            raise PublishError(f"{path}: missing; `make reproduce` again")
        nb = clean_notebook(nbformat.read(str(path), as_version=4), nbformat.read(str(committed_path), as_version=4),
                            path.name, run_roots=run_roots)
        nbformat.validate(nb)
        texts[committed_path] = nbformat.writes(nb) + "\n"
    if claims_page:
        texts.update(claims.render(profile))  # before anything is written: a run missing a claim writes nothing
    figures = sorted((runs_dir(profile) / "figures").glob("*.png"))
    if not figures:
        raise PublishError(f"{runs_dir(profile) / 'figures'}: the run saved no figure; `make reproduce` again")
    written = []
    for target, text in texts.items():
        target.write_text(text, encoding="utf-8")
        written.append(target)
    for figure in figures:
        shutil.copyfile(figure, figures_dir() / figure.name)
        written.append(figures_dir() / figure.name)
    produced = {f.name for f in figures}
    for stale in sorted(p for p in figures_dir().glob("*.png") if p.name not in produced):
        stale.unlink()  # a figure the notebooks no longer draw
        written.append(stale)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="tiny")
    args = parser.parse_args(argv)
    try:
        written = publish(args.profile)
    except ConfigError as err:
        print(f"publish: {err}", file=sys.stderr)
        return 2
    root = repo_root()
    for path in written:
        print(f"{'wrote' if path.exists() else 'removed'} {path.relative_to(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
