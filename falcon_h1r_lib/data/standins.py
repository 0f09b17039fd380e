"""Local stand-ins of every Hub dataset in ``data_manifests/full/``: one git repository per source, in that
dataset's own columns, config, split and file layout, with verifiable content from the tiny task world.

The rehearsal (the full profile at CPU size) reads them exactly as it would read the Hub: a pinned commit
of ``<root>/<hub_id>`` is materialised and loaded by ``datasets.load_dataset`` (``data.sources``). Problems,
answers, code tests and R1-style traces come from ``data.tasks`` and the tiny teacher (``data.teacher``),
which slips on some traces, so verification has wrong traces to catch. SFT, RL and eval stand-ins are
disjoint by normalised prompt, except the planted cases curation must remove (``PLANTED``): an SFT
problem copied from AIME24, RL problems copied from an SFT problem and from MATH500, an RL duplicate.
Beside the repos, ``<root>/manifests/`` holds copies of the three full source files that differ from
full's only by a top-level ``mirror: <root>`` (and, once pinned, the ``revision:`` values).

``python -m falcon_h1r_lib.data.standins --root runs/rehearsal/hub`` (or ``python -m falcon_h1r_lib.data
standins``) writes them; ``python -m falcon_h1r_lib.data pin --sources <root>/manifests/*.yaml`` pins them.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from falcon_h1r_lib.data import splits, tasks
from falcon_h1r_lib.data.sources import SourceSpec, load_source_specs
from falcon_h1r_lib.data.teacher import Teacher
from falcon_h1r_lib.data.text import normalize_prompt
from falcon_h1r_lib.paths import manifests_dir, resolve_path

SOURCE_FILES = ("sft_sources", "rl_sources", "eval_benchmarks")  # data_manifests/full/<name>.yaml
# planted cases (source, row index, source whose row 3 it copies): what curation must find and remove
PLANTED = {
    "sft_copies_eval": ("openr1-math", 0, "aime24"),  # decontamination: an SFT problem is an AIME24 problem
    "rl_copies_sft": ("deepscaler-math", 0, "openr1-math"),  # RL vs SFT overlap ([P] §3.1)
    "rl_copies_eval": ("deepscaler-math", 1, "math500"),  # decontamination of RL problems
    "rl_duplicate": ("deepscaler-math", 2, "deepscaler-math"),  # exact duplicate inside the RL pool
}
_GIT_ENV = {  # a fixed identity and date: the same content always gets the same commit hash
    "GIT_AUTHOR_NAME": "falcon-h1r standins", "GIT_AUTHOR_EMAIL": "standins@localhost",
    "GIT_COMMITTER_NAME": "falcon-h1r standins", "GIT_COMMITTER_EMAIL": "standins@localhost",
    "GIT_AUTHOR_DATE": "2025-01-01T00:00:00+0000", "GIT_COMMITTER_DATE": "2025-01-01T00:00:00+0000",
}
_IO_NOTE = ("\n\nInput: each line of standard input holds one argument as a Python literal. "
            "Output: print repr() of the result.")
_IO_HARNESS = ("\n\nimport ast, sys\n"
               "print(repr({fn}(*[ast.literal_eval(line) for line in sys.stdin.read().splitlines() if line.strip()])))")


def git(repo: str | os.PathLike, *args: str, env: dict[str, str] | None = None) -> str:
    """``git -C repo args`` -> stripped stdout; raises RuntimeError naming the repo and git's message."""
    proc = subprocess.run(["git", "-C", str(repo), "-c", "commit.gpgsign=false", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})})
    if proc.returncode:
        raise RuntimeError(f"{repo}: git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


# --------------------------------------------------------------------------------------------
# Problems: disjoint pools from the task world
# --------------------------------------------------------------------------------------------


class _Pools:
    """Fresh problems per (role, domain); a normalised prompt is handed out once across all roles."""

    def __init__(self, seed: int):
        self.seed, self.taken, self.drawn = seed, set(), {}

    def take(self, role: str, domain: str, n: int) -> list[dict]:
        key = (role, domain)
        seed = {"sft": 11, "rl": 23}.get(role, 0) + 101 * self.seed
        out = []
        while len(out) < n:
            m = self.drawn.get(key, 0) + 4 * n
            if m > 400 * max(n, 1):
                raise ValueError(f"standins: only {len(out)} fresh {domain} prompts for {role}")
            if role == "eval":  # eval seeds live above the training range (data.splits)
                fresh = tasks.generate(domain, m, splits.TINY_EVAL_SEED_BASE + 7 + self.seed)
            else:
                fresh = tasks.generate(domain, m, splits.train_seed(seed))
            for p in fresh[self.drawn.get(key, 0):]:
                k = normalize_prompt(p["prompt"])
                if k not in self.taken and len(out) < n:
                    self.taken.add(k)
                    out.append(p)
            self.drawn[key] = m
        return out


def _io_case(test: str) -> dict[str, str]:
    """``assert f(a, b) == y`` -> ``{"input": "repr(a)\\nrepr(b)\\n", "output": "repr(y)\\n"}`` (stdin/stdout)."""
    node = ast.parse(test).body[0]
    if not (isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Call) and isinstance(node.test.ops[0], ast.Eq)):
        raise ValueError(f"standins: test {test!r} is not `assert f(...) == value`")
    args = [ast.literal_eval(a) for a in node.test.left.args]
    want = ast.literal_eval(node.test.comparators[0])
    return {"input": "".join(repr(a) + "\n" for a in args), "output": repr(want) + "\n"}


