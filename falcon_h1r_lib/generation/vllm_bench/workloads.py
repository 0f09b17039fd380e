"""vLLM against our `HFBackend` on the tiny profile's own sampling jobs (notebooks 03/05 evaluation, 04 Fig. 9
filter, 06 DeepConf pools), each backend session in a fresh process so thread settings apply and the engine is
gone when it ends. The seeded requests reach vLLM through `VLLMBackend`, which makes them safe on CPU
(`vllm_backend.cpu_safe_kwargs`; see the facts in `engine`)."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from falcon_h1r_lib.generation.sampling import GenerationRequest, SamplingConfig
from falcon_h1r_lib.generation.vllm_bench.engine import (
    env_vars,
    kv_cache_budget_gib,
    machine_info,
    stop_children,
    thread_env,
)
from falcon_h1r_lib.generation.vllm_bench.prompts import prompt_token_ids
from falcon_h1r_lib.generation.vllm_bench.results import SCHEMA_VERSION, median
from falcon_h1r_lib.paths import repo_relative, resolve_path

DEFAULT_WORKLOADS_OUT = "runs/bench/workloads_vllm_cpu"
DEFAULT_WORKLOAD_MODEL = "runs/tiny/03_sft/sft"
WORKLOAD_COLUMNS = ("threads", "workload", "source", "problems", "samples_per_problem", "sequences",
                    "max_new_tokens", "temperature", "hf_batch_size", "repeats", "hf_tokens", "hf_tok_s",
                    "vllm_tokens", "vllm_tok_s", "vllm_over_hf")
WORKLOADS = ("03_sft_eval", "05_evaluation", "04_rl_filter", "06_deepconf_pools")


@dataclass(frozen=True)
class Workload:
    """One sampling job of the tiny pipeline: its requests, sampling settings and the HF batch it runs at."""

    name: str
    source: str  # the notebook / config it mirrors
    requests: tuple[GenerationRequest, ...]
    sampling: SamplingConfig
    hf_batch_size: int  # sequences HFBackend decodes together in that stage

    @property
    def sequences(self) -> int:
        return len(self.requests) * self.sampling.n


def _eval_requests(benches: Mapping[str, int], tokenizer, system: str | None, cap: int | None
                   ) -> tuple[GenerationRequest, ...]:
    """Chat requests on the held-out problems of each tiny benchmark (ids prefixed with the benchmark)."""
    from falcon_h1r_lib.evaluation import get_benchmark  # lazy: evaluation sits above generation
    from falcon_h1r_lib.generation.sampling import chat_request

    out = []
    for name, n in benches.items():
        for p in get_benchmark(name, "tiny").load_problems(min(n, cap) if cap else n):
            out.append(chat_request(f"{name}/{p['id']}", p["prompt"], tokenizer, system))
    return tuple(out)


def tiny_workloads(tokenizer, max_problems: int | None = None, names: Sequence[str] = WORKLOADS
                   ) -> list[Workload]:
    """The tiny profile's sampling jobs, sized by its YAMLs; `max_problems` caps problems per benchmark/pool."""
    from falcon_h1r_lib.config import load_config
    from falcon_h1r_lib.data import splits
    from falcon_h1r_lib.evaluation import get_benchmark
    from falcon_h1r_lib.generation.sampling import chat_request
    from falcon_h1r_lib.tokenizer import system_turn

    unknown = sorted(set(names) - set(WORKLOADS))
    if unknown:
        raise ValueError(f"unknown workload(s) {unknown}; known: {list(WORKLOADS)}")
    if max_problems is not None and max_problems < 1:
        raise ValueError(f"max_problems must be >= 1 or None, got {max_problems}")
    out = []
    if "03_sft_eval" in names:  # sft.report.evaluate_base_and_sft: notebook 05's protocol on eval_problems
        sft, ev = load_config("03_sft", "tiny"), load_config("05_evaluation", "tiny")
        bench = get_benchmark(next(iter(sft.eval_problems)), "tiny")
        out.append(Workload("03_sft_eval", "profiles/tiny/03_sft.yaml eval_problems", _eval_requests(
            sft.eval_problems, tokenizer, system_turn(sft.system_prompt), max_problems), bench.sampling(
            seed=sft.seed, logprobs_topk=ev.logprobs_topk, n=sft.eval_samples_per_problem,
            max_new_tokens=ev.max_new_tokens, temperature=ev.temperature, top_p=ev.top_p), sft.eval_batch_size))
    if "05_evaluation" in names:
        ev = load_config("05_evaluation", "tiny")
        bench = get_benchmark(ev.benchmarks[0], "tiny")
        requests = _eval_requests({b: ev.max_problems for b in ev.benchmarks}, tokenizer,
                                  system_turn(ev.system_prompt), max_problems)
        out.append(Workload("05_evaluation", "profiles/tiny/05_evaluation.yaml", requests, bench.sampling(
            seed=ev.seed, logprobs_topk=ev.logprobs_topk, n=ev.samples_per_problem,
            max_new_tokens=ev.max_new_tokens, temperature=ev.temperature, top_p=ev.top_p), ev.batch_size))
    if "04_rl_filter" in names:  # rl.data.rollout_outcomes on the generated part of the RL pool
        rl = load_config("04_rl", "tiny")
        pool = [p for d in rl.domains for p in splits.tiny_train_problems(
            d, rl.extra_problems_per_domain, splits.train_seed(rl.extra_problems_seed))
            if rl.pool_max_difficulty is None or p["difficulty"] <= rl.pool_max_difficulty]
        cap = min(x for x in (rl.filter_max_problems, max_problems, len(pool)) if x is not None)
        system = system_turn(rl.system_prompt)
        out.append(Workload("04_rl_filter", "profiles/tiny/04_rl.yaml filter_* (generated pool part)", tuple(
            chat_request(p["id"], p["prompt"], tokenizer, system) for p in pool[:cap]), SamplingConfig(
            n=rl.filter_rollouts, temperature=rl.filter_temperature, top_p=rl.filter_top_p,
            max_new_tokens=rl.filter_max_new_tokens, seed=rl.seed, logprobs_topk=0),
            256))  # rl.stage.filter_backend's HFBackend batch_size
    if "06_deepconf_pools" in names:  # deepconf.experiment.generate_pools
        dc = load_config("06_deepconf_scaling", "tiny")
        requests = _eval_requests({b: dc.max_problems for b in dc.benchmarks}, tokenizer,
                                  system_turn(dc.system_prompt), max_problems)
        bench = get_benchmark(dc.benchmarks[0], "tiny")
        out.append(Workload("06_deepconf_pools", "profiles/tiny/06_deepconf_scaling.yaml pool_size", requests,
                            bench.sampling(seed=dc.seed, logprobs_topk=dc.topk, n=dc.pool_size,
                                           max_new_tokens=dc.max_new_tokens, temperature=dc.temperature,
                                           top_p=dc.top_p), dc.batch_size))
    return out


