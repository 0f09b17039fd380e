"""The DeepConf scaling experiment: trace pools -> accuracy vs generated tokens, Table 7 and Fig. 1 analogs.

Protocol ([P] §4.1): a pool of complete traces per problem; each of R runs draws a random working set
(a permutation of the pool, seeded numpy Generator) and applies every method to its first b traces:
pass@1, majority@b, the offline votes of `offline.offline_methods()`, and online DeepConf-low/-high with
and without the consensus stop (`online.replay_online`, b >= N_init). Accuracy is averaged over runs and
problems, with a bootstrap CI over problems; tokens are totals over the benchmark, averaged over runs.
Live runs (`mode: live|both`) execute Algorithm 2 through the backend's stop hook and measure real tokens.
Replay runs also diagnose confidence calibration on the scored pools (`calibration.diagnose`, no generation).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from falcon_h1r_lib.config import ConfigError
from falcon_h1r_lib.configs import DeepConfConfig
from falcon_h1r_lib.deepconf.confidence import SCORE_NAMES, token_confidence, trace_name, trace_scores
from falcon_h1r_lib.deepconf.offline import (
    NO_ANSWER,
    AnswerBook,
    OfflineMethod,
    offline_methods,
    offline_vote,
    weighted_vote,
)
from falcon_h1r_lib.deepconf.online import OnlineSettings, OnlineTrace, replay_online, run_online_live
from falcon_h1r_lib.paths import resolve_path

PASS1, MAJORITY = "pass@1", "majority"
TABLE7_COLUMNS = {"AIME24": "AIME24", "AIME25": "AIME25", "GPQA-Diamond": "GPQA-Diamond", "AMO-Bench": "AMO-Bench-39"}


@dataclass
class ProblemPool:
    """One problem's pool, scored: per trace (P,) arrays in sample order, answer groups, verdicts."""

    problem_id: str
    n_tokens: np.ndarray  # (P,) generated tokens per trace
    labels: np.ndarray  # (P,) answer group (offline.AnswerBook in pool order), NO_ANSWER = -1
    correct: np.ndarray  # (P,) 1.0 / 0.0 / nan (no verdict) per trace
    label_correct: dict[int, float]  # answer group -> verdict of its first trace; NO_ANSWER -> 0.0
    scores: dict[str, np.ndarray]  # score name -> (P,)
    online: list[OnlineTrace]  # the same traces for the online controller
    details: pd.DataFrame | None = None  # (P rows) calibration.trace_details: answer, finish reason, cause features

    def __len__(self) -> int:
        return len(self.n_tokens)

    def verdict(self, label: int) -> float:
        return self.label_correct.get(int(label), 0.0)


def score_pool(problem_id: str, traces: Sequence, answers: Sequence[str | None], correct: Sequence[bool | None],
               domain: str, window: int, tail: int, bottom_percent: float = 10.0, topk: int = 20) -> ProblemPool:
    """Score one problem's traces (generation.Trace, sample order) with their extracted answers and verdicts."""
    if not len(traces) == len(answers) == len(correct):
        raise ValueError(f"problem {problem_id!r}: {len(traces)} traces, {len(answers)} answers, {len(correct)} verdicts")
    book = AnswerBook(domain)
    labels = np.array([book.label(a) for a in answers], dtype=np.int64)
    verdicts = np.array([np.nan if c is None else float(bool(c)) for c in correct])
    confs = [token_confidence(t.topk_logprobs, topk, trace=trace_name(t)) for t in traces]
    per = [trace_scores(c, window, tail, bottom_percent) for c in confs]
    label_correct: dict[int, float] = {NO_ANSWER: 0.0}
    for lab, v in zip(labels.tolist(), verdicts.tolist(), strict=True):
        label_correct.setdefault(lab, v)
    return ProblemPool(
        problem_id=problem_id, n_tokens=np.array([t.n_tokens for t in traces], dtype=np.int64), labels=labels,
        correct=verdicts, label_correct=label_correct,
        scores={s: np.array([p[s] for p in per]) for s in SCORE_NAMES},
        online=[OnlineTrace.from_conf(c, window, lab, int(t.sample_index))
                for c, lab, t in zip(confs, labels.tolist(), traces, strict=True)])