def _stdin_program(problem: dict, response: str) -> str:
    """A teacher trace whose final code block also reads the arguments from stdin and prints the result."""
    fence = response.rfind("\n```")
    if fence == -1 or "```python" not in response:
        return response  # a format defect of the teacher: the quality filter must catch it
    return response[:fence] + _IO_HARNESS.format(fn=problem["entry_point"]) + response[fence:]


def _choices(problem: dict) -> tuple[str, list[str]]:
    """(question without the option listing, option texts in letter order)."""
    return problem["params"]["question"], [problem["choices"][k] for k in sorted(problem["choices"])]


# --------------------------------------------------------------------------------------------
# Records in each source's own schema (columns named by spec.fields, extras as on the Hub)
# --------------------------------------------------------------------------------------------


def _problem_records(spec: SourceSpec, problems: list[dict], _: Teacher) -> list[dict]:
    f = spec.fields
    out = []
    for i, p in enumerate(problems):
        rec = {f["prompt"]: p["prompt"], f["answer"]: p["answer"], "solution": "\n".join(p["solution_steps"])}
        if "id" in f:
            rec[f["id"]] = f"test/standin/{i}.json" if f["id"] == "unique_id" else i
        if "difficulty" in f:
            rec[f["difficulty"]] = p["difficulty"]
        out.append(rec)
    return out


def _openr1_records(spec: SourceSpec, problems: list[dict], teacher: Teacher) -> list[dict]:
    from falcon_h1r_lib.rewards import verify_math

    f = spec.fields
    out = []
    for i, p in enumerate(problems):
        gens = [t["response"] for t in teacher.rollouts(p, 2 + i % 3)]  # 2-4 R1 traces, as on the Hub
        out.append({f["id"]: f"standin-{i:05d}", f["prompt"]: p["prompt"], f["answer"]: p["answer"],
                    "solution": "\n".join(p["solution_steps"]), "problem_type": "Algebra",
                    "question_type": "math-word-problem", "source": "standin",
                    f["responses"]: gens, f["correct"]: [bool(verify_math(p["answer"], g)) for g in gens],
                    "is_reasoning_complete": [True] * len(gens), "finish_reasons": ["stop"] * len(gens)})
    return out


def _codeforces_records(spec: SourceSpec, problems: list[dict], teacher: Teacher) -> list[dict]:
    f = spec.fields
    out = []
    for i, p in enumerate(problems):
        trace = teacher.rollout(p, 0)["response"]
        out.append({f["id"]: f"{1000 + i}A", "title": p["params"]["signature"], "description": p["prompt"],
                    f["prompt"]: p["prompt"] + _IO_NOTE, f["response"]: _stdin_program(p, trace),
                    f["tests"]: [_io_case(t) for t in p["tests"]], "finish_reason": "stop"})
    return out


def _chat_records(spec: SourceSpec, problems: list[dict], teacher: Teacher) -> list[dict]:
    f = spec.fields
    out = []
    for i, p in enumerate(problems):
        trace = teacher.rollout(p, 0)["response"]
        if "response" in f:  # Nemotron: prompt turns in one column, the reply in another
            on = i % 5 != 4  # every fifth row has reasoning off (the source filter drops it)
            out.append({f["messages"]: [{"role": "user", "content": p["prompt"]}],
                        f["response"]: trace if on else p["answer"], "reasoning": "on" if on else "off",
                        "category": "chat", "generator": "DeepSeek-R1", "license": "cc-by-4.0",
                        "system_prompt": f"detailed thinking {'on' if on else 'off'}", "version": "v1",
                        "used_in_training": "yes"})
        else:  # Mixture-of-Thoughts: one messages list
            out.append({f["messages"]: [{"role": "user", "content": p["prompt"]},
                                        {"role": "assistant", "content": trace}],
                        "num_tokens": len(trace.split()), "source": "standin"})
    return out


