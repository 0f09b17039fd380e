"""The README's file tree lists every library module, and every file it lists exists (issue: structure)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "falcon_h1r_lib"


def tree_entries(readme: str) -> list[str]:
    """The library paths of the README's "File tree" block (indented lines under ``falcon_h1r_lib/``)."""
    try:
        block = readme[readme.index("## File tree"):readme.index("\n## ", readme.index("## File tree") + 1)]
    except ValueError:
        pytest.fail("README.md has no '## File tree' section followed by another section")
    return [line.split()[0] for line in block.splitlines() if line.startswith("  ") and line.split()]


def unlisted(entries: list[str]) -> list[str]:
    folders = [e for e in entries if e.endswith("/")]
    out = []
    for f in sorted(LIB.rglob("*.py")):
        rel = f.relative_to(LIB).as_posix()
        if f.name in ("__init__.py", "__main__.py") and rel not in entries:
            continue  # a package is described by its modules (or its own line when it holds logic)
        if rel in entries or any(rel.startswith(d) for d in folders):
            continue
        out.append(rel)
    return out


def test_every_module_is_in_the_readme_tree_and_every_entry_exists():
    entries = tree_entries((ROOT / "README.md").read_text())
    assert not unlisted(entries), "modules missing from README.md's file tree"
    braces = [e for e in entries if "{" in e]
    stale = [e for e in entries if e not in braces and not (LIB / e).exists()]
    assert not stale, f"README.md's file tree lists paths that do not exist: {stale}"


def test_the_tree_check_can_fail():
    entries = tree_entries((ROOT / "README.md").read_text())
    assert unlisted([e for e in entries if e != "stages.py"]) == ["stages.py"]
