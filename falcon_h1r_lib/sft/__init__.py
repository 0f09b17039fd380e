"""Notebook 03's stage: long-CoT SFT through TRL's ``SFTTrainer``, with the paper's recipe ([P] §2.1-2.3, Table 1).

- Data (``data``): the curated rows notebook 02 wrote, as conversations (system, user prompt, assistant trace);
  the loss covers the last assistant turn only, through the chat template's ``{% generation %}`` markers;
  earlier turns lose their ``<think>`` (the template's multi-turn rule, [P] §2.1).
- Difficulty-aware weighting ([P] §2.2, ``loss``): each row's ``weight`` multiplies its tokens' losses
  (``weighted_token_loss``); the sum is still divided by the number of supervised tokens.
- Balanced data-parallel token normalization ([P] §2.3, Fig. 4): transformers already implements it.
  With ``average_tokens_across_devices=True`` the Trainer all-gathers the supervised-token count of the
  global batch (every rank, every accumulation micro-step) as ``num_items_in_batch``, each rank divides
  its summed loss by it and multiplies by the world size R, and DDP / FSDP average gradients over R:
  L_r = R * sum_i l_i m_i / sum_{r'} sum_i m_i, the paper's formula. ``tests/test_dp_balance.py`` proves
  it on 2 gloo processes; we reuse it rather than rewrite it.
- AdamW (wd 0.01), linear schedule with 4% warm-up, grad clip 1.0 (``trainer``); bf16 and gradient checkpointing
  only on GPUs; no padding-free packing on CPU (mamba-ssm is needed to keep packed sequences apart).
- Checkpoints every ``save_steps``; a restarted run resumes from the last one (optimizer, schedule, RNG and
  data order restored), and a finished stage is skipped (``falcon_h1r_lib.checkpoints``). Under FSDP the
  checkpoints stay sharded (resumable); the final model is gathered to rank 0 and saved as plain safetensors.
- The base model (``base``): tiny pretrains one here (``pretrain``); full loads Falcon-H1-7B-Base, checks it
  against Table 8 and its µP multipliers (one AdamW rate for every parameter group, the µP scaling lives in the
  forward multipliers), and asserts ranks x per-device x accumulation = ``global_batch_size`` (Table 1: 512).
- The rows are tokenized once: rank 0 writes them to disk under the run folder and TRL tokenizes them first;
  the other ranks read the same ``datasets`` cache (``data.sft_dataset_on_disk``).
- ``report``: base vs SFT accuracy through notebook 05's harness, and the notebook's tables.

``run(cfg)`` in process; ``python -m falcon_h1r_lib.sft --config FILE`` (also under
``accelerate launch --config_file falcon_h1r_lib/profiles/accelerate/fsdp.yaml``). Importing this package is
light: the submodules (torch, TRL) load on first use.
"""

from __future__ import annotations

from typing import Any


def run(cfg) -> dict[str, Any]:
    """See ``stage.run``: base model then SFT; writes ``runs/<profile>/03_sft/`` and its ``metrics.json``."""
    from falcon_h1r_lib.sft.stage import run as _run

    return _run(cfg)


__all__ = ["run"]
