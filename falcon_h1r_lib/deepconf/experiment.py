"""The DeepConf scaling experiment (notebook 06's stage): trace pools on a model -> accuracy vs generated tokens,
Table 7 and Fig. 1 analogs, calibration diagnostics, ``metrics.json``.

Pools are generated once per (model, benchmark) and kept as Parquet; the replay protocol over them ([P] §4.1:
R runs of random working sets, every method at every budget) lives in `replay`, whose names this module
re-exports as the stage's API. Live runs (`mode: live|both`) execute Algorithm 2 through the backend's stop
hook and measure real tokens. Replay runs also diagnose confidence calibration on the scored pools
(`calibration.diagnose`, no generation).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from falcon_h1r_lib.config import ConfigError
from falcon_h1r_lib.configs import DeepConfConfig
from falcon_h1r_lib.deepconf.offline import NO_ANSWER, AnswerBook
from falcon_h1r_lib.deepconf.online import run_online_live
from falcon_h1r_lib.deepconf.replay import (  # the replay protocol; re-exported as this stage's API
    MAJORITY,
    PASS1,
    ProblemPool,
    RunGrid,
    at_budget,
    claim_over_seeds,
    claim_power,
    curves_from_grid,
    figure1_frame,
    online_variants,
    per_problem_frame,
    replay_grid,
    scaling_curves,
    score_pool,
    summary_at,
    table7_frame,
)
from falcon_h1r_lib.paths import resolve_path

# --------------------------------------------------------------------------------------------
# Pools and live runs on a model (HF or vLLM)
# --------------------------------------------------------------------------------------------


def backend_spec(cfg: DeepConfConfig, model_path: str):
    """The `generation.BackendSpec` of one model; `vllm_stop: logits_processor` loads the EOS-forcing
    processor into the engine by name (`vllm_stop.PROCESSOR_FQCN`)."""
    from falcon_h1r_lib.deepconf.vllm_stop import PROCESSOR_FQCN
    from falcon_h1r_lib.generation import BackendSpec

    vllm = dict(cfg.vllm) if cfg.backend == "vllm" else {}
    if cfg.backend == "vllm" and cfg.vllm_stop == "logits_processor":
        kwargs = dict(vllm.get("engine_kwargs", {}))
        kwargs["logits_processors"] = [*kwargs.get("logits_processors", []), PROCESSOR_FQCN]
        vllm["engine_kwargs"] = kwargs
    return BackendSpec(model=model_path, backend=cfg.backend, revision=cfg.model_revision, dtype=cfg.dtype,
                       device=cfg.device, batch_size=cfg.batch_size, seed=cfg.seed, vllm=vllm,
                       progress=cfg.backend == "vllm")


def make_backend(cfg: DeepConfConfig, model_path: str):
    """(backend, tokenizer) from the one factory; live runs on vLLM with `vllm_stop: logits_processor` go
    through `vllm_stop.VLLMLogitsStopBackend`."""
    from falcon_h1r_lib.generation import make_backend as factory

    try:
        backend, tok = factory(backend_spec(cfg, model_path))
    except ValueError as err:
        raise ConfigError(f"{cfg.STAGE}: {err}") from err
    if cfg.backend == "vllm" and cfg.vllm_stop == "logits_processor":
        from falcon_h1r_lib.deepconf.vllm_stop import VLLMLogitsStopBackend

        return VLLMLogitsStopBackend(backend), tok
    return backend, tok


def _requests(cfg: DeepConfConfig, problems, tokenizer) -> list:
    from falcon_h1r_lib.generation import chat_request
    from falcon_h1r_lib.tokenizer import system_turn

    system = system_turn(cfg.system_prompt)
    return [chat_request(str(p["id"]), p["prompt"], tokenizer, system) for p in problems]


def _sampling(cfg: DeepConfConfig, bench, n: int):
    return bench.sampling(seed=cfg.seed, logprobs_topk=cfg.topk, n=n, max_new_tokens=cfg.max_new_tokens,
                          temperature=cfg.temperature, top_p=cfg.top_p)


def load_problems(cfg: DeepConfConfig, bench) -> list[dict]:
    local = cfg.local_files.get(bench.source) if bench.source else None
    return bench.load_problems(cfg.max_problems, sources_file=cfg.eval_sources_file,
                               allow_unpinned=cfg.allow_unpinned, local_files=local)


def pool_file(folder: Path, problem_id: str) -> Path:
    """`folder/<readable id>-<hash>.parquet`: one file per problem, whatever characters its id holds."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", problem_id)[:60]
    return folder / f"{readable}-{hashlib.sha1(problem_id.encode()).hexdigest()[:8]}.parquet"


