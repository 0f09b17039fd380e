"""The model SFT starts from, and the checks that it is the paper's: the tokenizer, the base model (tiny:
pretrained here; full: Falcon-H1-7B-Base checked against Table 8 and its µP multipliers), and the global batch
(Table 1: 512) checked before a 7B model is loaded."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from falcon_h1r_lib import stages
from falcon_h1r_lib.config import ConfigError, is_tiny
from falcon_h1r_lib.configs import SFTStageConfig
from falcon_h1r_lib.paths import resolve_path


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
    """Tiny: the tokenizer notebook 02 wrote (MissingStageOutput when it has not run); full: the base model's."""
    if cfg.tokenizer_name_or_path:
        return local_or_hub(cfg.tokenizer_name_or_path)
    if cfg.profile == "tiny" or not cfg.base_model_name_or_path:
        return str(stages.require("02_data_curation", "tokenizer", cfg.profile))
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
    from falcon_h1r_lib.sft.pretrain import pretrain_base
    from falcon_h1r_lib.tokenizer import system_turn

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
    base = stages.output_path(cfg.STAGE, "base", cfg.profile)
    info = pretrain_base(cfg, tokenizer, tokenizer_path(cfg), base, exclude_prompts=exclude_prompts,
                         system_prompt=system_turn(cfg.system_prompt))
    return str(base), info


def load_model(path: str, cfg: SFTStageConfig):
    """The model at ``path`` (a folder, else a Hub id at ``cfg.base_model_revision``), bf16 when the recipe says."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if cfg.bf16 else torch.float32
    local = resolve_path(path)
    source = str(local) if local.exists() else path
    return AutoModelForCausalLM.from_pretrained(source, revision=None if local.exists() else cfg.base_model_revision,
                                                dtype=dtype)


__all__ = ["MUP_MULTIPLIERS", "check_base_config", "check_global_batch", "check_mup", "load_base", "load_model",
           "load_sft_tokenizer", "local_or_hub", "mup_multipliers", "param_group_learning_rates", "tokenizer_path"]
