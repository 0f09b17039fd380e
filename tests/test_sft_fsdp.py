"""The rehearsal's SFT under the shipped FSDP config: 2 CPU processes, the stand-in base, final weights loadable.

``accelerate launch --config_file falcon_h1r_lib/profiles/accelerate/fsdp.yaml`` with the shipped file; only the
process count, ``--mixed_precision no`` (CPU) and the CPU shim below differ from a GPU node. accelerate 1.15 enables
FSDP only on accelerator ranks (``AcceleratorState`` skips it for ``MULTI_CPU``, and ``--cpu`` bypasses the FSDP
launcher), so ``falcon_h1r_lib/fsdp_on_cpu/sitecustomize.py`` reports the gloo ranks as GPU ranks on a CPU device.
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

FSDP_CONFIG = "falcon_h1r_lib/profiles/accelerate/fsdp.yaml"
REHEARSAL_SFT = "falcon_h1r_lib/profiles/rehearsal/03_sft.yaml"
SHIM = Path(__file__).parent.parent / "falcon_h1r_lib" / "fsdp_on_cpu"


def sft_rows(n: int = 8) -> list[dict]:
    """A handful of curated-looking SFT rows (math, with difficulty weights)."""
    rows = []
    for i in range(n):
        a, b = 12 + 5 * i, 7 + i
        rows.append({"id": f"math-{i}", "domain": "math", "prompt": f"What is {a} + {b}?", "answer": str(a + b),
                     "response": f"<think>\n{a} + {b} = {a + b}\n</think>\n\n\\boxed{{{a + b}}}",
                     "weight": [0.5, 1.0, 1.25, 1.75][i % 4]})
    return rows


def write_fixture_rows(profile: str = "rehearsal") -> Path:
    """Notebook 02's ``sft`` output of ``profile`` (parquet + manifest) from ``sft_rows``, and the ``metrics.json``
    that records the config 02 ran with (SFT reads both), under the runs root."""
    from falcon_h1r_lib.config import load_config
    from falcon_h1r_lib.data import manifests
    from falcon_h1r_lib.metrics import write_metrics

    cur = load_config("02_data_curation", profile)
    out = cur.run_dir() / "sft.parquet"
    manifests.write_dataset(sft_rows(), out, {"name": "sft", "source": {"generator": "tests/test_sft_fsdp.py"}})
    write_metrics(cur, {"fixture": "tests/test_sft_fsdp.py"}, wall_time_s=0.0)
    return out


@pytest.mark.slow
def test_rehearsal_sft_under_shipped_fsdp_config_saves_loadable_weights(tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from falcon_h1r_lib.models.standin import DEFAULT_OUT, write_standin

    runs = tmp_path / "runs"
    env = {**os.environ, "FALCON_H1R_RUNS": str(runs), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(SHIM), os.environ.get("PYTHONPATH", "")]),
           "FALCON_H1R_FSDP_ON_CPU": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    old = os.environ.get("FALCON_H1R_RUNS")
    os.environ["FALCON_H1R_RUNS"] = str(runs)
    try:
        base = write_standin(DEFAULT_OUT, width=64)
        write_fixture_rows("rehearsal")
    finally:
        os.environ.pop("FALCON_H1R_RUNS") if old is None else os.environ.__setitem__("FALCON_H1R_RUNS", old)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", FSDP_CONFIG, "--num_processes", "2",
           "--mixed_precision", "no", "--main_process_port", str(free_port()),
           "-m", "falcon_h1r_lib.sft", "--config", REHEARSAL_SFT]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=repo_root(), env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    print(f"accelerate launch wall time {wall:.1f} s")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    assert "FSDP on CPU: ranks run FSDP2 over gloo" in proc.stderr, "the CPU shim was not active"

    sft_dir = runs / "rehearsal" / "03_sft" / "sft"
    weights = sorted(p.name for p in sft_dir.glob("*.safetensors"))
    assert weights, f"no safetensors in {sft_dir}: {sorted(p.name for p in sft_dir.iterdir())}"
    info = json.loads((sft_dir / "stage_info.json").read_text())
    assert info["world_size"] == 2 and info["global_batch"] == 4 and info["steps"] == 4
    assert info["mup_multipliers"] and {g["learning_rate"] for g in info["param_groups"]} == {1.024e-3}
    ckpts = sorted((runs / "rehearsal" / "03_sft" / "checkpoints").glob("checkpoint-*"))
    assert ckpts and any(p.name.startswith("pytorch_model_fsdp") for p in ckpts[-1].iterdir()), "sharded checkpoints"

    model = AutoModelForCausalLM.from_pretrained(str(sft_dir), dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(sft_dir))
    assert tok.eos_token == "<|im_end|>"
    eos = model.generation_config.eos_token_id
    assert tok.convert_tokens_to_ids("<|im_end|>") in (eos if isinstance(eos, list) else [eos])
    trained = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32).state_dict()
    saved = load_file(str(sft_dir / weights[0]))
    moved = [k for k, v in model.state_dict().items() if k in trained and not torch.equal(v, trained[k])]
    assert moved, "the saved SFT weights equal the base: training or the gather did not reach the file"
    assert all(torch.isfinite(v).all() for v in saved.values())