def stream_traces(backend, requests: Sequence, sampling) -> Iterator:
    """Finished traces of `requests` as the backend completes them (`stream`), else request by request."""
    stream = getattr(backend, "stream", None)
    if callable(stream):
        yield from stream(requests, sampling)
        return
    for r in requests:
        yield from backend.generate([r], sampling)


def generate_pools(cfg: DeepConfConfig, bench, backend, tokenizer, model: str, folder: Path) -> tuple[list, dict]:
    """(problems, info): `pool_size` complete traces per problem (no stopping), one Parquet per problem under
    `folder`. Streamed: a problem's file is written as soon as its traces are complete, so host memory holds
    the in-flight problems only; a problem whose file carries the same key (model weights, prompt,
    sampling) is not sampled again (`reuse_pools`), so an interrupted run resumes where it stopped."""
    from falcon_h1r_lib.generation import read_traces_metadata, write_traces
    from falcon_h1r_lib.models.identity import weights_fingerprint

    problems = load_problems(cfg, bench)
    requests = _requests(cfg, problems, tokenizer)
    sampling = _sampling(cfg, bench, cfg.pool_size)
    model_id = f"{model}#{weights_fingerprint(model)}"
    keys = {r.problem_id: hashlib.sha256(json.dumps(
        {"model": model_id, "sampling": sampling.to_dict(), "prompt": [r.problem_id, r.prompt]},
        sort_keys=True).encode()).hexdigest()[:16] for r in requests}
    files = {pid: pool_file(folder, pid) for pid in keys}
    done = {pid for pid, f in files.items()
            if cfg.reuse_pools and f.exists() and read_traces_metadata(f).get("key") == keys[pid]}
    todo = [r for r in requests if r.problem_id not in done]
    manifest = folder / "pool.json"
    run_key = hashlib.sha256(json.dumps(sorted(keys.values())).encode()).hexdigest()[:16]
    if not todo:
        meta = json.loads(manifest.read_text()) if manifest.exists() else {}
        seconds = meta.get("generate_seconds") if meta.get("key") == run_key else None
        return problems, {"reused": True, "generate_seconds": seconds}
    start = time.perf_counter()
    pending: dict[str, list] = {}
    for t in stream_traces(getattr(backend, "backend", backend), todo, sampling):
        mine = pending.setdefault(t.problem_id, [])
        mine.append(t)
        if len(mine) == sampling.n:
            write_traces(sorted(pending.pop(t.problem_id), key=lambda x: x.sample_index), files[t.problem_id],
                         metadata={"key": keys[t.problem_id], "model": model, "benchmark": bench.name,
                                   "sampling": sampling.to_dict(), "config_hash": cfg.config_hash()})
    if pending:
        raise RuntimeError(f"{bench.name}: the backend returned an incomplete pool for {sorted(pending)[:3]}")
    seconds = time.perf_counter() - start
    whole = not done  # a partial resume cannot time the whole pool
    manifest.write_text(json.dumps({"key": run_key, "generate_seconds": seconds if whole else None,
                                    "problems": len(keys)}) + "\n")
    return problems, {"reused": False, "resumed_problems": len(done), "generate_seconds": seconds if whole else None}