def online_variants(cfg: DeepConfConfig, wave: int = 1) -> dict[str, OnlineSettings]:
    """DeepConf-low/-high ([P] eta 10 / 90), budget-only and with the consensus stop. `wave` = 1 checks
    consensus before every trace (Alg. 2; the replayed curves); live runs pass `cfg.live_wave`."""
    out = {}
    for name, eta in (("low", cfg.keep_top_percent), ("high", cfg.keep_top_percent_high)):
        for suffix, tau in (("", None), ("+consensus", cfg.consensus_tau)):
            out[f"deepconf-{name}{suffix}"] = OnlineSettings(
                budget=cfg.budget, n_init=cfg.n_init, keep_top_percent=eta, window=cfg.window,
                consensus_tau=tau, wave=wave, topk=cfg.topk)
    return out


@dataclass
class RunGrid:
    """Every method's outcome on every resampled run of one model x benchmark: for each (method, budget),
    ``accuracy`` (R, P) verdicts (1/0, nan = no verdict) and ``tokens`` (R, P) generated tokens, problems in
    pool order (``problem_ids``, (P,))."""

    problem_ids: list[str]
    accuracy: dict[tuple[str, int], np.ndarray]
    tokens: dict[tuple[str, int], np.ndarray]

    def per_problem_accuracy(self, method: str, budget: int) -> np.ndarray:
        """(P,) accuracy of ``method`` at ``budget`` per problem, averaged over runs (nan: never a verdict).
        Raises KeyError naming the pair when it was not replayed."""
        if (method, budget) not in self.accuracy:
            raise KeyError(f"no replay of method {method!r} at budget {budget}; have "
                           f"{sorted(self.accuracy)[:6]}...")
        a = self.accuracy[(method, budget)]
        with np.errstate(all="ignore"):
            return np.array([np.nanmean(col) if np.isfinite(col).any() else np.nan for col in a.T])


def scaling_curves(pools: Sequence[ProblemPool], cfg: DeepConfConfig, seed: int | None = None,
                   methods: Sequence[OfflineMethod] | None = None) -> pd.DataFrame:
    """Accuracy and tokens per (method, budget) over `cfg.runs` resampled runs of one model x benchmark.

    Columns: method, family (baseline|offline|online), budget, accuracy, ci_low, ci_high, accuracy_run_std,
    tokens (total over problems, run mean), tokens_run_std, no_verdict (problem-runs without a verdict).
    """
    return curves_from_grid(replay_grid(pools, cfg, seed, methods), cfg)


def replay_grid(pools: Sequence[ProblemPool], cfg: DeepConfConfig, seed: int | None = None,
                methods: Sequence[OfflineMethod] | None = None) -> RunGrid:
    """The runs behind `scaling_curves`: each of `cfg.runs` runs draws a seeded permutation of each pool and
    applies pass@1, majority@b, the offline votes and the online variants to its first b traces."""
    if not pools:
        raise ValueError("scaling_curves: no problem pools")
    short = [p.problem_id for p in pools if len(p) < cfg.budget]
    if short:
        raise ConfigError(f"{cfg.STAGE}: pools of {short[:3]} hold fewer than budget={cfg.budget} traces")
    if methods is None:  # plain majority is the baseline row already
        methods = [m for m in offline_methods((cfg.keep_top_percent, cfg.keep_top_percent_high)) if m.score is not None]
    variants = online_variants(cfg)
    budgets = sorted(set(cfg.budgets))
    online_budgets = [b for b in budgets if b >= cfg.n_init]
    rng = np.random.default_rng(cfg.seed if seed is None else seed)
    R, P = cfg.runs, len(pools)
    acc: dict[tuple[str, int], np.ndarray] = {}
    tok: dict[tuple[str, int], np.ndarray] = {}

    def put(name, b, r, p, a, t):
        if (name, b) not in acc:
            acc[(name, b)] = np.full((R, P), np.nan)
            tok[(name, b)] = np.zeros((R, P))
        acc[(name, b)][r, p] = a
        tok[(name, b)][r, p] = t

    for r in range(R):
        for p, pool in enumerate(pools):
            ws = rng.permutation(len(pool))[:cfg.budget]  # this run's working set, in start order
            put(PASS1, 1, r, p, np.nanmean(pool.correct[ws]) if np.isfinite(pool.correct[ws]).any() else np.nan,
                pool.n_tokens[ws].mean())
            for b in budgets:
                sub = ws[:b]
                labels, tokens = pool.labels[sub], float(pool.n_tokens[sub].sum())
                put(MAJORITY, b, r, p, pool.verdict(weighted_vote(labels).label), tokens)
                scores = {s: v[sub] for s, v in pool.scores.items()}
                for m in methods:
                    put(f"offline:{m.name}", b, r, p, pool.verdict(offline_vote(labels, scores, m).label), tokens)
            if online_budgets:
                order = [pool.online[i] for i in ws]
                for name, settings in variants.items():
                    for b, res in replay_online(order, settings, online_budgets).items():
                        put(name, b, r, p, pool.verdict(res.label), res.tokens)
    return RunGrid([p.problem_id for p in pools], acc, tok)


