"""Long-CoT SFT through TRL's ``SFTTrainer``, with the paper's recipe ([P] §2.1-2.3, Table 1).

- Data: the curated rows of notebook 02 as conversations (system, user prompt, assistant trace); the loss
  covers the last assistant turn only, through the chat template's ``{% generation %}`` markers; earlier
  turns lose their ``<think>`` (the template's multi-turn rule, [P] §2.1).
- Difficulty-aware weighting ([P] §2.2): each row's ``weight`` multiplies its tokens' losses
  (``weighted_token_loss``); the sum is still divided by the number of supervised tokens.
- Balanced data-parallel token normalization ([P] §2.3, Fig. 4): transformers already implements it.
  With ``average_tokens_across_devices=True`` the Trainer all-gathers the supervised-token count of the
  global batch (every rank, every accumulation micro-step) as ``num_items_in_batch``, each rank divides
  its summed loss by it and multiplies by the world size R, and DDP / FSDP average gradients over R:
  L_r = R * sum_i l_i m_i / sum_{r'} sum_i m_i, the paper's formula. ``tests/test_dp_balance.py`` proves
  it on 2 gloo processes; we reuse it rather than rewrite it.
- AdamW (wd 0.01), linear schedule with 4% warm-up, grad clip 1.0; bf16 and gradient checkpointing only
  on GPUs; no padding-free packing on CPU (mamba-ssm is needed to keep packed sequences apart).
- Checkpoints every ``save_steps``; a restarted run resumes from the last one (optimizer, schedule, RNG and
  data order restored), and a finished stage is skipped. Under FSDP the checkpoints stay sharded (resumable);
  the final model is gathered to rank 0 and saved as plain safetensors (``save_final_model``).
- The global batch is asserted: ranks x per-device x accumulation must equal ``global_batch_size`` (Table 1: 512).
- Learning rate: one AdamW rate for every parameter group; the µP scaling lives in the base model's forward
  multipliers, which the full path checks are there (``check_mup``, ``param_group_learning_rates``).
- The rows are tokenized once: rank 0 writes them to disk under the run folder and TRL tokenizes them first;
  the other ranks read the same ``datasets`` cache (``sft_dataset_on_disk``).

``run(cfg)`` in process; ``python -m falcon_h1r_lib.train.sft --config FILE`` (also under
``accelerate launch --config_file falcon_h1r_lib/profiles/accelerate/fsdp.yaml``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from falcon_h1r_lib.config import ConfigError, SFTStageConfig, is_tiny, load_config, resolve_path

TINY_TOKENIZER = "runs/{profile}/02_data_curation/tokenizer"


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def system_prompt(cfg: SFTStageConfig) -> str:
    from falcon_h1r_lib.tokenizer import FALCON_SYSTEM_PROMPT, TINY_SYSTEM_PROMPT

    return TINY_SYSTEM_PROMPT if cfg.system_prompt == "tiny" else FALCON_SYSTEM_PROMPT


def conversation(row: Mapping[str, Any], system: str) -> list[dict[str, str]]:
    """A curated row as a chat: earlier turns (``row["history"]``, if any) then the prompt and its trace."""
    history = list(row.get("history") or [])
    return [{"role": "system", "content": system}, *history,
            {"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["response"]}]


def sft_dataset(rows: Sequence[Mapping[str, Any]], system: str, weighting: bool = True):
    """A ``datasets.Dataset`` of ``messages`` + ``sample_weight`` (1.0 everywhere when ``weighting`` is off)."""
    from datasets import Dataset

    if not rows:
        raise ValueError("sft_dataset: no SFT rows (run notebook 02 first)")
    weights = []
    for i, r in enumerate(rows):
        w = float(r.get("weight", 1.0)) if weighting else 1.0
        if not w > 0:
            raise ValueError(f"SFT row {i} ({r.get('id')!r}): weight must be > 0, got {w}")
        weights.append(w)
    return Dataset.from_dict({"messages": [conversation(r, system) for r in rows], "sample_weight": weights})


def sft_dataset_on_disk(rows: Sequence[Mapping[str, Any]], system: str, weighting: bool, root: Path, state=None):
    """``sft_dataset`` saved once under ``root/<content hash>`` by the main process and loaded by every rank.

    A disk-backed dataset gets ``datasets`` cache files, so TRL's tokenization (run by rank 0 first, then by the
    others) is computed once and read back by the other ranks; an in-memory dataset would be tokenized per rank.
    """
    from accelerate import PartialState
    from datasets import load_from_disk

    state = PartialState() if state is None else state
    blob = json.dumps({"rows": list(rows), "system": system, "weighting": weighting}, sort_keys=True, default=str)
    path = Path(root) / hashlib.sha256(blob.encode()).hexdigest()[:16]
    with state.main_process_first():
        if state.is_main_process and not (path / "dataset_info.json").exists():
            tmp = path.with_name(path.name + ".tmp")
            if tmp.exists():
                import shutil

                shutil.rmtree(tmp)
            sft_dataset(rows, system, weighting).save_to_disk(str(tmp))
            tmp.rename(path)
        return load_from_disk(str(path))


@dataclasses.dataclass
class WeightedCollator:
    """TRL's padding collator plus a ``sample_weight`` tensor (B,) read from each example."""

    base: Any  # trl DataCollatorForLanguageModeling

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.base([{k: v for k, v in e.items() if k != "sample_weight"} for e in examples])
        batch["sample_weight"] = torch.tensor([float(e.get("sample_weight", 1.0)) for e in examples],
                                              dtype=torch.float32)
        return batch