def pools_from_files(cfg: DeepConfConfig, problems: Sequence[Mapping], folder: Path, tokenizer=None
                     ) -> tuple[list[ProblemPool], dict]:
    """Grade (shared verifiers) and score each problem's pool file, one problem in memory at a time; also
    time the confidence computation. Each pool carries `calibration.trace_details` (the lowest window's
    template-token share needs `tokenizer`, NaN without)."""
    from falcon_h1r_lib.deepconf.calibration import trace_details
    from falcon_h1r_lib.evaluation import grade_all
    from falcon_h1r_lib.generation import read_traces

    pools, score_s, n_traces, n_tokens = [], 0.0, 0, 0
    for p in problems:
        pid = str(p["id"])
        traces = sorted(read_traces(pool_file(folder, pid)), key=lambda t: t.sample_index)
        grades = grade_all([p], traces, max_workers=2)
        answers = [None if pd.isna(a) else a for a in grades["answer"]]
        start = time.perf_counter()
        pool = score_pool(pid, traces, answers, [None if pd.isna(c) else bool(c) for c in grades["correct"]],
                          p["domain"], cfg.window, cfg.tail_tokens, cfg.bottom_percent, cfg.topk)
        score_s += time.perf_counter() - start
        pool.details = trace_details(p, traces, answers, [t.groups for t in pool.online], cfg.window, tokenizer)
        pools.append(pool)
        n_traces += len(traces)
        n_tokens += int(sum(t.n_tokens for t in traces))
    return pools, {"score_seconds": score_s, "n_traces": n_traces, "n_tokens": n_tokens}


def live_run(cfg: DeepConfConfig, bench, backend, tokenizer) -> dict[str, Any]:
    """Algorithm 2 live (DeepConf-low, consensus stop) on every problem: accuracy, real tokens, timings."""
    from falcon_h1r_lib.rewards import verify

    problems = load_problems(cfg, bench)
    by_id = {str(p["id"]): p for p in problems}
    books = {pid: AnswerBook(p["domain"]) for pid, p in by_id.items()}

    def label_of(pid, trace):
        from falcon_h1r_lib.rewards import extract_answer

        return books[pid].label(extract_answer(trace.completion, by_id[pid]["domain"]) if trace.completion.strip() else None)

    settings = online_variants(cfg, wave=cfg.live_wave)["deepconf-low+consensus"]
    live = run_online_live(backend, _requests(cfg, problems, tokenizer), _sampling(cfg, bench, 1), settings, label_of)
    correct = []
    for pid, res in live.results.items():
        if res.label == NO_ANSWER:
            correct.append(0.0)
            continue
        first = next(t for t in live.traces[pid] if label_of(pid, t) == res.label)
        v = verify(dict(by_id[pid]), first.completion)
        correct.append(np.nan if v is None else float(v))
    return {"accuracy": float(np.nanmean(correct)), "tokens": int(sum(r.tokens for r in live.results.values())),
            "traces_started": int(sum(r.n_started for r in live.results.values())),
            "traces_stopped": int(sum(r.n_stopped for r in live.results.values())),
            "consensus_stops": int(sum(r.consensus_stop for r in live.results.values())),
            "generate_seconds": live.generate_seconds, "hook_seconds": live.hook_seconds,
            "confidence_share_of_generation": live.hook_seconds / live.generate_seconds if live.generate_seconds else None,
            "wave": cfg.live_wave}


def models_to_compare(cfg: DeepConfConfig, models: Mapping[str, str] | None = None) -> dict[str, str]:
    """The models notebook 06 and ``python -m falcon_h1r_lib.deepconf`` run: {label: checkpoint or Hub id}.

    ``models`` when given (``--model``), all of them; else ``cfg.models``, of which a model notebook 04 writes is
    left out while notebook 04 has not started (tiny: SFT alone until RL has run), unless it is the only one. Each
    that is a stage's output must be complete (``stages.require_models``): MissingStageOutput names the notebook
    (tiny) or command to run, also for a half-written stage (a model saved, ``metrics.json`` not yet written).
    """
    from falcon_h1r_lib import stages

    if models:
        return stages.require_models(models)
    return stages.require_models(cfg.models, optional=("04_rl",))