def per_problem_frame(grid: RunGrid, budget: int, methods: Sequence[str] = (MAJORITY, "deepconf-low")) -> pd.DataFrame:
    """One row per problem: each of ``methods``' accuracy at ``budget`` averaged over runs (columns named by
    method) and its mean tokens; the paired per-problem data behind the DeepConf claim's power analysis
    (`evaluation.power.difference_stats`)."""
    frame = pd.DataFrame({"problem_id": grid.problem_ids})
    for m in methods:
        frame[m] = grid.per_problem_accuracy(m, budget)
        frame[f"{m}_tokens"] = grid.tokens[(m, budget)].mean(axis=0)
    return frame


def claim_power(per_problem: Mapping[tuple[str, str], pd.DataFrame], budget: int, margin: float | None = None,
                power: float = 0.8, alpha: float = 0.05, low: str = "deepconf-low") -> pd.DataFrame:
    """The DeepConf claim's power analysis, one row per (model, benchmark): DeepConf-low at K = ``budget`` is
    non-inferior to majority@K within ``margin`` (fraction; default `evaluation.power.DEEPCONF_MARGIN`, the
    1-point target), tested on the per-problem accuracy differences of `per_problem_frame` (problems without a
    verdict dropped). Columns: model, benchmark, n_problems, mean_difference_points, sd_points,
    power_at_current (if the methods were truly equal), problems_needed (for ``power``), margin_points."""
    from falcon_h1r_lib.evaluation import power as pw

    margin = pw.DEEPCONF_MARGIN if margin is None else margin
    rows = []
    for (label, bench), frame in per_problem.items():
        both = frame[[MAJORITY, low]].dropna()
        stats = pw.difference_stats(both[low], both[MAJORITY], n_samples=budget)
        rows.append({"model": label, "benchmark": bench, "n_problems": stats.n_problems,
                     "mean_difference_points": 100.0 * stats.mean_difference, "sd_points": 100.0 * stats.sd,
                     "power_at_current": pw.power_noninferior(margin, 0.0, stats.n_problems, stats.sd, alpha),
                     "problems_needed": pw.problems_needed_noninferior(margin, 0.0, stats.sd, power, alpha),
                     "margin_points": 100.0 * margin})
    return pd.DataFrame(rows)


def curves_from_grid(grid: RunGrid, cfg: DeepConfConfig) -> pd.DataFrame:
    """`scaling_curves`' table from a `RunGrid`: accuracy over problems (bootstrap CI over problems),
    tokens totalled over problems and averaged over runs."""
    from falcon_h1r_lib.evaluation import bootstrap_ci

    acc, tok = grid.accuracy, grid.tokens
    rows = []
    for (name, b), a in acc.items():
        per_problem = np.nanmean(np.where(np.isnan(a), np.nan, a), axis=0) if np.isfinite(a).any() else None
        finite = per_problem[np.isfinite(per_problem)] if per_problem is not None else np.zeros(0)
        lo, hi = bootstrap_ci(finite, cfg.bootstrap_resamples, cfg.ci_level, cfg.seed) if finite.size else (np.nan, np.nan)
        run_acc = np.nanmean(a, axis=1)
        totals = tok[(name, b)].sum(axis=1)
        family = "online" if name.startswith("deepconf-") else "offline" if name.startswith("offline:") else "baseline"
        rows.append({"method": name, "family": family, "budget": b, "accuracy": float(np.nanmean(finite)) if finite.size else np.nan,
                     "ci_low": lo, "ci_high": hi, "accuracy_run_std": float(np.nanstd(run_acc)),
                     "tokens": float(totals.mean()), "tokens_run_std": float(totals.std()),
                     "no_verdict": int(np.isnan(a).sum())})
    return pd.DataFrame(rows).sort_values(["family", "method", "budget"], kind="stable").reset_index(drop=True)