def _gpqa_records(spec: SourceSpec, problems: list[dict], _: Teacher) -> list[dict]:
    f = spec.fields
    out = []
    for i, p in enumerate(problems):
        question, _opts = _choices(p)
        wrong = [p["choices"][k] for k in sorted(p["choices"]) if k != p["answer"]]
        rec = {f["id"]: f"rec{i:04d}", f["prompt"]: question, f["correct"]: p["choices"][p["answer"]],
               "Subdomain": "standin"}
        rec.update(zip(f["incorrect"].split(","), wrong, strict=True))
        out.append(rec)
    return out


def _mcq_records(spec: SourceSpec, problems: list[dict], _: Teacher) -> list[dict]:
    f = spec.fields
    out = []
    for i, p in enumerate(problems):
        question, options = _choices(p)
        out.append({f["id"]: i, f["prompt"]: question, f["options"]: options, f["answer"]: p["answer"],
                    "answer_index": "ABCD".index(p["answer"]), "cot_content": "", "category": "physics",
                    "src": "standin"})
    return out


def _lcb_records(spec: SourceSpec, problems: list[dict], _: Teacher) -> list[dict]:
    f = spec.fields
    out = []
    for i, p in enumerate(problems):
        cases = [{**_io_case(t), "testtype": "stdin"} for t in p["tests"]]
        out.append({"question_title": p["params"]["signature"], f["prompt"]: p["prompt"] + _IO_NOTE,
                    "platform": "atcoder", f["id"]: f"abc{400 + i}_a", "contest_id": f"abc{400 + i}",
                    "contest_date": "2025-02-01T00:00:00", f.get("starter_code", "starter_code"): "",
                    "difficulty": ("easy", "medium", "hard")[i % 3], f["tests"]: json.dumps(cases),
                    "private_test_cases": "", f.get("metadata", "metadata"): "{}"})
    return out


def _ifbench_records(spec: SourceSpec, problems: list[dict], _: Teacher) -> list[dict]:
    f = spec.fields
    return [{f["id"]: i, f["prompt"]: p["prompt"],
             f["instruction_ids"]: [f"standin:{r['rule']}" for r in p["rules"]],
             f["kwargs"]: [{"N": r.get("n")} for r in p["rules"]]} for i, p in enumerate(problems)]


RECORDS: dict[str, Callable[[SourceSpec, list[dict], Teacher], list[dict]]] = {
    "problem": _problem_records, "openr1_math": _openr1_records, "codeforces_cots": _codeforces_records,
    "chat_traces": _chat_records, "gpqa": _gpqa_records, "mcq_options": _mcq_records,
    "livecodebench": _lcb_records, "ifbench": _ifbench_records,
}


# --------------------------------------------------------------------------------------------
# Files and repositories
# --------------------------------------------------------------------------------------------


def _write_files(repo: Path, spec: SourceSpec, records: list[dict], extra: list[dict]) -> None:
    """The source's layout: ``data_files`` JSONL at the root (LiveCodeBench), else Parquet per config and split
    declared in the README's ``configs:`` (how ``datasets`` finds a named config in a repo)."""
    import datasets

    if spec.data_files is not None:  # raw JSONL releases; ``extra`` is an earlier release that must not be read
        (name,) = [spec.data_files] if isinstance(spec.data_files, str) else spec.data_files
        (repo / name).write_text("".join(json.dumps(r) + "\n" for r in records))
        (repo / "test5.jsonl").write_text("".join(json.dumps(r) + "\n" for r in extra))
        (repo / "README.md").write_text(f"# stand-in of {spec.hub_id}\n")
        return
    config = spec.config or "default"
    path = Path(config) / f"{spec.split}-00000-of-00001.parquet"
    (repo / config).mkdir(parents=True, exist_ok=True)
    from falcon_h1r_lib.data.manifests import quiet_datasets

    with quiet_datasets():
        datasets.Dataset.from_list(records).to_parquet(str(repo / path))
    meta = {"configs": [{"config_name": config, "data_files": [{"split": spec.split, "path": str(path)}]}]}
    (repo / "README.md").write_text(f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n# stand-in of "
                                    f"{spec.hub_id} (falcon_h1r_lib.data.standins)\n")


def _commit(repo: Path, spec: SourceSpec, write: Callable[[], None]) -> str:
    """(Re)write the repo's files and commit them if anything changed (a "push"); returns HEAD."""
    if not (repo / ".git").is_dir():
        repo.mkdir(parents=True, exist_ok=True)
        git(repo, "init", "-q", "-b", "main")
    for child in repo.iterdir():
        if child.name != ".git":
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    write()
    git(repo, "add", "-A")
    if git(repo, "status", "--porcelain"):
        git(repo, "commit", "-q", "-m", f"stand-in of {spec.hub_id}", env=_GIT_ENV)
    return git(repo, "rev-parse", "HEAD")


