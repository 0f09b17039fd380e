"""CPU threads for training on a small shared machine: how many, and whether idle OpenMP threads spin.

The tiny profile trains on 2 cores. PyTorch's CPU kernels run on an OpenMP pool (GNU libgomp in the PyPI CPU
wheel). Between parallel regions libgomp's idle workers *spin* for a while before they sleep, unless
``OMP_WAIT_POLICY=PASSIVE`` (OpenMP 5.2 spec §6.7; libgomp manual "OMP_WAIT_POLICY", "GOMP_SPINCOUNT"). On an
idle machine spinning saves a wake-up per region; beside a busy neighbour the spinning workers take the cores
the neighbour and the pool's own working threads need, and a training step can slow several-fold (issue 14:
notebook 03 took 2,017 s beside another process vs 272 s idle).

``thread_env`` gives the environment a child process (a papermill kernel, a launcher) should start with; the
policy must be in the environment *before* the OpenMP runtime initialises (at ``import torch``), so it cannot
be set from inside a running kernel. ``set_threads`` sets the intra-op thread count of this process.

``python -m falcon_h1r_lib.threads`` measures it: a fixed training workload (the tiny hybrid, AdamW steps)
timed idle and beside one busy neighbour process, for each thread count and wait policy, in interleaved
repeats; it prints the medians and each setting's slowdown ratio (neighbour / idle).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

WAIT_POLICIES = ("default", "PASSIVE")  # "default": the variable unset, libgomp spins before it sleeps
# What the project's runs start with (Makefile, ``reproduce``). Measured here (2 cores, 2 threads, 15 AdamW steps
# of the width-128 hybrid, medians of 3): beside one spinning process the default took 3.05x its idle time,
# PASSIVE 1.52x; idle, PASSIVE cost 12% (4.00 vs 3.56 s). One thread did not slow down but ran 1.7x longer idle.
DEFAULT_WAIT_POLICY = "PASSIVE"


def thread_env(num_threads: int | None = None, wait_policy: str | None = DEFAULT_WAIT_POLICY,
               base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) with ``OMP_WAIT_POLICY`` (None or "default": unset) and, when
    ``num_threads`` is given, ``OMP_NUM_THREADS``. Raises ValueError for another policy or a count below 1."""
    env = dict(os.environ if base is None else base)
    if wait_policy in (None, "default"):
        env.pop("OMP_WAIT_POLICY", None)
        env.pop("GOMP_SPINCOUNT", None)  # libgomp's own default spinning
    elif wait_policy in ("PASSIVE", "ACTIVE"):
        env["OMP_WAIT_POLICY"] = wait_policy
    else:
        raise ValueError(f"thread_env: wait_policy must be 'PASSIVE', 'ACTIVE', 'default' or None, got {wait_policy!r}")
    if num_threads is not None:
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"thread_env: num_threads must be an int >= 1, got {num_threads!r}")
        env["OMP_NUM_THREADS"] = str(num_threads)
    return env


def set_threads(num_threads: int | None) -> int:
    """``torch.set_num_threads(num_threads)`` when given (>= 1); returns the count in effect."""
    import torch

    if num_threads is not None:
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"set_threads: num_threads must be an int >= 1 or None, got {num_threads!r}")
        torch.set_num_threads(num_threads)
    return torch.get_num_threads()


# --------------------------------------------------------------------------------------------
# The measurement: python -m falcon_h1r_lib.threads
# --------------------------------------------------------------------------------------------


def _workload(steps: int, width: int, batch: int, seq_len: int) -> float:
    """Seconds for ``steps`` AdamW steps of the tiny hybrid on a fixed random batch (B, T) = (batch, seq_len)."""
    import torch

    from falcon_h1r_lib.models import build_model, falcon_h1_config

    model = build_model(falcon_h1_config("tiny", width=width, vocab_size=512), seed=0)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(10, 512, (batch, seq_len), generator=torch.Generator().manual_seed(0))
    model(input_ids=ids, labels=ids).loss.backward()  # warm-up step: allocations, kernel choice
    opt.zero_grad()
    start = time.perf_counter()
    for _ in range(steps):
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    return time.perf_counter() - start


NEIGHBOURS = {
    "idle": None,
    "spin": [sys.executable, "-c", "while True: pass"],  # one busy core, as any other job on the machine
}


def measure(threads: Sequence[int] = (1, 2), policies: Sequence[str] = WAIT_POLICIES,
            neighbours: Sequence[str] = ("idle", "spin"), repeats: int = 3, steps: int = 20, width: int = 128,
            batch: int = 8, seq_len: int = 128) -> list[dict]:
    """One row per (threads, policy, neighbour): median seconds of the workload over ``repeats`` interleaved
    rounds (every setting once per round, so drift hits all alike), and ``slowdown`` = median / idle median."""
    settings = [(t, p, n) for t in threads for p in policies for n in neighbours]
    times: dict[tuple, list[float]] = {s: [] for s in settings}
    for _ in range(repeats):
        for t, p, n in settings:
            cmd = [sys.executable, "-m", "falcon_h1r_lib.threads", "--child", "--steps", str(steps),
                   "--width", str(width), "--batch", str(batch), "--seq-len", str(seq_len)]
            neighbour = subprocess.Popen(NEIGHBOURS[n]) if NEIGHBOURS[n] else None
            try:
                out = subprocess.run(cmd, env=thread_env(t, p), capture_output=True, text=True)
            finally:
                if neighbour is not None:
                    neighbour.kill()
                    neighbour.wait()
            if out.returncode != 0:
                raise RuntimeError(f"threads.measure: the workload ({t} threads, {p}, {n}) exited {out.returncode}:\n"
                                   f"{out.stderr[-2000:]}")
            times[(t, p, n)].append(float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"]))
    rows = []
    for t, p, n in settings:
        med = statistics.median(times[(t, p, n)])
        idle = statistics.median(times[(t, p, "idle")]) if (t, p, "idle") in times else None
        rows.append({"threads": t, "wait_policy": p, "neighbour": n, "median_s": round(med, 3),
                     "runs_s": [round(x, 3) for x in times[(t, p, n)]],
                     "slowdown": round(med / idle, 2) if idle else None})  # None: no idle run to compare with
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--policies", nargs="+", default=list(WAIT_POLICIES), choices=WAIT_POLICIES)
    ap.add_argument("--neighbours", nargs="+", default=["idle", "spin"], choices=list(NEIGHBOURS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps({"seconds": _workload(args.steps, args.width, args.batch, args.seq_len)}))
        return
    rows = measure(args.threads, args.policies, args.neighbours, args.repeats, args.steps, args.width, args.batch,
                   args.seq_len)
    print(f"{'threads':>7} {'wait':>8} {'neighbour':>9} {'median s':>9} {'slowdown':>8}  runs")
    for r in rows:
        slowdown = "-" if r["slowdown"] is None else f"{r['slowdown']:.2f}"
        print(f"{r['threads']:>7} {r['wait_policy']:>8} {r['neighbour']:>9} {r['median_s']:>9.2f} {slowdown:>8}"
              f"  {r['runs_s']}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()


__all__ = ["DEFAULT_WAIT_POLICY", "NEIGHBOURS", "WAIT_POLICIES", "main", "measure", "set_threads", "thread_env"]
