"""Tiny base pretraining and SFT (falcon_h1r_lib.sft): loss, weighting, chat masking, recipe, resume, stage inputs."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from falcon_h1r_lib.checkpoints import checkpoint_to_resume
from falcon_h1r_lib.config import ConfigError, load_config
from falcon_h1r_lib.configs import SFTStageConfig
from falcon_h1r_lib.sft import pretrain
from falcon_h1r_lib.sft.base import (
    check_base_config,
    check_global_batch,
    check_mup,
    load_base,
    load_model,
    load_sft_tokenizer,
    local_or_hub,
    param_group_learning_rates,
)
from falcon_h1r_lib.sft.data import conversation, sft_dataset, sft_dataset_on_disk, token_counts
from falcon_h1r_lib.sft.loss import FUSED_HEAD_MIN_VOCAB, token_log_probs, weighted_token_loss
from falcon_h1r_lib.sft.stage import train_sft
from falcon_h1r_lib.sft.trainer import build_trainer, sft_config


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
    base = dict(per_device_train_batch_size=4, global_batch_size=4, learning_rate=3e-3, max_length=256,
                logging_steps=1, save_steps=2, save_total_limit=3, warmup_ratio=0.0, model_width=32)
    return SFTStageConfig(**{**base, **kw})


# --------------------------------------------------------------------------------------------
# weighted loss
# --------------------------------------------------------------------------------------------


def test_weighted_token_loss_is_token_mean_with_unit_weights():
    lp = -torch.rand(3, 5)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]], dtype=torch.bool)
    got = weighted_token_loss(lp, mask, None)
    assert torch.isclose(got, -lp[mask].mean())
    assert torch.isclose(weighted_token_loss(lp, mask, torch.ones(3)), got)


def test_weights_scale_tokens_but_not_the_token_count():
    lp = -torch.rand(2, 4)
    mask = torch.ones(2, 4, dtype=torch.bool)
    w = torch.tensor([2.0, 0.5])
    got = weighted_token_loss(lp, mask, w)
    want = (-(lp[0]).sum() * 2.0 - (lp[1]).sum() * 0.5) / 8
    assert torch.isclose(got, want)
    # a global token count (balanced DP normalization) replaces the local one
    assert torch.isclose(weighted_token_loss(lp, mask, w, num_items_in_batch=16), want / 2)


def test_weighted_token_loss_edge_cases():
    lp = -torch.rand(2, 3)
    empty = torch.zeros(2, 3, dtype=torch.bool)
    assert weighted_token_loss(lp, empty, torch.ones(2)).item() == 0.0  # no supervised token: 0, not NaN
    with pytest.raises(ValueError, match="weights must have shape"):
        weighted_token_loss(lp, empty, torch.ones(3))
    with pytest.raises(ValueError, match="differ"):
        weighted_token_loss(lp, empty[:, :2], None)


def test_sft_dataset_weights_and_conversation():
    rows = _rows(4)
    ds = sft_dataset(rows, "SYS")
    assert ds["sample_weight"] == [0.5, 1.0, 1.25, 1.75]
    assert [m["role"] for m in ds["messages"][0]] == ["system", "user", "assistant"]
    assert ds["messages"][0][0]["content"] == "SYS"
    assert sft_dataset(rows, "SYS", weighting=False)["sample_weight"] == [1.0] * 4
    bad = [dict(rows[0], weight=0.0)]
    with pytest.raises(ValueError, match="math-add-0"):
        sft_dataset(bad, "SYS")


# --------------------------------------------------------------------------------------------
# chat masking through TRL
# --------------------------------------------------------------------------------------------


def test_assistant_only_labels_and_multi_turn_rule(tok, tmp_path):
    """Labels cover the last assistant turn (reasoning kept) and its <|im_end|>; earlier turns lose <think>."""
    row = dict(_rows(1)[0], history=[{"role": "user", "content": "1+1=?"},
                                     {"role": "assistant", "content": "<think>\nOLDTHOUGHT\n</think>\n\n\\boxed{2}"}])
    trainer = build_trainer(_cfg(), _tiny_model(tok), tok, sft_dataset([row], "SYS"), tmp_path,
                            disable_tqdm=True)
    ex = trainer.train_dataset[0]
    text = tok.decode(ex["input_ids"])
    assert "OLDTHOUGHT" not in text and "\\boxed{2}" in text  # earlier turn: answer only
    supervised = tok.decode([t for t in ex["labels"] if t != -100])
    assert supervised == row["response"] + "<|im_end|>"
    assert ex["sample_weight"] == row["weight"]


def test_difficulty_weight_multiplies_the_loss(tok, tmp_path):
    rows = _rows(2)
    trainer = build_trainer(_cfg(), _tiny_model(tok), tok, sft_dataset(rows, "SYS"), tmp_path,
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
    trainer = build_trainer(_cfg(), _tiny_model(tok), tok, sft_dataset(rows, "SYS"), tmp_path,
                            disable_tqdm=True)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    batch.pop("sample_weight")
    model = trainer.model.train()
    out = {}
    for name, vocab in (("fused", FUSED_HEAD_MIN_VOCAB), ("plain", 1)):
        model.zero_grad()
        res = token_log_probs(model, dict(batch), vocab)
        res.log_probs.sum().backward()
        out[name] = (res, model.model.embed_tokens.weight.grad.clone())
    (fused, g_fused), (plain, g_plain) = out["fused"], out["plain"]
    assert torch.equal(fused.label_mask, plain.label_mask) and plain.label_mask.any()
    assert torch.allclose(fused.log_probs, plain.log_probs, atol=1e-5)
    assert torch.allclose(fused.entropy, plain.entropy, atol=1e-5)
    assert torch.equal(fused.is_top1, plain.is_top1)
    assert torch.allclose(g_fused, g_plain, atol=1e-5)


def test_sft_config_carries_the_recipe(tmp_path):
    args = sft_config(_cfg(), tmp_path)
    assert args.lr_scheduler_type == "linear" and args.warmup_steps == pytest.approx(0.0)
    args = sft_config(load_config("03_sft", "tiny"), tmp_path)
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

    rows = check_base_config(falcon_h1_config("falcon-h1r-7b"))
    assert all(r["match"] for r in rows)
    with pytest.raises(ConfigError, match="d_state"):
        check_base_config(falcon_h1_config("falcon-h1r-7b", mamba_d_state=128))


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
        enc = tok.apply_chat_template(conversation(r, "SYS"), tokenize=True, return_dict=True,
                                      return_assistant_tokens_mask=True)
        ids = torch.tensor([enc["input_ids"]])
        mask = torch.tensor(enc["assistant_masks"][1:], dtype=torch.bool)
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1], -1)
        total += -logp[mask].gather(-1, ids[0, 1:][mask][:, None]).sum().item()
        n += int(mask.sum())
    return total / n


UP = {"sft": "rows", "tokenizer": "tok"}  # what the rows and tokenizer came from (sft.data.upstream_digest)


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
    monkeypatch.delenv("FALCON_H1R_RUNS", raising=False)  # the runs live under each FALCON_H1R_ROOT below
    base = tmp_path / "base_model"
    _tiny_model(tok).save_pretrained(base)
    rows = _rows(16)  # 4 steps per epoch at batch 4; max_steps 6 crosses an epoch boundary
    cfg = _cfg(max_steps=6)
    info = {"fingerprint": "test-base"}

    def final_params(root):
        return {n: p.detach().clone() for n, p in load_model(str(root / "runs/tiny/03_sft/sft"), cfg)
                .named_parameters()}

    monkeypatch.setenv("FALCON_H1R_ROOT", str(tmp_path / "a"))
    straight = train_sft(cfg, str(base), info, tok, rows, upstream=UP)
    assert straight["steps"] == 6 and straight["resumed_from"] is None
    before, after = _assistant_nll(load_model(str(base), cfg), tok, rows), _assistant_nll(
        load_model(str(tmp_path / "a/runs/tiny/03_sft/sft"), cfg), tok, rows)
    assert after < before - 0.3, f"SFT did not lower the assistant-token NLL: {before:.3f} -> {after:.3f}"

    monkeypatch.setenv("FALCON_H1R_ROOT", str(tmp_path / "b"))
    with pytest.raises(_Killed):
        train_sft(cfg, str(base), info, tok, rows, callbacks=[_killer(3)], upstream=UP)
    resumed = train_sft(cfg, str(base), info, tok, rows, upstream=UP)
    assert resumed["resumed_from"] == "checkpoint-2" and resumed["steps"] == 6

    a, b = final_params(tmp_path / "a"), final_params(tmp_path / "b")
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 1e-5, f"resumed weights differ from the uninterrupted run by {worst}"
    assert math.isclose(straight["loss_log"][-1]["loss"], resumed["loss_log"][-1]["loss"], rel_tol=1e-4)
    # a finished stage is skipped, and checkpoints of another configuration are never resumed
    assert train_sft(cfg, str(base), info, tok, rows, upstream=UP)["skipped"]
    # killed after its last checkpoint, before stage_info.json: the checkpoint at max_steps is loaded, not trained
    # one step further (transformers would), and the optimizer's groups can still be reported (break test)
    (tmp_path / "b/runs/tiny/03_sft/sft/stage_info.json").unlink()
    again = train_sft(cfg, str(base), info, tok, rows, upstream=UP)
    assert again["steps"] == 6 and again["resumed_from"] == "checkpoint-6" and again["param_groups"]
    c = final_params(tmp_path / "b")
    assert all(torch.equal(b[k], c[k]) for k in b)
    other = dataclasses.replace(cfg, learning_rate=1e-3)
    assert train_sft(other, str(base), info, tok, rows, upstream=UP)["resumed_from"] is None


# --------------------------------------------------------------------------------------------
# the full path at rehearsal size (issue 12): stand-in base, EOS, batch, muP, logging, ranks
# --------------------------------------------------------------------------------------------


class _FakeState:
    """A PartialState stand-in for one rank: records the barrier context, never synchronises."""

    def __init__(self, main: bool, num_processes: int = 2) -> None:
        self.is_main_process, self.num_processes, self.events = main, num_processes, []

    def main_process_first(self):
        import contextlib

        @contextlib.contextmanager
        def ctx():
            self.events.append("wait" if not self.is_main_process else "first")
            yield
            self.events.append("done")

        return ctx()


@pytest.fixture
def standin(tmp_path, monkeypatch):
    from falcon_h1r_lib.models.standin import DEFAULT_OUT, write_standin

    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path / "runs"))
    return write_standin(DEFAULT_OUT, width=32, vocab_size=300)


def test_standin_base_is_checked_against_the_7b_preset_by_dial(standin):
    """The rehearsal's base loads from its runs/ path and its config is checked, not skipped, against the 7B preset
    scaled by the recorded dial; any other departure (or a missing record) fails."""
    from transformers import AutoConfig

    from falcon_h1r_lib.models.presets import falcon_h1_config
    from falcon_h1r_lib.models.standin import read_standin

    cfg = load_config("03_sft", "rehearsal")
    path, info = load_base(cfg, None)
    assert path == str(standin) and info["table8_check_against"].startswith("7B preset scaled by dial")
    rows = {r["quantity"]: r for r in info["table8_check"]}
    assert rows["d_model"]["preset"] == 32 and rows["d_model"]["7B (Table 8)"] == 3072 and rows["layers"]["match"]
    config, record = AutoConfig.from_pretrained(standin), read_standin(standin)
    config.mamba_d_state = 16  # the dial's rule at width 32: 2 x SSM head dim (4) = 8
    with pytest.raises(ConfigError, match="d_state"):
        check_base_config(config, record)
    with pytest.raises(ConfigError, match="paper Table 8"):
        check_base_config(AutoConfig.from_pretrained(standin))  # without its record: the paper's check
    assert check_base_config(falcon_h1_config("falcon-h1r-7b"))  # the real 7B shape still passes
    with pytest.raises(ConfigError, match="models.standin"):
        local_or_hub("runs/rehearsal/hub/nothing-here")


def test_full_path_tokenizer_ends_turns_at_im_end(standin, tmp_path):
    cfg = load_config("03_sft", "rehearsal")
    tok = load_sft_tokenizer(cfg)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token != tok.eos_token
    args = sft_config(cfg, tmp_path, use_cpu=True)
    assert args.eos_token == "<|im_end|>"
    model = load_model(str(standin), dataclasses.replace(cfg, bf16=False))
    trainer = build_trainer(dataclasses.replace(cfg, bf16=False, use_liger_kernel=False,
                                                gradient_checkpointing=False), model, tok,
                            sft_dataset(_rows(2), "SYS"), tmp_path / "out", disable_tqdm=True)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert trainer.model.config.eos_token_id == im_end and im_end in trainer.model.generation_config.eos_token_id


def test_report_to_reaches_the_trainer_args(tmp_path):
    assert sft_config(_cfg(), tmp_path).report_to in ("none", [], ["none"])
    assert sft_config(_cfg(report_to="wandb"), tmp_path).report_to == ["wandb"]
    assert load_config("03_sft", "full").report_to == "none"
    with pytest.raises(ConfigError, match="report_to"):
        SFTStageConfig.from_dict({"report_to": "tensorboard"})


def test_global_batch_is_asserted_and_the_shipped_sizing_gives_512():
    import re

    from falcon_h1r_lib.paper_results import paper_table
    from falcon_h1r_lib.paths import repo_root

    full = load_config("03_sft", "full")
    assert full.global_batch_size == int(paper_table("table1_sft_hyperparameters").loc["batch_size", "value"]) == 512
    from falcon_h1r_lib.launch import launch_config

    script = (repo_root() / "falcon_h1r_lib/profiles/slurm/sft.sbatch").read_text()
    nodes = int(re.search(r"#SBATCH --nodes=(\d+)", script).group(1))
    gpus = int(re.search(r"#SBATCH --gpus-per-node=(\d+)", script).group(1))
    launch = launch_config("full")
    assert (nodes, gpus) == (launch.sft_nodes, launch.processes_per_node)
    assert check_global_batch(full, nodes * gpus) == 512
    with pytest.raises(ConfigError, match=r"2 ranks x 1 per device x 2 accumulation = 4, but global_batch_size is 512"):
        check_global_batch(full, 2)
    rehearsal = load_config("03_sft", "rehearsal")
    assert check_global_batch(rehearsal, 2) == 4


def test_train_sft_fails_on_a_wrong_global_batch_before_loading_the_model(tok, tmp_path, monkeypatch):
    monkeypatch.setenv("FALCON_H1R_ROOT", str(tmp_path))
    with pytest.raises(ConfigError, match="global_batch_size is 8"):
        train_sft(_cfg(global_batch_size=8), str(tmp_path / "no-model-here"), {"fingerprint": "x"}, tok, _rows(4),
                  upstream=UP)


def test_mup_check_and_one_learning_rate_per_group(tok, tmp_path):
    from falcon_h1r_lib.models.presets import falcon_h1_config
    from falcon_h1r_lib.models.standin import standin_config

    full = load_config("03_sft", "full")
    with pytest.raises(ConfigError, match="every µP multiplier at 1.0"):
        check_mup(falcon_h1_config("falcon-h1r-7b"), full)  # the preset's neutral multipliers
    assert check_mup(standin_config(32, 300), full)["lm_head_multiplier"] == pytest.approx(0.0390625)
    assert check_mup(falcon_h1_config("tiny"), _cfg()) == {}  # tiny: no µP, not required
    trainer = build_trainer(_cfg(), _tiny_model(tok), tok, sft_dataset(_rows(2), "SYS"), tmp_path,
                            disable_tqdm=True)
    groups = param_group_learning_rates(trainer.create_optimizer())
    assert {g["learning_rate"] for g in groups} == {3e-3} and len(groups) == 2
    assert sum(g["parameters"] for g in groups) == sum(p.numel() for p in trainer.model.parameters())


def test_rows_are_tokenized_once_for_all_ranks(tok, tmp_path):
    """Rank 0 writes the rows to disk and tokenizes them (TRL: main first); another rank reuses its cache files."""
    rows = _rows(6)
    with pytest.raises(FileNotFoundError):  # a non-main rank never writes: it waits and reads rank 0's copy
        sft_dataset_on_disk(rows, "SYS", True, tmp_path / "data", _FakeState(main=False))
    main = _FakeState(main=True)
    ds = sft_dataset_on_disk(rows, "SYS", True, tmp_path / "data", main)
    assert main.events == ["first", "done"] and ds.cache_files
    first = build_trainer(_cfg(), _tiny_model(tok), tok, ds, tmp_path / "a", disable_tqdm=True)
    files = sorted((tmp_path / "data").rglob("cache-*.arrow"))
    assert files and first.train_dataset.cache_files
    other = _FakeState(main=False)
    ds2 = sft_dataset_on_disk(rows, "SYS", True, tmp_path / "data", other)
    second = build_trainer(_cfg(), _tiny_model(tok), tok, ds2, tmp_path / "b", disable_tqdm=True)
    assert other.events == ["wait", "done"]
    assert sorted((tmp_path / "data").rglob("cache-*.arrow")) == files  # nothing tokenized again
    assert [c["filename"] for c in second.train_dataset.cache_files] == [
        c["filename"] for c in first.train_dataset.cache_files]


def test_only_the_main_rank_deletes_stale_checkpoints(tmp_path):
    ckpt = tmp_path / "checkpoints"
    (ckpt / "checkpoint-5").mkdir(parents=True)
    (ckpt / "FINGERPRINT").write_text("old\n")
    other = _FakeState(main=False)
    with pytest.raises(RuntimeError, match="did not stamp"):  # rank 0 has not stamped it: never read another run's
        checkpoint_to_resume(ckpt, "new", other)
    assert (ckpt / "checkpoint-5").is_dir() and other.events == ["wait"]  # waited, deleted nothing
    main = _FakeState(main=True)
    assert checkpoint_to_resume(ckpt, "new", main) is None and main.events == ["first", "done"]
    assert not (ckpt / "checkpoint-5").exists() and (ckpt / "FINGERPRINT").read_text() == "new\n"
    (ckpt / "checkpoint-7").mkdir()
    (ckpt / "checkpoint-7" / "trainer_state.json").write_text("{}")  # complete: the Trainer writes it last
    assert checkpoint_to_resume(ckpt, "new", _FakeState(main=False)).endswith("checkpoint-7")


def test_rehearsal_sft_overrides_only_sizes():
    from falcon_h1r_lib.config import profile_overrides

    own = profile_overrides("03_sft", "rehearsal")
    sizes = {"profile", "base_model_name_or_path", "max_steps", "per_device_train_batch_size",
             "gradient_accumulation_steps", "global_batch_size", "max_length", "bf16", "use_liger_kernel",
             "logging_steps", "save_steps", "save_total_limit", "eval_problems", "eval_samples_per_problem",
             "eval_batch_size"}
    assert own["profile"] == "rehearsal" and set(own) <= sizes, sorted(set(own) - sizes)
    cfg = load_config("03_sft", "rehearsal")
    full = load_config("03_sft", "full")
    assert (cfg.learning_rate, cfg.check_base_config, cfg.system_prompt) == (full.learning_rate, True, None)


def test_token_counts_read_arrow_chunks_and_honour_selections():
    """Before: two Python loops over every label of the epoch on every rank (hours at ~30 GT)."""
    from datasets import Dataset

    ds = Dataset.from_dict({"labels": [[-100, 1, 2], [-100, -100], [5]]})
    assert token_counts(ds) == (6, 3)
    assert token_counts(ds.select([0, 2])) == (4, 3)


# --------------------------------------------------------------------------------------------
# stage inputs: what notebook 02 wrote, never a rebuild
# --------------------------------------------------------------------------------------------


def test_sft_without_notebook_02_names_it_and_rebuilds_nothing(tmp_path, monkeypatch):
    from falcon_h1r_lib import sft
    from falcon_h1r_lib.sft.base import tokenizer_path
    from falcon_h1r_lib.stages import MissingStageOutput

    runs = tmp_path / "runs"
    monkeypatch.setenv("FALCON_H1R_RUNS", str(runs))
    with pytest.raises(MissingStageOutput, match=r"run notebook notebooks/02_data_curation\.ipynb first"):
        sft.run(load_config("03_sft", "tiny"))
    with pytest.raises(MissingStageOutput, match=r"02_data_curation"):
        tokenizer_path(load_config("03_sft", "tiny"))
    with pytest.raises(MissingStageOutput, match=r"python -m falcon_h1r_lib\.data --config .*rehearsal"):
        sft.run(load_config("03_sft", "rehearsal"))
    assert not list(runs.rglob("02_data_curation")), "SFT must not build notebook 02's outputs"


def test_sft_inputs_follow_the_config_notebook_02_recorded(tmp_path, monkeypatch):
    """Notebook 02 may have run with other parameters than its YAML: SFT trusts its metrics.json record."""
    from falcon_h1r_lib.data import build, manifests, splits
    from falcon_h1r_lib.metrics import write_metrics
    from falcon_h1r_lib.sft.data import eval_prompts_to_exclude, load_sft_rows

    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path / "runs"))
    ran = load_config("02_data_curation", "rehearsal", overrides={"seed": 7})
    assert load_config("02_data_curation", "rehearsal").seed != 7
    manifests.write_dataset(_rows(3), ran.run_dir() / "sft.parquet", {"name": "sft", "source": {"generator": "test"}})
    write_metrics(ran, {}, wall_time_s=0.0)
    seen, real = [], build.load_output
    monkeypatch.setattr(build, "load_output", lambda cfg, name: seen.append(cfg) or real(cfg, name))
    rows, reads = load_sft_rows(load_config("03_sft", "rehearsal"))
    assert [r["id"] for r in rows] == [r["id"] for r in _rows(3)] and seen == [ran]
    assert reads == [str(build.manifest_path(ran, "sft"))]

    tiny = load_config("02_data_curation", "tiny", overrides={"eval_problems_per_domain": 3})
    write_metrics(tiny, {}, wall_time_s=0.0)
    held = eval_prompts_to_exclude(load_config("03_sft", "tiny"))
    assert held == [p["prompt"] for rows in splits.tiny_eval_sets(3).values() for p in rows] and len(held) == 12


def test_sft_without_02s_sft_rows_names_notebook_02(tmp_path, monkeypatch):
    """Before: with 02's metrics.json present and sft.parquet gone, SFT failed on a manifest naming no notebook."""
    from falcon_h1r_lib.metrics import write_metrics
    from falcon_h1r_lib.sft.data import load_sft_rows
    from falcon_h1r_lib.stages import MissingStageOutput

    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path / "runs"))
    write_metrics(load_config("02_data_curation", "rehearsal"), {}, wall_time_s=0.0)
    with pytest.raises(MissingStageOutput, match=r"02_data_curation/sft\.parquet does not exist: run `python -m "
                                                 r"falcon_h1r_lib\.data --config .*rehearsal/02_data_curation\.yaml`"):
        load_sft_rows(load_config("03_sft", "rehearsal"))