def manifest_copy(text: str, mirror: str) -> str:
    """A full source file's text with a top-level ``mirror:`` line added before ``sources:``."""
    lines = text.splitlines(keepends=True)
    at = next((i for i, line in enumerate(lines) if line.startswith("sources:")), None)
    if at is None:
        raise ValueError("manifest_copy: no top-level 'sources:' line")
    return "".join(lines[:at] + [f"mirror: {mirror}\n"] + lines[at:])


def write_standins(root: str | os.PathLike, n_per_source: int = 24, seed: int = 0,
                   source_files: dict[str, str | os.PathLike] | None = None, n_rl: int | None = None) -> dict[str, Any]:
    """Write every source of the three full source files as a git repo under ``root`` plus the manifest
    copies; returns ``{"root", "manifests": {name: path}, "repos": {hub_id: commit}, "planted": PLANTED}``.

    ``n_per_source`` rows per source (>= 4: the planted cases need rows 0-2), ``n_rl`` per RL source (default the
    same: the Fig. 9 filter of a barely trained model keeps ~10% of them, and RL needs prompts_per_step). ``root`` resolves through
    ``config.resolve_path`` and is written into the copies as given (``runs/...`` survives moving the runs root).
    """
    n_rl = n_per_source if n_rl is None else n_rl
    if min(n_per_source, n_rl) < 4:
        raise ValueError(f"standins: n_per_source and n_rl must be >= 4, got {n_per_source}, {n_rl}")
    files = {k: Path(v) for k, v in (source_files or {}).items()}
    files = {k: files.get(k, manifests_dir() / "full" / f"{k}.yaml") for k in SOURCE_FILES}
    base = resolve_path(root)
    specs = {k: load_source_specs(p) for k, p in files.items()}
    pools = _Pools(seed)
    teacher = Teacher("concise", error_rate=0.3, self_check_prob=0.3, seed=seed, format_error_rate=0.05,
                      error_slope=0.5)
    problems: dict[str, list[dict]] = {}
    for spec in [s for k in ("eval_benchmarks", "sft_sources", "rl_sources") for s in specs[k]]:
        problems[spec.name] = pools.take(spec.role, spec.domain, n_rl if spec.role == "rl" else n_per_source)
    for name, i, origin in PLANTED.values():  # copies of the origin's row 3: same prompt, answer and solution
        src = problems[origin][3]
        problems[name][i] = {**problems[name][i], "prompt": src["prompt"], "answer": src["answer"],
                             "solution_steps": src["solution_steps"], "params": src["params"],
                             "family": src["family"], "difficulty": src["difficulty"]}
    repos = {}
    for kind in SOURCE_FILES:
        for spec in specs[kind]:
            recs = RECORDS[spec.mapper](spec, problems[spec.name], teacher)
            extra = RECORDS[spec.mapper](spec, pools.take(spec.role, spec.domain, 2), teacher) \
                if spec.data_files is not None else []
            repo = base / spec.hub_id
            repos[spec.hub_id] = _commit(repo, spec, lambda s=spec, r=recs, e=extra, d=repo: _write_files(d, s, r, e))
    out_dir = base / "manifests"
    out_dir.mkdir(parents=True, exist_ok=True)
    manifests = {}
    for kind, path in files.items():
        manifests[kind] = out_dir / f"{kind}.yaml"
        manifests[kind].write_text(manifest_copy(path.read_text(), str(root)))
    return {"root": str(base), "manifests": {k: str(v) for k, v in manifests.items()}, "repos": repos,
            "planted": dict(PLANTED)}


def main(argv: list[str] | None = None) -> int:
    """``python -m falcon_h1r_lib.data.standins --root runs/rehearsal/hub [--rows 24] [--rl-rows N] [--seed 0]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m falcon_h1r_lib.data.standins",
                                     description="Write local git stand-ins of every Hub dataset source.")
    parser.add_argument("--root", default="runs/rehearsal/hub",
                        help="folder of the stand-in repos (runs/... resolves under the runs root)")
    parser.add_argument("--rows", type=int, default=24, help="rows per source")
    parser.add_argument("--rl-rows", type=int, default=None, help="rows per RL source (default: --rows)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = write_standins(args.root, args.rows, args.seed, n_rl=args.rl_rows)
    print(json.dumps({"root": out["root"], "manifests": out["manifests"], "repos": out["repos"]}, indent=1))
    return 0


__all__ = ["PLANTED", "SOURCE_FILES", "git", "main", "manifest_copy", "write_standins"]

if __name__ == "__main__":
    raise SystemExit(main())
