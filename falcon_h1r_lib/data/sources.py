"""Full-profile data: open Hub datasets named in ``data_manifests/full/*.yaml``, mapped into our schema.

The paper names neither its SFT datasets nor its teachers ([P] §2.1; facts §10 NOT FOUND), so the YAML
files name open stand-ins and say why. Every source carries a pinned ``revision``; in the full profile
(and its rehearsal) an unpinned one (null or a branch name) is refused unless ``allow_unpinned=True``.
``load_source`` resolves the revision to one commit, materialises exactly that commit (Hub:
``snapshot_download(revision=sha)``; a ``mirror:`` folder of local dataset git repos: ``git archive sha``),
loads those files and records that sha, so a push between resolving and reading cannot go unrecorded.
``python -m falcon_h1r_lib.data pin --sources FILE`` writes current commits into a file's ``revision:`` lines
(``data.pinning``); ``data.source_mappers`` turns each source's records into rows.

Mapped rows follow the task-world schema so the same curation pipeline runs on them: problem rows
``id, domain, family (= source name), difficulty, prompt, answer`` + domain extras, and, for sources
that ship teacher traces, one trace row per trace (``response, rollout, teacher``, and ``source_correct``
when the source labels its traces). ``difficulty`` is the source's 1..5 level where one exists (MATH500)
and None otherwise: we never invent a level; pass-rate weighting does not need it. Real code problems
are stdin/stdout programs: ``tests`` are ``{"input", "output"}`` pairs and ``entry_point`` is None.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from falcon_h1r_lib.config import ConfigError, is_tiny, read_yaml
from falcon_h1r_lib.data.source_mappers import MAPPER_FIELDS, MAPPERS
from falcon_h1r_lib.paths import repo_relative, resolve_path

DOMAINS = ("math", "code", "science", "other")
ROLES = ("sft", "rl", "eval")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class SourceSpec:
    """One dataset: where it lives on the Hub, which revision, and how its fields map to ours."""

    name: str  # our short name; becomes the rows' ``family``
    hub_id: str  # e.g. "open-r1/OpenR1-Math-220k"
    revision: str | None  # a 40-hex commit; null = not pinned yet ("pin on first download")
    split: str  # Hub split name
    role: str  # "sft" (teacher traces), "rl" (problems) or "eval" (a benchmark)
    domain: str  # math | code | science | other
    mapper: str  # key of MAPPERS: how records become rows
    fields: dict[str, str] = field(default_factory=dict)  # our name -> source column (read by the mapper)
    config: str | None = None  # Hub config (subset) name
    data_files: str | list[str] | None = None  # files inside the repo to read (e.g. one LCB release)
    teacher: str | None = None  # model that wrote the traces (sft sources)
    keep_unverified: bool = False  # traces our verifier cannot judge count as correct (see mapper docs)
    filter: dict[str, Any] = field(default_factory=dict)  # keep only records whose column equals the value
    gated: bool = False  # needs an accepted licence / HF token
    license: str = ""
    why: str = ""  # why this stand-in (the paper does not publish its data)
    fields_verified: bool = True  # False: column names taken from secondary sources, check on download
    mirror: str | None = None  # folder of local dataset git repos (<mirror>/<hub_id>); None = the Hub
    origin: str = field(default="", compare=False)  # the sources file it was read from (set by the loader)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ConfigError(f"source {self.name!r}: role {self.role!r} not in {ROLES}")
        if self.domain not in DOMAINS:
            raise ConfigError(f"source {self.name!r}: domain {self.domain!r} not in {DOMAINS}")
        if self.mapper not in MAPPERS:
            raise ConfigError(f"source {self.name!r}: mapper {self.mapper!r} not in {sorted(MAPPERS)}")
        missing = [k for k in MAPPER_FIELDS[self.mapper] if k not in self.fields]
        if missing:
            raise ConfigError(f"source {self.name!r}: mapper {self.mapper!r} needs fields {missing}")

    @property
    def pinned(self) -> bool:
        return is_pinned(self.revision)


def is_pinned(revision: str | None) -> bool:
    """Only a full commit hash pins a dataset; branch and tag names move."""
    return isinstance(revision, str) and bool(_COMMIT.match(revision))


FILE_KEYS = ("sources", "mirror")  # top-level keys of a sources file


def load_source_specs(path: str | os.PathLike) -> list[SourceSpec]:
    """Sources listed under ``sources:`` in a YAML file; unknown keys raise naming file, source and key. A
    top-level ``mirror:`` (a folder of local dataset git repos) applies to every source without its own."""
    path = resolve_path(path)
    if not path.exists():
        raise ConfigError(f"{path}: sources file not found")
    doc = read_yaml(path) or {}  # a key given twice in one mapping raises, naming the line
    if not isinstance(doc, dict) or not isinstance(doc.get("sources"), list):
        raise ConfigError(f"{path}: expected a top-level 'sources:' list")
    unknown_top = sorted(set(doc) - set(FILE_KEYS))
    if unknown_top:
        raise ConfigError(f"{path}: unknown top-level key(s) {unknown_top}; known: {list(FILE_KEYS)}")
    mirror = doc.get("mirror")
    if mirror is not None and not isinstance(mirror, str):
        raise ConfigError(f"{path}: 'mirror' must be a folder path, got {mirror!r}")
    known = {f.name for f in dataclasses.fields(SourceSpec)} - {"origin"}
    specs = []
    for i, entry in enumerate(doc["sources"]):
        where = f"{path}: sources[{i}] ({entry.get('name', '?') if isinstance(entry, dict) else '?'})"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping")
        unknown = sorted(set(entry) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
        lacking = sorted(
            k for k in ("name", "hub_id", "revision", "split", "role", "domain", "mapper") if k not in entry
        )
        if lacking:
            raise ConfigError(f"{where}: missing key(s) {lacking}")
        try:
            specs.append(SourceSpec(**{"mirror": mirror, **entry}, origin=repo_relative(path)))
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from err
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{path}: duplicate source name(s) {dup}")
    return specs


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def pin_command(origin: str) -> str:
    return f"python -m falcon_h1r_lib.data pin --sources {origin or '<sources file>'}"


def check_pinned(spec: SourceSpec, profile: str = "full", allow_unpinned: bool = False) -> None:
    """Refuse an unpinned source on the full path (full and rehearsal), naming file, source and the fix."""
    if not is_tiny(profile) and not spec.pinned and not allow_unpinned:
        raise ConfigError(
            f"{spec.origin or 'sources file'}: source {spec.name!r} ({spec.hub_id}): revision {spec.revision!r} "
            f"is not a commit hash; pin it with `{pin_command(spec.origin)}` or pass allow_unpinned=True"
        )


def mirror_repo(spec: SourceSpec) -> Path:
    """``<mirror>/<hub_id>``: the local git repo standing in for the Hub dataset (``mirror`` via resolve_path)."""
    if spec.mirror is None:
        raise ValueError(f"source {spec.name!r}: no mirror")
    repo = resolve_path(spec.mirror) / spec.hub_id
    if not (repo / ".git").exists():
        raise ConfigError(f"{spec.origin}: source {spec.name!r}: mirror repo {repo} is not a git repository "
                          "(write stand-ins with `python -m falcon_h1r_lib.data standins`)")
    return repo


def _git(repo: Path, *args: str) -> bytes:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True)
    if proc.returncode:
        raise ConfigError(f"{repo}: git {' '.join(args)} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def resolve_revision(spec: SourceSpec) -> str:
    """The commit ``spec.revision`` (null: the default branch) names now: Hub ``dataset_info(...).sha``
    (network) or ``git rev-parse`` in the mirror repo. A pinned commit is its own answer (no network: a cached,
    pinned source loads with HF_HUB_OFFLINE=1)."""
    ref = spec.revision
    if spec.pinned and spec.mirror is None:
        return ref
    if spec.mirror is not None:
        sha = _git(mirror_repo(spec), "rev-parse", "--verify", f"{ref or 'HEAD'}^{{commit}}").decode().strip()
    else:
        from huggingface_hub import HfApi

        sha = HfApi().dataset_info(spec.hub_id, revision=ref or "main").sha
    if not is_pinned(sha):
        raise ConfigError(f"source {spec.name!r}: {ref!r} resolved to {sha!r}, not a commit hash")
    return sha


def _readme_patterns(readme: str, config: str | None, split: str) -> list[str] | None:
    """Files of one config and split from a dataset card's ``configs:`` front matter (None: not declared)."""
    m = re.match(r"---\n(.*?)\n---", readme, re.S)
    meta = yaml.safe_load(m.group(1)) if m else None
    for cfg in (meta or {}).get("configs") or []:
        if cfg.get("config_name", "default") != (config or "default"):
            continue
        files = cfg.get("data_files")
        files = [files] if isinstance(files, str) else files
        if isinstance(files, list) and all(isinstance(f, str) for f in files):  # one file list for every split
            return list(files)
        out = []
        for entry in files or []:
            if isinstance(entry, dict) and entry.get("split", split) == split:
                path = entry.get("path")
                out += [path] if isinstance(path, str) else list(path or [])
        return out or None
    return None


