"""vLLM-CPU benchmarks: paper Fig. 8 at tiny scale, and vLLM against our HF backend on the tiny workloads.

    python -m falcon_h1r_lib.generation.vllm_bench fig8 [--batches 16 64 128] [--output-lens 1024 4096 8192]
    python -m falcon_h1r_lib.generation.vllm_bench workloads [--threads 1 2] [--model runs/tiny/03_sft/sft]

`fig8` follows the paper's Fig. 8 protocol (vLLM generation throughput, a 512-token prompt, fixed-length
outputs, batch sweep) with the tiny hybrid and its same-size Transformer twin (random init: throughput
depends on the architecture, not on trained weights), served one engine at a time in one run and
alternated between repeats so machine-load drift hits both. `workloads` times vLLM and `HFBackend` on the
tiny profile's own sampling jobs (notebooks 03/05 evaluation, 04 Fig. 9 filter, 06 DeepConf pools), each
backend session in a fresh process so thread settings apply and the engine is gone when it ends.

Facts relied on (read in the vllm 0.31.0 wheel's source):
- `VLLM_CPU_KVCACHE_SPACE` (int GiB) sets the KV-cache bytes (`platforms/cpu.py`); after start the
  client holds `vllm_config.cache_config.kv_cache_max_concurrency`, how many `max_model_len` sequences fit.
- `VLLM_CPU_OMP_THREADS_BIND` ("auto" | "nobind" | core list "0,1") picks the cores the worker's OpenMP
  threads bind to (`utils/ompmultiprocessing.py`); "auto" on a 2-core x86 box keeps one core for the
  scheduler process and gives the worker one thread.
- `LLM.llm_engine.engine_core.shutdown()` stops the engine-core process (`v1/engine/core_client.py`);
  dropping the last reference to a `VLLMBackend` does not (its engine outlived `del` + `gc.collect()` here).
- Prefix caching and chunked prefill stay vLLM's defaults (the hybrid then uses the "align" Mamba cache
  mode); 512-token prompts run with them on vllm-cpu 0.31.0 (0.32.0 crashed in the hybrid's prefill with
  prefix caching on: `--no-prefix-caching` is the way round that).
- `SamplingParams(ignore_eos=True)` fixes the output length, and Fig. 8 requests carry no seed: a seeded
  request whose prefill is split dies on CPU ("CPU Generator does not use offset", see
  `vllm_backend.cpu_safe_kwargs`, which `workloads` gets through `VLLMBackend`).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import json
import math
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from falcon_h1r_lib.generation.sampling import GenerationRequest, SamplingConfig, request_seed
from falcon_h1r_lib.paths import repo_relative, resolve_path

SCHEMA_VERSION = 1
FIG8_BATCHES = (16, 64, 128)  # paper Fig. 8: batch 2-128
FIG8_OUTPUT_LENS = (1024, 4096, 8192)  # paper Fig. 8: 16K-32K generated tokens
FIG8_PROMPT_LEN = 512  # paper Fig. 8: 512-token prompts (its other setting: 8K)
MIN_POSITIONS = 16384  # tiny presets say 8192; a 512-token prompt + 8K output needs more
WARMUP_TOKENS = 8  # one short generate per engine before timing (one-off allocations)
MODELS = ("hybrid", "twin")
DEFAULT_FIG8_OUT = "runs/bench/fig8_vllm_cpu"
DEFAULT_WORKLOADS_OUT = "runs/bench/workloads_vllm_cpu"
DEFAULT_MODELS_DIR = "runs/bench/models"
DEFAULT_WORKLOAD_MODEL = "runs/tiny/03_sft/sft"
FIG8_COLUMNS = ("batch", "output_len", "prompt_len", "repeats", "hybrid_tok_s", "twin_tok_s",
                "hybrid_over_twin")
WORKLOAD_COLUMNS = ("threads", "workload", "source", "problems", "samples_per_problem", "sequences",
                    "max_new_tokens", "temperature", "hf_batch_size", "repeats", "hf_tokens", "hf_tok_s",
                    "vllm_tokens", "vllm_tok_s", "vllm_over_hf")
WORKLOADS = ("03_sft_eval", "05_evaluation", "04_rl_filter", "06_deepconf_pools")
ENV_KEYS = ("OMP_NUM_THREADS", "VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_KVCACHE_SPACE",
            "VLLM_CPU_NUM_OF_RESERVED_CPU", "MKL_NUM_THREADS", "LD_PRELOAD")
PACKAGES = ("torch", "transformers", "vllm", "vllm-cpu", "tokenizers")


# --------------------------------------------------------------------------------------------
# Shared pieces: prompts, models, threads, KV budget, machine record
# --------------------------------------------------------------------------------------------


def allowed_token_ids(tokenizer) -> list[int]:
    """Every id but the special and added ones (pad, eos, ChatML markers, <think>): plain text tokens only."""
    excluded = set(tokenizer.all_special_ids) | set(tokenizer.get_added_vocab().values())
    allowed = [i for i in range(len(tokenizer)) if i not in excluded]
    if not allowed:
        raise ValueError(f"tokenizer of {len(tokenizer)} ids has no non-special token to build prompts from")
    return allowed


def prompt_token_ids(tokenizer, batch: int, prompt_len: int, seed: int) -> list[list[int]]:
    """(batch, prompt_len) random token ids, no special ids, from a `torch.Generator` seeded with `seed`."""
    import torch

    if batch < 1 or prompt_len < 1:
        raise ValueError(f"batch and prompt_len must be >= 1, got batch={batch}, prompt_len={prompt_len}")
    allowed = torch.tensor(allowed_token_ids(tokenizer))
    gen = torch.Generator().manual_seed(int(seed))
    idx = torch.randint(len(allowed), (batch, prompt_len), generator=gen)  # (B, T) indices into `allowed`
    return allowed[idx].tolist()


def build_bench_models(out_dir: str | os.PathLike = DEFAULT_MODELS_DIR, width: int = 128, vocab_size: int = 512,
                       seed: int = 0, max_position_embeddings: int = MIN_POSITIONS) -> dict[str, Path]:
    """Save the random-init tiny hybrid and its same-size twin, each beside the tiny tokenizer; {name: dir}.

    Their vocabulary is the tokenizer's size (the tiny BPE stops below large targets: 737 ids for 130,048),
    so every sampled id decodes."""
    from falcon_h1r_lib.models import build_model, falcon_h1_config, transformer_config
    from falcon_h1r_lib.tokenizer import build_tokenizer, save_tokenizer

    tok = build_tokenizer(vocab_size=vocab_size)
    ids = {"pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id, "bos_token_id": tok.bos_token_id}
    configs = {
        "hybrid": falcon_h1_config("tiny", width=width, vocab_size=len(tok),
                                   max_position_embeddings=max_position_embeddings, **ids),
        "twin": transformer_config("tiny", width=width, vocab_size=len(tok),
                                   max_position_embeddings=max_position_embeddings, **ids),
    }
    out = {}
    for name, cfg in configs.items():
        path = resolve_path(out_dir) / f"tiny_{name}"
        build_model(cfg, seed=seed).save_pretrained(str(path))
        save_tokenizer(tok, path)
        out[name] = path
    return out


def positions_for(prompt_len: int, output_lens: Sequence[int]) -> int:
    """max_position_embeddings the bench models need: the longest prompt + output, at least MIN_POSITIONS."""
    return max(MIN_POSITIONS, prompt_len + max(output_lens))


def thread_env(threads: int) -> dict[str, str]:
    """Environment for a vLLM CPU engine on `threads` cores (0: vLLM's "auto" binding, nothing set)."""
    if not isinstance(threads, int) or threads < 0:
        raise ValueError(f"threads must be an int >= 0, got {threads!r}")
    if threads == 0:
        return {}
    cpus = sorted(os.sched_getaffinity(0))
    if threads > len(cpus):
        raise ValueError(f"threads={threads}: this process may use only {len(cpus)} CPU(s) {cpus}")
    return {"OMP_NUM_THREADS": str(threads), "VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, cpus[:threads]))}


@contextlib.contextmanager
def env_vars(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block (spawned engines inherit them), then restore the old ones."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: str(v) for k, v in values.items()})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def kv_cache_budget_gib(config, batch: int, context_len: int) -> int:
    """Whole GiB of KV cache for `batch` sequences of `context_len` tokens in float32 (models.cache_bytes),
    with 25% + 1 GiB headroom for vLLM's block rounding and page padding; the engine's capacity is checked."""
    import torch

    from falcon_h1r_lib.models import cache_bytes

    need = cache_bytes(config, context_len, batch, kv_dtype=torch.float32)
    return int(math.ceil(1.25 * need / 2**30)) + 1


def machine_info() -> dict[str, Any]:
    """Where the numbers were measured: CPUs, load, thread settings, package versions, git commit."""
    import torch

    from falcon_h1r_lib.metrics import git_commit, package_versions

    model = next((line.split(":", 1)[1].strip() for line in _read_lines("/proc/cpuinfo")
                  if line.startswith("model name")), platform.processor())
    return {"cpu_count": os.cpu_count(), "cpus_allowed": len(os.sched_getaffinity(0)), "cpu_model": model,
            "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()], "torch_threads": torch.get_num_threads(),
            "env": {k: os.environ.get(k) for k in ENV_KEYS}, "packages": package_versions(PACKAGES),
            "python": platform.python_version(), "platform": platform.platform(), "git_commit": git_commit()}


def _read_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# --------------------------------------------------------------------------------------------
# Fig. 8: the tiny hybrid vs its twin on vLLM
# --------------------------------------------------------------------------------------------


class VLLMEngine:
    """One `vllm.LLM` (float32, eager, prefix caching as vLLM decides unless set) serving one model."""

    def __init__(self, path: str | os.PathLike, *, max_model_len: int, max_num_seqs: int, seed: int = 0,
                 enable_prefix_caching: bool | None = None):
        from vllm import LLM

        kwargs: dict[str, Any] = {"model": str(path), "dtype": "float32", "enforce_eager": True, "seed": seed,
                                  "max_model_len": max_model_len, "max_num_seqs": max_num_seqs}
        if enable_prefix_caching is not None:
            kwargs["enable_prefix_caching"] = enable_prefix_caching
        self.llm = LLM(**kwargs)

    def info(self) -> dict[str, Any]:
        """What the engine resolved: KV capacity in max_model_len sequences, prefix caching, vLLM version."""
        import vllm

        cache = self.llm.llm_engine.vllm_config.cache_config
        return {"max_concurrency": getattr(cache, "kv_cache_max_concurrency", None),
                "kv_cache_tokens": getattr(cache, "kv_cache_size_tokens", None),
                "enable_prefix_caching": getattr(cache, "enable_prefix_caching", None),
                "vllm_version": vllm.__version__}

    def generate(self, prompts: Sequence[Sequence[int]], max_tokens: int, temperature: float, top_p: float
                 ) -> list[int]:
        """Decode every prompt together to exactly `max_tokens` tokens (ignore_eos); tokens made per prompt."""
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=max_tokens, ignore_eos=True, temperature=temperature, top_p=top_p)
        outputs = self.llm.generate([{"prompt_token_ids": list(p)} for p in prompts], params, use_tqdm=False)
        return [len(o.outputs[0].token_ids) for o in outputs]

    def shutdown(self) -> None:
        """Stop the engine-core process now (it would otherwise outlive `del`), then drop the LLM."""
        self.llm.llm_engine.engine_core.shutdown()
        del self.llm
        gc.collect()
        _wait_engine_processes_gone()


def _wait_engine_processes_gone(timeout_s: float = 60.0) -> None:
    """Raise if an engine process spawned from here is still alive `timeout_s` after shutdown."""
    deadline = time.perf_counter() + timeout_s
    while (alive := [p for p in multiprocessing.active_children() if "Engine" in p.name or "Worker" in p.name]):
        if time.perf_counter() > deadline:
            raise RuntimeError(f"vLLM processes still alive {timeout_s:.0f} s after shutdown: "
                               f"{[(p.name, p.pid) for p in alive]}")
        time.sleep(0.2)


def check_sampling(temperature: float, top_p: float) -> None:
    """Refuse what vLLM would refuse only after the models are built and an engine started."""
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be >= 0, got {temperature!r}")
    if not (math.isfinite(top_p) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")


def _check_sizes(name: str, values: Sequence[int]) -> tuple[int, ...]:
    values = tuple(values)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        raise ValueError(f"{name} must be a non-empty list of ints >= 1, got {list(values)!r}")
    return values


def run_fig8(models: Mapping[str, str | os.PathLike], batches: Sequence[int] = FIG8_BATCHES,
             output_lens: Sequence[int] = FIG8_OUTPUT_LENS, prompt_len: int = FIG8_PROMPT_LEN, repeats: int = 1,
             threads: int = 1, kv_cache_gib: int | None = None, seed: int = 0, temperature: float = 0.6,
             top_p: float = 0.95, enable_prefix_caching: bool | None = None, progress: bool = True,
             engine_cls: Callable[..., Any] = VLLMEngine, checkpoint: str | os.PathLike | None = None
             ) -> dict[str, Any]:
    """Fig. 8 grid on vLLM for `models` {"hybrid": dir, "twin": dir}: decode tokens/s = batch x output_len /
    wall seconds of one generate call (prefill included, as a served request); median over `repeats`.

    One engine at a time; the model order flips every repeat. Returns {"rows" (the table), "raw", "engines",
    "settings", "machine"}; `write_results` stores it. With `checkpoint` (a JSON path) every measured point
    is saved as it lands and a rerun with the same settings measures only the missing points (the full grid
    is about an hour on 2 cores); a checkpoint written under other settings raises ValueError naming it.
    """
    from transformers import AutoConfig

    from falcon_h1r_lib.models import count_parameters
    from falcon_h1r_lib.tokenizer import load_tokenizer

    if sorted(models) != sorted(MODELS):
        raise ValueError(f"models must have exactly the keys {list(MODELS)}, got {sorted(models)}")
    batches, output_lens = _check_sizes("batches", batches), _check_sizes("output_lens", output_lens)
    _check_sizes("prompt_len", [prompt_len])
    _check_sizes("repeats", [repeats])
    check_sampling(temperature, top_p)
    paths = {name: resolve_path(models[name]) for name in MODELS}
    configs = {name: AutoConfig.from_pretrained(str(p), local_files_only=True) for name, p in paths.items()}
    tok = load_tokenizer(paths["hybrid"])
    max_model_len = prompt_len + max(output_lens)
    for name, cfg in configs.items():
        if cfg.max_position_embeddings < max_model_len:
            raise ValueError(f"{paths[name]}: max_position_embeddings {cfg.max_position_embeddings} < "
                             f"prompt_len + max(output_lens) = {max_model_len}; rebuild with build_bench_models")
    kv_gib = {name: kv_cache_gib or kv_cache_budget_gib(cfg, max(batches), max_model_len)
              for name, cfg in configs.items()}
    env = thread_env(threads)
    settings = {"batches": list(batches), "output_lens": list(output_lens), "prompt_len": prompt_len,
                "repeats": repeats, "threads": threads, "thread_env": env, "seed": seed,
                "temperature": temperature, "top_p": top_p, "ignore_eos": True, "dtype": "float32",
                "enforce_eager": True, "enable_prefix_caching": enable_prefix_caching,
                "max_model_len": max_model_len, "max_num_seqs": max(batches), "warmup_tokens": WARMUP_TOKENS,
                "models": {name: {"path": repo_relative(paths[name]), "hidden_size": configs[name].hidden_size,
                                  "vocab_size": configs[name].vocab_size,
                                  "num_hidden_layers": configs[name].num_hidden_layers,
                                  "max_position_embeddings": configs[name].max_position_embeddings}
                           for name in MODELS},
                "timing": "wall s of LLM.generate for the whole batch (prefill included), after a warm-up"}
    machine = machine_info()
    raw, engines = _load_fig8_checkpoint(checkpoint, settings)
    done = {(row["model"], row["repeat"], row["batch"], row["output_len"]) for row in raw}
    points = [(b, n) for b in batches for n in output_lens]
    bar = tqdm(total=repeats * len(MODELS) * len(points), initial=len(done), desc="fig8", unit="point",
               disable=not progress)
    for r in range(repeats):
        for name in (MODELS if r % 2 == 0 else MODELS[::-1]):
            todo = [(b, n) for b, n in points if (name, r, b, n) not in done]
            if not todo:
                continue
            with env_vars({**env, "VLLM_CPU_KVCACHE_SPACE": str(kv_gib[name])}):
                t0 = time.perf_counter()
                engine = engine_cls(paths[name], max_model_len=max_model_len, max_num_seqs=max(batches),
                                    seed=seed, enable_prefix_caching=enable_prefix_caching)
                start_s = time.perf_counter() - t0
                info, measured = {}, []

                def record(points: list, name: str = name, r: int = r, start_s: float = start_s,
                           info: dict = info) -> dict[str, Any]:
                    return {"model": name, "repeat": r, "points": [list(p) for p in points],
                            "path": repo_relative(paths[name]), "start_s": start_s, "kv_cache_gib": kv_gib[name],
                            "env": {**env, "VLLM_CPU_KVCACHE_SPACE": str(kv_gib[name])},
                            "parameters": count_parameters(configs[name]),
                            "num_hidden_layers": configs[name].num_hidden_layers,
                            "num_key_value_heads": configs[name].num_key_value_heads, **info}

                try:
                    info.update(engine.info())
                    concurrency = info.get("max_concurrency")
                    if concurrency is not None and concurrency < max(batches):
                        raise ValueError(
                            f"{name}: the KV cache (VLLM_CPU_KVCACHE_SPACE={kv_gib[name]} GiB) holds "
                            f"{concurrency:.1f} sequences of {max_model_len} tokens, fewer than batch "
                            f"{max(batches)}: vLLM would preempt; give --kv-cache-gib >= "
                            f"{math.ceil(kv_gib[name] * max(batches) / concurrency)}")
                    engine.generate(prompt_token_ids(tok, 2, prompt_len, request_seed(seed, "fig8|warmup")),
                                    WARMUP_TOKENS, temperature, top_p)
                    for b, n in todo:
                        prompts = prompt_token_ids(tok, b, prompt_len, request_seed(seed, f"fig8|{b}|{n}|{r}"))
                        t0 = time.perf_counter()
                        counts = engine.generate(prompts, n, temperature, top_p)
                        seconds = time.perf_counter() - t0
                        if counts != [n] * b:
                            raise RuntimeError(f"{name} batch {b}: expected {b} outputs of {n} tokens, "
                                               f"got {counts}")
                        raw.append({"model": name, "repeat": r, "batch": b, "output_len": n,
                                    "prompt_len": prompt_len, "tokens": b * n, "seconds": seconds,
                                    "tok_s": b * n / seconds})
                        measured.append([b, n])
                        _save_fig8_checkpoint(checkpoint, settings, raw, [*engines, record(measured)])
                        bar.update(1)
                finally:
                    engine.shutdown()
                    if measured:  # an interrupted engine keeps the record of the points it measured
                        engines.append(record(measured))
                        _save_fig8_checkpoint(checkpoint, settings, raw, engines)
    bar.close()
    machine["load_avg_1_5_15_end"] = [round(x, 2) for x in os.getloadavg()]
    return {"schema_version": SCHEMA_VERSION, "benchmark": "fig8_vllm_cpu", "rows": fig8_table(raw),
            "raw": raw, "engines": engines, "settings": settings, "machine": machine}


def _load_fig8_checkpoint(path: str | os.PathLike | None, settings: Mapping[str, Any]
                          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(raw, engines) saved at `path` by an interrupted `run_fig8` with the same `settings`; ([], []) if none."""
    if path is None or not Path(path).exists():
        return [], []
    try:
        saved = json.loads(Path(path).read_text())
        stored = saved["settings"]
        raw, engines = list(saved["raw"]), list(saved["engines"])
        for i, row in enumerate(raw):
            for key, kind in (("model", str), ("repeat", int), ("batch", int), ("output_len", int),
                              ("tok_s", float)):
                if not isinstance(row[key], kind):
                    raise TypeError(f"raw row {i} field {key!r} is {row[key]!r}, not {kind.__name__}")
        if not isinstance(stored, dict) or not all(isinstance(e, dict) for e in engines):
            raise TypeError("settings and engines must be objects")
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: not a fig8 checkpoint ({err!r}); delete it to start over") from err
    if stored != json.loads(json.dumps(settings)):
        diff = sorted(k for k in set(stored) | set(settings) if stored.get(k) != settings.get(k))
        raise ValueError(f"{path}: checkpoint of a run with other settings ({', '.join(diff)} differ); "
                         "delete it or give another --out")
    return raw, engines


def _save_fig8_checkpoint(path: str | os.PathLike | None, settings: Mapping[str, Any],
                          raw: Sequence[Mapping[str, Any]], engines: Sequence[Mapping[str, Any]]) -> None:
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"settings": settings, "raw": list(raw), "engines": list(engines)}, indent=1))
    os.replace(tmp, path)  # atomic: an interrupt never leaves a half-written checkpoint


def fig8_checkpoint_path(out: str | os.PathLike) -> Path:
    """Where `fig8` keeps its per-point checkpoint for the output stem `out`: `<out>.partial.json`."""
    stem = _stem(out)
    return stem.with_name(stem.name + ".partial.json")


def fig8_table(raw: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (batch, output_len): median tokens/s of each model over repeats and hybrid / twin."""
    groups: dict[tuple[int, int], dict[str, list[Mapping]]] = {}
    for row in raw:
        groups.setdefault((row["batch"], row["output_len"]), {}).setdefault(row["model"], []).append(row)
    rows = []
    for (batch, n), by_model in sorted(groups.items()):
        missing = [m for m in MODELS if m not in by_model]
        if missing:
            raise ValueError(f"batch {batch}, output_len {n}: no measurement of {missing}")
        tok_s = {m: _median([x["tokens"] / x["seconds"] for x in by_model[m]]) for m in MODELS}
        rows.append({"batch": batch, "output_len": n, "prompt_len": by_model["hybrid"][0]["prompt_len"],
                     "repeats": len(by_model["hybrid"]), "hybrid_tok_s": tok_s["hybrid"],
                     "twin_tok_s": tok_s["twin"], "hybrid_over_twin": tok_s["hybrid"] / tok_s["twin"]})
    return rows


def fig8_vs_paper(rows: Sequence[Mapping[str, Any]], points=None, input_len: str = "512"):
    """Our hybrid/twin ratio per (batch, output_len) beside the paper's Falcon-H1R-7B / Qwen3-8B ratio at the
    nearest published batch (log scale, ties to the smaller) of its `input_len`-token-prompt setting."""
    import pandas as pd

    from falcon_h1r_lib.paper_results import fig8_points

    points = fig8_points() if points is None else points
    sub = points[points.input_len == input_len]
    if sub.empty:
        raise ValueError(f"paper Fig. 8 has no setting with input_len {input_len!r}; "
                         f"have {sorted(set(points.input_len))}")
    paper = sub.pivot_table(index="batch", columns="model", values="tokens_per_s_per_gpu")
    output_len = "/".join(sorted(set(sub.output_len)))
    out = []
    for row in rows:
        nearest = min(paper.index, key=lambda pb: (abs(math.log2(pb) - math.log2(row["batch"])), pb))
        falcon, qwen = float(paper.loc[nearest, "Falcon-H1R-7B"]), float(paper.loc[nearest, "Qwen3-8B"])
        out.append({"batch": row["batch"], "output_len": row["output_len"], "hybrid_tok_s": row["hybrid_tok_s"],
                    "twin_tok_s": row["twin_tok_s"], "hybrid_over_twin": row["hybrid_over_twin"],
                    "paper_batch": int(nearest), "paper_setting": f"{input_len} in -> {output_len} out",
                    "paper_falcon_tok_s": falcon, "paper_qwen3_tok_s": qwen,
                    "paper_falcon_over_qwen3": falcon / qwen})
    return pd.DataFrame(out)


# --------------------------------------------------------------------------------------------
# Workloads: vLLM vs HFBackend on the tiny profile's sampling jobs
# --------------------------------------------------------------------------------------------


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
        requests = _eval_requests({b: ev.max_problems for b in ev.benchmarks}, tokenizer, ev.system_prompt,
                                  max_problems)
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
    if "06_deepconf_pools" in names:  # deepconf.experiment.generate_pool
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
        _stop_children()


def _stop_children(timeout_s: float = 30.0) -> None:
    """SIGTERM this process's children, wait up to `timeout_s`, then SIGKILL any left."""
    children = multiprocessing.active_children()
    for p in children:
        p.terminate()
    deadline = time.perf_counter() + timeout_s
    for p in children:
        p.join(max(0.0, deadline - time.perf_counter()))
    for p in children:
        if p.is_alive():
            p.kill()
            p.join(5)


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
        tok_s = {b: _median([r["tokens"] / r["seconds"] for r in entry[b]]) for b in ("hf", "vllm")}
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


# --------------------------------------------------------------------------------------------
# Files and printing
# --------------------------------------------------------------------------------------------


def _stem(out: str | os.PathLike) -> Path:
    path = resolve_path(out)
    return path.with_suffix("") if path.suffix in (".csv", ".json") else path


def write_results(result: Mapping[str, Any], out: str | os.PathLike, columns: Sequence[str]
                  ) -> tuple[Path, Path]:
    """`<out>.csv` (the table's `columns`) and `<out>.json` (everything); returns both paths."""
    stem = _stem(out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".json")
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(result["rows"])
    try:
        text = json.dumps(result, indent=2, allow_nan=False)
    except ValueError as err:  # JSON has no NaN / inf: refuse a silently broken number
        raise ValueError(f"{json_path}: non-finite value in the results ({err})") from err
    json_path.write_text(text + "\n")
    return csv_path, json_path


def read_results(out: str | os.PathLike) -> dict[str, Any]:
    """The JSON record `write_results` wrote at `<out>.json`; fails naming the file."""
    stem = _stem(out)
    path = stem.with_name(stem.name + ".json")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no benchmark results "
                                "(run python -m falcon_h1r_lib.generation.vllm_bench)")
    record = json.loads(path.read_text())
    if record.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path}: schema_version {record.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    return record


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Fixed-width text table; floats with 2 decimals (ratios) or 1 (tokens/s, seconds)."""
    def cell(v: Any, col: str) -> str:
        if isinstance(v, float):
            return f"{v:.2f}" if ("over" in col or v < 10) else f"{v:,.1f}"
        return str(v)

    body = [[cell(r.get(c, ""), c) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths)),
             *("  ".join(v.rjust(w) for v, w in zip(b, widths)) for b in body)]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m falcon_h1r_lib.generation.vllm_bench",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fig8", help="paper Fig. 8 at tiny scale: hybrid vs same-size twin on vLLM")
    f.add_argument("--batches", type=_positive, nargs="+", default=list(FIG8_BATCHES),
                   help="sequences decoded together (paper Fig. 8: 2-128)")
    f.add_argument("--output-lens", type=_positive, nargs="+", default=list(FIG8_OUTPUT_LENS),
                   help="generated tokens per sequence (paper: 16K-32K)")
    f.add_argument("--prompt-len", type=_positive, default=FIG8_PROMPT_LEN, help="prompt tokens (paper: 512)")
    f.add_argument("--repeats", type=_positive, default=1, help="engine rounds per model (median kept)")
    f.add_argument("--threads", type=_non_negative, default=1,
                   help="OpenMP threads of the vLLM worker (0: vLLM's auto binding)")
    f.add_argument("--kv-cache-gib", type=_positive, default=None,
                   help="VLLM_CPU_KVCACHE_SPACE per engine (default: sized from each model's cache bytes)")
    f.add_argument("--width", type=_positive, default=128, help="tiny width dial (hidden size)")
    f.add_argument("--vocab-size", type=_positive, default=512, help="tiny tokenizer vocabulary")
    f.add_argument("--seed", type=_non_negative, default=0, help="weights and prompts")
    f.add_argument("--temperature", type=float, default=0.6, help="paper §4.1: 0.6")
    f.add_argument("--top-p", type=float, default=0.95, help="paper §4.1: 0.95")
    f.add_argument("--no-prefix-caching", action="store_true",
                   help="disable vLLM prefix caching (default: vLLM's choice)")
    f.add_argument("--models-dir", default=DEFAULT_MODELS_DIR,
                   help="where the two random-init models are saved")
    f.add_argument("--out", default=DEFAULT_FIG8_OUT, help="output stem: writes <out>.csv and <out>.json")
    w = sub.add_parser("workloads", help="vLLM vs HFBackend on the tiny profile's sampling workloads")
    w.add_argument("--model", default=None,
                   help=f"checkpoint (default: {DEFAULT_WORKLOAD_MODEL} if it exists, else a random "
                        "tiny hybrid)")
    w.add_argument("--threads", type=_positive, nargs="+", default=[1, 2], help="thread counts to compare")
    w.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    w.add_argument("--max-problems", type=_positive, default=None, help="cap problems per benchmark / pool")
    w.add_argument("--repeats", type=_positive, default=1)
    w.add_argument("--kv-cache-gib", type=_positive, default=None,
                   help="VLLM_CPU_KVCACHE_SPACE (default: sized)")
    w.add_argument("--seed", type=_non_negative, default=0)
    w.add_argument("--models-dir", default=DEFAULT_MODELS_DIR, help="where the random tiny hybrid is saved")
    w.add_argument("--out", default=DEFAULT_WORKLOADS_OUT, help="output stem: writes <out>.csv and <out>.json")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.command == "fig8":
        try:  # before the models are (re)built: these fail in seconds, not after an engine start
            check_sampling(args.temperature, args.top_p)
            thread_env(args.threads)
        except ValueError as err:
            raise SystemExit(f"fig8: {err}") from err
        models = build_bench_models(args.models_dir, args.width, args.vocab_size, args.seed,
                                    positions_for(args.prompt_len, args.output_lens))
        result = run_fig8(models, args.batches, args.output_lens, args.prompt_len, args.repeats, args.threads,
                          args.kv_cache_gib, args.seed, args.temperature, args.top_p,
                          False if args.no_prefix_caching else None,
                          checkpoint=fig8_checkpoint_path(args.out))
        columns = FIG8_COLUMNS
        print(format_table(result["engines"], ("model", "repeat", "start_s", "kv_cache_gib", "max_concurrency",
                                               "enable_prefix_caching")))
    else:
        model = args.model
        if model is None:
            default = resolve_path(DEFAULT_WORKLOAD_MODEL)
            model = str(default) if (default / "config.json").exists() else str(
                build_bench_models(args.models_dir, seed=args.seed)["hybrid"])
        elif not (resolve_path(model) / "config.json").exists():
            raise SystemExit(f"--model {model}: no config.json in {resolve_path(model)}")
        result = run_workloads(model, args.threads, args.workloads, args.max_problems, args.repeats,
                               args.kv_cache_gib, args.seed)
        columns = WORKLOAD_COLUMNS
        print(format_table(result["startup"], ("threads", "hf_startup_s", "vllm_startup_s")))
    print(format_table(result["rows"], columns))
    csv_path, json_path = write_results(result, args.out, columns)
    print(f"wrote {csv_path} and {json_path}", file=sys.stderr)
    if args.command == "fig8":
        fig8_checkpoint_path(args.out).unlink(missing_ok=True)
    return 0


__all__ = [
    "FIG8_BATCHES", "FIG8_COLUMNS", "FIG8_OUTPUT_LENS", "FIG8_PROMPT_LEN", "VLLMEngine", "WORKLOADS",
    "WORKLOAD_COLUMNS", "Workload", "allowed_token_ids", "build_bench_models", "build_parser", "check_sampling", "fig8_table",
    "fig8_checkpoint_path", "fig8_vs_paper", "format_table", "kv_cache_budget_gib", "machine_info", "main", "positions_for",
    "prompt_token_ids", "read_results", "run_fig8", "run_session", "run_workloads", "startup_table",
    "thread_env", "tiny_workloads", "workload_record", "workloads_table", "write_results",
]


if __name__ == "__main__":
    sys.exit(main())
