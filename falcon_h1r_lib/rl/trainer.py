"""TRL's GRPOTrainer plus the two pieces of the paper's recipe it lacks ([P] §3.1), as a small subclass.

1. **Auxiliary cross-entropy on positive samples only** (as in Seed1.5-Thinking): the SFT loss
   ``-sum log pi(o_t)`` over the tokens of completions that are verified correct and well formed, added
   as ``aux_ce_coef * L_aux``. Normalised like the policy loss of ``loss_type="dapo"``: by the positive
   tokens of the whole generation batch, so micro-batches and ranks weigh every positive token the same.
   Negative and unscorable samples get exactly zero gradient from it (a test checks).
2. **Backfilling of zero-advantage groups with a bounded cache** (``rl.backfill``): each step keeps only
   groups with a non-zero advantage; missing ones come first from the cache of surplus groups, then from
   refill rounds over later prompts (at most ``max_rounds`` generation calls per step); a refill round's
   surplus goes to the cache. Cached groups carry the log-probs of the policy that sampled them
   (``old_per_token_logps``), so the clipped ratio treats them as the slightly off-policy data they are.
   Each rank fills its own share of the step from its own cache of ``cache_size / world_size`` groups, kept
   in host memory; refill rounds run on every rank while any rank is short, and the counters are summed
   over ranks (``rl.backfill.BackfillStats``).

Everything else (clip-higher, beta = 0, no entropy bonus, group-normalised advantages, TIS on the vLLM
path, loss aggregation) is TRL's own, set through ``GRPOConfig`` by ``rl.stage.grpo_config``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from trl import GRPOTrainer

from falcon_h1r_lib.rl.backfill import (
    BackfillStats,
    GroupCache,
    PromptStream,
    group_has_signal,
    merge_groups,
    per_rank_cache_size,
    split_groups,
)

BACKFILL_STATE = "backfill_state.json"  # written into every checkpoint folder (JSON, no pickle)


def positive_ce_loss(per_token_logps: torch.Tensor, mask: torch.Tensor, positive: torch.Tensor,
                     normalizer: torch.Tensor | float) -> torch.Tensor:
    """``-sum_{i positive, t} log pi(o_{i,t}) / normalizer``; per_token_logps, mask (B, T), positive (B,)."""
    weights = mask * positive.to(mask.dtype).unsqueeze(1)  # (B, T): 0 on every token of a non-positive row
    return -(per_token_logps * weights).sum() / torch.as_tensor(normalizer).clamp(min=1.0)


class FalconGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer(...)`` with ``aux_ce_coef`` ([P] §3.1, coefficient not given) and backfilling.

    backfill: drop zero-advantage groups and refill; cache_size: surplus groups kept over all ranks (0 = discard
    them, DAPO dynamic sampling), each rank caching cache_size / world_size on the CPU; cache_max_age: optimizer
    steps a cached group may wait; max_rounds: generation calls per step at most (then the batch is topped up
    with zero-advantage groups, counted as unfilled).
    """

    def __init__(self, *args: Any, aux_ce_coef: float = 0.0, backfill: bool = False, cache_size: int = 0,
                 cache_max_age: int = 1, max_rounds: int = 4, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if aux_ce_coef < 0 or max_rounds < 1:
            raise ValueError(f"aux_ce_coef must be >= 0 and max_rounds >= 1, got {aux_ce_coef}, {max_rounds}")
        self.aux_ce_coef = float(aux_ce_coef)
        self.backfill = bool(backfill)
        self.max_rounds = int(max_rounds)
        self.group_cache = GroupCache(per_rank_cache_size(cache_size, self.accelerator.num_processes), cache_max_age)
        self.backfill_stats = BackfillStats()
        self._positive_source = next((f for f in self.reward_funcs if hasattr(f, "last_positive")), None)
        if self.aux_ce_coef > 0 and self._positive_source is None:
            raise ValueError("aux_ce_coef > 0 needs a reward function exposing `last_positive` (rl.rewards)")
        self._stream: PromptStream | None = None
        self._stream_start = 0
        self._grad_logps: torch.Tensor | None = None

    # ---------------------------------------------------------------- scoring and backfilling

    def _score_round(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """TRL's generate-and-score for one round, plus ``positive`` flags and behaviour log-probs."""
        out = super()._generate_and_score_completions(rows)
        device = self.accelerator.device
        if self._positive_source is not None:
            flags = list(self._positive_source.last_positive)
            if len(flags) != len(rows):
                raise RuntimeError(f"reward function flagged {len(flags)} samples for {len(rows)} completions")
            out["positive"] = torch.tensor(flags, dtype=torch.bool, device=device)
        if self.backfill and self.group_cache.capacity > 0 and out.get("old_per_token_logps") is None:
            # cached groups are replayed after later updates: keep the sampling policy's log-probs
            ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
            attn = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
            with torch.no_grad():
                out["old_per_token_logps"], _, _ = self._get_per_token_logps_and_entropies(
                    self.model, ids, attn, out["completion_ids"].size(1),
                    batch_size=self.args.per_device_train_batch_size)
        return out

    def _loss_mask(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = batch["completion_mask"]
        return mask * batch["tool_mask"] if batch.get("tool_mask") is not None else mask

    def _with_totals(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """(Re)compute the batch-wide token counts the dapo-style normalisers divide by (all ranks)."""
        mask = self._loss_mask(batch)
        batch["num_items_in_batch"] = self.accelerator.gather(mask.sum()).sum()
        if batch.get("positive") is not None:
            pos = (mask * batch["positive"].to(mask.dtype).unsqueeze(1)).sum()
            batch["num_positive_tokens"] = self.accelerator.gather(pos).sum()
        return batch

    def _per_rank(self, *counts: int) -> torch.Tensor:
        """(world_size, len(counts)) int64 on the CPU: these counts of every rank (a collective: all ranks call)."""
        t = torch.tensor([counts], dtype=torch.long, device=self.accelerator.device)
        return self.accelerator.gather(t).view(-1, len(counts)).cpu()

    def _refill_rows(self, n_prompts: int) -> list[dict[str, Any]]:
        if self._stream is None:
            seed = f"{self.args.seed}|rank{self.accelerator.process_index}"
            self._stream = PromptStream(self.train_dataset, seed=seed, start=self._stream_start)
        g = self.num_generations
        return [dict(row) for row in self._stream.take(n_prompts) for _ in range(g)]

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not (self.backfill and self.model.training):
            return self._with_totals(self._score_round(inputs))
        g, stats, step = self.num_generations, self.backfill_stats, self.state.global_step
        need = len(inputs) // g
        if need * g != len(inputs):
            raise ValueError(f"backfill: local generation batch of {len(inputs)} rows is not whole groups of {g}")
        kept: list[dict[str, torch.Tensor]] = []
        filler: list[dict[str, torch.Tensor]] = []
        rows, rounds, from_cache = inputs, 0, 0
        while True:
            batch = self._score_round(rows)
            rounds += 1
            groups = split_groups(batch, g)
            valid = group_has_signal(batch["advantages"], g).tolist()
            for group, ok in zip(groups, valid):
                if not ok:
                    if rounds == 1:
                        filler.append(group)
                elif len(kept) < need:
                    kept.append(group)
                else:
                    self.group_cache.put(group, step)
            if rounds == 1 and len(kept) < need:  # fresh groups first, then the cache, then refill rounds
                device = batch["advantages"].device
                cached = [{k: v.to(device) for k, v in grp.items()}
                          for grp in self.group_cache.take(need - len(kept), step)]
                from_cache += len(cached)
                kept += cached
            counts = self._per_rank(len(groups), int(sum(valid)), int(len(kept) < need))  # (world, 3)
            stats.round_yields.append(counts[:, 1].tolist())
            stats.groups_generated += int(counts[:, 0].sum())
            stats.groups_valid += int(counts[:, 1].sum())
            if not counts[:, 2].any() or rounds >= self.max_rounds:
                break
            rows = self._refill_rows(need)
        unfilled = need - len(kept)
        kept += filler[:unfilled]
        totals = self._per_rank(from_cache, unfilled).sum(dim=0)
        stats.steps += 1
        stats.rounds += rounds
        stats.groups_from_cache += int(totals[0])
        stats.groups_unfilled += int(totals[1])
        stats.cache_evicted, stats.cache_expired = self.group_cache.evicted, self.group_cache.expired
        metrics = self._metrics["train"]
        metrics["backfill/rounds"].append(float(rounds))
        metrics["backfill/from_cache"].append(from_cache / need)
        metrics["backfill/unfilled"].append(unfilled / need)
        metrics["backfill/cache_size"].append(float(len(self.group_cache)))
        return self._with_totals(merge_groups(kept, self._tokenizer.pad_token_id))

    # ---------------------------------------------------------------- loss

    def _get_per_token_logps_and_entropies(self, model, *args: Any, **kwargs: Any):
        out = super()._get_per_token_logps_and_entropies(model, *args, **kwargs)
        if torch.is_grad_enabled():  # the policy forward of _compute_loss: reuse it for the aux term
            self._grad_logps = out[0]
        return out

    def _compute_loss(self, model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        self._grad_logps = None
        loss = super()._compute_loss(model, inputs)
        if self.aux_ce_coef == 0:
            return loss
        if self._grad_logps is None:
            raise RuntimeError("aux CE: the policy log-probs were not computed with gradients")
        mode = "train" if self.model.training else "eval"
        normalizer = inputs["num_positive_tokens"].float().clamp(min=1.0) / self.accelerator.num_processes
        if mode == "train":
            normalizer = normalizer * self.current_gradient_accumulation_steps / self.args.steps_per_generation
        mask = self._loss_mask(inputs)
        aux = positive_ce_loss(self._grad_logps, mask, inputs["positive"], normalizer)
        self._grad_logps = None
        n_pos = (mask * inputs["positive"].to(mask.dtype).unsqueeze(1)).sum()
        mean_ce = (aux.detach() * normalizer / n_pos.clamp(min=1.0)) if n_pos > 0 else torch.tensor(float("nan"))
        self._metrics[mode]["aux_ce/mean_token_nll"].append(self.accelerator.gather(mean_ce.reshape(1)).nanmean().item())
        self._metrics[mode]["aux_ce/positive_frac"].append(inputs["positive"].float().mean().item())
        return loss + self.aux_ce_coef * aux

    # ---------------------------------------------------------------- resume

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
            state = {"stats": self.backfill_stats.to_dict(),
                     "stream_consumed": self._stream.consumed if self._stream is not None else self._stream_start}
            path = os.path.join(folder, BACKFILL_STATE)
            with open(path + ".tmp", "w") as fh:
                json.dump(state, fh)
            os.replace(path + ".tmp", path)  # atomic: a killed save never leaves half a file

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        self._load_backfill_state(checkpoint)

    def _load_backfill_state(self, checkpoint: str | None) -> None:
        path = os.path.join(checkpoint, BACKFILL_STATE) if checkpoint else None
        if path and os.path.exists(path):
            with open(path) as fh:
                state = json.load(fh)
            self.backfill_stats = BackfillStats.from_dict(state["stats"])
            self._stream_start, self._stream = int(state["stream_consumed"]), None
            self.group_cache.clear()  # cached rollouts are not checkpointed: resume refills from the stream

    def load_finished_checkpoint(self, checkpoint: str) -> None:
        """``checkpoints.load_finished`` (weights and ``TrainerState`` of a checkpoint that ended its run, without
        training) plus the backfill counters and prompt-stream position saved with it."""
        from falcon_h1r_lib.checkpoints import load_finished

        load_finished(self, checkpoint)
        self._load_backfill_state(checkpoint)


__all__ = ["BACKFILL_STATE", "FalconGRPOTrainer", "positive_ce_loss"]
