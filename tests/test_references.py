"""What the prose cites exists: repo paths in the notebooks' text, and no rule numbers of a style file the repo
does not hold (a docstring says the rule's content instead)."""

from __future__ import annotations

import re

import nbformat
import pytest

from falcon_h1r_lib.paths import notebooks_dir, repo_root

REPO_PATH = re.compile(r"(?<![\w/.])((?:falcon_h1r_lib|tests|notebooks|data_manifests)/[\w./-]*\w)")
STYLE_RULE = re.compile(r"\bSTYLE(?: rule)? \d+")
# Files another change is rewriting right now; remove each once it says the rule's content.
STYLE_RULE_PENDING: set[str] = set()  # files allowed to cite a rule by number (none)


def cited_paths(text: str) -> list[str]:
    """Repo paths such as ``falcon_h1r_lib/profiles/slurm/sft.sbatch`` that ``text`` names."""
    return [m.group(1) for m in REPO_PATH.finditer(text)]


def test_cited_paths_are_found():
    text = ("see `falcon_h1r_lib/profiles/slurm/sft.sbatch`, notebooks/03_sft.ipynb. "
            "Not runs/tiny/x or a/falcon_h1r_lib/b")
    assert cited_paths(text) == ["falcon_h1r_lib/profiles/slurm/sft.sbatch", "notebooks/03_sft.ipynb"]


@pytest.mark.parametrize("notebook", sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_paths_in_a_notebooks_text_exist(notebook):
    cells = nbformat.read(notebook, as_version=4).cells
    text = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    missing = [p for p in cited_paths(text) if not (repo_root() / p).exists()]
    assert not missing, f"{notebook.name} cites paths that do not exist: {missing}"


def test_no_file_cites_a_style_rule_by_number():
    root = repo_root()
    files = [*root.glob("falcon_h1r_lib/**/*.py"), *root.glob("tests/*.py"), root / "README.md"]
    texts = {p.relative_to(root).as_posix(): p.read_text() for p in files}
    texts |= {p.relative_to(root).as_posix(): p.read_text() for p in notebooks_dir().glob("*.ipynb")}
    found = [f"{name}:{text[:m.start()].count(chr(10)) + 1}: {m.group()}" for name, text in texts.items()
             if name not in STYLE_RULE_PENDING for m in STYLE_RULE.finditer(text)]
    assert not found, "no STYLE file is in the repo; say the rule instead:\n" + "\n".join(found)
