"""Pinning: write each source's current commit into a sources file's ``revision:`` lines, comments kept.
``python -m falcon_h1r_lib.data pin`` runs it; loading only ever reads the pinned commits.
"""

from __future__ import annotations

import dataclasses
import os
import re

from falcon_h1r_lib.config import ConfigError
from falcon_h1r_lib.data.sources import SourceSpec, load_source_specs, resolve_revision
from falcon_h1r_lib.paths import resolve_path

_ENTRY = re.compile(r"^(\s*)-\s+name:\s*['\"]?([^'\"#\s]+)")
_REVISION = re.compile(r"^(\s+revision:\s*)([^#\n]*?)(\s*(#.*)?)$")


def set_revisions(text: str, revisions: dict[str, str], where: str = "<text>") -> str:
    """``text`` with the ``revision:`` value of each named source replaced (block-style entries only; the
    comment and every other line kept byte for byte). Raises naming ``where`` and the source if not found."""
    lines = text.splitlines(keepends=True)
    starts = [(i, m.group(2), len(m.group(1))) for i, line in enumerate(lines) if (m := _ENTRY.match(line))]
    done = set()
    for n, (i, name, indent) in enumerate(starts):
        if name not in revisions:
            continue
        end = starts[n + 1][0] if n + 1 < len(starts) else len(lines)
        for j in range(i + 1, end):
            m = _REVISION.match(lines[j].rstrip("\n"))
            if m and len(m.group(1)) - len(m.group(1).lstrip()) > indent:
                nl = "\n" if lines[j].endswith("\n") else ""
                lines[j] = f'{m.group(1)}"{revisions[name]}"{m.group(3)}{nl}'
                done.add(name)
                break
    missing = sorted(set(revisions) - done)
    if missing:
        raise ConfigError(f"{where}: no block-style 'revision:' line found for source(s) {missing}")
    return "".join(lines)


def pin_sources_file(path: str | os.PathLike, update: bool = False) -> dict[str, dict[str, str | None]]:
    """Resolve each unpinned source's current commit (the branch its ``revision`` names, else the default branch)
    and write it into ``path``; a pinned source keeps its commit unless ``update`` (then it moves to the default
    branch's head). Returns ``{name: {"old": ..., "new": sha}}``."""
    path = resolve_path(path)
    specs = load_source_specs(path)
    def current(spec: SourceSpec) -> str:
        try:
            return resolve_revision(dataclasses.replace(spec, revision=None if spec.pinned else spec.revision))
        except ConfigError:
            raise
        except Exception as err:  # network, gated repo, offline mode: name the file and the source
            raise ConfigError(f"{path}: source {spec.name!r} ({spec.hub_id}): cannot resolve its commit: "
                              f"{type(err).__name__}: {err}") from err

    new = {s.name: s.revision if s.pinned and not update else current(s) for s in specs}
    path.write_text(set_revisions(path.read_text(), new, str(path)))
    pinned = {s.name: s.revision for s in load_source_specs(path)}
    if pinned != new:  # the YAML must read back as written
        raise ConfigError(f"{path}: pinned revisions read back as {pinned}, expected {new}")
    return {s.name: {"old": s.revision, "new": new[s.name]} for s in specs}


def unpinned_sources(path: str | os.PathLike) -> list[str]:
    """Names of the sources in ``path`` whose revision is not a commit hash (no network)."""
    return [s.name for s in load_source_specs(path) if not s.pinned]
