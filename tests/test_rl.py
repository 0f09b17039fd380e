"""RL stage: reward (None handling), the aux CE on positive samples only, backfilling with a bounded cache,
clip-higher bounds as configured, and a short GRPO run of the subclass on a tiny random hybrid (CPU)."""

import dataclasses
import json
import math
import random
from pathlib import Path

import pytest
import torch
from datasets import Dataset

from falcon_h1r_lib import rl
from falcon_h1r_lib.config import ConfigError, load_config
from falcon_h1r_lib.configs import RLStageConfig
from falcon_h1r_lib.models import build_model, falcon_h1_config
from falcon_h1r_lib.rl import data as rl_data
from falcon_h1r_lib.rl import report, resume, stage
from falcon_h1r_lib.rl.backfill import (
    BackfillStats,
    GroupCache,
    PromptStream,
    generation_calls_saved,
    group_has_signal,
    merge_groups,
    per_rank_cache_size,
    rounds_without_cache,
    split_groups,
)
from falcon_h1r_lib.rl.rewards import RLVRReward, combine, completion_text
from falcon_h1r_lib.rl.trainer import FalconGRPOTrainer, positive_ce_loss
from falcon_h1r_lib.stages import MissingStageOutput
from falcon_h1r_lib.tokenizer import FALCON_SYSTEM_PROMPT, TINY_SYSTEM_PROMPT

GOOD = "<think>\n2+2=4\n</think>\n\n\\boxed{4}"
WRONG = "<think>\n2+2=5\n</think>\n\n\\boxed{5}"
MALFORMED_RIGHT = "\\boxed{4}"
MATH = {"id": "m1", "domain": "math", "prompt": "2+2=?", "answer": "4"}
NO_GOLD = {"id": "m2", "domain": "math", "prompt": "?", "answer": ""}  # unreadable gold -> no verdict


# ------------------------------------------------------------------------------------------ reward


def test_reward_values_and_none_is_kept_as_none():
    reward = RLVRReward(format_weight=0.5)
    logged = {}
    texts = [GOOD, WRONG, MALFORMED_RIGHT, GOOD]
    problems = [json.dumps(p) for p in (MATH, MATH, MATH, NO_GOLD)]
    out = reward(prompts=["p"] * 4, completions=[[{"role": "assistant", "content": t}] for t in texts],
                 problem=problems, log_metric=lambda k, v: logged.__setitem__(k, v))
    assert out == [1.0, 0.0, 0.5, None]  # None stays None: TRL gives it zero advantage, out of the baseline
    assert reward.last_positive == [True, False, False, False]  # malformed or undecided is never positive
    assert reward.totals == {"samples": 4, "correct": 2, "malformed": 1, "no_verdict": 1}
    assert logged["rewards/no_verdict_frac"] == 0.25 and logged["rewards/accuracy"] == 0.5


def test_combine_and_completion_text_edges():
    assert combine(None, True, 1.0) is None and combine(None, False, 1.0) is None
    assert combine(False, False, 1.0) == -1.0 and combine(True, True, 1.0) == 1.0
    assert completion_text("plain") == "plain"
    with pytest.raises(TypeError):
        completion_text([{"role": "assistant"}])
    with pytest.raises(KeyError, match="problem"):
        RLVRReward()(prompts=["p"], completions=["x"])


# ------------------------------------------------------------------------------------------ aux CE


def test_positive_ce_loss_has_zero_gradient_on_negative_rows():
    logps = torch.randn(4, 6, requires_grad=True)  # (B, T)
    mask = torch.ones(4, 6)
    mask[1, 4:] = 0
    positive = torch.tensor([True, False, True, False])
    loss = positive_ce_loss(logps, mask, positive, normalizer=mask[positive].sum())
    loss.backward()
    assert torch.all(logps.grad[~positive] == 0)
    assert torch.all(logps.grad[positive] == -1 / mask[positive].sum())
    assert torch.isclose(loss, -(logps[positive]).sum() / 12)


def test_aux_loss_through_the_model_leaves_incorrect_samples_untouched(model):
    """Gradient of the aux term w.r.t. the input embeddings of incorrect samples is exactly zero."""
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(4, model.config.vocab_size, (4, 12), generator=gen)  # (B, P+C)
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    logits = model(inputs_embeds=embeds).logits[:, -7:-1]  # (B, C=6, V) predicting the completion
    logps = torch.log_softmax(logits, -1).gather(-1, ids[:, -6:].unsqueeze(-1)).squeeze(-1)  # (B, C)
    positive = torch.tensor([False, True, False, True])
    positive_ce_loss(logps, torch.ones_like(logps), positive, 12.0).backward()
    assert torch.all(embeds.grad[~positive] == 0)
    assert torch.all(embeds.grad[positive].abs().sum(dim=(1, 2)) > 0)


# ------------------------------------------------------------------------------------------ backfill parts


def _scored(n_groups, g, adv_groups, width_p=3, width_c=4, pad=0, start=0):
    """A synthetic scored batch: ``adv_groups[i]`` is group i's advantage (0 = zero-advantage group)."""
    rows = n_groups * g
    ids = torch.arange(start, start + rows).unsqueeze(1)  # row identity rides in the ids
    return {
        "prompt_ids": ids.repeat(1, width_p), "prompt_mask": torch.ones(rows, width_p, dtype=torch.long),
        "completion_ids": ids.repeat(1, width_c), "completion_mask": torch.ones(rows, width_c, dtype=torch.long),
        "advantages": torch.tensor([a * (1 if j % 2 else -1) for a in adv_groups for j in range(g)], dtype=torch.float),
        "positive": torch.tensor([a != 0 and j % 2 == 1 for a in adv_groups for j in range(g)]),
        "num_items_in_batch": torch.tensor(rows * width_c),
    }


