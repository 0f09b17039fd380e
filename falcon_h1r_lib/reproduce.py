"""Run the notebooks in order with papermill: ``python -m falcon_h1r_lib.reproduce --profile tiny``.

The tiny profile runs each notebook with its own parameter defaults; the full profile validates
``profiles/full/<NN_stage>.yaml`` against the stage's dataclass first (so a typo stops the run
before a cluster job starts) and passes it as papermill parameters. Executed copies go to
``runs/<profile>/notebooks/``; on the first failing cell the run stops, names the notebook and the
cell, and exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .config import PROFILES, STAGE_CONFIGS, ConfigError, is_tiny, load_config
from .paths import notebooks_dir, runs_dir


@dataclass(frozen=True)
class NotebookRun:
    notebook: str
    seconds: float
    ok: bool
    error: str = ""


def discover_notebooks(only: list[str] | None = None) -> list[Path]:
    """``notebooks/NN_*.ipynb`` in order; ``only`` filters by number (``01``) or stem."""
    books = sorted(p for p in notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
    if only:
        wanted = set(only)
        books = [p for p in books if p.stem[:2] in wanted or p.stem in wanted]
        found = {p.stem[:2] for p in books} | {p.stem for p in books}
        missing = sorted(w for w in wanted if w not in found)
        if missing:
            raise ConfigError(f"--only: no notebook matches {missing}; have {[p.stem for p in discover_notebooks()]}")
    return books


def parameters_for(notebook: Path, profile: str) -> dict:
    """Parameters to inject: none for tiny (the notebook's defaults are the tiny profile)."""
    stage = notebook.stem
    if is_tiny(profile):
        return {}
    if stage not in STAGE_CONFIGS:
        raise ConfigError(f"{notebook}: no stage config registered for {stage!r}")
    return load_config(stage, profile).to_dict()  # validated: unknown keys / wrong types raise here


def failing_cell(executed: Path) -> str:
    """Locate the first cell with an error output; the index counts cells of the source notebook."""
    if not executed.exists():
        return "no executed notebook was written"
    nb = nbformat.read(executed, as_version=4)
    added_by_papermill = {"papermill-error-cell-tag", "injected-parameters"}
    index = -1
    for cell in nb.cells:
        if added_by_papermill & set(cell.get("metadata", {}).get("tags", [])):
            continue
        index += 1
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                first_line = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
                return f"cell {index} ({first_line[:60]!r}): {out.get('ename')}: {out.get('evalue')}"
    return "no cell carries an error output"


def kernel_env_defaults(profile: str) -> dict[str, str]:
    """Environment defaults of the notebook kernels: tiny never reaches the Hub nor shows load bars; every
    profile's CPU training threads sleep rather than spin when idle (``threads``: OMP_WAIT_POLICY=PASSIVE, so a busy neighbour costs
    1.5x instead of 3x measured here; it must be set before the kernel imports torch)."""
    from falcon_h1r_lib.threads import DEFAULT_WAIT_POLICY

    # tiny models load in milliseconds: their "Loading weights" / "Writing model shards" bars are noise (transformers
    # reads huggingface_hub's switch at import); the full profile keeps them, downloads and loads take minutes there
    # and vLLM's warnings about this CPU's missing Triton / tcmalloc (stamped with pids and times) are noise there too
    offline = ({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                "VLLM_LOGGING_LEVEL": "ERROR"} if is_tiny(profile) else {})
    return {**offline, "OMP_WAIT_POLICY": DEFAULT_WAIT_POLICY}



def notebook_environment(profile: str) -> None:
    """The first call of every notebook's import cell, before anything imports torch or huggingface_hub: the
    environment `kernel_env_defaults` gives papermill's kernels (a value already set wins), so a notebook run in
    JupyterLab or under nbval behaves as under `make reproduce`; and no ``TqdmWarning: IProgress not found``:
    huggingface_hub and transformers import ``tqdm.auto``, which warns in a kernel without ipywidgets and falls
    back to the text bars we want (widget bars cannot be shown again from an executed notebook)."""
    import warnings

    for key, value in kernel_env_defaults(profile).items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", message="IProgress not found")

def run_notebooks(profile: str = "tiny", only: list[str] | None = None, kernel: str = "python3") -> list[NotebookRun]:
    import papermill as pm
    from tqdm.auto import tqdm

    out_dir = runs_dir(profile) / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    env_defaults = kernel_env_defaults(profile)
    for key, value in env_defaults.items():
        os.environ.setdefault(key, value)  # each kernel starts with this environment (a user's own value wins)
    results: list[NotebookRun] = []
    books = discover_notebooks(only)
    if not only:  # a whole run draws every figure again: none left from an older run for `make publish` to copy
        shutil.rmtree(runs_dir(profile) / "figures", ignore_errors=True)
    bar = tqdm(books, desc=f"reproduce[{profile}]", unit="notebook")
    for book in bar:
        bar.set_postfix_str(book.stem)
        params = parameters_for(book, profile)
        executed = out_dir / book.name
        start = time.perf_counter()
        try:
            pm.execute_notebook(
                str(book), str(executed), parameters=params, kernel_name=kernel,
                cwd=str(book.parent), progress_bar=False, log_output=False,
            )
        except Exception as err:  # papermill raises PapermillExecutionError and kernel errors alike
            seconds = time.perf_counter() - start
            where = failing_cell(executed)
            results.append(NotebookRun(book.name, seconds, False, f"{where} [{type(err).__name__}]"))
            break
        results.append(NotebookRun(book.name, time.perf_counter() - start, True))
        tqdm.write(f"  {book.name}: {results[-1].seconds:.1f} s")
    from falcon_h1r_lib.paths import repo_root, runs_root

    summary = {
        "profile": profile,
        "repo_root": str(repo_root()),  # where the run wrote its paths: `make publish` makes them relative
        "runs_root": str(runs_root()),
        "notebooks": [r.__dict__ for r in results],
        "total_seconds": round(sum(r.seconds for r in results), 1),
    }
    (runs_dir(profile) / "reproduce.json").write_text(json.dumps(summary, indent=2) + "\n")
    return results


def strip_outputs(paths: list[Path] | None = None) -> list[Path]:
    """Clear outputs and execution counts so notebooks are committed clean."""
    changed = []
    for path in paths or sorted(notebooks_dir().glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        dirty = False
        for cell in nb.cells:
            if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count")):
                cell.outputs, cell.execution_count, dirty = [], None, True
            if "execution" in cell.get("metadata", {}):
                del cell.metadata["execution"]
                dirty = True
        if "papermill" in nb.metadata:
            del nb.metadata["papermill"]
            dirty = True
        if dirty:
            nbformat.write(nb, path)
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="tiny", choices=list(PROFILES))
    parser.add_argument("--only", nargs="*", help="notebook numbers or stems, e.g. 01 03")
    parser.add_argument("--kernel", default="python3")
    parser.add_argument("--list", action="store_true", help="list the notebooks and exit")
    parser.add_argument("--strip", action="store_true", help="strip outputs from notebooks/ and exit")
    args = parser.parse_args(argv)
    if args.strip:
        for path in strip_outputs():
            print(f"stripped {path}")
        return 0
    if args.list:
        for book in discover_notebooks(args.only):
            print(book.name)
        return 0
    try:
        results = run_notebooks(args.profile, args.only, args.kernel)
    except ConfigError as err:
        print(f"reproduce: {err}", file=sys.stderr)
        return 2
    for r in results:
        print(f"{'ok ' if r.ok else 'FAIL'} {r.notebook:32s} {r.seconds:7.1f} s {r.error}")
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"reproduce: {failed[0].notebook} failed at {failed[0].error}", file=sys.stderr)
        return 1
    print(f"reproduce: {len(results)} notebook(s) in {sum(r.seconds for r in results):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
