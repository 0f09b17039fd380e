"""TRL's ``SFTTrainer`` with the paper's recipe: difficulty-weighted token loss, a seeded length-grouped sampler
that a resumed run replays, the Table 1 arguments (``sft_config``) and the trainer built over a dataset.

Only training imports this module, so TRL and transformers are imported at its top.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler
from trl import SFTConfig, SFTTrainer
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from falcon_h1r_lib.configs import SFTStageConfig
from falcon_h1r_lib.progress import drop_printer, in_notebook, progress_lines
from falcon_h1r_lib.sft.data import WeightedCollator
from falcon_h1r_lib.sft.loss import token_log_probs, weighted_token_loss


class SeededLengthGroupedSampler(LengthGroupedSampler):
    """transformers' LengthGroupedSampler (mega-batches sorted by length) with a per-epoch seeded generator;
    the Trainer calls ``set_epoch`` before each epoch, also when it resumes mid-epoch."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int) -> None:
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        self.generator = torch.Generator().manual_seed(self.seed + getattr(self, "epoch", 0))
        return super().__iter__()


class WeightedSFTTrainer(SFTTrainer):
    """``SFTTrainer`` whose token losses are multiplied by each sample's difficulty weight."""

    def _get_train_sampler(self, train_dataset=None):
        """Length-grouped batches reshuffled from ``seed + epoch``, so a resumed run replays the same order."""
        dataset = self.train_dataset if train_dataset is None else train_dataset
        if self.args.train_sampling_strategy != "group_by_length" or not hasattr(dataset, "column_names"):
            return super()._get_train_sampler(train_dataset)
        lengths = [len(ids) for ids in dataset["input_ids"]]
        return SeededLengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                          lengths, self.args.data_seed if self.args.data_seed is not None
                                          else self.args.seed)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if "sample_weight" not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, "sample_weight"]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        weights = inputs.pop("sample_weight", None)
        if weights is None or return_outputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        inputs["use_cache"] = False
        outputs = token_log_probs(model, inputs, self.model.config.vocab_size)
        loss = weighted_token_loss(outputs.log_probs, outputs.label_mask, weights, num_items_in_batch)
        # as SFTTrainer / Trainer: num_items_in_batch counts every rank's tokens, DDP averages over ranks
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        self._log_token_metrics(mode, outputs, inputs)
        return loss

    def _log_token_metrics(self, mode: str, outputs, inputs) -> None:
        """The metrics SFTTrainer logs beside the loss: entropy, token accuracy, tokens seen."""
        gather = self.accelerator.gather_for_metrics
        n_valid = gather(outputs.label_mask.sum()).sum()
        if outputs.entropy is not None:
            ent = gather(outputs.entropy.detach().sum()).sum()
            self._metrics[mode]["entropy"].append((ent / n_valid).item() if n_valid > 0 else 0.0)
        if outputs.is_top1 is not None:
            top1 = gather(outputs.is_top1.sum()).sum()
            self._metrics[mode]["mean_token_accuracy"].append((top1 / n_valid).item() if n_valid > 0 else 0.0)
        if mode == "train" and "attention_mask" in inputs:
            self._total_train_tokens += gather(inputs["attention_mask"].sum()).sum().item() // self._tp_size
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]


def sft_config(cfg: SFTStageConfig, output_dir: str | Path, **overrides: Any) -> SFTConfig:
    """TRL ``SFTConfig`` with the stage's Table 1 values (``overrides`` win: tests, ablations)."""
    from falcon_h1r_lib.tokenizer import IM_END

    values = dict(
        output_dir=str(output_dir),
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_ratio=cfg.warmup_ratio,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        weight_decay=cfg.weight_decay,
        adam_beta1=cfg.adam_beta1,
        adam_beta2=cfg.adam_beta2,
        max_grad_norm=cfg.max_grad_norm,
        bf16=cfg.bf16,
        gradient_checkpointing=cfg.gradient_checkpointing,
        use_liger_kernel=cfg.use_liger_kernel,
        average_tokens_across_devices=cfg.average_tokens_across_devices,
        max_length=cfg.max_length,
        truncation_mode="keep_start",  # right-trim, as the paper's over-long samples ([P] Table 1)
        assistant_only_loss=cfg.assistant_only_loss,
        packing=cfg.packing,
        padding_free=False,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to=cfg.report_to,
        eos_token=IM_END,  # TRL mirrors it onto the model's config and generation_config: turns end at <|im_end|>
        dataloader_num_workers=0,
        disable_tqdm=in_notebook(),  # notebooks: progress lines instead of a live bar (progress.progress_lines)
        shuffle_dataset=False,  # the Trainer's seeded sampler shuffles every epoch
    )
    values["warmup_steps"] = values.pop("warmup_ratio")  # transformers 5: a float < 1 is a ratio of the steps
    values.update(overrides)
    return SFTConfig(**values)


def build_trainer(cfg: SFTStageConfig, model, tokenizer, dataset, output_dir: str | Path, callbacks=(),
                  **overrides) -> WeightedSFTTrainer:
    """A ``WeightedSFTTrainer`` over a ``data.sft_dataset`` (tokenized and masked by TRL at construction)."""
    import datasets

    args = sft_config(cfg, output_dir, **overrides)
    model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    collator = WeightedCollator(DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id))
    callbacks = list(callbacks)
    if args.disable_tqdm and in_notebook():
        callbacks.append(progress_lines("SFT"))
    quiet = in_notebook() and datasets.is_progress_bar_enabled()
    if quiet:  # the dataset preparation bars would flood the notebook's output queue too
        datasets.disable_progress_bars()
    try:
        trainer = WeightedSFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                     data_collator=collator, callbacks=callbacks)
    finally:
        if quiet:
            datasets.enable_progress_bars()
    if args.disable_tqdm and in_notebook():
        drop_printer(trainer)
    return trainer


__all__ = ["SeededLengthGroupedSampler", "WeightedSFTTrainer", "build_trainer", "sft_config"]