@pytest.fixture
def tiny_root(tmp_path, monkeypatch):
    """A checkout of its own: tiny manifests go to <root>/data_manifests/tiny, runs to <root>/runs."""
    monkeypatch.setenv("FALCON_H1R_ROOT", str(tmp_path))
    monkeypatch.delenv("FALCON_H1R_RUNS", raising=False)
    return tmp_path


def _run_02(cfg02, rows, tokenizer):
    """What notebook 02 leaves for SFT: the SFT rows with their manifest, the tokenizer, then metrics.json."""
    from falcon_h1r_lib.data import build, manifests
    from falcon_h1r_lib.metrics import write_metrics
    from falcon_h1r_lib.tokenizer import save_tokenizer

    out = cfg02.run_dir()
    manifests.write_dataset(rows, out / "sft.parquet", {"name": "sft", "source": {"generator": "test"}},
                            manifest_path=build.manifest_path(cfg02, "sft"))
    save_tokenizer(tokenizer, out / "tokenizer")
    write_metrics(cfg02, {}, wall_time_s=0.0)


def test_sft_fingerprint_follows_what_notebook_02_wrote(tok, tiny_root):
    """Before: the fingerprint held 03's config, the base and the loss only, so SFT trained on 02's old rows
    stayed "done" after 02 re-ran with other parameters."""
    from falcon_h1r_lib.sft.data import upstream_digest
    from falcon_h1r_lib.sft.stage import sft_fingerprint
    from falcon_h1r_lib.tokenizer import build_tokenizer

    cfg, cfg02, base = load_config("03_sft", "tiny"), load_config("02_data_curation", "tiny"), {"fingerprint": "b"}
    _run_02(cfg02, _rows(3), tok)
    first = sft_fingerprint(cfg, base, upstream_digest(cfg))
    _run_02(cfg02, _rows(3), tok)  # an unchanged rerun writes the same bytes
    assert sft_fingerprint(cfg, base, upstream_digest(cfg)) == first
    _run_02(dataclasses.replace(cfg02, seed=7), _rows(4), tok)  # other parameters, other rows
    assert sft_fingerprint(cfg, base, upstream_digest(cfg)) != first
    _run_02(cfg02, _rows(3), build_tokenizer(vocab_size=320, seed=0))  # same rows, another tokenizer
    assert sft_fingerprint(cfg, base, upstream_digest(cfg)) != first
    _run_02(cfg02, _rows(3), tok)
    assert sft_fingerprint(cfg, base, upstream_digest(cfg)) == first