def test_split_merge_repads_groups_of_different_widths():
    a = _scored(2, 2, [1, 0], width_p=2, width_c=3)
    b = _scored(1, 2, [1], width_p=4, width_c=1, start=100)
    groups = split_groups(a, 2) + split_groups(b, 2)
    merged = merge_groups([groups[0], groups[2]], pad_token_id=-1)
    assert merged["prompt_ids"].shape == (4, 4) and merged["completion_ids"].shape == (4, 3)
    assert merged["prompt_ids"][0].tolist() == [-1, -1, 0, 0]  # left-padded prompt
    assert merged["completion_ids"][2].tolist() == [100, -1, -1]  # right-padded completion
    assert merged["completion_mask"][2].tolist() == [1, 0, 0] and merged["prompt_mask"][0].tolist() == [0, 0, 1, 1]
    assert group_has_signal(merged["advantages"], 2).all()
    with pytest.raises(ValueError, match="pixel_values"):
        split_groups({**a, "pixel_values": torch.zeros(4, 1)}, 2)


def test_group_cache_is_bounded_and_expires():
    cache = GroupCache(capacity=3, max_age=2)
    for i in range(5):
        cache.put({"i": i}, step=i)
    assert len(cache) == 3 and cache.evicted == 2
    assert [g["i"] for g in cache.take(2, step=5)] == [3, 4]  # group 2 (age 3) expired first
    assert cache.expired == 1 and len(cache) == 0


def test_prompt_stream_is_seeded_and_resumable():
    rows = [{"id": i} for i in range(5)]
    a = PromptStream(rows, seed=1).take(12)
    b = PromptStream(rows, seed=1, start=7).take(5)
    assert a[7:] == b and sorted(r["id"] for r in a[:5]) == list(range(5))


def test_rounds_without_cache_replay():
    # need 4 valid groups per step; yields per round 3,3,3,3: no cache -> 2 rounds per step, 2 wasted each
    assert rounds_without_cache([3, 3, 3, 3], 4, max_rounds=4) == (2, 4)
    stats = BackfillStats(steps=3, rounds=4, round_yields=[3, 3, 3, 3])  # a cache would need 4 rounds for 3 steps
    saved = generation_calls_saved(stats, 4, 4)
    assert saved["rounds_per_step_without_cache"] == 2.0 and math.isclose(saved["calls_saved_fraction"], 1 - (4 / 3) / 2)


# ------------------------------------------------------------------------------------------ trainer


def _rows(n):
    return [{"prompt": [{"role": "system", "content": TINY_SYSTEM_PROMPT}, {"role": "user", "content": f"{i}+1=?"}],
             "problem": json.dumps({"id": f"p{i}", "domain": "math", "prompt": f"{i}+1=?", "answer": str(i + 1)})}
            for i in range(n)]


class ToyReward:
    """Rewards completions of even character length: a coin flip for a random model, so groups have signal."""

    __name__ = "toy"

    def __init__(self):
        self.last_positive = []

    def __call__(self, prompts, completions, **kw):
        texts = [completion_text(c) for c in completions]
        self.last_positive = [len(t) % 2 == 0 for t in texts]
        return [float(p) for p in self.last_positive]


def _trainer(model, tok, tmp_path, **kw):
    cfg = RLStageConfig(prompts_per_step=2, num_generations=4, max_completion_length=8, max_steps=2,
                        warmup_steps=0, learning_rate=1e-3, save_steps=1000)
    args = stage.grpo_config(cfg, tmp_path / "ckpt")
    args.logging_steps = 1
    args.disable_tqdm = True
    extra = {"aux_ce_coef": 0.1, "backfill": True, "cache_size": 4, "cache_max_age": 2, "max_rounds": 3, **kw}
    return FalconGRPOTrainer(model=model, reward_funcs=[ToyReward()], args=args, train_dataset=Dataset.from_list(_rows(16)),
                             processing_class=tok, **extra)


def test_backfilled_batches_have_no_zero_advantage_group_and_the_cache_stays_bounded(model, tok, tmp_path):
    trainer = _trainer(model, tok, tmp_path, cache_size=3, max_rounds=50)
    rng = random.Random(0)
    g, calls = trainer.num_generations, []

    def fake_round(rows):  # each group independently valid with probability 0.4
        n = len(rows) // g
        calls.append(n)
        return _scored(n, g, [rng.choice([0, 0, 0, 1, 2]) for _ in range(n)], start=1000 * len(calls))

    trainer._score_round = fake_round
    trainer.model.train()
    inputs = [r for r in _rows(2) for _ in range(g)]
    for step in range(30):
        trainer.state.global_step = step
        batch = trainer._generate_and_score_completions(inputs)
        assert batch["prompt_ids"].shape[0] == 2 * g
        assert group_has_signal(batch["advantages"], g).all(), f"step {step}: a zero-advantage group survived"
        assert batch["num_items_in_batch"] == batch["completion_mask"].sum()
        assert batch["num_positive_tokens"] == (batch["completion_mask"] * batch["positive"].unsqueeze(1)).sum()
        assert len(trainer.group_cache) <= 3
    stats = trainer.backfill_stats
    assert stats.steps == 30 and stats.groups_unfilled == 0 and stats.rounds == len(calls) > 30
    assert stats.groups_from_cache > 0 and sum(map(sum, stats.round_yields)) == stats.groups_valid
    assert all(len(y) == 1 for y in stats.round_yields)  # one rank: one yield per round
    assert generation_calls_saved(stats, 2, 50)["calls_saved_fraction"] > 0