# --------------------------------------------------------------------------------------------
# Loss
# --------------------------------------------------------------------------------------------


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


FUSED_HEAD_MIN_VOCAB = 8192  # below this the (B, T, V) logits are small and the plain head is faster


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


def _seeded_length_sampler(batch_size: int, lengths: list[int], seed: int):
    """transformers' LengthGroupedSampler (mega-batches sorted by length) with a per-epoch seeded generator;
    the Trainer calls ``set_epoch`` before each epoch, also when it resumes mid-epoch."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    class SeededLengthGroupedSampler(LengthGroupedSampler):
        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __iter__(self):
            self.generator = torch.Generator().manual_seed(seed + getattr(self, "epoch", 0))
            return super().__iter__()

    return SeededLengthGroupedSampler(batch_size, lengths=lengths)


def _make_trainer_class():
    from trl import SFTTrainer

    class WeightedSFTTrainer(SFTTrainer):
        """``SFTTrainer`` whose token losses are multiplied by each sample's difficulty weight."""

        def _get_train_sampler(self, train_dataset=None):
            """Length-grouped batches reshuffled from ``seed + epoch``, so a resumed run replays the same order."""
            dataset = self.train_dataset if train_dataset is None else train_dataset
            if self.args.train_sampling_strategy != "group_by_length" or not hasattr(dataset, "column_names"):
                return super()._get_train_sampler(train_dataset)
            lengths = [len(ids) for ids in dataset["input_ids"]]
            return _seeded_length_sampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
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

    return WeightedSFTTrainer


def __getattr__(name: str):
    """``WeightedSFTTrainer`` is built on first use, so importing this module does not import TRL."""
    if name == "WeightedSFTTrainer":
        cls = _make_trainer_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)


# --------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------


def sft_config(cfg: SFTStageConfig, output_dir: str | Path, **overrides: Any):
    """TRL ``SFTConfig`` with the stage's Table 1 values (``overrides`` win: tests, ablations)."""
    from trl import SFTConfig

    from falcon_h1r_lib.tokenizer import IM_END
    from falcon_h1r_lib.train.pretrain import in_notebook

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
        disable_tqdm=in_notebook(),  # notebooks: progress lines instead of a live bar (see pretrain.progress_lines)
        shuffle_dataset=False,  # the Trainer's seeded sampler shuffles every epoch
    )
    values["warmup_steps"] = values.pop("warmup_ratio")  # transformers 5: a float < 1 is a ratio of the steps
    values.update(overrides)
    return SFTConfig(**values)


