"""Stage 01, the architecture: Table 8, parameter counts, cache memory, measured decode, SSD scans and Fig. 8.

``run(cfg)`` computes everything notebook 01 shows and writes ``runs/<profile>/01_architecture/metrics.json``
(and the vLLM Fig. 8 files beside it); the notebook displays the result, asserts the claims and draws the figures.
``python -m falcon_h1r_lib.architecture --config FILE`` runs the same code on a cluster node.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from falcon_h1r_lib import models as M
from falcon_h1r_lib.cli import parse_overrides
from falcon_h1r_lib.configs import ArchitectureConfig
from falcon_h1r_lib.generation import vllm_bench
from falcon_h1r_lib.kernels import bench as ssd_bench
from falcon_h1r_lib.metrics import Stopwatch, write_metrics
from falcon_h1r_lib.models.compare import (
    cache_memory_table,
    constant_state_bytes,
    kv_bytes_per_token,
    table8_comparison,
)
from falcon_h1r_lib.paper_results import fig8_points, load_paper_results
from falcon_h1r_lib.paths import repo_relative

PAPER_7B_PARAMETERS = 7.59e9  # paper App. B Table 8
READS = ["data_manifests/paper_results.yaml"]
DECODE_COLUMNS = ("model", "context_len", "tokens_per_s", "ms_per_step", "prefill_s_median", "cache_bytes_total",
                  "speed_ratio")


@dataclass
class ArchitectureResult:
    """What notebook 01 displays, section by section; ``metrics`` is what ``metrics.json`` holds."""

    # 1 · the 7B preset beside Table 8
    table8: pd.DataFrame  # one row per Table 8 entry: paper, preset, match
    assumptions: pd.DataFrame  # 7B values the paper does not give, with their source
    parameters_7b: int  # count_parameters of the preset
    parameters_7b_meta: int  # numel of the model instantiated on the meta device
    rel_error_7b: float  # |analytic - 7.59B| / 7.59B
    released: pd.DataFrame | None  # the released checkpoint's config vs Table 8 (full profile)
    # 2 · the tiny pair
    config_diff: pd.DataFrame  # 7B vs tiny, field by field
    sizes: pd.DataFrame  # parameters, layers and KV heads of the four configs
    tiny_parameters: int
    twin_parameters: int
    # 3 · analytic cache memory
    cache_memory: pd.DataFrame  # cache_memory_table rows
    kv_bytes_per_token: dict[str, int]
    constant_state_bytes: dict[str, int]
    kv_per_token_ratio: float  # Qwen3-8B / Falcon-H1R-7B
    cache_at_longest: pd.Series  # total bytes per model at the longest analytic context
    # 4 · measured decode
    decode_rows: list[dict[str, Any]]  # compare_decode rows, with the measured and predicted cache parts
    decode: pd.DataFrame  # DECODE_COLUMNS of those rows
    decode_speed: pd.DataFrame  # tokens/s, context_len x model
    decode_cache: pd.DataFrame  # cache bytes, context_len x model
    hybrid_over_twin: pd.Series  # decode tokens/s ratio per context length (3 decimals)
    twin_cache_over_hybrid: pd.Series  # cache bytes ratio per context length (3 decimals)
    # 5 · SSD kernels
    kernels: pd.DataFrame  # kernels.bench.benchmark rows
    # 6 · paper Fig. 8 (quoted)
    paper_fig8: pd.DataFrame  # fig8_points with a "setting" column
    paper_gain: pd.DataFrame  # tokens/s per (setting, batch) and model, with falcon_over_qwen3
    # 7 · Fig. 8 on vLLM (measured)
    fig8: dict[str, Any]  # the fig8_vllm.json record, read back from the file
    engines: pd.DataFrame  # one row per engine start
    fig8_table: pd.DataFrame  # fig8_vs_paper rows
    fig8_files: tuple[Path, Path]  # fig8_vllm.csv, fig8_vllm.json
    metrics: dict[str, Any]
    metrics_path: Path
    wall_time_s: float  # the stage's wall time, as recorded in metrics.json


def _parameter_count_7b(falcon_7b) -> tuple[int, int]:
    """(analytic, instantiated on the meta device): the 7B count costs no memory either way."""
    from transformers import FalconH1ForCausalLM

    with torch.device("meta"):
        meta_model = FalconH1ForCausalLM(falcon_7b)
    instantiated = sum(p.numel() for p in meta_model.parameters())
    return M.count_parameters(falcon_7b), instantiated


def _released_vs_table8(model_name_or_path: str, table8) -> pd.DataFrame:
    from transformers import AutoConfig

    return table8_comparison(AutoConfig.from_pretrained(model_name_or_path), table8)


def paper_fig8() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The quoted Fig. 8 points with a readable setting, and the Falcon-H1R-7B / Qwen3-8B ratio per batch."""
    points = fig8_points()
    points["setting"] = points["input_len"] + " in -> " + points["output_len"] + " out"
    gain = points.pivot_table(index=["setting", "batch"], columns="model", values="tokens_per_s_per_gpu")
    gain["falcon_over_qwen3"] = gain["Falcon-H1R-7B"] / gain["Qwen3-8B"]
    return points, gain


