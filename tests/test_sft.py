"""Tiny base pretraining and SFT (train.pretrain, train.sft): loss, weighting, chat masking, recipe, resume."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from falcon_h1r_lib.config import ConfigError, SFTStageConfig, load_config
from falcon_h1r_lib.train import pretrain, sft


@pytest.fixture(scope="module")
def tok():
    from falcon_h1r_lib.tokenizer import build_tokenizer

    return build_tokenizer(vocab_size=300, seed=0)


def _tiny_model(tok, seed=0):
    from falcon_h1r_lib.models import build_model, falcon_h1_config

    return build_model(falcon_h1_config("tiny", width=32, vocab_size=len(tok), pad_token_id=tok.pad_token_id),
                       seed=seed)


def _rows(n=16):
    rows = []
    for i in range(n):
        a, b = 10 + 7 * i, 3 + i
        rows.append({"id": f"math-add-{i}", "domain": "math", "prompt": f"{a}+{b}=?", "answer": str(a + b),
                     "response": f"<think>\n{a}+{b}={a + b}\n</think>\n\n\\boxed{{{a + b}}}",
                     "weight": [0.5, 1.0, 1.25, 1.75][i % 4]})
    return rows


def _cfg(**kw):
    base = dict(per_device_train_batch_size=4, learning_rate=3e-3, max_length=256, logging_steps=1,
                save_steps=2, save_total_limit=3, warmup_ratio=0.0, model_width=32)
    return SFTStageConfig(**{**base, **kw})


# --------------------------------------------------------------------------------------------
# weighted loss
# --------------------------------------------------------------------------------------------


def test_weighted_token_loss_is_token_mean_with_unit_weights():
    lp = -torch.rand(3, 5)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]], dtype=torch.bool)
    got = sft.weighted_token_loss(lp, mask, None)
    assert torch.isclose(got, -lp[mask].mean())
    assert torch.isclose(sft.weighted_token_loss(lp, mask, torch.ones(3)), got)


def test_weights_scale_tokens_but_not_the_token_count():
    lp = -torch.rand(2, 4)
    mask = torch.ones(2, 4, dtype=torch.bool)
    w = torch.tensor([2.0, 0.5])
    got = sft.weighted_token_loss(lp, mask, w)
    want = (-(lp[0]).sum() * 2.0 - (lp[1]).sum() * 0.5) / 8
    assert torch.isclose(got, want)
    # a global token count (balanced DP normalization) replaces the local one
    assert torch.isclose(sft.weighted_token_loss(lp, mask, w, num_items_in_batch=16), want / 2)


def test_weighted_token_loss_edge_cases():
    lp = -torch.rand(2, 3)
    empty = torch.zeros(2, 3, dtype=torch.bool)
    assert sft.weighted_token_loss(lp, empty, torch.ones(2)).item() == 0.0  # no supervised token: 0, not NaN
    with pytest.raises(ValueError, match="weights must have shape"):
        sft.weighted_token_loss(lp, empty, torch.ones(3))
    with pytest.raises(ValueError, match="differ"):
        sft.weighted_token_loss(lp, empty[:, :2], None)


def test_sft_dataset_weights_and_conversation():
    rows = _rows(4)
    ds = sft.sft_dataset(rows, "SYS")
    assert ds["sample_weight"] == [0.5, 1.0, 1.25, 1.75]
    assert [m["role"] for m in ds["messages"][0]] == ["system", "user", "assistant"]
    assert ds["messages"][0][0]["content"] == "SYS"
    assert sft.sft_dataset(rows, "SYS", weighting=False)["sample_weight"] == [1.0] * 4
    bad = [dict(rows[0], weight=0.0)]
    with pytest.raises(ValueError, match="math-add-0"):
        sft.sft_dataset(bad, "SYS")


# --------------------------------------------------------------------------------------------
# chat masking through TRL
# --------------------------------------------------------------------------------------------


def test_assistant_only_labels_and_multi_turn_rule(tok, tmp_path):
    """Labels cover the last assistant turn (reasoning kept) and its <|im_end|>; earlier turns lose <think>."""
    row = dict(_rows(1)[0], history=[{"role": "user", "content": "1+1=?"},
                                     {"role": "assistant", "content": "<think>\nOLDTHOUGHT\n</think>\n\n\\boxed{2}"}])
    trainer = sft.build_trainer(_cfg(), _tiny_model(tok), tok, sft.sft_dataset([row], "SYS"), tmp_path,
                                disable_tqdm=True)
    ex = trainer.train_dataset[0]
    text = tok.decode(ex["input_ids"])
    assert "OLDTHOUGHT" not in text and "\\boxed{2}" in text  # earlier turn: answer only
    supervised = tok.decode([t for t in ex["labels"] if t != -100])
    assert supervised == row["response"] + "<|im_end|>"
    assert ex["sample_weight"] == row["weight"]


def test_difficulty_weight_multiplies_the_loss(tok, tmp_path):
    rows = _rows(2)
    trainer = sft.build_trainer(_cfg(), _tiny_model(tok), tok, sft.sft_dataset(rows, "SYS"), tmp_path,
                                disable_tqdm=True)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    trainer.model.train()
    with torch.no_grad():
        unit = trainer.compute_loss(trainer.model, {**batch, "sample_weight": torch.ones(2)})
        double = trainer.compute_loss(trainer.model, {**batch, "sample_weight": torch.full((2,), 2.0)})
    assert torch.isclose(double, 2 * unit, rtol=1e-5)
    assert unit.item() > 0


def test_plain_head_equals_trl_fused_head(tok, tmp_path):
    """The small-vocabulary head gives TRL's fused chunked head's numbers (log-probs, gradients, metrics)."""
    rows = _rows(4)
    trainer = sft.build_trainer(_cfg(), _tiny_model(tok), tok, sft.sft_dataset(rows, "SYS"), tmp_path,
                                disable_tqdm=True)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    batch.pop("sample_weight")
    model = trainer.model.train()
    out = {}
    for name, vocab in (("fused", sft.FUSED_HEAD_MIN_VOCAB), ("plain", 1)):
        model.zero_grad()
        res = sft.token_log_probs(model, dict(batch), vocab)
        res.log_probs.sum().backward()
        out[name] = (res, model.model.embed_tokens.weight.grad.clone())
    (fused, g_fused), (plain, g_plain) = out["fused"], out["plain"]
    assert torch.equal(fused.label_mask, plain.label_mask) and plain.label_mask.any()
    assert torch.allclose(fused.log_probs, plain.log_probs, atol=1e-5)
    assert torch.allclose(fused.entropy, plain.entropy, atol=1e-5)
    assert torch.equal(fused.is_top1, plain.is_top1)
    assert torch.allclose(g_fused, g_plain, atol=1e-5)


def test_sft_config_carries_the_recipe(tmp_path):
    args = sft.sft_config(_cfg(), tmp_path)
    assert args.lr_scheduler_type == "linear" and args.warmup_steps == pytest.approx(0.0)
    args = sft.sft_config(load_config("03_sft", "tiny"), tmp_path)
    assert args.warmup_steps == pytest.approx(0.04)  # a float < 1: a ratio of the total steps
    assert (args.weight_decay, args.max_grad_norm, args.bf16, args.padding_free) == (0.01, 1.0, False, False)
    assert args.average_tokens_across_devices and args.assistant_only_loss and not args.gradient_checkpointing


# --------------------------------------------------------------------------------------------
# configs
# --------------------------------------------------------------------------------------------


def test_tiny_yaml_equals_defaults_and_full_yaml_carries_table1():
    from falcon_h1r_lib.paper_results import paper_table

    assert load_config("03_sft", "tiny") == SFTStageConfig()
    full = load_config("03_sft", "full")
    t1 = paper_table("table1_sft_hyperparameters")
    value = t1["value"].to_dict()
    assert full.learning_rate == pytest.approx(float(value["learning_rate"]))
    assert full.warmup_ratio == pytest.approx(float(value["warmup_ratio"]))
    assert full.num_train_epochs == pytest.approx(float(value["epochs"]))
    assert full.weight_decay == pytest.approx(float(value["weight_decay"]))
    assert full.max_grad_norm == pytest.approx(float(value["grad_clip"]))
    assert full.lr_scheduler_type == value["lr_schedule"] and full.bf16
    assert full.base_model_name_or_path == "tiiuae/Falcon-H1-7B-Base"
    assert full.max_length >= 36 * 1024


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="warmup_ratio"):
        SFTStageConfig(warmup_ratio=1.5)
    with pytest.raises(ConfigError, match="max_steps"):
        SFTStageConfig(max_steps=0)
    with pytest.raises(ConfigError, match="pretrain_docs_per_domain"):
        SFTStageConfig(pretrain_docs_per_domain={"poetry": 3})
    with pytest.raises(ConfigError, match="unknown key"):
        SFTStageConfig.from_dict({"learning_rat": 1e-3})


def test_base_config_check_against_table8():
    from falcon_h1r_lib.models import falcon_h1_config

    rows = sft.check_base_config(falcon_h1_config("falcon-h1r-7b"))
    assert all(r["match"] for r in rows)
    with pytest.raises(ConfigError, match="d_state"):
        sft.check_base_config(falcon_h1_config("falcon-h1r-7b", mamba_d_state=128))


# --------------------------------------------------------------------------------------------
# tiny base pretraining
# --------------------------------------------------------------------------------------------


def test_plain_answers_have_no_reasoning():
    assert pretrain.plain_answer({"domain": "math", "prompt": "1-7/4=?", "answer": "-3/4"}) == "1-7/4=?\n\\boxed{-3/4}"
    assert pretrain.plain_answer({"domain": "science", "answer": "B"}) == "\\boxed{B}"
    assert pretrain.plain_answer({"domain": "code", "answer": "def f():\n    return 1"}).startswith("```python\n")
    assert pretrain.plain_answer({"domain": "other", "answer": "cow dog"}) == "cow dog"


def test_pretrain_corpus_excludes_held_out_prompts(tok):
    probs = pretrain.pretrain_problems({"math": 30}, seed=0)
    held = [probs[0]["prompt"], probs[5]["prompt"].upper()]  # normalisation: case does not hide a copy
    kept = pretrain.pretrain_problems({"math": 30}, seed=0, exclude_prompts=held)
    assert len(kept) == 28 and all("<think>" not in pretrain.plain_answer(p) for p in kept)
    docs = pretrain.render_documents(kept, tok, "SYS", seed=0)
    assert all(d.startswith("<|im_start|>system\nSYS") and "<think>" not in d for d in docs)
    blocks = pretrain.pack_documents(docs, tok, 16)
    sep = tok.convert_tokens_to_ids("<|endoftext|>")
    assert blocks.ndim == 2 and blocks.shape[1] == 16 and (blocks == sep).sum() >= len(docs) - 2
    with pytest.raises(ValueError, match="fewer than one block"):
        pretrain.pack_documents(docs[:1], tok, 10_000)


def test_pretrain_base_trains_saves_and_skips(tok, tmp_path):
    cfg = _cfg(pretrain_docs_per_domain={"math": 60}, pretrain_block_size=32, pretrain_max_steps=4,
               pretrain_batch_size=4, save_steps=100)
    info = pretrain.pretrain_base(cfg, tok, "tok", tmp_path / "base", system_prompt="SYS")
    assert not info["skipped"] and info["steps"] == 4 and (tmp_path / "base" / "config.json").exists()
    assert (tmp_path / "base" / "tokenizer.json").exists() and info["loss_log"]
    again = pretrain.pretrain_base(cfg, tok, "tok", tmp_path / "base", system_prompt="SYS")
    assert again["skipped"] and again["fingerprint"] == info["fingerprint"]


# --------------------------------------------------------------------------------------------
# kill and resume
# --------------------------------------------------------------------------------------------


def _assistant_nll(model, tok, rows) -> float:
    """Mean next-token NLL over the assistant tokens of ``rows`` (unweighted)."""
    total, n = 0.0, 0
    model.eval()
    for r in rows:
        enc = tok.apply_chat_template(sft.conversation(r, "SYS"), tokenize=True, return_dict=True,
                                      return_assistant_tokens_mask=True)
        ids = torch.tensor([enc["input_ids"]])
        mask = torch.tensor(enc["assistant_masks"][1:], dtype=torch.bool)
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1], -1)
        total += -logp[mask].gather(-1, ids[0, 1:][mask][:, None]).sum().item()
        n += int(mask.sum())
    return total / n


class _Killed(RuntimeError):
    pass


def _killer(at_step):
    from transformers import TrainerCallback

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == at_step:
                raise _Killed(f"killed at step {at_step}")

    return Kill()


@pytest.mark.slow
def test_killed_sft_resumes_to_the_uninterrupted_result(tok, tmp_path, monkeypatch):
    """A run killed after step 3 (last checkpoint: step 2) resumes and ends with the uninterrupted weights."""
    base = tmp_path / "base_model"
    _tiny_model(tok).save_pretrained(base)
    rows = _rows(16)  # 4 steps per epoch at batch 4; max_steps 6 crosses an epoch boundary
    cfg = _cfg(max_steps=6)
    info = {"fingerprint": "test-base"}

    def final_params(root):
        return {n: p.detach().clone() for n, p in sft.load_model(str(root / "runs/tiny/03_sft/sft"), cfg)
                .named_parameters()}

    monkeypatch.setenv("FALCON_H1R_ROOT", str(tmp_path / "a"))
    straight = sft.train_sft(cfg, str(base), info, tok, rows)
    assert straight["steps"] == 6 and straight["resumed_from"] is None
    before, after = _assistant_nll(sft.load_model(str(base), cfg), tok, rows), _assistant_nll(
        sft.load_model(str(tmp_path / "a/runs/tiny/03_sft/sft"), cfg), tok, rows)
    assert after < before - 0.3, f"SFT did not lower the assistant-token NLL: {before:.3f} -> {after:.3f}"

    monkeypatch.setenv("FALCON_H1R_ROOT", str(tmp_path / "b"))
    with pytest.raises(_Killed):
        sft.train_sft(cfg, str(base), info, tok, rows, callbacks=[_killer(3)])
    resumed = sft.train_sft(cfg, str(base), info, tok, rows)
    assert resumed["resumed_from"] == "checkpoint-2" and resumed["steps"] == 6

    a, b = final_params(tmp_path / "a"), final_params(tmp_path / "b")
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 1e-5, f"resumed weights differ from the uninterrupted run by {worst}"
    assert math.isclose(straight["loss_log"][-1]["loss"], resumed["loss_log"][-1]["loss"], rel_tol=1e-4)
    # a finished stage is skipped, and checkpoints of another configuration are never resumed
    assert sft.train_sft(cfg, str(base), info, tok, rows)["skipped"]
    other = dataclasses.replace(cfg, learning_rate=1e-3)
    assert sft.train_sft(other, str(base), info, tok, rows)["resumed_from"] is None