def build_trainer(cfg: SFTStageConfig, model, tokenizer, dataset, output_dir: str | Path, callbacks=(), **overrides):
    """A ``WeightedSFTTrainer`` over a ``sft_dataset`` (tokenized and masked by TRL at construction)."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from falcon_h1r_lib.train.pretrain import _drop_printer, in_notebook, progress_lines

    args = sft_config(cfg, output_dir, **overrides)
    model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    collator = WeightedCollator(DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id))
    trainer_cls = __getattr__("WeightedSFTTrainer")
    callbacks = list(callbacks)
    if args.disable_tqdm and in_notebook():
        callbacks.append(progress_lines("SFT"))
    import datasets

    quiet = in_notebook() and datasets.is_progress_bar_enabled()
    if quiet:  # the dataset preparation bars would flood the notebook's output queue too
        datasets.disable_progress_bars()
    try:
        trainer = trainer_cls(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                              data_collator=collator, callbacks=callbacks)
    finally:
        if quiet:
            datasets.enable_progress_bars()
    if args.disable_tqdm and in_notebook():
        _drop_printer(trainer)
    return trainer


# --------------------------------------------------------------------------------------------
# Base model
# --------------------------------------------------------------------------------------------


def paths(cfg: SFTStageConfig) -> dict[str, Path]:
    run = cfg.run_dir()
    return {"run": run, "base": run / "base", "sft": run / "sft", "checkpoints": run / "checkpoints",
            "eval": run / "eval"}


def local_or_hub(name_or_path: str) -> str:
    """``generation.backend.path_or_id`` (a local folder, else the Hub id); a missing ``runs/`` or absolute base
    folder raises ConfigError naming the stand-in writer."""
    from falcon_h1r_lib.generation.backend import path_or_id

    try:
        return path_or_id(name_or_path)
    except FileNotFoundError as err:
        raise ConfigError(f"{err}; the rehearsal's stand-in base is written by "
                          f"`python -m falcon_h1r_lib.models.standin --out {name_or_path}`") from err


def tokenizer_path(cfg: SFTStageConfig) -> str:
    if cfg.tokenizer_name_or_path:
        return local_or_hub(cfg.tokenizer_name_or_path)
    if cfg.profile == "tiny" or not cfg.base_model_name_or_path:
        return str(resolve_path(TINY_TOKENIZER.format(profile=cfg.profile)))
    return local_or_hub(cfg.base_model_name_or_path)


def load_sft_tokenizer(cfg: SFTStageConfig):
    """Tiny: notebook 02's tokenizer. Full: the base model's, with our chat template (generation markers)."""
    from falcon_h1r_lib.tokenizer import load_falcon_tokenizer, load_tokenizer

    path = tokenizer_path(cfg)
    if Path(path).is_dir() and not cfg.base_model_name_or_path:
        return load_tokenizer(path)
    return load_falcon_tokenizer(path, revision=cfg.base_model_revision, force_chat_template=True)


def check_base_config(config, standin: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The base config against the paper's Table 8 fields; raises naming the fields that differ.

    A stand-in (``models.standin``, its ``standin.json`` record given) is checked against the 7B preset scaled by
    the dial it records, on the same fields and the exact parameter count; the rows keep the paper's 7B value.
    """
    from falcon_h1r_lib.models.accounting import count_parameters
    from falcon_h1r_lib.models.compare import TABLE8_FIELDS, table8_comparison
    from falcon_h1r_lib.paper_results import load_paper_results

    table8 = load_paper_results()["tables"]["table8_architecture"]["values"]
    reference, against = table8, "the Falcon-H1R-7B preset (paper Table 8)"
    if standin is not None:
        from falcon_h1r_lib.models.standin import expected_config

        want = expected_config(standin)
        reference = {k: getattr(want, f) for k, f in TABLE8_FIELDS.items()}
        reference["total_parameters_billions"] = count_parameters(want) / 1e9
        against = f"the 7B preset scaled by the dial {standin['dial']} (stand-in for {standin['stands_in_for']})"
    df = table8_comparison(config, reference)
    if standin is not None:  # exact count, and the paper's 7B value beside it
        df.loc[df["quantity"] == "total_parameters", "match"] = count_parameters(config) == count_parameters(want)
        df.insert(2, "7B (Table 8)", [table8[q] if q in table8 else f"{table8['total_parameters_billions']}B"
                                      for q in df["quantity"]])
    bad = df[~df["match"].astype(bool)]
    if len(bad):
        raise ConfigError(f"base model config differs from {against} on "
                          + ", ".join(f"{r.quantity}: expected {r['paper (Table 8)']} vs {r.preset}"
                                      for _, r in bad.iterrows()))
    return json.loads(df.to_json(orient="records"))