def _load_tokenizer(model_path: str | os.PathLike):
    from falcon_h1r_lib.tokenizer import load_falcon_tokenizer

    return load_falcon_tokenizer(str(resolve_path(model_path)))


def _vllm_sizes(workloads: Sequence[Workload], tokenizer) -> tuple[int, int]:
    """(max_model_len, sequences in flight) the workloads need: longest prompt + max_new_tokens, rounded up to
    256; at most vLLM's CPU default max_num_seqs (256) sequences at once."""
    longest = max(len(tokenizer(r.prompt, add_special_tokens=False)["input_ids"]) + w.sampling.max_new_tokens
                  for w in workloads for r in w.requests)
    return 256 * math.ceil(longest / 256), min(256, max(w.sequences for w in workloads))


def run_session(backend: str, model_path: str | os.PathLike, threads: int, names: Sequence[str] = WORKLOADS,
                max_problems: int | None = None, repeats: int = 1, kv_cache_gib: int | None = None,
                seed: int = 0) -> dict[str, Any]:
    """Load one backend ("hf" | "vllm") on `model_path`, time start-up (load + a 1-token request), then each
    workload `repeats` times: {"startup_s", "runs": [{workload, repeat, seconds, tokens, sequences}]}.

    Run it in a fresh process (`run_workloads` does): the thread settings must precede torch's import, and
    only the process's exit is sure to stop a `VLLMBackend`'s engine through the public API.
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
    tokenizer = _load_tokenizer(model_path)
    workloads = tiny_workloads(tokenizer, max_problems, names)
    path = str(resolve_path(model_path))
    probe = [GenerationRequest("startup-probe", "", tuple(prompt_token_ids(tokenizer, 1, 8, seed)[0]))]
    one = SamplingConfig(n=1, max_new_tokens=1, temperature=0.6, seed=seed, logprobs_topk=0)
    info: dict[str, Any] = {}
    t0 = time.perf_counter()
    if backend == "hf":
        from transformers import AutoModelForCausalLM

        from falcon_h1r_lib.generation.hf_backend import HFBackend
        from falcon_h1r_lib.kernels import patch_falcon_h1

        patch_falcon_h1()  # as the tiny stages sample on CPU (sft, rl)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()

        def make(w: Workload):
            return HFBackend(model, tokenizer, batch_size=w.hf_batch_size, progress=False)

        make(workloads[0]).generate(probe, one)
    elif backend == "vllm":
        from falcon_h1r_lib.generation.vllm_backend import VLLMBackend, VLLMConfig

        max_len, in_flight = _vllm_sizes(workloads, tokenizer)
        if not kv_cache_gib:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(path, local_files_only=True)
            kv_cache_gib = kv_cache_budget_gib(config, in_flight, max_len)
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(kv_cache_gib)  # read at engine start; a session-only process
        engine = VLLMBackend(VLLMConfig(model=path, dtype="float32", enforce_eager=True, max_model_len=max_len,
                                        seed=seed), progress=False)
        info = {"kv_cache_gib": kv_cache_gib, "max_model_len": max_len}

        def make(w: Workload):
            return engine

        engine.generate(probe, one)
    else:
        raise ValueError(f"backend must be 'hf' or 'vllm', got {backend!r}")
    startup_s = time.perf_counter() - t0
    runs = []
    for w in tqdm(workloads, desc=f"{backend} workloads", unit="workload"):
        for r in range(repeats):
            t0 = time.perf_counter()
            traces = make(w).generate(list(w.requests), w.sampling)
            seconds = time.perf_counter() - t0
            runs.append({"workload": w.name, "repeat": r, "seconds": seconds, "sequences": len(traces),
                         "tokens": int(sum(t.n_tokens for t in traces))})
    return {"backend": backend, "threads": threads, "startup_s": startup_s, "runs": runs, **info,
            "workloads": [workload_record(w) for w in workloads], "machine": machine_info()}


def workload_record(w: Workload) -> dict[str, Any]:
    """A workload's shape, JSON-ready."""
    return {"workload": w.name, "source": w.source, "problems": len(w.requests),
            "samples_per_problem": w.sampling.n, "sequences": w.sequences,
            "max_new_tokens": w.sampling.max_new_tokens, "temperature": w.sampling.temperature, "top_p": w.sampling.top_p,
            "logprobs_topk": w.sampling.logprobs_topk, "hf_batch_size": w.hf_batch_size}