def decode_throughput(profile: str) -> pd.DataFrame | None:
    """Notebook 01's measured decode tokens/s (the ``decode`` rows of its ``metrics.json``) for the decode-speed
    view, or None when notebook 01 has not run for ``profile``: the full profile's cluster recipe never runs it (README, "Run it
    on a GPU cluster") and the rehearsal does not rehearse it. Read before any pool is generated, so a missing
    record costs nothing. Raises ConfigError naming the file when the record has no ``metrics.decode`` rows."""
    from falcon_h1r_lib import stages

    path = stages.output_path("01_architecture", "metrics", profile)
    if not path.exists():
        return None
    try:
        rows = json.loads(path.read_text())["metrics"]["decode"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ConfigError(f"{path}: no readable 'decode' rows under 'metrics' ({err!r}); re-run "
                          f"{stages.stage('01_architecture').notebook.name}") from err
    if not isinstance(rows, list) or not rows:
        raise ConfigError(f"{path}: 'metrics.decode' must be a non-empty list of rows, got {rows!r:.80}")
    return pd.DataFrame(rows)


def run(cfg: DeepConfConfig, models: Mapping[str, str] | None = None, backends: Mapping[str, tuple] | None = None,
        out_dir: str | None = None) -> dict[str, Any]:
    """The whole stage: pools (and/or live runs) per model x benchmark, curves, Table 7 / Fig. 1 frames,
    confidence calibration diagnostics (`calibration.diagnose`: `calibration_<label>_<bench>.csv`, one row per
    trace, and `metrics["models"][label][bench]["calibration"]`), CSVs and `metrics.json` under the run folder
    (or `out_dir`). `models` defaults to `models_to_compare(cfg)` (MissingStageOutput names the notebook to run);
    `backends` ({label: (backend, tokenizer)}) reuses loaded models. Returns {"metrics",
    "curves", "calibration" ({(label, bench): diagnose's frames}), "per_problem" ({(label, bench):
    `per_problem_frame`}), "out"}."""
    from falcon_h1r_lib.deepconf.calibration import diagnose
    from falcon_h1r_lib.evaluation import get_benchmark
    from falcon_h1r_lib.metrics import Stopwatch, write_metrics

    watch = Stopwatch()
    models = dict(models) if models else models_to_compare(cfg)
    out = resolve_path(out_dir) if out_dir is not None else cfg.run_dir()
    out.mkdir(parents=True, exist_ok=True)
    curves: dict[tuple[str, str], pd.DataFrame] = {}
    calibration: dict[tuple[str, str], dict[str, Any]] = {}
    per_problem: dict[tuple[str, str], pd.DataFrame] = {}
    metrics: dict[str, Any] = {"models": {}}
    for label, path in models.items():
        given = (backends or {}).get(label)
        backend, tokenizer = given or make_backend(cfg, str(path))
        metrics["models"][label] = {}
        try:
            for name in cfg.benchmarks:
                bench = get_benchmark(name, cfg.profile)
                entry: dict[str, Any] = {}
                if cfg.mode in ("replay", "both"):
                    folder = out / "pools" / label / bench.name
                    problems, info = generate_pools(cfg, bench, backend, tokenizer, str(path), folder)
                    pools, sinfo = pools_from_files(cfg, problems, folder, tokenizer)
                    grid = replay_grid(pools, cfg)
                    c = curves_from_grid(grid, cfg)
                    c.to_csv(out / f"curves_{label}_{bench.name}.csv", index=False)
                    per_problem[(label, bench.name)] = per_problem_frame(grid, cfg.budget)
                    per_problem[(label, bench.name)].to_csv(out / f"per_problem_{label}_{bench.name}.csv", index=False)
                    curves[(label, bench.name)] = c
                    diag = diagnose(pools, problems, online_variants(cfg)["deepconf-low"], runs=cfg.runs,
                                    seed=cfg.seed, resamples=cfg.bootstrap_resamples, ci_level=cfg.ci_level)
                    diag["traces"].to_csv(out / f"calibration_{label}_{bench.name}.csv", index=False)
                    calibration[(label, bench.name)] = diag
                    gen_s = info.get("generate_seconds")
                    entry.update({"pool": {**info, **sinfo, "confidence_share_of_generation":
                                           sinfo["score_seconds"] / gen_s if gen_s else None},
                                  "at_budget": summary_at(c, cfg.budget), "calibration": diag["summary"]})
                if cfg.mode in ("live", "both"):
                    entry["live"] = live_run(cfg, bench, backend, tokenizer)
                metrics["models"][label][bench.name] = entry
        finally:
            if given is None:  # one engine alive at a time
                from falcon_h1r_lib.generation import close_backend

                close_backend(backend)
    if curves:
        t7 = table7_frame(curves, cfg.budget)
        f1 = figure1_frame(curves, cfg.budget)
        t7.to_csv(out / "table7_deepconf.csv", index=False)
        f1.to_csv(out / "figure1_deepconf.csv", index=False)
        metrics["table7"] = t7.to_dict(orient="records")
    reads = sorted(str(p) for p in models.values())
    if out_dir is None:
        write_metrics(cfg, _jsonable(metrics), wall_time_s=watch.seconds(), reads=reads)
    else:  # a folder of its own (tests, ad-hoc runs): never overwrite the stage's metrics.json
        record = {"stage": cfg.STAGE, "profile": cfg.profile, "seed": cfg.seed, "config": cfg.to_dict(),
                  "config_hash": cfg.config_hash(), "wall_time_s": round(watch.seconds(), 3), "reads": reads,
                  "metrics": _jsonable(metrics)}
        (out / "metrics.json").write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
    return {"metrics": metrics, "curves": curves, "calibration": calibration, "per_problem": per_problem,
            "out": str(out)}


def run_seeds(cfg: DeepConfConfig, seeds: Sequence[int], models: Mapping[str, str] | None = None,
              first: Mapping[str, Any] | None = None) -> dict[int, dict[tuple[str, str], dict[str, float]]]:
    """The DeepConf claim at K = ``cfg.budget`` (`summary_at`) for each of ``seeds``, the seed drawing both the
    pools and the resampled working sets (same checkpoints, same problems). ``cfg.seed``'s is read from
    ``first`` (this stage's `run` result) when given; every other seed runs `run` in replay mode under the stage
    folder's ``seeds/seed-<S>/`` (its pools are kept there: a rerun samples nothing again, and the stage's own
    ``metrics.json`` is never touched). Returns {seed: {(model, benchmark): summary}} in ``seeds`` order, for
    `replay.claim_over_seeds`. Raises ValueError for no seeds or ``cfg.mode == "live"`` (no pools to replay)."""
    import dataclasses

    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if not seeds:
        raise ValueError("run_seeds: no seeds")
    if cfg.mode == "live":
        raise ValueError("run_seeds: mode 'live' keeps no pools; the claim over seeds replays pools (mode "
                         "'replay' or 'both')")
    out: dict[int, dict[tuple[str, str], dict[str, float]]] = {}
    for seed in seeds:
        if seed == cfg.seed and first is not None:
            curves = first["curves"]
        else:
            other = dataclasses.replace(cfg, seed=seed, mode="replay")
            curves = run(other, models=models, out_dir=str(cfg.run_dir() / "seeds" / f"seed-{seed}"))["curves"]
        out[seed] = {key: summary_at(c, cfg.budget) for key, c in curves.items()}
    return out


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


__all__ = ["MAJORITY", "PASS1", "ProblemPool", "at_budget", "backend_spec", "decode_throughput", "figure1_frame", "generate_pools",
           "live_run", "make_backend", "models_to_compare", "online_variants", "pool_file", "pools_from_files", "run", "run_seeds", "scaling_curves",
           "RunGrid", "claim_over_seeds", "claim_power", "curves_from_grid", "per_problem_frame", "replay_grid",
           "score_pool", "stream_traces", "summary_at", "table7_frame"]