# µP forward multipliers of FalconH1Config ([P] App. B; the Falcon-H1 report tunes 35 of them)
MUP_MULTIPLIERS = ("embedding_multiplier", "lm_head_multiplier", "attention_in_multiplier", "attention_out_multiplier",
                   "key_multiplier", "ssm_in_multiplier", "ssm_out_multiplier", "mlp_multipliers", "ssm_multipliers")


def mup_multipliers(config) -> dict[str, Any]:
    """The config's µP multipliers that differ from 1.0 (an empty dict: a model without µP)."""
    out = {}
    for name in MUP_MULTIPLIERS:
        value = getattr(config, name, None)
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(v is not None and not math.isclose(float(v), 1.0) for v in values):
            out[name] = list(value) if isinstance(value, (list, tuple)) else value
    return out


def check_mup(config, cfg: SFTStageConfig) -> dict[str, Any]:
    """The full path trains at the paper's µP rate (Table 1: 1024e-6); refuse a base model without µP multipliers.

    Falcon-H1's µP lives in the forward multipliers of the released config, so one AdamW rate for every group is
    the recipe only on a model that carries them. Returns the non-trivial multipliers; tiny (no µP) is not checked.
    """
    found = mup_multipliers(config)
    if not is_tiny(cfg.profile) and not found:
        raise ConfigError(f"{cfg.STAGE}: learning_rate {cfg.learning_rate:g} is the paper's µP rate, but the base model "
                          f"{cfg.base_model_name_or_path!r} has every µP multiplier at 1.0 ({', '.join(MUP_MULTIPLIERS)})"
                          "; load the released Falcon-H1 config or lower the learning rate")
    return found


def param_group_learning_rates(optimizer) -> list[dict[str, Any]]:
    """The peak learning rate each optimizer group gets: [{group, learning_rate, weight_decay, tensors, parameters}].

    Every group gets the same rate: Falcon-H1's per-group µP rates are not public (not in the paper), and its µP
    forward multipliers live in the model config (``check_mup``), so the paper's 1024e-6 is one AdamW rate.
    """
    return [{"group": i, "learning_rate": float(g.get("initial_lr", g["lr"])), "weight_decay": float(g["weight_decay"]),
             "tensors": len(g["params"]), "parameters": int(sum(p.numel() for p in g["params"]))}
            for i, g in enumerate(optimizer.param_groups)]


def check_global_batch(cfg: SFTStageConfig, world_size: int, per_device: int | None = None,
                       accumulation: int | None = None) -> int:
    """ranks x per-device x accumulation must equal ``cfg.global_batch_size`` (paper Table 1: 512); raises naming them."""
    per_device = cfg.per_device_train_batch_size if per_device is None else per_device
    accumulation = cfg.gradient_accumulation_steps if accumulation is None else accumulation
    got = world_size * per_device * accumulation
    if got != cfg.global_batch_size:
        raise ConfigError(f"{cfg.STAGE}: global batch {world_size} ranks x {per_device} per device x {accumulation} "
                          f"accumulation = {got}, but global_batch_size is {cfg.global_batch_size}; change the sizing "
                          "(per_device_train_batch_size, gradient_accumulation_steps) or the number of processes")
    return got