def test_unfillable_steps_are_topped_up_and_counted(model, tok, tmp_path):
    trainer = _trainer(model, tok, tmp_path, max_rounds=2)
    g = trainer.num_generations
    trainer._score_round = lambda rows: _scored(len(rows) // g, g, [0] * (len(rows) // g))
    trainer.model.train()
    batch = trainer._generate_and_score_completions([r for r in _rows(2) for _ in range(g)])
    assert batch["prompt_ids"].shape[0] == 2 * g and trainer.backfill_stats.groups_unfilled == 2
    assert trainer.backfill_stats.rounds == 2


def test_clip_higher_bounds_act_as_configured(model, tok, tmp_path):
    trainer = _trainer(model, tok, tmp_path, aux_ce_coef=0.0, backfill=False)
    assert (trainer.epsilon_low, trainer.epsilon_high, trainer.beta) == (0.2, 0.28, 0.0)
    trainer.current_gradient_accumulation_steps = 1
    trainer.model.train()
    gen = torch.Generator().manual_seed(1)
    prompt = torch.randint(4, len(tok), (2, 3), generator=gen)
    completion = torch.randint(4, len(tok), (2, 4), generator=gen)
    ones = torch.ones(2, 4, dtype=torch.long)
    with torch.no_grad():
        logps, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, torch.cat([prompt, completion], 1), torch.ones(2, 7, dtype=torch.long), 4)
    ratio = torch.tensor([[1.5, 1.1, 0.7, 1.27], [0.5, 0.9, 1.3, 0.81]])  # r_t = pi / pi_old, constructed
    inputs = {"prompt_ids": prompt, "prompt_mask": torch.ones_like(prompt), "completion_ids": completion,
              "completion_mask": ones, "advantages": torch.tensor([1.0, -1.0]), "num_items_in_batch": torch.tensor(8),
              "old_per_token_logps": logps - ratio.log()}
    loss = trainer._compute_loss(trainer.model, inputs)
    # A > 0: min(r, clip(r, 0.8, 1.28)); A < 0: the loss is max(r, clip(r)) (pessimistic bound)
    expected = (-(1.28 + 1.1 + 0.7 + 1.27) + (0.8 + 0.9 + 1.3 + 0.81)) / 8
    symmetric = (-(1.2 + 1.1 + 0.7 + 1.2) + (0.8 + 0.9 + 1.3 + 0.81)) / 8
    assert math.isclose(loss.item(), expected, abs_tol=1e-5) and not math.isclose(loss.item(), symmetric, abs_tol=1e-3)
    m = trainer._metrics["train"]
    assert m["clip_ratio/high_mean"][-1] == pytest.approx(1 / 8) and m["clip_ratio/low_mean"][-1] == pytest.approx(1 / 8)


def test_grpo_smoke_run_moves_parameters_and_logs_the_recipe(tok, tmp_path):
    torch.set_num_threads(1)
    policy = build_model(falcon_h1_config("tiny", width=32, vocab_size=len(tok)), seed=1)
    before = [p.detach().clone() for p in policy.parameters()]
    trainer = _trainer(policy, tok, tmp_path)
    trainer.train()
    assert trainer.state.global_step == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))
    logs = [r for r in trainer.state.log_history if "reward" in r]
    assert logs and all(k in logs[-1] for k in ("entropy", "clip_ratio/region_mean", "frac_reward_zero_std",
                                                 "completions/mean_length", "backfill/rounds"))
    assert trainer.backfill_stats.steps == 2
    curves = report.curves(trainer.state.log_history)
    assert curves[0]["step"] == 1 and "clip_fraction" in curves[0]


# ------------------------------------------------------------------------------------------ config and data


def test_config_recipe_and_validation():
    cfg = load_config("04_rl", "tiny")
    assert (cfg.epsilon, cfg.epsilon_high, cfg.beta, cfg.entropy_coef, cfg.temperature) == (0.2, 0.28, 0.0, 0.0, 0.85)
    assert cfg.domains == ("math",) and cfg.warmup_steps == 10 and not cfg.use_vllm
    full = load_config("04_rl", "full")
    assert (full.num_generations, full.prompts_per_step, full.learning_rate, full.tis_cap) == (16, 128, 2e-6, 2.0)
    assert full.use_vllm and full.max_completion_length == 48 * 1024
    with pytest.raises(ConfigError, match="num_generations"):
        RLStageConfig(num_generations=1)
    with pytest.raises(ValueError, match="whole groups"):
        stage.per_device_batch(RLStageConfig(prompts_per_step=3, num_generations=4), world_size=2)
    assert stage.per_device_batch(RLStageConfig(prompts_per_step=128, num_generations=16, gradient_accumulation_steps=16), 8) == 16
    args = stage.grpo_config(full.__class__(**{**full.to_dict(), "domains": tuple(full.domains),
                                              "eval_benchmarks": tuple(full.eval_benchmarks)}), "/tmp/x", world_size=64)
    assert args.vllm_importance_sampling_correction and args.vllm_importance_sampling_clip_max == 2.0
    assert args.vllm_importance_sampling_mode == "token_truncate" and args.loss_type == "dapo"


def test_filter_histogram_and_training_rows():
    kept = [{"sft_pass_rate": r} for r in (0.125, 0.5, 0.5, 0.875)]
    assert rl_data.pass_rate_histogram(kept, 8) == {"0/8": 0, "1/8": 1, "2/8": 0, "3/8": 0, "4/8": 2, "5/8": 0,
                                                     "6/8": 0, "7/8": 1, "8/8": 0}
    rows = rl_data.to_training_rows([MATH], TINY_SYSTEM_PROMPT)
    assert rows[0]["prompt"][0] == {"role": "system", "content": TINY_SYSTEM_PROMPT}
    assert json.loads(rows[0]["problem"])["answer"] == "4"
    pool = [MATH, {**MATH, "id": "m3"}]
    outcomes = {"m1": {"outcomes": [True, False], "truncated": [False, False], "answers": ["4", "5"]},
                "m3": {"outcomes": [True, True], "truncated": [False, False], "answers": ["4", "4"]}}
    table = rl_data.outcomes_table(pool, outcomes)
    back = rl_data.table_outcomes(table)
    assert back["m1"]["answers"] == ["4", "5"] and back["m3"]["outcomes"] == [True, True]
    kept, report = rl_data.apply_filter(pool, back, RLStageConfig())
    assert [r["id"] for r in kept] == ["m1"] and report["dropped_by_reason"] == {"all_correct": 1}


def test_resume_restores_backfill_counters_and_stream(tok, tmp_path):
    from transformers.trainer_utils import get_last_checkpoint

    policy = build_model(falcon_h1_config("tiny", width=32, vocab_size=len(tok)), seed=2)
    first = _trainer(policy, tok, tmp_path)
    first.args.save_steps = 1
    first.train()
    ckpt = get_last_checkpoint(str(tmp_path / "ckpt"))
    state = json.loads((tmp_path / "ckpt" / ckpt.split("/")[-1] / "backfill_state.json").read_text())
    assert state["stats"]["steps"] == 2
    second = _trainer(policy, tok, tmp_path)
    second.args.max_steps = 3
    second.train(resume_from_checkpoint=ckpt)
    assert second.state.global_step == 3 and second.backfill_stats.steps == 3
    assert second.backfill_stats.rounds >= state["stats"]["rounds"] + 1