def test_sft_run_trains_against_02s_digest(tok, tiny_root, monkeypatch):
    from falcon_h1r_lib import sft
    from falcon_h1r_lib.sft import base as sft_base
    from falcon_h1r_lib.sft import stage
    from falcon_h1r_lib.sft.data import upstream_digest

    cfg = load_config("03_sft", "tiny")
    _run_02(load_config("02_data_curation", "tiny"), _rows(3), tok)
    seen = {}
    monkeypatch.setattr(sft_base, "load_base", lambda cfg, tokenizer, exclude: ("base", {"fingerprint": "b"}))
    monkeypatch.setattr(stage, "train_sft", lambda *a, upstream, **k: seen.update(upstream=upstream) or
                        {"fingerprint": "f", "wall_time_s": 0.0})
    sft.run(cfg)
    assert seen["upstream"] == upstream_digest(cfg) and set(seen["upstream"]) == {"sft", "tokenizer"}


def test_pretrain_fingerprint_follows_the_tokenizers_content_and_the_held_out_prompts(tok, tmp_path):
    """Before: the tiny base's fingerprint held the tokenizer's path, and not the held-out prompts it leaves out
    (which follow 02's recorded eval_problems_per_domain): a new tokenizer at the same path kept a stale base."""
    from falcon_h1r_lib.tokenizer import build_tokenizer, save_tokenizer

    cfg = _cfg()
    save_tokenizer(tok, tmp_path / "a")
    save_tokenizer(tok, tmp_path / "b")
    first = pretrain.pretrain_fingerprint(cfg, str(tmp_path / "a"), ["1+1=?"])
    assert pretrain.pretrain_fingerprint(cfg, str(tmp_path / "b"), ["1+1=?"]) == first  # contents, not path
    assert pretrain.pretrain_fingerprint(cfg, str(tmp_path / "a"), ["1+1=?", "2+2=?"]) != first
    save_tokenizer(build_tokenizer(vocab_size=320, seed=0), tmp_path / "a")
    assert pretrain.pretrain_fingerprint(cfg, str(tmp_path / "a"), ["1+1=?"]) != first
