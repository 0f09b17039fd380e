"""The command line of `python -m falcon_h1r_lib.generation.vllm_bench` (`fig8`, `workloads`): `build_parser`
and `main`; `__main__` runs it, and the package re-exports both."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from falcon_h1r_lib.generation.vllm_bench.engine import check_sampling, thread_env
from falcon_h1r_lib.generation.vllm_bench.fig8 import (
    DEFAULT_FIG8_OUT,
    DEFAULT_MODELS_DIR,
    FIG8_BATCHES,
    FIG8_COLUMNS,
    FIG8_OUTPUT_LENS,
    FIG8_PROMPT_LEN,
    build_bench_models,
    fig8_checkpoint_path,
    positions_for,
    run_fig8,
)
from falcon_h1r_lib.generation.vllm_bench.results import format_table, write_results
from falcon_h1r_lib.generation.vllm_bench.workloads import (
    DEFAULT_WORKLOAD_MODEL,
    DEFAULT_WORKLOADS_OUT,
    WORKLOAD_COLUMNS,
    WORKLOADS,
    run_workloads,
)
from falcon_h1r_lib.paths import resolve_path


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
    from falcon_h1r_lib.generation import vllm_bench  # the package's overview heads --help

    parser = argparse.ArgumentParser(prog="python -m falcon_h1r_lib.generation.vllm_bench",
                                     description=vllm_bench.__doc__.split("\n\n")[0])
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


__all__ = ["build_parser", "main"]
