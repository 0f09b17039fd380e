"""One evaluation run: benchmarks -> requests -> backend samples -> traces (Parquet) -> grades -> metrics
and paper-vs-ours tables, under ``runs/<profile>/05_evaluation/`` (or ``out_dir``).

Traces are keyed by (model, problems, prompts, sampling): a re-run with the same key reads them back
instead of sampling again (``reuse_traces``), so notebooks and DeepConf can rerun cheaply.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from falcon_h1r_lib.config import ConfigError
from falcon_h1r_lib.configs import EvaluationConfig
from falcon_h1r_lib.evaluation.benchmarks import Benchmark, get_benchmark
from falcon_h1r_lib.evaluation.grading import grade_all
from falcon_h1r_lib.evaluation.metrics import summarize
from falcon_h1r_lib.evaluation.tables import RESULTS_TABLES, paper_vs_ours, results_records, write_table
from falcon_h1r_lib.metrics import Stopwatch, git_commit, package_versions, write_json_atomic
from falcon_h1r_lib.models.identity import weights_fingerprint
from falcon_h1r_lib.paths import repo_relative, resolve_path

_LABEL = re.compile(r"^[A-Za-z0-9_.-]+$")


def backend_spec(cfg: EvaluationConfig, model_path: str):
    """The `generation.BackendSpec` of this evaluation's sampler for one model."""
    from falcon_h1r_lib.generation import BackendSpec

    return BackendSpec(model=model_path, backend=cfg.backend, revision=cfg.model_revision,
                       tokenizer=cfg.tokenizer_name_or_path or None, dtype=cfg.dtype, device=cfg.device,
                       batch_size=cfg.batch_size, seed=cfg.seed, vllm=dict(cfg.vllm) if cfg.backend == "vllm" else {},
                       progress=cfg.backend == "vllm")


def make_backend(cfg: EvaluationConfig, model_path: str):
    """(backend, tokenizer) for ``cfg.backend`` through the one factory (`generation.make_backend`)."""
    from falcon_h1r_lib.generation import make_backend as factory

    try:
        return factory(backend_spec(cfg, model_path))
    except ValueError as err:
        raise ConfigError(f"{cfg.STAGE}: {err}") from err


def build_requests(problems: Sequence[Mapping[str, Any]], tokenizer, cfg: EvaluationConfig) -> list:
    """One chat-rendered request per problem: system turn + ``prompt_template`` around the problem text
    (plain substitution of ``{prompt}``, so templates may hold LaTeX braces such as ``\\boxed{}``).

    The system turn is ``tokenizer.system_turn(cfg.system_prompt)``: None is Falcon's prompt written out, never
    left to the chat template (a model's own template may insert another default, or none)."""
    from falcon_h1r_lib.generation import chat_request
    from falcon_h1r_lib.tokenizer import system_turn

    system = system_turn(cfg.system_prompt)
    return [chat_request(str(p["id"]), cfg.prompt_template.replace("{prompt}", str(p["prompt"])), tokenizer, system)
            for p in problems]


def _shard_suffix(cfg: EvaluationConfig) -> str:
    size = int(cfg.vllm.get("data_parallel_size", 1)) if cfg.backend == "vllm" else 1
    return f".dp{int(cfg.vllm.get('data_parallel_rank', 0))}of{size}" if size > 1 else ""