def _session_child(kwargs: dict[str, Any], out_path: str) -> None:
    """Entry point of a session process: run it, write its record as JSON to `out_path`, stop its children.

    A spawned process joins its children before its atexit hooks run, so a live vLLM engine would hang it
    forever: the engine gets SIGTERM here, as vLLM's own shutdown sends it."""
    try:
        Path(out_path).write_text(json.dumps(run_session(**kwargs)))
    finally:
        stop_children()


def run_session_process(env: Mapping[str, str], **kwargs: Any) -> dict[str, Any]:
    """`run_session(**kwargs)` in a fresh spawned process with `env` set; its record (or an error naming it)."""
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp, env_vars(env):
        out = Path(tmp) / "session.json"
        proc = ctx.Process(target=_session_child, args=(kwargs, str(out)), name=f"bench-{kwargs['backend']}")
        proc.start()
        proc.join()
        if proc.exitcode != 0 or not out.exists():
            raise RuntimeError(f"benchmark session {kwargs} failed (exit code {proc.exitcode}); "
                               "see its log above")
        return json.loads(out.read_text())


def run_workloads(model_path: str | os.PathLike, threads: Sequence[int] = (1, 2),
                  names: Sequence[str] = WORKLOADS, max_problems: int | None = None, repeats: int = 1,
                  kv_cache_gib: int | None = None, seed: int = 0,
                  session: Callable[..., dict[str, Any]] = run_session_process) -> dict[str, Any]:
    """HF and vLLM sessions for each thread count (backend order flips between thread counts); the table."""
    sessions = []
    for i, n in enumerate(threads):
        for backend in (("hf", "vllm") if i % 2 == 0 else ("vllm", "hf")):
            sessions.append(session(thread_env(n), backend=backend, model_path=str(model_path), threads=n,
                                    names=list(names), max_problems=max_problems, repeats=repeats,
                                    kv_cache_gib=kv_cache_gib, seed=seed))
    return {"schema_version": SCHEMA_VERSION, "benchmark": "workloads_vllm_cpu",
            "rows": workloads_table(sessions), "startup": startup_table(sessions),
            "settings": {"model": repo_relative(model_path), "threads": list(threads), "workloads": list(names),
                         "max_problems": max_problems, "repeats": repeats, "seed": seed,
                         "timing": "wall s of backend.generate per workload, after start-up (load + 1 token)"},
            "sessions": sessions, "machine": machine_info()}


