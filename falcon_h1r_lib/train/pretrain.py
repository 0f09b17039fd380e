"""The tiny profile's stand-in for Falcon-H1-7B-Base: the tiny hybrid, briefly pretrained on the task world.

The corpus holds training problems (seeds below the evaluation range, held-out prompts removed) with their
*plain* answers, ChatML-formatted with the tiny system turn and packed into fixed blocks separated by
``<|endoftext|>``: the model learns the tokens, the chat format and the answer formats (``\\boxed{}``, code
blocks), but never sees a worked solution, so it knows formats and not reasoning, as a base model would
before long-CoT SFT ([P] §2). The full profile loads ``tiiuae/Falcon-H1-7B-Base`` instead (``sft.load_base``).

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

from falcon_h1r_lib.config import SFTStageConfig, repo_relative

PRETRAIN_SEED_OFFSET = 500_001  # pretraining problems draw seeds seed + this: training range, apart from curation's
CORPUS_VERSION = 2  # bump when the corpus format changes, so a saved base model is retrained
STAGE_INFO = "stage_info.json"  # written beside a finished model: config hash, wall time, loss log


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
    from falcon_h1r_lib.data.curation import normalize_prompt

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


def pretrain_fingerprint(cfg: SFTStageConfig, tokenizer_path: str) -> str:
    """What the tiny base model depends on; a saved base with another fingerprint is retrained."""
    import hashlib

    keys = {k: v for k, v in cfg.to_dict().items() if k.startswith("pretrain_") or k in ("seed", "model_width",
                                                                                            "rope_theta", "system_prompt")}
    blob = json.dumps({**keys, "tokenizer": repo_relative(tokenizer_path), "corpus": CORPUS_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def read_stage_info(model_dir: Path) -> dict[str, Any] | None:
    path = Path(model_dir) / STAGE_INFO
    if not path.exists() or not (Path(model_dir) / "config.json").exists():
        return None
    return json.loads(path.read_text())


def write_stage_info(model_dir: Path, info: Mapping[str, Any]) -> None:
    path = Path(model_dir) / STAGE_INFO
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(info), indent=2) + "\n")
    tmp.replace(path)


def checkpoint_to_resume(ckpt_dir: Path, fingerprint: str, state=None) -> str | None:
    """The last checkpoint in ``ckpt_dir`` if it was written for ``fingerprint``; checkpoints of another
    configuration are deleted (resuming them would silently mix two runs).

    Under ``accelerate launch`` only the main process deletes and stamps; the others wait at a barrier
    (``state.main_process_first``, default ``PartialState()``) and read the folder after it.
    """
    import shutil

    from accelerate import PartialState
    from transformers.trainer_utils import get_last_checkpoint

    state = PartialState() if state is None else state
    ckpt_dir = Path(ckpt_dir)
    stamp = ckpt_dir / "FINGERPRINT"
    with state.main_process_first():
        if state.is_main_process:
            if ckpt_dir.is_dir() and (not stamp.exists() or stamp.read_text().strip() != fingerprint):
                shutil.rmtree(ckpt_dir)
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            stamp.write_text(fingerprint + "\n")
        elif not stamp.exists() or stamp.read_text().strip() != fingerprint:
            raise RuntimeError(f"{stamp}: the main process did not stamp the checkpoints for {fingerprint}")
        return get_last_checkpoint(str(ckpt_dir))


def _drop_printer(trainer) -> None:
    """Without a bar the Trainer prints every log dict; the progress lines and the loss log suffice."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)


def in_notebook() -> bool:
    """True inside a Jupyter kernel (papermill, nbval, JupyterLab)."""
    from transformers.utils import is_in_notebook

    return bool(is_in_notebook())


def progress_lines(name: str, every: float = 0.1):
    """A Trainer callback printing one progress line per ``every`` of the run (step, loss, elapsed, eta).

    Used instead of the live progress bar inside notebooks: thousands of bar updates overflow the kernel's
    output queue, and nbval then misses the end of the cell.
    """
    import time

    from transformers import TrainerCallback

    class ProgressLines(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            self.t0, self.next, self.loss = time.perf_counter(), every, float("nan")

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])

        def on_step_end(self, args, state, control, **kw):
            done = state.global_step / max(state.max_steps, 1)
            if done + 1e-9 >= self.next or state.global_step == state.max_steps:
                elapsed = time.perf_counter() - self.t0
                eta = elapsed / max(done, 1e-9) - elapsed
                print(f"{name}: step {state.global_step}/{state.max_steps} ({100 * done:.0f}%), "
                      f"loss {self.loss:.4f}, {elapsed:.0f} s elapsed, ~{eta:.0f} s left", flush=True)
                while self.next <= done + 1e-9:
                    self.next += every

    return ProgressLines()


def loss_log(log_history: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
    """The training-loss lines of a Trainer's ``log_history``: [{step, loss, learning_rate}, ...]."""
    return [{"step": int(e["step"]), "loss": float(e["loss"]), "learning_rate": float(e.get("learning_rate", 0.0))}
            for e in log_history if "loss" in e and "step" in e]


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

    from falcon_h1r_lib.kernels import patch_falcon_h1
    from falcon_h1r_lib.metrics import Stopwatch
    from falcon_h1r_lib.models import build_model, count_parameters, falcon_h1_config

    out_dir = Path(out_dir)
    fingerprint = pretrain_fingerprint(cfg, tokenizer_path)
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
        _drop_printer(trainer)
    last = checkpoint_to_resume(ckpt_dir, fingerprint)
    trainer.train(resume_from_checkpoint=last)
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


__all__ = ["BlockDataset", "PRETRAIN_SEED_OFFSET", "checkpoint_to_resume", "in_notebook", "progress_lines", "loss_log", "pack_documents", "plain_answer", "pretrain_base",
           "pretrain_fingerprint", "pretrain_problems", "read_stage_info", "render_documents", "write_stage_info"]