def traces_key(model: str, bench: Benchmark, requests: Sequence, sampling) -> str:
    """What the traces depend on; equal keys mean the stored traces can be reused."""
    blob = json.dumps({"model": model, "benchmark": bench.name, "sampling": sampling.to_dict(),
                       "prompts": [[r.problem_id, r.prompt] for r in requests]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def evaluate_benchmark(
    cfg: EvaluationConfig, bench: Benchmark, backend, tokenizer, model: str, label: str, out: Path
) -> dict[str, Any]:
    """Sample, store, grade and score one benchmark for one model; returns its summary (JSON-ready)."""
    from falcon_h1r_lib.generation import read_traces, read_traces_metadata, write_traces

    watch = Stopwatch()
    local = cfg.local_files.get(bench.source) if bench.source else None
    problems = bench.load_problems(cfg.max_problems, sources_file=cfg.eval_sources_file,
                                   allow_unpinned=cfg.allow_unpinned, local_files=local)
    sampling = bench.sampling(seed=cfg.seed, logprobs_topk=cfg.logprobs_topk, n=cfg.samples_per_problem,
                              max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p)
    requests = build_requests(problems, tokenizer, cfg)
    key = traces_key(f"{model}#{weights_fingerprint(model)}", bench, requests, sampling)
    suffix = _shard_suffix(cfg)
    traces_path = out / "traces" / label / f"{bench.name}{suffix}.parquet"
    reused = cfg.reuse_traces and traces_path.exists() and read_traces_metadata(traces_path).get("key") == key
    if reused:
        traces = read_traces(traces_path)
    else:
        traces = backend.generate(requests, sampling)
        write_traces(traces, traces_path, metadata={
            "key": key, "model": model, "label": label, "benchmark": bench.name, "profile": cfg.profile,
            "sampling": sampling.to_dict(), "config_hash": cfg.config_hash()})
    sample_s = watch.seconds()
    grades = grade_all(problems, traces, max_workers=cfg.grade_workers)
    grades_path = out / "grades" / label / f"{bench.name}{suffix}.parquet"
    grades_path.parent.mkdir(parents=True, exist_ok=True)
    grades.to_parquet(grades_path, index=False)
    summary = summarize(grades, ks=cfg.pass_ks, resamples=cfg.bootstrap_resamples, level=cfg.ci_level, seed=cfg.seed)
    n_tokens = sum(t.n_tokens for t in traces)
    summary.update({
        "samples_per_problem": sampling.n, "max_new_tokens": sampling.max_new_tokens,
        "temperature": sampling.temperature, "top_p": sampling.top_p, "seed": cfg.seed,
        "domain": bench.domain, "gradable": bench.gradable, "why_not_gradable": bench.why_not_gradable,
        "note": bench.note, "paper_table": bench.paper_table, "paper_column": bench.paper_column,
        "traces_file": repo_relative(traces_path), "grades_file": repo_relative(grades_path), "traces_reused": bool(reused),
        "sample_wall_s": round(sample_s, 3),
        "tokens_per_s": None if reused or sample_s <= 0 else round(n_tokens / sample_s, 1),
    })
    return summary


def evaluate_model(cfg: EvaluationConfig, model: str, label: str, out: Path, backend=None, tokenizer=None
                   ) -> dict[str, Any]:
    """Every benchmark of ``cfg`` on one model; ``backend``/``tokenizer`` may be given (notebooks, tests)."""
    if not _LABEL.match(label):
        raise ConfigError(f"model label {label!r}: use letters, digits, '_', '.', '-' (it names folders)")
    benches = [get_benchmark(name, cfg.profile) for name in cfg.benchmarks]
    from falcon_h1r_lib.generation import close_backend

    own = backend is None
    if own:
        backend, tokenizer = make_backend(cfg, model)
    elif tokenizer is None:
        raise ValueError("evaluate_model: a backend needs its tokenizer (to render the chat prompts)")
    try:
        return {"model": model, "benchmarks": {b.name: evaluate_benchmark(cfg, b, backend, tokenizer, model, label, out)
                                               for b in benches}}
    finally:
        if own:  # one engine alive at a time: the next model's starts after this one is gone
            close_backend(backend)


def write_tables(metrics: Mapping[str, Any], out: Path) -> list[str]:
    """Paper-vs-ours CSV + Markdown for each results table that holds an evaluated benchmark."""
    records = results_records(metrics)
    written = []
    for table in RESULTS_TABLES:
        if any(r.get("paper_table") == table for r in records):
            csv, md = write_table(paper_vs_ours(records, table), out / "tables" / f"{table}_paper_vs_ours")
            written += [repo_relative(csv), repo_relative(md)]
    return written


def run(
    cfg: EvaluationConfig,
    models: Mapping[str, str] | None = None,
    out_dir: str | os.PathLike | None = None,
    backends: Mapping[str, tuple[Any, Any]] | None = None,
) -> dict[str, Any]:
    """Evaluate ``models`` ({label: path or Hub id}; default ``evaluation.models_to_compare(cfg)``: the config's
    model, else the stage table's checkpoints, MissingStageOutput naming the notebook to run) and write traces,
    grades, ``metrics.json`` and tables; returns the metrics record. ``backends`` ({label: (backend, tokenizer)})
    reuses already-loaded models. Models given here are used as given (SFT's and RL's reports pass their own)."""
    from falcon_h1r_lib.evaluation import models_to_compare

    watch = Stopwatch()
    if not models:
        models = models_to_compare(cfg)
    out = resolve_path(out_dir) if out_dir is not None else cfg.run_dir()
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for label, path in models.items():
        backend, tokenizer = (backends or {}).get(label, (None, None))
        results[label] = evaluate_model(cfg, str(path), label, out, backend, tokenizer)
    metrics: dict[str, Any] = {"models": results}
    metrics["tables"] = write_tables(metrics, out)
    record = {
        "stage": cfg.STAGE, "profile": cfg.profile, "seed": cfg.seed, "config": cfg.to_dict(),
        "config_hash": cfg.config_hash(), "git_commit": git_commit(), "packages": package_versions(),
        "python": platform.python_version(), "machine": platform.machine(),
        "wall_time_s": round(watch.seconds(), 3), "reads": sorted({str(p) for p in models.values()}),
        "metrics": metrics,
    }
    write_json_atomic(out / f"metrics{_shard_suffix(cfg)}.json", record, allow_nan=False)  # NaN never reaches JSON
    return record


__all__ = ["backend_spec", "build_requests", "evaluate_benchmark", "evaluate_model", "make_backend", "run",
           "traces_key", "write_tables"]