def run(cfg: ArchitectureConfig) -> ArchitectureResult:
    """Every section of notebook 01 in order; writes the Fig. 8 files and ``metrics.json`` (last)."""
    clock = Stopwatch()
    paper = load_paper_results()
    metrics: dict[str, Any] = {}

    # 1 · the 7B preset beside paper Table 8
    falcon_7b = M.falcon_h1_config("falcon-h1r-7b")
    table8 = paper["tables"]["table8_architecture"]["values"]
    table8_df = table8_comparison(falcon_7b, table8)
    assumptions = pd.DataFrame([(k, v, why) for k, (v, why) in M.ASSUMPTIONS_7B.items()],
                               columns=["field", "assumed value", "source / why"])
    analytic, instantiated = _parameter_count_7b(falcon_7b)
    rel_err = abs(analytic - PAPER_7B_PARAMETERS) / PAPER_7B_PARAMETERS
    metrics["falcon_h1r_7b_parameters"] = analytic
    metrics["falcon_h1r_7b_rel_error_vs_paper"] = rel_err
    released = None
    if cfg.model_name_or_path:  # full profile: the released config.json must agree on every Table 8 field
        released = _released_vs_table8(cfg.model_name_or_path, table8)
        metrics["released_config_matches_table8"] = bool(released["match"].all())

    # 2 · the tiny hybrid and its Transformer twin: the same config, one dial
    tiny = M.falcon_h1_config("tiny", width=cfg.tiny_width, vocab_size=cfg.vocab_size)
    twin = M.transformer_config("tiny", width=cfg.tiny_width, vocab_size=cfg.vocab_size)
    qwen3_8b = M.transformer_config("qwen3-8b")
    diff = pd.DataFrame(M.config_diff(falcon_7b, tiny), columns=["field", "falcon-h1r-7b", "tiny"])
    configs = (falcon_7b, qwen3_8b, tiny, twin)
    sizes = pd.DataFrame({
        "model": ["Falcon-H1R-7B (preset)", "Qwen3-8B (preset)", "tiny hybrid", "tiny Transformer twin"],
        "parameters": [M.count_parameters(c) for c in configs],
        "layers": [c.num_hidden_layers for c in configs],
        "KV heads": [c.num_key_value_heads for c in configs],
    })
    tiny_params, twin_params = M.count_parameters(tiny), M.count_parameters(twin)
    metrics.update(tiny_parameters=tiny_params, twin_parameters=twin_params,
                   qwen3_8b_parameters=M.count_parameters(qwen3_8b))

    # 3 · cache memory vs context, Falcon-H1R-7B vs Qwen3-8B (analytic)
    kv_dt = getattr(torch, cfg.kv_dtype)
    pair_7b = (("Falcon-H1R-7B", falcon_7b), ("Qwen3-8B", qwen3_8b))
    mem = cache_memory_table(dict(pair_7b), cfg.analytic_context_lens, kv_dtype=kv_dt)
    per_token = {n: kv_bytes_per_token(c, kv_dt) for n, c in pair_7b}
    constant = {n: constant_state_bytes(c, kv_dt) for n, c in pair_7b}
    ratio = per_token["Qwen3-8B"] / per_token["Falcon-H1R-7B"]
    at_longest = mem[mem.context_len == max(cfg.analytic_context_lens)].set_index("model")["total_bytes"]
    metrics.update(kv_bytes_per_token=per_token, constant_state_bytes=constant,
                   kv_per_token_ratio_qwen3_over_falcon=ratio,
                   cache_GiB_at_longest={k: v / 2**30 for k, v in at_longest.items()})

    # 4 · measured on this machine: tiny hybrid vs its twin, interleaved per length and repeat
    device = torch.device(cfg.device)
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    pair = {"tiny hybrid": M.build_model(tiny, seed=cfg.seed, dtype=dtype, device=device),
            "tiny twin": M.build_model(twin, seed=cfg.seed, dtype=dtype, device=device)}
    rows = M.compare_decode(pair, cfg.decode_context_lens, batch=cfg.decode_batch, new_tokens=cfg.decode_new_tokens,
                            repeats=cfg.decode_repeats, seed=cfg.seed)
    del pair
    decode = pd.DataFrame([{k: r[k] for k in DECODE_COLUMNS} for r in rows])
    speed = decode.pivot(index="context_len", columns="model", values="tokens_per_s")
    cache = decode.pivot(index="context_len", columns="model", values="cache_bytes_total")
    hybrid_over_twin = (speed["tiny hybrid"] / speed["tiny twin"]).round(3)
    twin_cache_over_hybrid = (cache["tiny twin"] / cache["tiny hybrid"]).round(3)
    metrics.update(decode=decode.to_dict(orient="records"),
                   decode_speed_ratio_hybrid_over_twin={int(k): v for k, v in hybrid_over_twin.items()},
                   cache_ratio_twin_over_hybrid={int(k): v for k, v in twin_cache_over_hybrid.items()})

    # 5 · the SSD scan three ways
    kernels = pd.DataFrame(ssd_bench.benchmark(lengths=cfg.bench_lengths, chunk_sizes=(64,), repeats=3,
                                               sequential_cap=1024, seed=cfg.seed))
    metrics["ssd"] = kernels.to_dict(orient="records")

    # 6 · paper Fig. 8 as quoted
    points, gain = paper_fig8()

    # 7 · Fig. 8's protocol on vLLM with the tiny pair; everything after the run is read back from the file
    fig8_dir = cfg.run_dir() / "fig8_vllm"
    bench_models = vllm_bench.build_bench_models(
        fig8_dir / "models", width=cfg.tiny_width, vocab_size=cfg.vocab_size, seed=cfg.seed,
        max_position_embeddings=vllm_bench.positions_for(cfg.fig8_prompt_len, cfg.fig8_output_lens))
    measured = vllm_bench.run_fig8(bench_models, cfg.fig8_batches, cfg.fig8_output_lens, cfg.fig8_prompt_len,
                                   cfg.fig8_repeats, cfg.fig8_threads, seed=cfg.seed)
    fig8_csv, fig8_json = vllm_bench.write_results(measured, fig8_dir / "fig8_vllm", vllm_bench.FIG8_COLUMNS)
    fig8 = vllm_bench.read_results(fig8_json)
    engines = pd.DataFrame(fig8["engines"])
    fig8_table = vllm_bench.fig8_vs_paper(fig8["rows"], points)
    metrics["fig8_vllm"] = {"rows": fig8["rows"],
                            "engine_start_s": engines.groupby("model").start_s.median().to_dict(),
                            "files": [repo_relative(fig8_csv), repo_relative(fig8_json)], "settings": fig8["settings"]}

    wall_time_s = clock.seconds()
    path = write_metrics(cfg, metrics, wall_time_s=wall_time_s, reads=READS)
    return ArchitectureResult(
        table8=table8_df, assumptions=assumptions, parameters_7b=analytic, parameters_7b_meta=instantiated,
        rel_error_7b=rel_err, released=released, config_diff=diff, sizes=sizes, tiny_parameters=tiny_params,
        twin_parameters=twin_params, cache_memory=mem, kv_bytes_per_token=per_token, constant_state_bytes=constant,
        kv_per_token_ratio=ratio, cache_at_longest=at_longest, decode_rows=rows, decode=decode, decode_speed=speed,
        decode_cache=cache, hybrid_over_twin=hybrid_over_twin, twin_cache_over_hybrid=twin_cache_over_hybrid,
        kernels=kernels, paper_fig8=points, paper_gain=gain, fig8=fig8, engines=engines, fig8_table=fig8_table,
        fig8_files=(fig8_csv, fig8_json), metrics=metrics, metrics_path=path, wall_time_s=wall_time_s)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m falcon_h1r_lib.architecture",
                                     description="Run the architecture stage (notebook 01) from a profile YAML.")
    parser.add_argument("--config", required=True,
                        help="ArchitectureConfig YAML (falcon_h1r_lib/profiles/<profile>/01_architecture.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (VALUE is read as YAML)")
    args = parser.parse_args(argv)
    cfg = ArchitectureConfig.from_yaml(args.config, overrides=parse_overrides(args.set))
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # vLLM logs every engine start at INFO
    result = run(cfg)
    brief = {k: result.metrics[k] for k in ("falcon_h1r_7b_parameters", "kv_per_token_ratio_qwen3_over_falcon",
                                            "decode_speed_ratio_hybrid_over_twin", "cache_ratio_twin_over_hybrid")}
    print(json.dumps({"metrics": repo_relative(result.metrics_path), **brief}, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