def at_budget(curves: pd.DataFrame, method: str, budget: int) -> pd.Series:
    rows = curves[(curves["method"] == method) & (curves["budget"] == budget)]
    if rows.empty:
        raise KeyError(f"no curve point for method {method!r} at budget {budget}")
    return rows.iloc[0]


def summary_at(curves: pd.DataFrame, budget: int, low: str = "deepconf-low") -> dict[str, float]:
    """Majority@K vs DeepConf-low at K: accuracies, tokens, tokens saved (%), accuracy difference (points)."""
    maj, dc = at_budget(curves, MAJORITY, budget), at_budget(curves, low, budget)
    return {"budget": int(budget), "majority_accuracy": float(maj["accuracy"]), "majority_tokens": float(maj["tokens"]),
            "deepconf_low_accuracy": float(dc["accuracy"]), "deepconf_low_tokens": float(dc["tokens"]),
            "tokens_saved_percent": float(100.0 * (1.0 - dc["tokens"] / maj["tokens"])) if maj["tokens"] else np.nan,
            "accuracy_difference_points": float(100.0 * (dc["accuracy"] - maj["accuracy"]))}


def table7_frame(curves: Mapping[tuple[str, str], pd.DataFrame], budget: int, method: str = "deepconf-low",
                 paper_model: str = "Falcon-H1R-7B") -> pd.DataFrame:
    """Table 7 analog: per (model, benchmark) accuracy (%) / total tokens of `method` at K, majority@K
    beside, and the paper's cell (Falcon-H1R-7B) where the benchmark is one of Table 7's columns."""
    from falcon_h1r_lib.paper_results import paper_value

    rows = []
    for (model, bench), c in curves.items():
        ours, maj = at_budget(c, method, budget), at_budget(c, MAJORITY, budget)
        col = TABLE7_COLUMNS.get(bench)
        rows.append({
            "model": model, "benchmark": bench, "method": method, "budget": budget,
            "accuracy_percent": 100 * ours["accuracy"], "tokens": ours["tokens"],
            "majority_accuracy_percent": 100 * maj["accuracy"], "majority_tokens": maj["tokens"],
            "paper_model": paper_model if col else None,
            "paper_accuracy_percent": paper_value("table7_deepconf", paper_model, col, "accuracy") if col else np.nan,
            "paper_tokens_millions": paper_value("table7_deepconf", paper_model, col, "tokens_millions") if col else np.nan,
        })
    return pd.DataFrame(rows)


def figure1_frame(curves: Mapping[tuple[str, str], pd.DataFrame], budget: int) -> pd.DataFrame:
    """Fig. 1 analog: pass@1, majority@K, offline DeepConf@K (lowest-group and tail, eta = 10) accuracy, and
    online DeepConf-low/-high tokens vs majority@K (savings in %)."""
    rows = []
    for (model, bench), c in curves.items():
        maj = at_budget(c, MAJORITY, budget)
        for method in (PASS1, MAJORITY, "offline:lowest_group@10", "offline:tail@10", "deepconf-low", "deepconf-high",
                       "deepconf-low+consensus", "deepconf-high+consensus"):
            try:
                pt = at_budget(c, method, 1 if method == PASS1 else budget)
            except KeyError:
                continue
            rows.append({"model": model, "benchmark": bench, "method": method, "accuracy": pt["accuracy"],
                         "ci_low": pt["ci_low"], "ci_high": pt["ci_high"], "tokens": pt["tokens"],
                         "tokens_vs_majority_percent": 100.0 * (pt["tokens"] / maj["tokens"] - 1.0) if maj["tokens"] else np.nan})
    return pd.DataFrame(rows)


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
    """Notebook 01's measured decode tokens/s (the ``decode`` rows of its ``metrics.json``) for the 3D view, or None
    when notebook 01 has not run for ``profile``: the full profile's cluster recipe never runs it (README, "Run it
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
           "live_run", "make_backend", "models_to_compare", "online_variants", "pool_file", "pools_from_files", "run", "scaling_curves",
           "RunGrid", "claim_power", "curves_from_grid", "per_problem_frame", "replay_grid",
           "score_pool", "stream_traces", "summary_at", "table7_frame"]
