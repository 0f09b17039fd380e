"""Speed and parity of the SSD scans side by side: ours chunked, ours sequential, transformers' torch path.

`python -m falcon_h1r_lib.kernels.bench` prints a table; `benchmark(...)` returns its rows for plotting.
All methods for one length run interleaved, repeat after repeat, and the median is reported, so load
from other processes hits them alike. The sequential scan above `sequential_cap` tokens is timed once.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import statistics
import time

import torch
import torch.nn.functional as F

from .ssd import ssd_chunked, ssd_sequential

__all__ = ["benchmark", "format_table", "main", "make_inputs", "transformers_chunk_scan"]


def transformers_chunk_scan():
    """transformers' own torch `mamba2_chunk_scan` (unwrapped: no kernel dispatch, not our patch)."""
    from . import transformers_patch

    return inspect.unwrap(transformers_patch.transformers_chunk_scan())


def make_inputs(batch, length, heads, head_dim, state, groups, seed=0, dtype=torch.float32):
    """Random SSD inputs shaped like a Mamba2 layer's: Δ = softplus(N(-2, 1)) (~0.13), A in [-4.5, -0.5]."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, length, heads, head_dim, generator=gen)
    dt = F.softplus(torch.randn(batch, length, heads, generator=gen) - 2.0)
    A = -(torch.rand(heads, generator=gen) * 4.0 + 0.5)
    B = torch.randn(batch, length, groups, state, generator=gen)
    C = torch.randn(batch, length, groups, state, generator=gen)
    D = torch.randn(heads, generator=gen)
    return {k: v.to(dtype) for k, v in {"x": x, "dt": dt, "A": A, "B": B, "C": C, "D": D}.items()}


def _rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    return ((y.float() - ref.float()).abs().max() / ref.float().abs().max().clamp_min(1e-30)).item()


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def benchmark(
    lengths=(256, 1024, 4096),
    batch: int = 1,
    heads: int = 8,
    head_dim: int = 32,
    state: int = 32,
    groups: int = 1,
    chunk_sizes=(64,),
    repeats: int = 5,
    sequential_cap: int = 1024,
    threads: int | None = 1,
    seed: int = 0,
) -> list[dict]:
    """One row per (length, chunk size): median seconds and tokens/s of each method, speed ratios, and
    each chunked output's max error relative to the sequential scan (|y - ref|.max() / |ref|.max())."""
    if threads is not None:
        old_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
    hf_scan = transformers_chunk_scan()
    rows = []
    try:
        for length in lengths:
            inp = make_inputs(batch, length, heads, head_dim, state, groups, seed=seed)
            x, dt, A, B, C, D = (inp[k] for k in ("x", "dt", "A", "B", "C", "D"))
            methods = {("sequential", 0): functools.partial(ssd_sequential, x, dt, A, B, C, D=D)}
            for Q in chunk_sizes:
                methods[("chunked", Q)] = functools.partial(ssd_chunked, x, dt, A, B, C, Q, D=D)
                methods[("transformers", Q)] = functools.partial(
                    hf_scan, x, dt, A, B, C, Q, D=D, return_final_states=True
                )
            times = {key: [] for key in methods}
            outputs = {}
            for key, fn in methods.items():  # warm-up, keeps the outputs for the parity columns
                if key[0] == "sequential" and length > sequential_cap:
                    seconds, outputs[key] = _timed(fn)  # too slow to repeat: this run is its measurement
                    times[key].append(seconds)
                else:
                    outputs[key] = fn()
            for _ in range(repeats):
                for key, fn in methods.items():
                    if key[0] == "sequential" and length > sequential_cap:
                        continue
                    times[key].append(_timed(fn)[0])
            med = {key: statistics.median(ts) for key, ts in times.items()}
            y_ref, s_ref = outputs[("sequential", 0)]
            tokens = batch * length
            for Q in chunk_sizes:
                t_seq, t_ch, t_hf = med[("sequential", 0)], med[("chunked", Q)], med[("transformers", Q)]
                rows.append(
                    {
                        "length": length,
                        "batch": batch,
                        "heads": heads,
                        "head_dim": head_dim,
                        "state": state,
                        "groups": groups,
                        "chunk_size": Q,
                        "threads": torch.get_num_threads(),
                        "repeats": repeats,
                        "sequential_repeats": len(times[("sequential", 0)]),
                        "sequential_s": t_seq,
                        "chunked_s": t_ch,
                        "transformers_s": t_hf,
                        "sequential_tok_s": tokens / t_seq,
                        "chunked_tok_s": tokens / t_ch,
                        "transformers_tok_s": tokens / t_hf,
                        "chunked_vs_sequential": t_seq / t_ch,
                        "chunked_vs_transformers": t_hf / t_ch,
                        "chunked_rel_err": _rel_err(outputs[("chunked", Q)][0], y_ref),
                        "chunked_state_rel_err": _rel_err(outputs[("chunked", Q)][1], s_ref),
                        "transformers_rel_err": _rel_err(outputs[("transformers", Q)][0], y_ref),
                    }
                )
    finally:
        if threads is not None:
            torch.set_num_threads(old_threads)
    return rows


def format_table(rows: list[dict]) -> str:
    """A plain-text table of `benchmark` rows."""
    head = (
        f"{'len':>6} {'Q':>4} {'seq tok/s':>11} {'chunk tok/s':>12} {'hf tok/s':>11} "
        f"{'x seq':>7} {'x hf':>6} {'err chunk':>10} {'err hf':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['length']:>6} {r['chunk_size']:>4} {r['sequential_tok_s']:>11.0f} {r['chunked_tok_s']:>12.0f} "
            f"{r['transformers_tok_s']:>11.0f} {r['chunked_vs_sequential']:>7.1f} "
            f"{r['chunked_vs_transformers']:>6.2f} {r['chunked_rel_err']:>10.1e} {r['transformers_rel_err']:>9.1e}"
        )
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--state", type=int, default=32)
    parser.add_argument("--groups", type=int, default=1)
    parser.add_argument("--chunk-sizes", type=int, nargs="+", default=[64])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sequential-cap", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    rows = benchmark(
        lengths=tuple(args.lengths),
        batch=args.batch,
        heads=args.heads,
        head_dim=args.head_dim,
        state=args.state,
        groups=args.groups,
        chunk_sizes=tuple(args.chunk_sizes),
        repeats=args.repeats,
        sequential_cap=args.sequential_cap,
        threads=args.threads,
    )
    print(
        f"SSD scan, float32, b={args.batch} h={args.heads} p={args.head_dim} n={args.state} g={args.groups}, "
        f"{args.threads} thread(s), median of {args.repeats} interleaved repeats "
        f"(sequential once above {args.sequential_cap} tokens)"
    )
    print(
        "x seq / x hf: chunked speed-up over sequential / over transformers' torch path; "
        "err: max |y - y_seq| / max |y_seq|"
    )
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return rows


if __name__ == "__main__":
    main()