def test_checkpoints_of_another_run_are_wiped_and_fingerprints_track_the_recipe(tmp_path, monkeypatch):
    monkeypatch.setattr(resume, "upstream_digest", lambda cfg: {"02_data_curation": "x"})  # notebook 02 "ran"
    (tmp_path / "checkpoints" / "checkpoint-5").mkdir(parents=True)
    ckpt_dir = tmp_path / "checkpoints"
    resume.checkpoint_folder(ckpt_dir, "aaa")
    assert not (ckpt_dir / "checkpoint-5").exists()  # no stamp: not ours
    (ckpt_dir / "checkpoint-7").mkdir()
    resume.checkpoint_folder(ckpt_dir, "aaa")
    assert (ckpt_dir / "checkpoint-7").exists()  # same run: kept for resume
    resume.checkpoint_folder(ckpt_dir, "bbb")
    assert not (ckpt_dir / "checkpoint-7").exists()
    base = RLStageConfig(sft_model_path=str(tmp_path / "sft"))  # not notebook 03's: no stage output required
    assert resume.run_fingerprint(base) == resume.run_fingerprint(dataclasses.replace(base, max_steps=99))  # resumes
    assert resume.run_fingerprint(base) != resume.run_fingerprint(dataclasses.replace(base, learning_rate=1e-3))


def test_cap_per_domain_balances_mixed_pools():
    pool = [{"id": f"m{i}", "domain": "math"} for i in range(50)] + [{"id": f"c{i}", "domain": "code"} for i in range(6)]
    capped = rl_data.cap_per_domain(pool, 20, ("math", "code"), seed=0)
    assert len(capped) == 20 and sum(p["domain"] == "code" for p in capped) == 6  # code short: math takes the rest
    assert capped == [p for p in pool if p in capped]  # pool order kept
    only_math = rl_data.cap_per_domain(pool, 10, ("math",), seed=0)
    assert len(only_math) == 10 and all(p["domain"] == "math" for p in only_math)


def test_cap_difficulty_keeps_low_levels_counts_the_rest_and_names_bad_rows():
    pool = [{"id": f"m{i}", "domain": "math", "difficulty": 1 + i % 5} for i in range(10)]
    kept, rep = rl_data.cap_difficulty(pool, 3)
    assert [p["difficulty"] for p in kept] == [1, 2, 3, 1, 2, 3]
    assert (rep.n_in, rep.n_out, rep.dropped_by_reason) == (10, 6, {"above_level": 4})
    with pytest.raises(ValueError, match=r"row 1 \('x'\).*difficulty"):
        rl_data.cap_difficulty([pool[0], {"id": "x", "domain": "math", "difficulty": "hard"}], 3)
    with pytest.raises(ConfigError, match="pool_max_difficulty"):
        RLStageConfig(pool_max_difficulty=0)


def test_accuracy_from_evaluation_pairs_sft_and_rl_problem_by_problem(tmp_path):
    import pandas as pd

    def grades(label, correct):
        path = tmp_path / f"{label}.parquet"
        pd.DataFrame([{"problem_id": f"p{i}", "sample_index": j, "correct": c}
                      for i, row in enumerate(correct) for j, c in enumerate(row)]).to_parquet(path)
        return str(path)

    sft_rows = [[True, False], [False, False], [True, True]]
    rl_rows = [[True, True], [False, True], [True, True]]
    record = {"metrics": {"models": {
        label: {"benchmarks": {"tiny-math": {"domain": "math", "pass_at_1": p, "pass_at_1_ci": [0, 1], "n_problems": 3,
                                             "samples_per_problem": 2, "grades_file": grades(label, rows)}}}
        for label, p, rows in (("sft", 0.5, sft_rows), ("rl", 5 / 6, rl_rows))}}}
    acc = report.accuracy_from_evaluation(record, {"sft": "sft", "rl": "rl"})
    assert acc["sft_accuracy"]["math"]["pass_at_1"] == 0.5
    paired = acc["rl_minus_sft"]["math"]
    assert paired["difference"] == pytest.approx(1 / 3)
    assert (paired["b_better"], paired["a_better"], paired["ties"]) == (2, 0, 1)
    with pytest.raises(KeyError, match="labelled 'base'"):
        report.accuracy_from_evaluation(record, {"sft": "base"})


def test_power_analysis_reads_the_paired_grades_of_the_evaluation_record(tmp_path):
    """Notebook 04's power table comes from this run's SFT and RL grades: more observed disagreement between the
    two models per problem means more problems needed; a record without RL grades is named."""
    import pandas as pd

    def record(rl_rows):
        sft_rows = [[True, False, False, False], [False, False, False, False], [True, True, False, False]] * 4
        files = {}
        for label, rows in (("sft", sft_rows), ("rl", rl_rows)):
            path = tmp_path / f"{label}-{len(files)}-{id(rows)}.parquet"
            pd.DataFrame([{"problem_id": f"p{i}", "sample_index": j, "correct": c}
                          for i, row in enumerate(rows) for j, c in enumerate(row)]).to_parquet(path)
            files[label] = str(path)
        return {"metrics": {"models": {label: {"benchmarks": {"tiny-math": {"domain": "math", "grades_file": f}}}
                                       for label, f in files.items()}}}

    calm = [[True, False, False, False], [False, False, False, False], [True, True, False, False]] * 4
    wild = [[True, True, True, True], [False, False, False, False], [False, False, False, False]] * 4
    table, components = report.power_analysis(record(calm), {"sft": "sft", "rl": "rl"}, ns=(4,))
    assert components.n_problems == 12 and components.var_between == pytest.approx(0.0, abs=1e-12)
    noisy_table, noisy = report.power_analysis(record(wild), {"sft": "sft", "rl": "rl"}, ns=(4,))
    assert noisy.var_between > 0
    assert noisy_table["problems_needed"].iloc[0] > table["problems_needed"].iloc[0]
    assert table["effect_points"].iloc[0] == pytest.approx(83.1 - 79.6)  # [P] Table 3, read from paper_results
    with pytest.raises(KeyError, match="'math' grades"):
        report.power_analysis({"metrics": {"models": {"sft": {"benchmarks": {}}, "rl": {"benchmarks": {}}}}},
                              {"sft": "sft", "rl": "rl"})
    # Before: domain="code" sized the test with AIME25's gain; two math benchmarks: the last one won silently.
    coded = record(wild)
    for label in ("sft", "rl"):
        coded["metrics"]["models"][label]["benchmarks"]["tiny-math"]["domain"] = "code"
    code_table, _ = report.power_analysis(coded, {"sft": "sft", "rl": "rl"}, domain="code", ns=(4,))
    assert code_table["effect_points"].iloc[0] == pytest.approx(68.6 - 64.6)  # [P] Table 3, LCB-v6
    code_rl, _ = report.power_analysis(coded, {"sft": "sft", "rl": "rl"}, domain="code", ns=(4,), rl_domains=("code",))
    assert code_rl["effect_points"].iloc[0] == pytest.approx(70.8 - 64.6)  # "Code only" row
    with pytest.raises(ValueError, match=r"no row for RL on \['poetry'\]"):
        report.power_analysis(coded, {"sft": "sft", "rl": "rl"}, domain="code", rl_domains=("poetry",))
    with pytest.raises(ValueError, match=r"domain must be one of \['code', 'math', 'science'\].*'poetry'"):
        report.power_analysis(coded, {"sft": "sft", "rl": "rl"}, domain="poetry")
    twice = record(wild)
    twice["metrics"]["models"]["sft"]["benchmarks"]["math-500"] = {"domain": "math", "grades_file": "x.parquet"}
    with pytest.raises(ValueError, match=r"model 'sft' has two 'math' benchmarks \('tiny-math', 'math-500'\)"):
        report.power_analysis(twice, {"sft": "sft", "rl": "rl"})


