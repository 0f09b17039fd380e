"""Full-profile data: open Hub datasets named in ``data_manifests/full/*.yaml``, mapped into our schema.

The paper names neither its SFT datasets nor its teachers ([P] §2.1; facts §10 NOT FOUND), so the YAML
files name open stand-ins and say why. Every source carries a pinned ``revision``; in the full profile
(and its rehearsal) an unpinned one (null or a branch name) is refused unless ``allow_unpinned=True``.
``load_source`` resolves the revision to one commit, materialises exactly that commit (Hub:
``snapshot_download(revision=sha)``; a ``mirror:`` folder of local dataset git repos: ``git archive sha``),
loads those files and records that sha, so a push between resolving and reading cannot go unrecorded.
``python -m falcon_h1r_lib.data pin --sources FILE`` writes current commits into a file's ``revision:`` lines.

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
import json
import os
import random
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from falcon_h1r_lib.config import ConfigError, is_tiny, repo_relative, resolve_path

DOMAINS = ("math", "code", "science", "other")
ROLES = ("sft", "rl", "eval")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
LETTERS = "ABCDEFGHIJKLMNOP"


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
    doc = yaml.safe_load(path.read_text()) or {}
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

    from falcon_h1r_lib.data.manifests import _quiet_datasets

    if (local_files is None) == (local_dir is None):
        raise ValueError(f"source {spec.name!r}: give exactly one of local_files or local_dir")
    with _quiet_datasets():
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


# --------------------------------------------------------------------------------------------
# Pinning: write current commits into a sources file's revision lines (comments survive)
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Mappers: one per source shape. Each reads the source columns named in ``spec.fields``.
# --------------------------------------------------------------------------------------------


def _base(spec: SourceSpec, rec: dict, i: int) -> dict[str, Any]:
    f = spec.fields
    rid = rec[f["id"]] if "id" in f else i
    return {"id": f"{spec.name}-{rid}", "domain": spec.domain, "family": spec.name, "difficulty": None}


def _difficulty(spec: SourceSpec, rec: dict) -> int | None:
    col = spec.fields.get("difficulty")
    v = rec.get(col) if col else None
    return v if isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 5 else None


def map_problem(spec: SourceSpec, rec: dict, i: int) -> list[dict]:
    """Question + short answer (AIME, HMMT, AMO-Bench, MATH500, RL math pools)."""
    f = spec.fields
    return [
        {
            **_base(spec, rec, i),
            "difficulty": _difficulty(spec, rec),
            "prompt": str(rec[f["prompt"]]),
            "answer": str(rec[f["answer"]]),
        }
    ]


def _traces(
    spec: SourceSpec, problem: dict, responses: Sequence[str], correct: Sequence[bool | None] | None
) -> list[dict]:
    out = []
    for k, resp in enumerate(responses):
        verdict = correct[k] if correct is not None and k < len(correct) else None
        if verdict is None and spec.keep_unverified:
            verdict = True
        out.append(
            {
                **problem,
                "response": resp,
                "rollout": k,
                "teacher": spec.teacher or "unknown",
                "source_correct": verdict,
            }
        )
    return out


def map_openr1_math(spec: SourceSpec, rec: dict, i: int) -> list[dict]:
    """OpenR1-Math: one problem, several R1 generations with per-generation math-verify flags."""
    f = spec.fields
    problem = map_problem(spec, rec, i)[0]
    flags = rec.get(f.get("correct", ""), None)
    return _traces(spec, problem, list(rec[f["responses"]]), list(flags) if flags is not None else None)


def _io_tests(pairs: Any) -> list[dict[str, str]]:
    if isinstance(pairs, str):
        pairs = json.loads(pairs)
    return [{"input": str(p["input"]), "output": str(p["output"])} for p in pairs or []]


def map_codeforces_cots(spec: SourceSpec, rec: dict, i: int) -> list[dict]:
    """codeforces-cots: one prompt, one R1 generation, public examples as stdin/stdout tests."""
    f = spec.fields
    problem = {
        **_base(spec, rec, i),
        "prompt": rec[f["prompt"]],
        "answer": "",
        "tests": _io_tests(rec[f["tests"]]),
        "entry_point": None,
    }
    return _traces(spec, problem, [rec[f["response"]]], None)


def _turns(messages: Any) -> list[tuple[str, str]]:
    """(role, text) pairs from role/content or from/value message lists."""
    out = []
    for m in messages:
        role = m.get("role", m.get("from"))
        text = m.get("content", m.get("value"))
        out.append(({"human": "user", "gpt": "assistant"}.get(role, role), text))
    return out


def map_chat_traces(spec: SourceSpec, rec: dict, i: int) -> list[dict]:
    """Chat datasets with reasoning traces: prompt = last user turn, response = final assistant turn
    (earlier turns are dropped, as [P] §2.1 supervises only the last turn). Domain extras come empty:
    these sources carry no labels, so they pass verification only with ``keep_unverified``."""
    f = spec.fields
    if "messages" in f:
        msgs = rec[f["messages"]]
        turns = [("user", msgs)] if isinstance(msgs, str) else _turns(msgs)
    else:
        turns = [("user", rec[f["prompt"]])]
    if "response" in f:  # the final assistant turn lives in its own column
        turns.append(("assistant", rec[f["response"]]))
    users = [t for r, t in turns if r == "user"]
    answers = [t for r, t in turns if r == "assistant"]
    if not users or not answers:
        return []
    problem = {**_base(spec, rec, i), "prompt": users[-1], "answer": ""}
    if spec.domain == "science":
        problem["choices"] = {}
    elif spec.domain == "other":
        problem["rules"] = []
    return _traces(spec, problem, [answers[-1]], None)


def map_gpqa(spec: SourceSpec, rec: dict, i: int) -> list[dict]:
    """GPQA: the correct and three incorrect answers, shuffled into A-D by a per-question seeded RNG."""
    f = spec.fields
    options = [rec[f["correct"]], *(rec[c] for c in f["incorrect"].split(","))]
    order = list(range(len(options)))
    random.Random(f"gpqa|{rec[f['id']]}").shuffle(order)
    choices = {LETTERS[j]: str(options[o]).strip() for j, o in enumerate(order)}
    answer = LETTERS[order.index(0)]
    listing = "\n".join(f"{k}) {v}" for k, v in choices.items())
    return [
        {
            **_base(spec, rec, i),
            "prompt": f"{str(rec[f['prompt']]).strip()}\n\n{listing}",
            "answer": answer,
            "choices": choices,
        }
    ]


def map_mcq_options(spec: SourceSpec, rec: dict, i: int) -> list[dict]:
    """MMLU-Pro: an options list (up to 10) and the answer letter."""
    f = spec.fields
    choices = {LETTERS[j]: str(o) for j, o in enumerate(rec[f["options"]])}
    listing = "\n".join(f"{k}) {v}" for k, v in choices.items())
    return [
        {
            **_base(spec, rec, i),
            "prompt": f"{rec[f['prompt']]}\n\n{listing}",
            "answer": str(rec[f["answer"]]),
            "choices": choices,
        }
    ]


def map_livecodebench(spec: SourceSpec, rec: dict, i: int) -> list[dict]:
    """LiveCodeBench: public tests only (JSON). The private tests are zlib+pickle-encoded; we do not
    unpickle downloaded data, so full-profile LCB scores here use public tests (say so in tables)."""
    f = spec.fields
    meta = rec.get(f.get("metadata", ""), None) or "{}"
    meta = json.loads(meta) if isinstance(meta, str) else meta
    starter = rec.get(f.get("starter_code", ""), "") or ""
    prompt = rec[f["prompt"]] + (f"\n\nStarter code:\n```python\n{starter}\n```" if starter else "")
    return [
        {
            **_base(spec, rec, i),
            "prompt": prompt,
            "answer": "",
            "tests": _io_tests(rec[f["tests"]]),
            "entry_point": meta.get("func_name") or None,
            "starter_code": starter,
        }
    ]


def map_ifbench(spec: SourceSpec, rec: dict, i: int) -> list[dict]:
    """IFBench: the prompt and its verifiable constraints (instruction ids + their kwargs) as ``rules``."""
    f = spec.fields
    ids, kwargs = rec[f["instruction_ids"]], rec[f["kwargs"]]
    rules = [
        {"instruction_id": iid, "kwargs": {k: v for k, v in (kw or {}).items() if v is not None}}
        for iid, kw in zip(ids, kwargs, strict=True)
    ]
    return [{**_base(spec, rec, i), "prompt": rec[f["prompt"]], "answer": "", "rules": rules}]


MAPPERS: dict[str, Callable[[SourceSpec, dict, int], list[dict]]] = {
    "problem": map_problem,
    "openr1_math": map_openr1_math,
    "codeforces_cots": map_codeforces_cots,
    "chat_traces": map_chat_traces,
    "gpqa": map_gpqa,
    "mcq_options": map_mcq_options,
    "livecodebench": map_livecodebench,
    "ifbench": map_ifbench,
}
MAPPER_FIELDS: dict[str, tuple[str, ...]] = {  # source columns each mapper must be told about
    "problem": ("prompt", "answer"),
    "openr1_math": ("id", "prompt", "answer", "responses"),
    "codeforces_cots": ("id", "prompt", "response", "tests"),
    "chat_traces": (),
    "gpqa": ("id", "prompt", "correct", "incorrect"),
    "mcq_options": ("id", "prompt", "options", "answer"),
    "livecodebench": ("id", "prompt", "tests"),
    "ifbench": ("id", "prompt", "instruction_ids", "kwargs"),
}


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
    """Benchmarks (role "eval") as ``{name: problems}``, the input of ``curation.decontaminate``."""
    out = {}
    for spec in specs:
        if spec.role != "eval":
            raise ConfigError(f"source {spec.name!r}: role {spec.role!r}, expected 'eval'")
        out[spec.name], _ = load_source(
            spec, profile, allow_unpinned, (local_files or {}).get(spec.name), limit
        )
    return out
