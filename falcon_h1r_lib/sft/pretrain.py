"""The tiny profile's stand-in for Falcon-H1-7B-Base: the tiny hybrid, briefly pretrained on the task world.

The corpus holds training problems (seeds below the evaluation range, held-out prompts removed) with their
*plain* answers, ChatML-formatted with the tiny system turn and packed into fixed blocks separated by
``<|endoftext|>``: the model learns the tokens, the chat format and the answer formats (``\\boxed{}``, code
blocks), but never sees a worked solution, so it knows formats and not reasoning, as a base model would
before long-CoT SFT ([P] §2). The full profile loads ``tiiuae/Falcon-H1-7B-Base`` instead (``sft.base.load_base``).

Training is transformers' ``Trainer`` (AdamW, cosine schedule, grad clip 1.0, seeded, tqdm, checkpoints and
resume from the last one); the result is saved with ``save_pretrained`` beside its tokenizer.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from falcon_h1r_lib.configs import SFTStageConfig

PRETRAIN_SEED_OFFSET = 500_001  # pretraining problems draw seeds seed + this: training range, apart from curation's
CORPUS_VERSION = 2  # bump when the corpus format changes, so a saved base model is retrained


def plain_answer(problem: Mapping[str, Any]) -> str:
    """The answer without any worked step, in the format the teacher's traces end with (no ``<think>``).

    Math answers restate the question first ("7114-6980=? \\boxed{134}"): copying operands is what any
    pretrained base model can do (induction heads form early in pretraining), computing them is not.
    """
    domain, answer = problem["domain"], str(problem["answer"])
    if domain == "math":
        return f"{problem['prompt']}\n\\boxed{{{answer}}}"
    if domain == "science":
        return f"\\boxed{{{answer}}}"
    if domain == "code":
        return f"```python\n{answer}\n```"
    return answer


def pretrain_problems(docs_per_domain: Mapping[str, int], seed: int, exclude_prompts: Iterable[str] = ()) -> list[dict]:
    """Training-seed problems per domain, minus any whose normalised prompt is held out for evaluation."""
    from falcon_h1r_lib.data import splits
    from falcon_h1r_lib.data.text import normalize_prompt

    held_out = {normalize_prompt(p) for p in exclude_prompts}
    out = []
    for domain, n in docs_per_domain.items():
        rows = splits.tiny_train_problems(domain, n, splits.train_seed(seed + PRETRAIN_SEED_OFFSET))
        out += [p for p in rows if normalize_prompt(p["prompt"]) not in held_out]
    return out


def render_documents(problems: Sequence[Mapping[str, Any]], tokenizer, system_prompt: str, seed: int) -> list[str]:
    """One ChatML conversation per problem (system, user prompt, assistant plain answer), shuffled."""
    docs = [
        tokenizer.apply_chat_template(
            [{"role": "system", "content": system_prompt}, {"role": "user", "content": p["prompt"]},
             {"role": "assistant", "content": plain_answer(p)}],
            tokenize=False,
        )
        for p in problems
    ]
    random.Random(seed).shuffle(docs)
    return docs


def pack_documents(docs: Sequence[str], tokenizer, block_size: int) -> torch.Tensor:
    """Concatenate documents with ``<|endoftext|>`` between them and cut into blocks: (n_blocks, block_size).

    The tail shorter than a block is dropped; no padding, so every position is a training target.
    """
    sep = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    if sep is None or sep == tokenizer.unk_token_id:
        raise ValueError("tokenizer has no <|endoftext|> token to separate pretraining documents")
    ids: list[int] = []
    for doc in docs:
        ids += tokenizer(doc, add_special_tokens=False)["input_ids"] + [sep]
    n_blocks = len(ids) // block_size
    if n_blocks == 0:
        raise ValueError(f"pretraining corpus has {len(ids)} tokens, fewer than one block of {block_size}")
    return torch.tensor(ids[: n_blocks * block_size], dtype=torch.long).view(n_blocks, block_size)


class BlockDataset(torch.utils.data.Dataset):
    """Fixed-length token blocks; labels are the inputs (the model shifts them)."""

    def __init__(self, blocks: torch.Tensor) -> None:
        self.blocks = blocks  # (N, L)

    def __len__(self) -> int:
        return self.blocks.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        block = self.blocks[i]
        return {"input_ids": block, "labels": block, "attention_mask": torch.ones_like(block)}


def pretrain_fingerprint(cfg: SFTStageConfig, tokenizer_path: str, exclude_prompts: Iterable[str] = ()) -> str:
    """What the tiny base model depends on; a saved base with another fingerprint is retrained: the pretraining
    keys of ``cfg``, the tokenizer's files (``tokenizer.tokenizer_digest``: notebook 02's, by content, not path),
    the held-out prompts the corpus leaves out (they follow 02's recorded ``eval_problems_per_domain``) and the
    corpus format. Raises FileNotFoundError when ``tokenizer_path`` is a folder without tokenizer files."""
    import hashlib

    from falcon_h1r_lib.data.text import normalize_prompt
    from falcon_h1r_lib.tokenizer import tokenizer_digest

    keys = {k: v for k, v in cfg.to_dict().items() if k.startswith("pretrain_") or k in ("seed", "model_width",
                                                                                            "rope_theta", "system_prompt")}
    held_out = hashlib.sha256("\n".join(sorted({normalize_prompt(p) for p in exclude_prompts})).encode()).hexdigest()
    blob = json.dumps({**keys, "tokenizer": tokenizer_digest(tokenizer_path), "held_out": held_out[:16],
                       "corpus": CORPUS_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def pretrain_base(
    cfg: SFTStageConfig,
    tokenizer,
    tokenizer_path: str,
    out_dir: Path,
    exclude_prompts: Iterable[str] = (),
    system_prompt: str = "",
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """Pretrain the tiny hybrid and save it (model + tokenizer) to ``out_dir``; skip when already done.

    Checkpoints go to ``out_dir.parent / "pretrain_checkpoints"``; a killed run resumes from the last one.
    Returns the stage info: fingerprint, wall time, steps, loss log, corpus size.
    """
    from transformers import Trainer, TrainingArguments

    from falcon_h1r_lib.checkpoints import (
        checkpoint_to_resume,
        read_stage_info,
        train_to_max_steps,
        write_stage_info,
    )
    from falcon_h1r_lib.kernels import patch_falcon_h1
    from falcon_h1r_lib.metrics import Stopwatch
    from falcon_h1r_lib.models import build_model, count_parameters, falcon_h1_config
    from falcon_h1r_lib.progress import drop_printer, in_notebook, loss_log, progress_lines

    out_dir = Path(out_dir)
    exclude_prompts = list(exclude_prompts)
    fingerprint = pretrain_fingerprint(cfg, tokenizer_path, exclude_prompts)
    info = read_stage_info(out_dir)
    if info is not None and info.get("fingerprint") == fingerprint:
        return {**info, "skipped": True}
    clock = Stopwatch()
    patch_falcon_h1()
    problems = pretrain_problems(cfg.pretrain_docs_per_domain, cfg.seed, exclude_prompts)
    blocks = pack_documents(render_documents(problems, tokenizer, system_prompt, cfg.seed), tokenizer,
                            cfg.pretrain_block_size)
    config = falcon_h1_config("tiny", width=cfg.model_width, vocab_size=len(tokenizer), rope_theta=cfg.rope_theta,
                              pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                              bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"))
    model = build_model(config, seed=cfg.seed)
    ckpt_dir = out_dir.parent / "pretrain_checkpoints"
    args = TrainingArguments(
        output_dir=str(ckpt_dir),
        max_steps=cfg.pretrain_max_steps,
        per_device_train_batch_size=cfg.pretrain_batch_size,
        learning_rate=cfg.pretrain_learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, round(0.05 * cfg.pretrain_max_steps)),
        weight_decay=0.01,
        adam_beta2=0.95,
        max_grad_norm=1.0,
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        save_only_model=False,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=False,
        report_to="none",
        dataloader_num_workers=0,
        disable_tqdm=in_notebook(),  # notebooks: progress lines instead of a live bar
    )
    callbacks = [*callbacks, progress_lines("pretrain")] if args.disable_tqdm else list(callbacks)
    trainer = Trainer(model=model, args=args, train_dataset=BlockDataset(blocks), callbacks=callbacks)
    if args.disable_tqdm:
        drop_printer(trainer)
    last = checkpoint_to_resume(ckpt_dir, fingerprint, max_steps=cfg.pretrain_max_steps)
    train_to_max_steps(trainer, last)  # a checkpoint at max_steps is loaded: train() would step once more
    out_dir.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    info = {
        "fingerprint": fingerprint,
        "wall_time_s": round(clock.seconds(), 3),
        "resumed_from": Path(last).name if last else None,
        "steps": int(trainer.state.global_step),
        "parameters": count_parameters(model.config),
        "documents": len(problems),
        "blocks": int(blocks.shape[0]),
        "tokens": int(blocks.numel()),
        "epochs": float(trainer.state.global_step * cfg.pretrain_batch_size / blocks.shape[0]),
        "loss_log": loss_log(trainer.state.log_history),
    }
    write_stage_info(out_dir, info)
    return {**info, "skipped": False}


__all__ = ["BlockDataset", "CORPUS_VERSION", "PRETRAIN_SEED_OFFSET", "pack_documents", "plain_answer", "pretrain_base",
           "pretrain_fingerprint", "pretrain_problems", "render_documents"]
