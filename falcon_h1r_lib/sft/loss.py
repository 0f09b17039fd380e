"""SFT's loss: next-token log-probs of the supervised tokens and their difficulty-weighted mean ([P] §2.2-2.3).

Kept apart from the trainer so the formula can be read and tested without TRL; ``LOSS_VERSION`` enters the SFT
fingerprint, so a change of numerics here retrains a saved model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

LOSS_VERSION = 2  # bump when the loss computation changes numerics (2: plain LM head below 8K vocab)
FUSED_HEAD_MIN_VOCAB = 8192  # below this the (B, T, V) logits are small and the plain head is faster


def weighted_token_loss(
    log_probs: torch.Tensor, label_mask: torch.Tensor, weights: torch.Tensor | None,
    num_items_in_batch: torch.Tensor | int | None = None,
) -> torch.Tensor:
    """sum_i w_i sum_t -log p(y_it) m_it / N, N = ``num_items_in_batch`` (global supervised tokens) or sum m.

    log_probs, label_mask: (B, T) next-token log-probs and supervision mask; weights: (B,) or None (= 1).
    Weights multiply token losses but do not enter N, so x1.75 means "counts 1.75 times" ([P] §2.2).
    """
    if log_probs.shape != label_mask.shape:
        raise ValueError(f"log_probs {tuple(log_probs.shape)} and label_mask {tuple(label_mask.shape)} differ")
    nll = -log_probs * label_mask.to(log_probs.dtype)  # (B, T)
    if weights is not None:
        if weights.shape != (log_probs.shape[0],):
            raise ValueError(f"weights must have shape ({log_probs.shape[0]},), got {tuple(weights.shape)}")
        nll = nll * weights.to(nll.dtype)[:, None]
    n = label_mask.sum() if num_items_in_batch is None else num_items_in_batch
    return nll.sum() / torch.as_tensor(n, device=nll.device).clamp(min=1)


@dataclasses.dataclass
class TokenLogProbs:
    """Per-token outputs the weighted loss and SFTTrainer's metrics need, all (B, T-1)."""

    log_probs: torch.Tensor
    label_mask: torch.Tensor
    entropy: torch.Tensor | None
    is_top1: torch.Tensor | None


def token_log_probs(model, inputs: Mapping[str, Any], vocab_size: int) -> TokenLogProbs:
    """Next-token log-probs of the labels. Large vocabularies (Falcon's 130K) go through TRL's fused, chunked
    LM head, which never holds the (B, T, V) logits; a tiny vocabulary (512) takes the plain head, where the
    fused kernel's chunking and recomputation only cost time (tiny SFT on 2 CPU cores: 9.3 vs 8.9 steps/s)."""
    if vocab_size >= FUSED_HEAD_MIN_VOCAB:
        out = model(**inputs, fused_lm_head=True)
        return TokenLogProbs(out.log_probs, out.label_mask, out.entropy, out.is_top1)
    labels = inputs["labels"][:, 1:]
    logits = model(**{k: v for k, v in inputs.items() if k != "labels"}).logits[:, :-1].float()  # (B, T-1, V)
    mask = labels != -100
    logp = torch.log_softmax(logits, dim=-1)
    log_probs = logp.gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1) * mask
    with torch.no_grad():
        entropy = -(logp.exp() * logp).sum(-1) * mask
        is_top1 = (logits.argmax(-1) == labels) & mask
    return TokenLogProbs(log_probs, mask, entropy, is_top1)


__all__ = ["FUSED_HEAD_MIN_VOCAB", "LOSS_VERSION", "TokenLogProbs", "token_log_probs", "weighted_token_loss"]
