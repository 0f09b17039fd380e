"""Where a training stage resumes from and what it leaves behind: the checkpoint folder stamped with the run's
fingerprint (resume only the same run, delete another's), the finished model's ``stage_info.json`` (skip a done
stage) and the final save (gathered from FSDP shards). Shared by tiny pretraining, SFT and RL."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from falcon_h1r_lib.metrics import write_json_atomic

STAGE_INFO = "stage_info.json"  # written beside a finished model: config hash, wall time, loss log


def read_stage_info(model_dir: Path) -> dict[str, Any] | None:
    """The ``stage_info.json`` of a finished model in ``model_dir``; None when the model or the record is missing."""
    path = Path(model_dir) / STAGE_INFO
    if not path.exists() or not (Path(model_dir) / "config.json").exists():
        return None
    return json.loads(path.read_text())


def write_stage_info(model_dir: Path, info: Mapping[str, Any]) -> None:
    """Write ``stage_info.json`` atomically (last, so its presence means the model is complete)."""
    write_json_atomic(Path(model_dir) / STAGE_INFO, dict(info))


def checkpoint_step(path: str | Path) -> int:
    """The optimizer step of a Trainer checkpoint folder ``.../checkpoint-<step>``; ValueError naming the folder
    for any other name."""
    name = Path(path).name
    prefix, _, step = name.rpartition("-")
    if prefix != "checkpoint" or not step.isdigit():
        raise ValueError(f"{path}: not a Trainer checkpoint folder (expected checkpoint-<step>)")
    return int(step)


def last_checkpoint(ckpt_dir: Path, max_steps: int | None = None) -> str | None:
    """The complete checkpoint (with its ``trainer_state.json``) of ``ckpt_dir`` with the highest step, counting only
    those at or below ``max_steps`` (a run whose ``max_steps`` was lowered resumes from before it, never from past
    it); None when there is none.

    Why not ``transformers.trainer_utils.get_last_checkpoint`` alone: it has no step bound."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return None
    found = []
    for child in ckpt_dir.iterdir():
        try:
            step = checkpoint_step(child)
        except ValueError:
            continue
        complete = (child / "trainer_state.json").is_file()  # the Trainer writes it last: a killed save has none
        if child.is_dir() and complete and (max_steps is None or step <= max_steps):
            found.append((step, child))
    return str(max(found)[1]) if found else None


def checkpoint_finished(checkpoint: str | Path, max_steps: int | None = None) -> bool:
    """Whether ``checkpoint`` ends the run: its ``trainer_state.json`` step has reached ``max_steps`` when that is
    given (> 0: a run bounded by steps, also one whose bound was lowered onto this checkpoint), else the total the
    run that wrote it planned (``max_steps`` in the state: an epoch-based run). False when the state file is missing
    or unreadable."""
    try:
        state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
        done, planned = int(state["global_step"]), int(state["max_steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    bound = max_steps if max_steps is not None and max_steps > 0 else planned
    return bound > 0 and done >= bound


def load_finished(trainer, checkpoint: str) -> None:
    """Give ``trainer`` the weights and ``TrainerState`` (global step, log history) of ``checkpoint``, a checkpoint
    that ended its run (``checkpoint_finished``), without training; the optimizer is created (not loaded) so its
    parameter groups can be reported.

    Why not ``trainer.train(resume_from_checkpoint=checkpoint)``: in transformers 5.x a resume at the last step
    still runs one more optimizer step (the resumed epoch starts before the step bound is checked;
    ``tests/test_rl.py`` shows it), which would change a finished run's weights. Raises ValueError when the
    checkpoint did not finish a run of ``trainer.args.max_steps`` steps, RuntimeError under FSDP or DeepSpeed
    (their sharded checkpoints load only inside ``train``: raise ``max_steps``, or delete the checkpoint folder to
    retrain)."""
    import os

    from transformers.trainer_callback import TrainerState

    if not checkpoint_finished(checkpoint, trainer.args.max_steps):
        raise ValueError(f"{checkpoint}: not the last checkpoint of a run of max_steps={trainer.args.max_steps}")
    if getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False):
        raise RuntimeError(f"{checkpoint}: its run is finished, and a sharded (FSDP/DeepSpeed) checkpoint loads only "
                           "through train(); raise max_steps, or delete the checkpoint folder to retrain")
    trainer._load_from_checkpoint(checkpoint)  # the Trainer's own loader: safetensors, sharded or not, tied weights
    trainer.state = TrainerState.load_from_json(os.path.join(checkpoint, "trainer_state.json"))
    trainer.create_optimizer()


def train_to_max_steps(trainer, checkpoint: str | None) -> bool:
    """``trainer.train(resume_from_checkpoint=checkpoint)``, unless ``checkpoint`` already ended its run
    (``checkpoint_finished``; by ``max_steps`` or by epochs): then it is loaded without training
    (``trainer.load_finished_checkpoint`` when the trainer has one, else ``load_finished``). Returns True when
    nothing was trained."""
    if checkpoint is not None and checkpoint_finished(checkpoint, trainer.args.max_steps):
        loader = getattr(trainer, "load_finished_checkpoint", None)
        loader(checkpoint) if loader is not None else load_finished(trainer, checkpoint)
        return True
    trainer.train(resume_from_checkpoint=checkpoint)
    return False



def checkpoint_to_resume(ckpt_dir: Path, fingerprint: str, state=None, max_steps: int | None = None) -> str | None:
    """The last checkpoint in ``ckpt_dir`` (at or below ``max_steps`` when given: ``last_checkpoint``) if it was
    written for ``fingerprint``; checkpoints of another configuration are deleted (resuming them would silently
    mix two runs).

    Under ``accelerate launch`` only the main process deletes and stamps; the others wait at a barrier
    (``state.main_process_first``, default ``PartialState()``) and read the folder after it.
    """
    import shutil

    from accelerate import PartialState

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
        return last_checkpoint(ckpt_dir, max_steps)


def save_final_model(trainer, out_dir: Path) -> None:
    """Save the trained model as plain safetensors in ``out_dir``. Under FSDP with ``SHARDED_STATE_DICT``
    ``trainer.save_model`` writes only shards, so the full state dict is gathered to rank 0 (a collective: every
    rank calls this) and saved there."""
    if not getattr(trainer, "is_fsdp_enabled", False):
        trainer.save_model(str(out_dir))
        return
    acc = trainer.accelerator
    state_dict = acc.get_state_dict(trainer.model)  # full, on CPU, rank 0 only
    if acc.is_main_process:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        acc.unwrap_model(trainer.model).save_pretrained(out_dir, state_dict=state_dict, safe_serialization=True)
    acc.wait_for_everyone()

__all__ = ["STAGE_INFO", "checkpoint_finished", "checkpoint_step", "checkpoint_to_resume", "last_checkpoint", "load_finished", "read_stage_info", "save_final_model", "train_to_max_steps",
           "write_stage_info"]