# ------------------------------------------------------------------------------------------ issue 12: scale-out


@pytest.mark.parametrize("world_size", [1, 2, 32, 64])
def test_full_batch_plan_gives_table2_batch_per_update(world_size):
    """Before: 16 completions of up to 48K tokens per micro-batch on 8 ranks (hundreds of GB of activations)."""
    full = load_config("04_rl", "full")
    if world_size != 64:  # the shipped accumulation (32) fits 64 ranks only: elsewhere > 1 completion per device
        with pytest.raises(ValueError, match="1 completion per device"):
            stage.batch_plan(full, world_size)
        full = dataclasses.replace(full, gradient_accumulation_steps=2048 // world_size)
    plan = stage.batch_plan(full, world_size)
    assert world_size * plan["per_device_batch"] * plan["gradient_accumulation_steps"] == 128 * 16  # Table 2
    assert plan["per_device_batch"] == 1
    assert plan["generation_batch_size"] == 2048 and plan["steps_per_generation"] == plan["gradient_accumulation_steps"]
    assert plan["completions_per_rank"] % 16 == 0 and plan["groups_per_rank"] * 16 * world_size == 2048
    if world_size == 64:  # the shipped sizing: 8 nodes x 8 GPUs, one 48K-token completion per micro-step
        assert (plan["per_device_batch"], plan["gradient_accumulation_steps"], plan["groups_per_rank"]) == (1, 32, 2)
        assert per_rank_cache_size(full.cache_size, world_size) == 2


def test_batch_plan_refuses_split_groups_and_trl_generates_once_per_step(tmp_path):
    with pytest.raises(ValueError, match="whole groups"):  # 2048 / 256 ranks = 8 < G
        stage.batch_plan(load_config("04_rl", "full"), 256)
    cfg = RLStageConfig(prompts_per_step=2, num_generations=4, gradient_accumulation_steps=8)
    args = stage.grpo_config(cfg, tmp_path / "ckpt", world_size=1)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps, args.steps_per_generation) == (1, 8, 8)
    assert args.generation_batch_size == 8 and args.num_iterations == 1  # one rollout batch per optimizer step


def test_cache_is_per_rank_share_and_held_on_the_host():
    assert per_rank_cache_size(128, 64) == 2 and per_rank_cache_size(16, 1) == 16 and per_rank_cache_size(0, 8) == 0
    with pytest.raises(ValueError, match="cache_size 128"):
        per_rank_cache_size(128, 48)

    class Probe:  # a tensor stand-in that records where it is moved
        def __init__(self):
            self.moved_to = None

        def to(self, device):
            self.moved_to = device
            return self

    cache = GroupCache(capacity=2, max_age=1)
    group = {"completion_ids": Probe(), "advantages": Probe()}
    cache.put(group, step=0)
    assert all(str(t.moved_to) == "cpu" for t in cache.take(1, step=0)[0].values())


def test_calls_saved_replays_every_rank_against_its_own_quota():
    # 2 ranks, 1 group each per step. Round yields per rank: a rank's surplus cannot fill the other rank.
    assert rounds_without_cache([[2, 0], [0, 2], [1, 1]], 1, max_rounds=4) == (2, 3)
    assert rounds_without_cache([[2, 0], [0, 2]], 1, max_rounds=1) == (2, 2)  # capped: each round is a step
    stats = BackfillStats(steps=2, rounds=2, round_yields=[[2, 0], [0, 2], [1, 1]])
    saved = generation_calls_saved(stats, 1, 4)
    assert saved["rounds_per_step_without_cache"] == 1.5 and math.isclose(saved["calls_saved_fraction"], 1 - 1 / 1.5)
    old = BackfillStats.from_dict({**BackfillStats().to_dict(), "round_yields": [3, 1]})  # pre-issue-12 checkpoint
    assert old.round_yields == [[3], [1]]
    with pytest.raises(ValueError, match="numbers of ranks"):
        rounds_without_cache([[1], [1, 1]], 1, 2)


def test_checkpoint_folder_is_cleaned_by_the_main_process_before_any_rank_goes_on(tmp_path):
    class FakeState:
        def __init__(self, main):
            self.is_main_process, self.seen_at_barrier = main, None

        def wait_for_everyone(self):
            self.seen_at_barrier = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())

    (tmp_path / "checkpoints" / "checkpoint-5").mkdir(parents=True)  # another run's (no stamp)
    other = FakeState(main=False)
    assert resume.checkpoint_folder(tmp_path / "checkpoints", "aaa", other) == tmp_path / "checkpoints"
    assert (tmp_path / "checkpoints" / "checkpoint-5").exists() and other.seen_at_barrier == ["checkpoint-5"]
    main = FakeState(main=True)
    resume.checkpoint_folder(tmp_path / "checkpoints", "aaa", main)
    assert main.seen_at_barrier == ["FINGERPRINT"]  # cleaned and stamped before the barrier releases the ranks