def workloads_table(sessions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (threads, workload): tokens and median tokens/s of each backend, and vLLM / HF."""
    by_key: dict[tuple[int, str], dict[str, Any]] = {}
    for s in sessions:
        shapes = {w["workload"]: w for w in s["workloads"]}
        for run in s["runs"]:
            entry = by_key.setdefault((s["threads"], run["workload"]), {"shape": shapes[run["workload"]]})
            entry.setdefault(s["backend"], []).append(run)
    rows = []
    for (threads, name), entry in by_key.items():
        missing = [b for b in ("hf", "vllm") if b not in entry]
        if missing:
            raise ValueError(f"threads {threads}, workload {name}: no {missing} session")
        tok_s = {b: median([r["tokens"] / r["seconds"] for r in entry[b]]) for b in ("hf", "vllm")}
        shape = entry["shape"]
        rows.append({"threads": threads, **{k: shape[k] for k in WORKLOAD_COLUMNS if k in shape},
                     "repeats": len(entry["hf"]), "hf_tokens": entry["hf"][0]["tokens"],
                     "hf_tok_s": tok_s["hf"], "vllm_tokens": entry["vllm"][0]["tokens"],
                     "vllm_tok_s": tok_s["vllm"], "vllm_over_hf": tok_s["vllm"] / tok_s["hf"]})
    return rows


def startup_table(sessions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Start-up seconds (model load or engine start + a 1-token request) per threads and backend."""
    out: dict[int, dict[str, Any]] = {}
    for s in sessions:
        out.setdefault(s["threads"], {"threads": s["threads"]})[f"{s['backend']}_startup_s"] = s["startup_s"]
    return list(out.values())


__all__ = ["DEFAULT_WORKLOADS_OUT", "DEFAULT_WORKLOAD_MODEL", "WORKLOADS", "WORKLOAD_COLUMNS", "Workload",
           "run_session", "run_session_process", "run_workloads", "startup_table", "tiny_workloads",
           "workload_record", "workloads_table"]