def load_base(cfg: SFTStageConfig, tokenizer, exclude_prompts=()) -> tuple[str, dict[str, Any]]:
    """(path of the base model, its info). Tiny: pretrain it here (skipped when done). Full: the Hub model,
    its config checked against Table 8."""
    from falcon_h1r_lib.train.pretrain import pretrain_base

    if cfg.base_model_name_or_path:
        from falcon_h1r_lib.models.standin import read_standin

        source = local_or_hub(cfg.base_model_name_or_path)
        info: dict[str, Any] = {"source": cfg.base_model_name_or_path, "revision": cfg.base_model_revision}
        standin = read_standin(source) if Path(source).is_dir() else None
        if standin is not None:
            info["standin"] = standin
        if cfg.check_base_config:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(source, revision=cfg.base_model_revision)
            info["table8_check"] = check_base_config(config, standin)
            info["table8_check_against"] = (f"7B preset scaled by dial {standin['dial']}" if standin
                                            else "paper Table 8")
        return source, info
    p = paths(cfg)
    info = pretrain_base(cfg, tokenizer, tokenizer_path(cfg), p["base"], exclude_prompts=exclude_prompts,
                         system_prompt=system_prompt(cfg))
    return str(p["base"]), info


def load_model(path: str, cfg: SFTStageConfig):
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if cfg.bf16 else torch.float32
    local = resolve_path(path)
    source = str(local) if local.exists() else path
    return AutoModelForCausalLM.from_pretrained(source, revision=None if local.exists() else cfg.base_model_revision,
                                                dtype=dtype)


def token_counts(dataset, column: str = "labels") -> tuple[int, int]:
    """(tokens, supervised tokens != -100) of a tokenized dataset's ``column``, read chunk by chunk from its Arrow
    table with numpy: bounded memory and C speed at the paper's ~30 GT per epoch (a Python loop would take hours)."""
    import numpy as np

    tokens = supervised = 0
    for batch in dataset.select_columns([column]).with_format("arrow").iter(batch_size=4096):  # honours select()
        for chunk in batch.column(column).chunks:
            values = chunk.flatten().to_numpy(zero_copy_only=False)
            tokens += int(values.size)
            supervised += int(np.count_nonzero(values != -100))
    return tokens, supervised


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


# --------------------------------------------------------------------------------------------
# Stage
# --------------------------------------------------------------------------------------------


LOSS_VERSION = 2  # bump when the loss computation changes numerics (2: plain LM head below 8K vocab)