def test_report_to_reaches_trl(tmp_path, monkeypatch):
    monkeypatch.setattr(resume, "upstream_digest", lambda cfg: {"02_data_curation": "x"})  # notebook 02 "ran"
    assert stage.grpo_config(RLStageConfig(), tmp_path / "a").report_to in ([], ["none"], "none")
    args = stage.grpo_config(RLStageConfig(report_to="trackio"), tmp_path / "b")
    assert args.report_to == ["trackio"]
    with pytest.raises(ConfigError, match="report_to"):
        RLStageConfig.from_dict({"report_to": "tensorboard"})
    cfg = RLStageConfig(sft_model_path=str(tmp_path / "sft"))
    assert resume.run_fingerprint(cfg) == resume.run_fingerprint(dataclasses.replace(cfg, report_to="wandb"))


def test_evaluation_config_keeps_the_profiles_evaluation_settings():
    from falcon_h1r_lib.configs import EvaluationConfig

    full = load_config("04_rl", "full")
    ecfg, e05 = report.evaluation_config(full), load_config("05_evaluation", "full")
    assert ecfg.vllm == e05.vllm and ecfg.vllm  # engine settings (max_model_len, parallelism, ...) kept
    assert (ecfg.allow_unpinned, ecfg.eval_sources_file, ecfg.local_files) == (
        e05.allow_unpinned, e05.eval_sources_file, e05.local_files)
    assert (ecfg.backend, ecfg.dtype, ecfg.benchmarks) == ("vllm", e05.dtype, tuple(full.eval_benchmarks))
    assert (ecfg.max_problems, ecfg.samples_per_problem, ecfg.seed) == (1000, 16, full.seed)
    assert ecfg.system_prompt == FALCON_SYSTEM_PROMPT and full.system_prompt is None
    tiny = RLStageConfig()  # the tiny comparison is unchanged (its notebook reuses the same traces)
    assert report.evaluation_config(tiny) == EvaluationConfig(
        profile="tiny", seed=0, benchmarks=("tiny-math",), max_problems=50, samples_per_problem=16,
        system_prompt=TINY_SYSTEM_PROMPT, device="cpu", backend="hf", dtype="float32")


def test_rehearsal_rl_profile_is_full_at_cpu_size():
    reh, full = load_config("04_rl", "rehearsal"), load_config("04_rl", "full")
    assert reh.use_vllm and reh.vllm_mode == "colocate" and reh.backfill and reh.aux_ce_coef == full.aux_ce_coef
    assert stage.batch_plan(reh, 2)["per_device_batch"] == 1 and per_rank_cache_size(reh.cache_size, 2) == 1
    assert reh.sft_model_path == ""  # the rehearsal's own stage-03 output
    assert full.vllm_max_model_length > full.max_completion_length and full.report_to == "none"


def test_calls_saved_is_none_not_nan_without_steps():
    """A run that recorded no step (e.g. no batch) must still write metrics.json, which refuses NaN."""
    from falcon_h1r_lib.rl.backfill import BackfillStats, generation_calls_saved

    out = generation_calls_saved(BackfillStats(), 2, 3)
    assert out["rounds_per_step_with_cache"] is None and out["calls_saved_fraction"] is None


def test_too_few_kept_problems_for_one_step_fail_with_the_numbers(monkeypatch, tmp_path):
    """Before: TRL's sampler yielded no batch, training ran 0 steps and the run died on a NaN metric."""
    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    cfg = load_config("04_rl", "rehearsal")
    pool = [{"id": f"p{i}", "domain": "math", "prompt": f"{i}+1?", "answer": str(i + 1)} for i in range(3)]
    import falcon_h1r_lib.data.build as build
    from falcon_h1r_lib import stages

    monkeypatch.setattr(stages, "recorded_config", lambda name, profile: load_config(name, profile))
    monkeypatch.setattr(stages, "require", lambda name, key, profile: tmp_path)  # notebooks 02 and 03 "ran"
    monkeypatch.setattr(build, "load_output", lambda cfg02, name: [])
    monkeypatch.setattr(rl_data, "build_pool", lambda *a: (pool, []))
    monkeypatch.setattr(stage, "weights_fingerprint", lambda path: "w")
    monkeypatch.setattr(stage, "_filter_cached", lambda out, key: False)
    monkeypatch.setattr(stage, "filter_backend", lambda *a, **k: (None, None))
    monkeypatch.setattr(rl_data, "rollout_outcomes", lambda *a: {})
    monkeypatch.setattr(rl_data, "outcomes_table", lambda *a: __import__("pandas").DataFrame({"x": [1]}))
    monkeypatch.setattr(rl_data, "apply_filter", lambda pool, outcomes, cfg: (pool[:1], {"n_in": 3, "n_out": 1,
                        "dropped_by_reason": {}, "details": {}}))
    import falcon_h1r_lib.generation as generation

    monkeypatch.setattr(generation, "close_backend", lambda b: None)
    with pytest.raises(RuntimeError, match=r"kept 1 of 3 problems, fewer than one step's prompts_per_step=2"):
        stage.prepare_data(cfg, tmp_path)


@pytest.mark.parametrize("profile", ["tiny", "rehearsal"])
def test_rl_reads_notebook_02s_files_and_never_rebuilds_them(monkeypatch, tmp_path, profile):
    """Before: prepare_data ran notebook 02's stage (build.run) with the profile's YAML when its outputs were missing."""
    import falcon_h1r_lib.data.build as build

    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    monkeypatch.setattr(build, "run", lambda *a, **k: pytest.fail("RL re-ran notebook 02's stage"))
    with pytest.raises(MissingStageOutput, match=r"02_data_curation/metrics\.json does not exist.*02_data_curation\.ipynb"):
        stage.prepare_data(load_config("04_rl", profile), tmp_path)


