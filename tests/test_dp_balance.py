"""Balanced data-parallel token normalization ([P] §2.3, Fig. 4), proved on 2 CPU processes (gloo).

Our SFT trainer (``sft.trainer``, i.e. TRL's SFTTrainer with difficulty weights) runs one optimizer step
on 4 samples of very uneven supervised lengths, split over 2 ranks. With transformers'
``average_tokens_across_devices=True`` the DDP gradient must equal the single-process full-batch gradient
in which every supervised token weighs the same; with per-rank averaging (``False``) it must not.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from falcon_h1r_lib.launch import free_port

# 4 samples: (prompt tokens, supervised tokens, difficulty weight): supervised lengths 2..60, so the
# two ranks always hold different token counts whichever pairs they draw
SAMPLES = [(6, 3, 1.0), (4, 40, 1.75), (8, 5, 0.5), (3, 60, 1.25)]
VOCAB = 300


def _model_and_tokenizer():
    from falcon_h1r_lib.models import build_model, falcon_h1_config
    from falcon_h1r_lib.tokenizer import build_tokenizer

    tok = build_tokenizer(vocab_size=VOCAB, seed=0)
    config = falcon_h1_config("tiny", width=32, vocab_size=len(tok), pad_token_id=tok.pad_token_id)
    return build_model(config, seed=0), tok


def _dataset():
    """Pre-tokenized rows (TRL keeps given input_ids/labels), with their weights."""
    from datasets import Dataset

    g = torch.Generator().manual_seed(0)
    rows = {"input_ids": [], "labels": [], "sample_weight": []}
    for n_prompt, n_sup, w in SAMPLES:
        ids = torch.randint(10, VOCAB, (n_prompt + n_sup,), generator=g).tolist()
        rows["input_ids"].append(ids)
        rows["labels"].append([-100] * n_prompt + ids[n_prompt:])
        rows["sample_weight"].append(w)
    return Dataset.from_dict(rows)


def reference_gradient() -> dict[str, torch.Tensor]:
    """Single process, full batch, plain PyTorch: sum_i w_i sum_t nll_it / (all supervised tokens)."""
    model, _ = _model_and_tokenizer()
    model.train()
    data = _dataset()
    total, n_tokens = 0.0, 0
    for ids, labels, w in zip(data["input_ids"], data["labels"], data["sample_weight"]):
        ids_t, lab = torch.tensor([ids]), torch.tensor(labels[1:])  # next-token targets
        logp = torch.log_softmax(model(input_ids=ids_t).logits[0, :-1].float(), -1)  # (T-1, V)
        mask = lab != -100
        total = total + w * -logp[mask].gather(-1, lab[mask][:, None]).sum()
        n_tokens += int(mask.sum())
    (total / n_tokens).backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(world),
                       "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "ACCELERATE_USE_CPU": "true"})
    torch.set_num_threads(1)
    from safetensors.torch import save_file
    from transformers import TrainerCallback

    from falcon_h1r_lib.configs import SFTStageConfig
    from falcon_h1r_lib.sft.trainer import build_trainer

    class GradDump(TrainerCallback):
        def __init__(self, path: str) -> None:
            self.path = path

        def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
            if rank == 0:
                save_file({n: p.grad.detach().contiguous() for n, p in model.named_parameters()
                           if p.grad is not None}, self.path)

    cfg = SFTStageConfig(per_device_train_batch_size=2, max_steps=1, learning_rate=1e-3, max_grad_norm=0.0,
                         warmup_ratio=0.0, logging_steps=1, save_steps=1000, max_length=128,
                         assistant_only_loss=False)  # rows come pre-tokenized with their labels
    for balanced in (True, False):
        model, tok = _model_and_tokenizer()
        trainer = build_trainer(cfg, model, tok, _dataset(), Path(out_dir) / f"run-{balanced}",
                                callbacks=[GradDump(str(Path(out_dir) / f"grad-{balanced}.safetensors"))],
                                average_tokens_across_devices=balanced, disable_tqdm=True, save_strategy="no",
                                use_cpu=True, ddp_backend="gloo")
        assert trainer.args.world_size == world, trainer.args.world_size
        trainer.train()
    if rank == 0:
        Path(out_dir, "done.json").write_text(json.dumps({"world_size": world}))
    import torch.distributed as dist

    if dist.is_initialized():  # tear gloo down before exit: its threads left running aborted a rank once in CI
        dist.barrier()         # ("terminate called without an active exception", SIGABRT after both runs)
        dist.destroy_process_group()


def _rel_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    num = sum(float((a[k] - b[k]).pow(2).sum()) for k in b)
    den = sum(float(b[k].pow(2).sum()) for k in b)
    return (num / den) ** 0.5


@pytest.mark.slow
def test_balanced_dp_gradient_equals_full_batch_gradient(tmp_path):
    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    mp.start_processes(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    assert json.loads((tmp_path / "done.json").read_text())["world_size"] == 2
    ref = reference_gradient()
    balanced = load_file(str(tmp_path / "grad-True.safetensors"))
    per_rank = load_file(str(tmp_path / "grad-False.safetensors"))
    assert set(balanced) == set(ref)
    d_balanced, d_per_rank = _rel_diff(balanced, ref), _rel_diff(per_rank, ref)
    print(f"relative gradient error vs full batch: balanced {d_balanced:.2e}, per-rank mean {d_per_rank:.2e}")
    assert d_balanced < 1e-4, f"balanced DP normalization must give the full-batch gradient ({d_balanced:.2e})"
    assert d_per_rank > 0.05, f"per-rank token averaging should weigh ranks, not tokens ({d_per_rank:.2e})"


if __name__ == "__main__":  # pragma: no cover - manual run
    sys.exit(pytest.main([__file__, "-q"]))