def sft_fingerprint(cfg: SFTStageConfig, base_info: Mapping[str, Any]) -> str:
    """What the SFT model depends on (config minus the evaluation keys, the base model, the loss code)."""
    keys = {k: v for k, v in cfg.to_dict().items() if not k.startswith("eval_")}
    blob = json.dumps({"cfg": keys, "base": base_info.get("fingerprint") or base_info.get("source"),
                       "loss": LOSS_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def train_sft(cfg: SFTStageConfig, base_path: str, base_info: Mapping[str, Any], tokenizer, rows,
              callbacks=(), **overrides) -> dict[str, Any]:
    """SFT from ``base_path`` on ``rows``; saves ``sft/`` (model + tokenizer); skipped when already done."""
    from accelerate import PartialState

    from falcon_h1r_lib.kernels import patch_falcon_h1
    from falcon_h1r_lib.metrics import Stopwatch
    from falcon_h1r_lib.train.pretrain import (
        checkpoint_to_resume,
        loss_log,
        read_stage_info,
        write_stage_info,
    )

    p = paths(cfg)
    fingerprint = sft_fingerprint(cfg, base_info)
    info = read_stage_info(p["sft"])
    if info is not None and info.get("fingerprint") == fingerprint and not overrides:
        return {**info, "skipped": True}
    state = PartialState()
    global_batch = check_global_batch(cfg, state.num_processes, overrides.get("per_device_train_batch_size"),
                                      overrides.get("gradient_accumulation_steps"))  # before loading a 7B model
    clock = Stopwatch()
    patch_falcon_h1()
    model = load_model(base_path, cfg)
    mup = check_mup(model.config, cfg)
    dataset = sft_dataset_on_disk(rows, system_prompt(cfg), cfg.difficulty_weighting, p["run"] / "data", state)
    trainer = build_trainer(cfg, model, tokenizer, dataset, p["checkpoints"], callbacks, **overrides)
    last = checkpoint_to_resume(p["checkpoints"], fingerprint, state)
    trainer.train(resume_from_checkpoint=last)
    save_final_model(trainer, p["sft"])
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(p["sft"])
    tokens, supervised = token_counts(trainer.train_dataset)
    info = {
        "fingerprint": fingerprint,
        "wall_time_s": round(clock.seconds(), 3),
        "resumed_from": Path(last).name if last else None,
        "steps": int(trainer.state.global_step),
        "epochs": float(trainer.state.epoch or 0.0),
        "rows": len(rows),
        "supervised_tokens_per_epoch": supervised,
        "tokens_per_epoch": tokens,
        "global_batch": global_batch,
        "world_size": int(trainer.args.world_size),
        "mup_multipliers": mup,
        "param_groups": param_group_learning_rates(trainer.optimizer),
        "loss_log": loss_log(trainer.state.log_history),
    }
    if trainer.is_world_process_zero():
        write_stage_info(p["sft"], info)
    return {**info, "skipped": False}


def eval_prompts_to_exclude(cfg: SFTStageConfig) -> list[str]:
    """Held-out prompts the tiny base corpus must not contain (the curation's evaluation sets)."""
    if cfg.profile != "tiny" or cfg.base_model_name_or_path:
        return []
    from falcon_h1r_lib.data import splits

    cur = load_config("02_data_curation", cfg.profile)
    return [p["prompt"] for rows in splits.tiny_eval_sets(cur.eval_problems_per_domain).values() for p in rows]


def load_sft_rows(cfg: SFTStageConfig) -> tuple[list[dict], list[str]]:
    """(curated SFT rows, the manifest read); tiny builds notebook 02's outputs first when missing."""
    from falcon_h1r_lib.data import build

    cur = load_config("02_data_curation", cfg.profile)
    if cfg.profile == "tiny":
        build.run(cur)  # skips when present and matching
    return build.load_output(cur, "sft"), [str(build.manifest_path(cur, "sft"))]


def run(cfg: SFTStageConfig) -> dict[str, Any]:
    """Base model then SFT; writes ``runs/<profile>/03_sft/{base,sft}`` and ``metrics.json`` (training part).

    ``evaluate_base_and_sft`` adds the accuracies to the same record.
    """
    from falcon_h1r_lib.metrics import Stopwatch, read_metrics, write_metrics

    clock = Stopwatch()
    rows, reads = load_sft_rows(cfg)
    tokenizer = load_sft_tokenizer(cfg)
    base_path, base_info = load_base(cfg, tokenizer, eval_prompts_to_exclude(cfg))
    sft_info = train_sft(cfg, base_path, base_info, tokenizer, rows)
    metrics: dict[str, Any] = {
        "base_model": base_path,
        "sft_model": str(paths(cfg)["sft"]),
        "pretrain": base_info,
        "sft": sft_info,
        "wall_time_s": {"pretrain": base_info.get("wall_time_s"), "sft": sft_info["wall_time_s"]},
    }
    try:  # keep an evaluation already recorded for these very models
        old = read_metrics(cfg.STAGE, cfg.profile)["metrics"]
        if old.get("sft", {}).get("fingerprint") == sft_info["fingerprint"] and "evaluation" in old:
            metrics["evaluation"] = old["evaluation"]
            metrics.update({k: old[k] for k in ("base_accuracy", "sft_accuracy", "base_accuracy_ci", "sft_accuracy_ci",
                                                "eval_counts", "eval_wall_time_s") if k in old})
    except (ConfigError, KeyError):
        pass
    if int(os.environ.get("RANK", "0")) == 0:  # one writer under accelerate launch
        write_metrics(cfg, metrics, wall_time_s=clock.seconds(), reads=reads + [tokenizer_path(cfg)])
    return metrics


# --------------------------------------------------------------------------------------------
# Base vs SFT evaluation (through the evaluation harness)
# --------------------------------------------------------------------------------------------


def evaluation_config(cfg: SFTStageConfig, benchmark: str, n_problems: int):
    """Notebook 05's settings (temperature 0.6, top-p 0.95, [P] §4.1) for one benchmark, with our system turn."""
    return dataclasses.replace(load_config("05_evaluation", cfg.profile), benchmarks=(benchmark,),
                               max_problems=n_problems, samples_per_problem=cfg.eval_samples_per_problem,
                               system_prompt=system_prompt(cfg), batch_size=cfg.eval_batch_size, seed=cfg.seed)


def evaluate_base_and_sft(cfg: SFTStageConfig, models: Mapping[str, str] | None = None) -> dict[str, Any]:
    """pass@1 (with bootstrap CI) of the base and SFT models on ``cfg.eval_problems``; stored in metrics.json.

    Returns {"base_accuracy": {domain: p}, "sft_accuracy": {...}, "evaluation": {label: {benchmark: summary}}}.
    """
    from falcon_h1r_lib.evaluation.benchmarks import get_benchmark
    from falcon_h1r_lib.evaluation.pipeline import evaluate_benchmark, make_backend
    from falcon_h1r_lib.generation import close_backend
    from falcon_h1r_lib.kernels import patch_falcon_h1
    from falcon_h1r_lib.metrics import Stopwatch, read_metrics, write_metrics

    patch_falcon_h1()
    p = paths(cfg)
    models = dict(models or {"base": str(p["base"]) if not cfg.base_model_name_or_path
                             else cfg.base_model_name_or_path, "sft": str(p["sft"])})
    evaluation: dict[str, dict[str, Any]] = {}
    accuracy: dict[str, dict[str, float | None]] = {}
    ci: dict[str, dict[str, list[float] | None]] = {}
    counts: dict[str, dict[str, int]] = {}
    clock = Stopwatch()
    for label, path in models.items():
        first = evaluation_config(cfg, next(iter(cfg.eval_problems)), 1)
        backend, tokenizer = make_backend(first, path)
        evaluation[label], accuracy[label], ci[label] = {}, {}, {}
        try:
            for bench_name, n in cfg.eval_problems.items():
                ecfg = evaluation_config(cfg, bench_name, n)
                bench = get_benchmark(bench_name, cfg.profile)
                summary = evaluate_benchmark(ecfg, bench, backend, tokenizer, path, label, p["eval"])
                evaluation[label][bench_name] = summary
                accuracy[label][bench.domain] = summary["pass_at_1"]
                ci[label][bench.domain] = summary["pass_at_1_ci"]
                counts[bench.domain] = {"benchmark": bench_name, "problems": summary["n_problems"],
                                        "samples_per_problem": summary["samples_per_problem"],
                                        "samples": summary["n_samples"]}
        finally:
            close_backend(backend)  # one engine at a time: base's is gone before SFT's starts
    out = {"base_accuracy": accuracy.get("base", {}), "sft_accuracy": accuracy.get("sft", {}),
           "base_accuracy_ci": ci.get("base", {}), "sft_accuracy_ci": ci.get("sft", {}),
           "eval_counts": counts, "evaluation": evaluation, "eval_wall_time_s": round(clock.seconds(), 3)}
    record = read_metrics(cfg.STAGE, cfg.profile)
    metrics = {**record["metrics"], **out}
    metrics["wall_time_s"] = {**record["metrics"].get("wall_time_s", {}), "evaluation": out["eval_wall_time_s"]}
    write_metrics(cfg, metrics, wall_time_s=record["wall_time_s"] + clock.seconds(), reads=record["reads"])
    return out


# --------------------------------------------------------------------------------------------
# Tables for the notebook
# --------------------------------------------------------------------------------------------

# Table 1 row -> (our config field or a derived value, how ours relates)
_TABLE1_ROWS = {
    "base_model": "base_model",
    "learning_rate": "learning_rate",
    "lr_schedule": "lr_scheduler_type",
    "warmup_ratio": "warmup_ratio",
    "batch_size": "global_batch",
    "epochs": "num_train_epochs",
    "max_context": "max_length",
    "optimizer": "optimizer",
    "weight_decay": "weight_decay",
    "grad_clip": "max_grad_norm",
    "precision": "precision",
    "parallelism": "parallelism",
}


def table1_beside_ours(cfg: SFTStageConfig, world_size: int = 1):
    """Paper Table 1 (quoted) beside this profile's values, one row per hyper-parameter."""
    import pandas as pd

    from falcon_h1r_lib.paper_results import paper_table

    paper = paper_table("table1_sft_hyperparameters")
    derived = {
        "base_model": cfg.base_model_name_or_path or f"tiny Falcon-H1 (width {cfg.model_width}), pretrained here",
        "global_batch": cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * world_size,
        "optimizer": f"AdamW (betas {cfg.adam_beta1}, {cfg.adam_beta2})",
        "precision": "bfloat16" if cfg.bf16 else "float32 (CPU)",
        "parallelism": ("FSDP / ZeRO-3 via accelerate, no context parallelism"
                        if world_size > 1 or cfg.profile == "full" else "1 CPU process"),
    }
    rows = []
    for name, field in _TABLE1_ROWS.items():
        ours = derived[field] if field in derived else getattr(cfg, field)
        rows.append({"parameter": name, "paper (Table 1)": paper.loc[name, "value"], "ours": ours,
                     "paper note": paper.loc[name, "note"]})
    rows.append({"parameter": "balanced DP token normalization", "paper (Table 1)": "yes (§2.3, Fig. 4)",
                 "ours": f"average_tokens_across_devices={cfg.average_tokens_across_devices}", "paper note": ""})
    rows.append({"parameter": "difficulty weighting", "paper (Table 1)": "x0.5 .. x1.75 (§2.2)",
                 "ours": f"difficulty_weighting={cfg.difficulty_weighting}", "paper note": ""})
    return pd.DataFrame(rows).set_index("parameter")


def accuracy_table(result: Mapping[str, Any]):
    """Base vs SFT pass@1 per benchmark with bootstrap CIs, from ``evaluate_base_and_sft``'s result."""
    import pandas as pd

    ev = result["evaluation"]
    rows = []
    for bench, base in ev["base"].items():
        tuned = ev["sft"][bench]
        rows.append({
            "benchmark": bench, "domain": base["domain"], "problems": base["n_problems"],
            "samples/problem": base["samples_per_problem"],
            "base pass@1": base["pass_at_1"], "base CI": base["pass_at_1_ci"],
            "SFT pass@1": tuned["pass_at_1"], "SFT CI": tuned["pass_at_1_ci"],
            "SFT - base": (None if tuned["pass_at_1"] is None or base["pass_at_1"] is None
                           else tuned["pass_at_1"] - base["pass_at_1"]),
            "SFT mean tokens": tuned.get("mean_tokens"), "base mean tokens": base.get("mean_tokens"),
        })
    return pd.DataFrame(rows).set_index("benchmark")


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m falcon_h1r_lib.train.sft", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="stage YAML (default: falcon_h1r_lib/profiles/<profile>/03_sft.yaml)")
    parser.add_argument("--profile", default="tiny", choices=("tiny", "full", "rehearsal"))
    parser.add_argument("--evaluate", action="store_true", help="also evaluate base and SFT models afterwards")
    args = parser.parse_args(argv)
    cfg = (SFTStageConfig.from_yaml(args.config) if args.config else load_config("03_sft", args.profile))
    metrics = run(cfg)
    if args.evaluate:
        metrics.update(evaluate_base_and_sft(cfg))
    print(json.dumps({k: metrics[k] for k in ("wall_time_s", "base_accuracy", "sft_accuracy") if k in metrics}))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["MUP_MULTIPLIERS", "WeightedCollator", "accuracy_table", "build_trainer", "check_base_config",
           "check_global_batch", "check_mup", "conversation", "evaluate_base_and_sft", "evaluation_config",
           "load_base", "load_sft_rows", "load_sft_tokenizer", "local_or_hub", "main", "mup_multipliers",
           "param_group_learning_rates", "paths", "run", "save_final_model", "sft_config", "sft_dataset",
           "sft_dataset_on_disk", "system_prompt", "table1_beside_ours", "train_sft", "weighted_token_loss"]