@pytest.mark.parametrize("sft_model_path", ["runs/tiny/03_sft/sft", ""])
def test_rl_without_notebook_03s_model_names_notebook_03(monkeypatch, tmp_path, sft_model_path):
    """The SFT model is notebook 03's output, whether named by the config or left to the stage table."""
    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    cfg = dataclasses.replace(load_config("04_rl", "tiny"), sft_model_path=sft_model_path)
    with pytest.raises(MissingStageOutput, match=r"03_sft/metrics\.json does not exist.*notebooks/03_sft\.ipynb"):
        rl.run(cfg)
    with pytest.raises(MissingStageOutput, match="03_sft"):
        stage.load_policy(cfg)
    (tmp_path / "tiny" / "03_sft" / "sft").mkdir(parents=True)
    (tmp_path / "tiny" / "03_sft" / "metrics.json").write_text("{}")
    assert stage.sft_model_path(cfg) == tmp_path / "tiny" / "03_sft" / "sft"
    assert stage.sft_model_ref(cfg) == (sft_model_path or str(tmp_path / "tiny" / "03_sft" / "sft"))


def _run_02(cfg02, rl_rows, sft_rows):
    """What notebook 02 leaves for RL: its RL problems and SFT rows with their manifests, then metrics.json."""
    from falcon_h1r_lib.data import manifests
    from falcon_h1r_lib.metrics import write_metrics

    for name, rows in (("rl_problems", rl_rows), ("sft", sft_rows)):
        manifests.write_dataset(rows, cfg02.run_dir() / f"{name}.parquet", {"name": name, "source": {"generator": "t"}})
    write_metrics(cfg02, {}, wall_time_s=0.0)


def test_rl_fingerprint_follows_what_notebook_02_wrote(monkeypatch, tmp_path):
    """Before: the fingerprint held the SFT weights and 04's config only, so a 02 rerun with other parameters left
    an RL policy trained on the old pool "done"."""
    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path / "runs"))
    cfg = dataclasses.replace(load_config("04_rl", "rehearsal"), sft_model_path=str(tmp_path / "sft"))
    cfg02 = load_config("02_data_curation", "rehearsal")
    problems = [{"id": f"p{i}", "domain": "math", "prompt": f"{i}+1=?", "answer": str(i + 1)} for i in range(4)]
    sft_rows = [{**problems[0], "id": "s0", "response": "\\boxed{1}"}]
    with pytest.raises(MissingStageOutput, match=r"02_data_curation/metrics\.json.*falcon_h1r_lib\.data"):
        resume.run_fingerprint(cfg)
    _run_02(cfg02, problems, sft_rows)
    first = resume.run_fingerprint(cfg)
    _run_02(cfg02, problems, sft_rows)  # an unchanged rerun
    assert resume.run_fingerprint(cfg) == first
    _run_02(dataclasses.replace(cfg02, decontam_ngram_n=cfg02.decontam_ngram_n + 1), problems, sft_rows)
    assert resume.run_fingerprint(cfg) != first  # 02's recorded config shapes the pool (build_pool reads it)
    _run_02(dataclasses.replace(cfg02, minhash_num_perm=cfg02.minhash_num_perm * 2), problems, sft_rows)
    assert resume.run_fingerprint(cfg) == first  # a 02 setting the pool does not read, same files: RL is kept
    _run_02(cfg02, problems[:3], sft_rows)
    assert resume.run_fingerprint(cfg) != first
    _run_02(cfg02, problems, sft_rows)
    assert resume.run_fingerprint(cfg) == first


def test_a_finished_checkpoint_is_loaded_not_trained_again(tok, tmp_path):
    """Before: re-entering a finished run resumed checkpoint-40 with max_steps 40 and trained to step 41 (changed
    weights): transformers' train() takes one more step on a resume at max_steps. Shown here first, then the fix."""
    from falcon_h1r_lib.checkpoints import last_checkpoint, train_to_max_steps

    torch.set_num_threads(1)
    policy = build_model(falcon_h1_config("tiny", width=32, vocab_size=len(tok)), seed=2)
    first = _trainer(policy, tok, tmp_path)
    first.args.save_steps = 1
    first.train()
    done = {k: v.detach().clone() for k, v in policy.state_dict().items()}
    ckpt = last_checkpoint(tmp_path / "ckpt", max_steps=2)
    assert ckpt.endswith("checkpoint-2") and last_checkpoint(tmp_path / "ckpt", max_steps=1).endswith("checkpoint-1")

    again = build_model(falcon_h1_config("tiny", width=32, vocab_size=len(tok)), seed=3)
    plain = _trainer(again, tok, tmp_path / "plain")
    plain.train(resume_from_checkpoint=ckpt)
    assert plain.state.global_step == 3  # the library behaviour load_finished_checkpoint exists for

    fresh = build_model(falcon_h1_config("tiny", width=32, vocab_size=len(tok)), seed=4)
    loaded = _trainer(fresh, tok, tmp_path / "loaded")
    assert train_to_max_steps(loaded, ckpt) is True  # what rl.stage.run and pretraining call
    assert loaded.state.global_step == 2 and loaded.backfill_stats.steps == 2
    assert all(torch.equal(done[k], v) for k, v in fresh.state_dict().items())
    assert any("reward" in r for r in loaded.state.log_history)
    with pytest.raises(ValueError, match=r"checkpoint-1: not the last checkpoint of a run of max_steps=2"):
        loaded.load_finished_checkpoint(last_checkpoint(tmp_path / "ckpt", max_steps=1))