def materialize(spec: SourceSpec, sha: str) -> Path:
    """A local folder holding exactly commit ``sha`` of the source's repo. Mirror: ``git archive sha`` extracted
    once into ``<mirror>/.snapshots/<hub_id>/<sha>``; Hub: ``snapshot_download(revision=sha)``, limited to the
    files of ``data_files`` or of the config's split when the dataset card declares them."""
    if not is_pinned(sha):
        raise ValueError(f"source {spec.name!r}: materialize needs a commit hash, got {sha!r}")
    if spec.mirror is not None:
        repo = mirror_repo(spec)
        out = resolve_path(spec.mirror) / ".snapshots" / spec.hub_id / sha
        if not out.is_dir():
            tmp = out.with_name(f"{sha}.tmp{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            with tarfile.open(fileobj=io.BytesIO(_git(repo, "archive", "--format=tar", sha))) as tar:
                tar.extractall(tmp, filter="data")
            os.replace(tmp, out)
        return out
    from huggingface_hub import hf_hub_download, snapshot_download

    if spec.data_files is not None:
        patterns = [spec.data_files] if isinstance(spec.data_files, str) else list(spec.data_files)
    else:
        card = Path(hf_hub_download(spec.hub_id, "README.md", repo_type="dataset", revision=sha)).read_text()
        patterns = _readme_patterns(card, spec.config, spec.split)
    allow = None if patterns is None else [*patterns, "README.md"]
    return Path(snapshot_download(spec.hub_id, repo_type="dataset", revision=sha, allow_patterns=allow))


def read_records(
    spec: SourceSpec, local_files: str | Sequence[str] | None = None, limit: int | None = None,
    local_dir: str | os.PathLike | None = None,
) -> list[dict[str, Any]]:
    """Raw records of a source: from ``local_files`` (JSON/JSONL/Parquet shaped like the source; tests) or from
    ``local_dir``, a materialised commit of its repo, read as ``load_dataset(dir, config, split, data_files)``."""
    import datasets

    from falcon_h1r_lib.data.manifests import quiet_datasets

    if (local_files is None) == (local_dir is None):
        raise ValueError(f"source {spec.name!r}: give exactly one of local_files or local_dir")
    with quiet_datasets():
        if local_files is not None:
            files = [local_files] if isinstance(local_files, (str, os.PathLike)) else list(local_files)
            files = [str(f) for f in files]
            fmt = "parquet" if all(f.endswith(".parquet") for f in files) else "json"
            ds = datasets.load_dataset(fmt, data_files=files, split="train")
        else:
            ds = datasets.load_dataset(str(local_dir), name=spec.config, split=spec.split,
                                       data_files=spec.data_files)
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    records = ds.to_list()
    for col, want in spec.filter.items():
        records = [r for r in records if r.get(col) == want]
    return records


def map_records(spec: SourceSpec, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Source records -> our rows, through ``MAPPERS[spec.mapper]``; a missing column is named."""
    out = []
    for i, rec in enumerate(records):
        try:
            out += MAPPERS[spec.mapper](spec, rec, i)
        except KeyError as err:
            raise KeyError(
                f"source {spec.name!r} record {i}: column {err} not found; has {sorted(rec)}"
            ) from None
    return out


def load_source(
    spec: SourceSpec,
    profile: str = "full",
    allow_unpinned: bool = False,
    local_files: str | Sequence[str] | None = None,
    limit: int | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(rows, manifest source entry). Resolves the revision to one commit, materialises exactly that commit
    (``materialize``), loads it and records that same commit; ``local_files`` (tests) bypass all three."""
    if local_files is None:
        check_pinned(spec, profile, allow_unpinned)
        sha = resolve_revision(spec)
        records = read_records(spec, limit=limit, local_dir=materialize(spec, sha))
    else:
        sha, records = None, read_records(spec, local_files, limit)
    rows = map_records(spec, records)
    info = {
        "kind": "local_files" if local_files is not None else "mirror" if spec.mirror is not None else "hub",
        "name": spec.name,
        "hub_id": spec.hub_id,
        "mirror": spec.mirror,
        "sources_file": spec.origin,
        "config": spec.config,
        "split": spec.split,
        "data_files": spec.data_files,
        "requested_revision": spec.revision,
        "revision": sha,
        "local_files": None
        if local_files is None
        else [
            str(Path(f).name)
            for f in ([local_files] if isinstance(local_files, (str, os.PathLike)) else local_files)
        ],
        "mapper": spec.mapper,
        "limit": limit,
    }
    return rows, info


def load_sources(
    specs: Sequence[SourceSpec],
    profile: str = "full",
    allow_unpinned: bool = False,
    local_files: dict[str, Any] | None = None,
    limit: int | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """All rows of several sources and their manifest entries (``local_files[name]`` overrides the Hub)."""
    rows, infos = [], []
    for spec in specs:
        r, info = load_source(spec, profile, allow_unpinned, (local_files or {}).get(spec.name), limit)
        rows += r
        infos.append({**info, "rows": len(r)})
    return rows, infos


def eval_sets_from_sources(
    specs: Sequence[SourceSpec],
    profile: str = "full",
    allow_unpinned: bool = False,
    local_files: dict[str, Any] | None = None,
    limit: int | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Benchmarks (role "eval") as ``{name: problems}``, the input of ``decontamination.decontaminate``."""
    out = {}
    for spec in specs:
        if spec.role != "eval":
            raise ConfigError(f"source {spec.name!r}: role {spec.role!r}, expected 'eval'")
        out[spec.name], _ = load_source(
            spec, profile, allow_unpinned, (local_files or {}).get(spec.name), limit
        )
    return out
