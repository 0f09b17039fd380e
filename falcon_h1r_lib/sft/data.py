"""What SFT trains on: notebook 02's curated rows (read from its files), formatted as conversations with their
difficulty weights, saved once for every rank, batched with a weight per sample, and counted in tokens."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from falcon_h1r_lib.configs import SFTStageConfig


def load_sft_rows(cfg: SFTStageConfig) -> tuple[list[dict], list[str]]:
    """(curated SFT rows, the manifest read), from what notebook 02 wrote with the config it recorded.

    Raises MissingStageOutput naming notebook 02 (or its command) when it has not run for ``cfg.profile`` or its
    ``sft.parquet`` is missing (``stages.require``); never rebuilds it. ManifestError when the file was changed.
    """
    from falcon_h1r_lib import stages
    from falcon_h1r_lib.data import build

    cur = stages.recorded_config("02_data_curation", cfg.profile)
    stages.require("02_data_curation", "sft", cfg.profile)
    return build.load_output(cur, "sft"), [str(build.manifest_path(cur, "sft"))]


def upstream_digest(cfg: SFTStageConfig) -> dict[str, str]:
    """What the SFT model takes from upstream, by content (part of ``stage.sft_fingerprint``): notebook 02's SFT
    rows (``data.build.output_digest``, from their manifest) and the tokenizer's files (``tokenizer_digest``:
    notebook 02's on tiny, the base model's otherwise). Cheap: no data file is read. A rerun of 02 that writes
    other rows or another tokenizer retrains SFT; one that writes the same bytes keeps it. (02's config itself is
    left out: a key that changes no SFT row, e.g. an RL source, must not retrain a 7B SFT run.)

    Raises MissingStageOutput naming notebook 02 (or its command) when what SFT reads is missing.
    """
    from falcon_h1r_lib import stages
    from falcon_h1r_lib.data import build
    from falcon_h1r_lib.sft.base import tokenizer_path
    from falcon_h1r_lib.tokenizer import tokenizer_digest

    cur = stages.recorded_config("02_data_curation", cfg.profile)
    stages.require("02_data_curation", "sft", cfg.profile)
    return {"sft": build.output_digest(cur, "sft"), "tokenizer": tokenizer_digest(tokenizer_path(cfg))}


def eval_prompts_to_exclude(cfg: SFTStageConfig) -> list[str]:
    """Held-out prompts the tiny base corpus must not contain (the evaluation sets notebook 02 decontaminated
    against, rebuilt from the seeds its recorded config names; part of the base's ``pretrain_fingerprint``).
    Raises MissingStageOutput naming notebook 02 when it has not run."""
    if cfg.profile != "tiny" or cfg.base_model_name_or_path:
        return []
    from falcon_h1r_lib import stages
    from falcon_h1r_lib.data import splits

    cur = stages.recorded_config("02_data_curation", cfg.profile)
    return [p["prompt"] for rows in splits.tiny_eval_sets(cur.eval_problems_per_domain).values() for p in rows]



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


__all__ = ["WeightedCollator", "conversation", "eval_prompts_to_exclude", "load_sft_rows", "sft_dataset",
           "sft_dataset_on_disk", "token_counts", "upstream_digest"]