def test_a_checkpoint_ends_its_run_by_the_step_bound_or_by_the_epochs_it_planned(tmp_path):
    """From the break test: an epoch-based run (max_steps -1, 1.5 epochs = 5 steps) resumed from checkpoint-5
    trained a sixth step: only step-bounded runs were recognised as finished."""
    from falcon_h1r_lib.checkpoints import checkpoint_finished

    def ckpt(name, step, planned):
        (tmp_path / name).mkdir()
        (tmp_path / name / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": planned}))
        return tmp_path / name

    assert checkpoint_finished(ckpt("checkpoint-5", 5, 5), -1)  # epochs: the run's own plan
    assert not checkpoint_finished(ckpt("checkpoint-4", 4, 5), -1)
    assert checkpoint_finished(tmp_path / "checkpoint-4", 4)  # a step bound lowered onto this checkpoint
    assert not checkpoint_finished(tmp_path / "checkpoint-5", 6)
    (tmp_path / "checkpoint-9").mkdir()
    assert not checkpoint_finished(tmp_path / "checkpoint-9", 9)  # no state: not a finished checkpoint


def test_last_checkpoint_ignores_other_folders_and_steps_past_the_bound(tmp_path):
    from falcon_h1r_lib.checkpoints import checkpoint_step, last_checkpoint

    assert last_checkpoint(tmp_path / "missing") is None
    for name in ("checkpoint-5", "checkpoint-40", "checkpoint-9", "checkpoint-x", "other"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-100").write_text("a file, not a checkpoint")
    (tmp_path / "checkpoint-50").mkdir()  # a save killed before trainer_state.json (written last)
    assert Path(last_checkpoint(tmp_path)).name == "checkpoint-40"
    assert Path(last_checkpoint(tmp_path, max_steps=39)).name == "checkpoint-9"
    assert last_checkpoint(tmp_path, max_steps=4) is None
    with pytest.raises(ValueError, match="checkpoint-x: not a Trainer checkpoint"):
        checkpoint_step(tmp_path / "checkpoint-x")


def test_a_finished_run_reentered_with_resume_neutral_changes_is_done_and_its_record_follows(monkeypatch, tmp_path):
    """Before: a changed evaluation size (outside the fingerprint) made _done miss, and the run trained again."""
    from falcon_h1r_lib.metrics import read_metrics, write_metrics

    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    cfg = load_config("04_rl", "tiny")
    (tmp_path / "tiny" / "04_rl" / "rl").mkdir(parents=True)
    (tmp_path / "tiny" / "04_rl" / "rl" / "config.json").write_text("{}")
    write_metrics(cfg, {"fingerprint": "f1", "global_steps": cfg.max_steps, "curves": [1]}, wall_time_s=12.0)
    changed = dataclasses.replace(cfg, eval_max_problems=cfg.eval_max_problems + 1)
    record = resume.done_record(changed, "f1")
    assert record is not None and record["metrics"]["curves"] == [1] and record["wall_time_s"] == 12.0
    assert read_metrics("04_rl")["config_hash"] == changed.config_hash() != cfg.config_hash()
    assert resume.done_record(changed, "f2") is None  # another recipe or upstream
    assert resume.done_record(dataclasses.replace(changed, max_steps=cfg.max_steps + 10), "f1") is None  # to be continued


def test_a_reentered_run_drops_evaluations_of_other_settings_and_only_the_main_rank_writes(monkeypatch, tmp_path):
    """From the break test: the record kept rl_accuracy of 50 problems under eval_max_problems=10; every rank wrote
    metrics.json through one temporary file (3 of 40 two-rank trials crashed); a malformed record raised."""
    from falcon_h1r_lib.metrics import read_metrics, write_metrics

    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    cfg = load_config("04_rl", "tiny")
    (tmp_path / "tiny" / "04_rl" / "rl").mkdir(parents=True)
    (tmp_path / "tiny" / "04_rl" / "rl" / "config.json").write_text("{}")
    trained = {"fingerprint": "f1", "global_steps": cfg.max_steps, "rl_accuracy": {"math": {"n_problems": 50}},
               "headroom": {"x": 1}, "curves": [1]}
    write_metrics(cfg, trained, wall_time_s=3.0)
    old_hash = cfg.config_hash()

    logging_only = dataclasses.replace(cfg, logging_steps=cfg.logging_steps + 1)
    monkeypatch.setenv("RANK", "1")
    assert resume.done_record(logging_only, "f1")["config_hash"] == logging_only.config_hash()
    assert read_metrics("04_rl")["config_hash"] == old_hash  # a non-main rank never writes
    monkeypatch.setenv("RANK", "0")
    kept = resume.done_record(logging_only, "f1")["metrics"]
    assert kept["rl_accuracy"] == {"math": {"n_problems": 50}}  # the evaluation settings did not change
    assert kept["trained_with"]["config_hash"] == old_hash

    smaller = dataclasses.replace(logging_only, eval_max_problems=10)
    record = resume.done_record(smaller, "f1")
    assert "rl_accuracy" not in record["metrics"] and "headroom" not in record["metrics"]
    assert record["metrics"]["curves"] == [1] and record["metrics"]["trained_with"]["config_hash"] == old_hash
    assert read_metrics("04_rl")["config"]["eval_max_problems"] == 10

    for broken in ('{"metrics": [1]}', '{"config_hash": 1', '{"metrics": {}, "config": {}, "wall_time_s": null}'):
        (tmp_path / "tiny" / "04_rl" / "metrics.json").write_text(broken)
        assert resume.done_record(smaller, "f1") is None  # not done: the stage runs (and resumes)


def test_max_steps_is_resume_neutral_only_under_a_constant_schedule(tmp_path, monkeypatch):
    monkeypatch.setattr(resume, "upstream_digest", lambda cfg: {"02_data_curation": "x"})
    base = RLStageConfig(sft_model_path=str(tmp_path / "sft"))
    assert resume.run_fingerprint(base) == resume.run_fingerprint(dataclasses.replace(base, max_steps=99))
    cosine = dataclasses.replace(base, lr_scheduler_type="cosine")
    assert resume.run_fingerprint(cosine) != resume.run_fingerprint(dataclasses.replace(cosine, max_steps=99))


def test_grpo_training_is_bit_identical_when_repeated_and_when_resumed(tok, tmp_path):
    """Issue 14: a claim that flips between two runs on one machine is not a claim. Two runs of the same short GRPO
    stage give the same weights bit for bit, and so does a run stopped after step 1 and resumed."""
    from transformers.trainer_utils import set_seed

    torch.set_num_threads(1)

    def trained(folder, stop_at=None, resume=None):
        set_seed(0)
        policy = build_model(falcon_h1_config("tiny", width=32, vocab_size=len(tok)), seed=5)
        trainer = _trainer(policy, tok, tmp_path / folder)
        trainer.args.save_steps = 1
        if stop_at is not None:
            trainer.args.max_steps = stop_at
        trainer.train(resume_from_checkpoint=resume)
        return {k: v.detach().clone() for k, v in policy.state_dict().items()}

    first, second = trained("a"), trained("b")
    assert all(torch.equal(first[k], second[k]) for k in first)
    trained("c", stop_at=1)
    resumed = trained("c", resume=str(tmp_path / "c" / "ckpt" / "checkpoint-1"))
    assert all(torch.equal(first[k], resumed[k]) for k in first)
