"""DeepConf: confidence measures, offline votes, online Algorithm 2 (replay and live), the vLLM processor core,
the scaling experiment and its CLI (reference deepconf.md §9 item 6, plus ties, normalisation, fallbacks)."""

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from falcon_h1r_lib.configs import DeepConfConfig
from falcon_h1r_lib.deepconf import (
    NO_ANSWER,
    ConfidenceStopHook,
    OfflineMethod,
    OnlineController,
    OnlineSettings,
    OnlineTrace,
    RunningGroupConfidence,
    answer_groups,
    bottom_group_confidence,
    first_window_below,
    group_confidences,
    keep_top,
    lowest_group_confidence,
    mean_confidence,
    offline_methods,
    offline_vote,
    replay_online,
    run_online_live,
    tail_confidence,
    threshold_from,
    token_confidence,
    trace_scores,
    weighted_vote,
)
from falcon_h1r_lib.deepconf import experiment as X
from falcon_h1r_lib.generation import DecodeStep, HFBackend, SamplingConfig, chat_request
from falcon_h1r_lib.tokenizer import TINY_SYSTEM_PROMPT

# ---------------------------------------------------------------- confidence (§9.1-9.3)


def test_token_confidence_is_minus_mean_of_topk():
    lp = np.array([[-0.1, -2.0, -3.0], [-1.0, -1.0, -4.0]], dtype=np.float32)
    np.testing.assert_allclose(token_confidence(lp, k=2), [1.05, 1.0])
    np.testing.assert_allclose(token_confidence(lp, k=None), [(0.1 + 2 + 3) / 3, 2.0], rtol=1e-6)
    assert token_confidence(np.zeros((0, 20)), k=20).shape == (0,)
    with pytest.raises(ValueError, match="top-3 log-probs, k=20"):
        token_confidence(lp, k=20)


def test_constant_trace_scores_agree():
    conf = np.full(50, 7.25)
    s = trace_scores(conf, window=8, tail=10)
    assert s["lowest_group"] == s["tail"] == s["mean"] == s["bottom10"] == 7.25


def test_single_dip_orders_lowest_below_bottom10_below_mean():
    conf = np.full(200, 10.0)
    conf[100:104] = 2.0  # one low stretch
    lowest, bottom, mean = (lowest_group_confidence(conf, 8), bottom_group_confidence(conf, 8, 10),
                            mean_confidence(conf))
    assert lowest < bottom <= mean
    assert lowest == pytest.approx((4 * 2 + 4 * 10) / 8)


def test_trace_shorter_than_window_is_one_group_and_never_stopped():
    conf = np.random.default_rng(0).uniform(5, 15, 100)
    g = group_confidences(conf, 2048)
    assert g.shape == (1,) and g[0] == pytest.approx(conf.mean())
    assert lowest_group_confidence(conf, 2048) == pytest.approx(conf.mean())
    assert tail_confidence(conf, 2048) == pytest.approx(conf.mean())
    assert first_window_below(conf, 2048, threshold=1e9) is None


def test_empty_trace_scores_zero():
    empty = np.zeros(0)
    assert list(group_confidences(empty, 4)) == [0.0]
    assert trace_scores(empty, 4, 4) == {"mean": 0.0, "bottom10": 0.0, "lowest_group": 0.0, "tail": 0.0}
    assert first_window_below(empty, 4, 1.0) is None


def test_group_confidences_stride_one_full_windows():
    conf = np.arange(10, dtype=float)
    np.testing.assert_allclose(group_confidences(conf, 4), [1.5 + i for i in range(7)])
    assert bottom_group_confidence(conf, 4, 10) == 1.5  # floor(0.1 x 7) = 0 -> at least one window
    assert bottom_group_confidence(np.arange(23.0), 4, 10) == pytest.approx((1.5 + 2.5) / 2)  # 20 windows -> 2


# ---------------------------------------------------------------- eta <-> percentile (§9.4-9.5)


def test_eta_10_is_the_90th_percentile_of_warmup_scores():
    scores = np.random.default_rng(1).uniform(8, 12, 16)
    s = threshold_from(scores, keep_top_percent=10)
    assert s == np.percentile(scores, 90)
    assert keep_top(scores, 10).sum() == 2  # position 13.5 of 15: the two highest stay
    assert keep_top(scores, 90).sum() == 14  # 10th percentile at position 1.5
    ctl = OnlineController(OnlineSettings(budget=16, n_init=16, keep_top_percent=10, window=4))
    warm = [OnlineTrace(np.array([v]), 3, label=0) for v in scores]
    assert ctl.warmup(warm) == np.percentile(scores, 90)
    assert ctl.result().n_kept == 2


# ---------------------------------------------------------------- offline votes, ties, normalisation


def test_answers_normalised_before_voting():
    labels = answer_groups(["3", "0.5", r"\frac{1}{2}", "3", "1/2", None, ""])
    assert labels.tolist() == [0, 1, 1, 0, 1, NO_ANSWER, NO_ANSWER]
    v = weighted_vote(labels)
    assert v.label == 1 and v.mass == 3 and v.n_voters == 5 and v.index == 1


def test_ties_go_to_the_first_appearing_answer_deterministically():
    assert weighted_vote([1, 0, 0, 1]).label == 1 and weighted_vote([1, 0, 0, 1]).tied
    assert weighted_vote([0, 1, 1, 0]).label == 0
    w = [0.1 + 0.2, 0.3]  # float sums equal up to rounding are a tie
    assert weighted_vote([5, 7], w).label == 5 and weighted_vote([5, 7], w).tied
    assert weighted_vote([5, 7], [0.3, 0.31]).label == 7


def test_offline_filter_and_fallback():
    labels = np.array([0, 0, 0, 1, NO_ANSWER])
    scores = {s: np.array([1.0, 1.0, 1.0, 9.0, 100.0]) for s in ("mean", "bottom10", "lowest_group", "tail")}
    assert offline_vote(labels, scores, OfflineMethod()).label == 0
    assert offline_vote(labels, scores, OfflineMethod("tail")).label == 1  # 9 > 3 x 1
    assert offline_vote(labels, scores, OfflineMethod("tail", 10.0)).label == 1  # the no-answer trace never counts
    assert offline_vote(labels, scores, OfflineMethod("tail", 90.0, weighted=False)).label == 0
    empty = offline_vote(np.full(3, NO_ANSWER), {"tail": np.ones(3)}, OfflineMethod("tail", 10.0))
    assert empty.label == NO_ANSWER and empty.fallback and empty.index is None
    names = [m.name for m in offline_methods()]
    assert len(names) == 21 and "lowest_group@10" in names and "majority|tail@90" in names


# ---------------------------------------------------------------- online Algorithm 2


def _trace(conf, label, i):
    return OnlineTrace.from_conf(np.asarray(conf, float), window=4, label=label, sample_index=i)


def test_replay_cuts_at_first_low_window_and_counts_index_plus_one():
    conf = [10, 10, 10, 10, 10, 2, 2, 10, 10, 10]  # windows: 10, 8, 6, 8.5 (ends at 6), ...
    assert first_window_below(conf, 4, 7.0) == 6
    t = _trace(conf, 0, 9)
    assert t.stop_index(7.0, 4) == 6
    ctl = OnlineController(OnlineSettings(budget=2, n_init=1, keep_top_percent=100, window=4, consensus_tau=None))
    ctl.warmup([_trace([7.0] * 6, 0, 0)])  # s = 7
    ctl.add_wave([t])
    res = ctl.result()
    assert res.trace_tokens == ((0, 6, False), (9, 7, True)) and res.tokens == 13 and res.n_stopped == 1


def test_online_stop_agrees_with_offline_lowest_group_on_the_same_trace():
    rng = np.random.default_rng(3)
    for _ in range(20):
        topk = -np.sort(rng.gamma(2.0, 1.0, (60, 5)), axis=1).astype(np.float32)  # (n, k) raw log-probs
        conf = token_confidence(topk, 5)
        s = float(np.quantile(group_confidences(conf, 8), rng.uniform(0, 0.3)))
        hook = ConfidenceStopHook({"p": (s, 0, 1)}, window=8, topk=5)
        stopped_at = None
        for i in range(len(topk)):  # one decode step at a time, as a backend calls the hook
            step = DecodeStep(["p"], [0], [0], [i + 1], torch.zeros(1), torch.zeros(1), torch.zeros(1, 5),
                              torch.from_numpy(topk[i:i + 1]), lambda r: None)
            if hook(step)[0]:
                stopped_at = i
                break
        assert stopped_at == first_window_below(conf, 8, s)
        assert (stopped_at is not None) == (lowest_group_confidence(conf, 8) < s)
    run = RunningGroupConfidence(3)
    means = [run.push(c) for c in [1.0, 2.0, 3.0, 4.0]]
    assert means[:2] == [None, None] and means[2:] == list(group_confidences([1.0, 2.0, 3.0, 4.0], 3))


def _pool(rng, n, answers):
    return [_trace(rng.uniform(5, 15, int(rng.integers(3, 30))), answers[i % len(answers)], i) for i in range(n)]


def test_consensus_stop_and_budget_accounting():
    rng = np.random.default_rng(4)
    pool = _pool(rng, 32, [0])  # every trace answers the same: beta = 1 after warm-up
    res = replay_online(pool, OnlineSettings(budget=32, n_init=8, keep_top_percent=90, window=4))[32]
    assert res.consensus_stop and res.n_started == 8 and res.tokens == sum(t.n_tokens for t in pool[:8])
    only = replay_online(pool, OnlineSettings(budget=32, n_init=8, keep_top_percent=10, window=4, consensus_tau=None))[32]
    assert only.n_started == 32 and not only.consensus_stop
    assert only.tokens == sum(tok for _, tok, _ in only.trace_tokens)


def test_replay_budgets_are_prefixes_of_one_run():
    rng = np.random.default_rng(5)
    pool = _pool(rng, 40, [0, 1, 2, 1])
    st = OnlineSettings(budget=40, n_init=8, keep_top_percent=10, window=4, consensus_tau=0.95)
    many = replay_online(pool, st, [8, 16, 40])
    for b in (8, 16, 40):
        assert many[b] == replay_online(pool, dataclasses.replace(st, budget=b))[b]


def test_replayed_consensus_is_checked_before_every_trace_whatever_the_live_wave():
    """Full profile: `live_wave: 64` batches live vLLM runs, but the replayed "+consensus" curves are
    Alg. 2, which checks beta >= tau before every trace. Here consensus holds after trace 34: per-wave
    checks (at 16, 80, 144, ...) ran it to 80 traces."""
    warm = [_trace([12.0] * 6, 0, 0), _trace([12.0] * 6, 1, 1)] + [_trace([1.0] * 6, 2, i) for i in range(2, 16)]
    pool = warm + [_trace([12.0] * 6, 0, i) for i in range(16, 128)]  # confident votes for answer 0
    cfg = DeepConfConfig(budget=128, budgets=(16, 128), pool_size=128, n_init=16, window=4, tail_tokens=4,
                         live_wave=64, runs=1)
    variants = X.online_variants(cfg)
    assert {st.wave for st in variants.values()} == {1}
    res = replay_online(pool, variants["deepconf-low+consensus"])[128]
    assert res.consensus_stop and res.n_started == 34  # 19 votes for 0 against 1 for answer 1: beta 0.95
    per_wave = replay_online(pool, dataclasses.replace(variants["deepconf-low+consensus"], wave=64))[128]
    assert per_wave.n_started == 80 and per_wave.tokens > 2 * res.tokens
    assert X.online_variants(cfg, wave=cfg.live_wave)["deepconf-low"].wave == 64  # live runs batch


def test_online_fallback_when_nothing_is_kept():
    warm = [_trace([10.0] * 8, NO_ANSWER, 0), _trace([1.0] * 8, 4, 1)]  # the confident one has no answer
    ctl = OnlineController(OnlineSettings(budget=3, n_init=2, keep_top_percent=10, window=4, consensus_tau=None))
    ctl.warmup(warm)
    ctl.add_wave([_trace([0.5] * 8, 6, 2)])  # stopped at once
    res = ctl.result()
    assert res.n_kept == 0 and res.vote.fallback and res.label == 4 and res.n_stopped == 1


# ---------------------------------------------------------------- live (HF backend, tiny random model) vs replay


def _label(pid, t):  # any deterministic function of the tokens (a random model writes no \boxed{})
    return int(t.token_ids[:3].sum()) % 3 if t.n_tokens >= 3 else NO_ANSWER


@pytest.mark.parametrize("tau,wave", [(None, 1), (0.6, 2)])
def test_live_and_replay_give_the_same_answers_and_tokens(model, tok, tau, wave):
    reqs = [chat_request(f"q{i}", q, tok, TINY_SYSTEM_PROMPT) for i, q in enumerate(["2+3?", "7*6?"])]
    sampling = SamplingConfig(n=1, temperature=1.0, top_p=0.95, max_new_tokens=24, seed=11, logprobs_topk=5)
    st = OnlineSettings(budget=8, n_init=4, keep_top_percent=10, window=4, consensus_tau=tau, wave=wave, topk=5)
    backend = HFBackend(model, tok, batch_size=64, progress=False)
    live = run_online_live(backend, reqs, sampling, st, _label)
    pool = backend.generate(reqs, dataclasses.replace(sampling, n=st.budget))  # no stopping
    n_stopped = 0
    for r in reqs:
        mine = [t for t in pool if t.problem_id == r.problem_id]
        online = [OnlineTrace.from_conf(token_confidence(t.topk_logprobs, 5), 4, _label(r.problem_id, t), t.sample_index)
                  for t in mine]
        replay = replay_online(online, st)[st.budget]
        got = live.results[r.problem_id]
        assert (got.label, got.tokens, got.trace_tokens, got.threshold) == \
               (replay.label, replay.tokens, replay.trace_tokens, replay.threshold)
        for lt in live.traces[r.problem_id]:  # the live prefix is the pooled trace's prefix, token for token
            pt = mine[lt.sample_index]
            assert lt.token_ids.tolist() == pt.token_ids[:lt.n_tokens].tolist()
        n_stopped += got.n_stopped
    if tau is None:
        assert n_stopped > 0  # eta = 10 stops most traces: the check is not vacuous
    assert live.hook_seconds < live.generate_seconds


# ---------------------------------------------------------------- scaling experiment and CLI


def _synthetic_pools(n_problems=5, pool=24, seed=7):
    rng = np.random.default_rng(seed)
    pools = []
    for p in range(n_problems):
        labels = rng.choice([0, 1, 2, NO_ANSWER], size=pool, p=[0.5, 0.25, 0.15, 0.1])
        confs = [rng.uniform(5, 15, int(rng.integers(5, 40))) + (2.0 if lab == 0 else 0.0) for lab in labels]
        traces = [SimpleNamespace(topk_logprobs=-np.repeat(c[:, None], 20, axis=1), n_tokens=len(c), sample_index=i)
                  for i, c in enumerate(confs)]
        answers = [None if lab == NO_ANSWER else str(lab) for lab in labels]
        pools.append(X.score_pool(f"p{p}", traces, answers, [a == "0" if a else False for a in answers], "math",
                                  window=4, tail=4))
    return pools


def test_scaling_curves_tables_and_figure_frames():
    cfg = DeepConfConfig(budget=16, budgets=(1, 4, 8, 16), pool_size=24, runs=6, n_init=4, window=4, tail_tokens=4,
                         bootstrap_resamples=50)
    pools = _synthetic_pools()
    curves = X.scaling_curves(pools, cfg)
    assert set(curves["family"]) == {"baseline", "offline", "online"}
    maj = X.at_budget(curves, "majority", 16)
    assert 0 <= maj["ci_low"] <= maj["accuracy"] <= maj["ci_high"] <= 1
    assert maj["tokens"] == pytest.approx(np.mean([p.n_tokens.mean() for p in pools]) * 16 * len(pools), rel=0.2)
    low = X.at_budget(curves, "deepconf-low", 16)
    assert low["tokens"] < maj["tokens"]  # early stopping saves tokens
    assert not curves[(curves["family"] == "online") & (curves["budget"] < 4)].shape[0]
    again = X.scaling_curves(pools, cfg)
    pd.testing.assert_frame_equal(curves, again)  # seeded Generator: identical reruns
    summary = X.summary_at(curves, 16)
    assert summary["tokens_saved_percent"] > 0
    t7 = X.table7_frame({("m", "AIME25"): curves, ("m", "tiny-math"): curves}, 16)
    assert t7.loc[0, "paper_accuracy_percent"] == 96.7 and np.isnan(t7.loc[1, "paper_accuracy_percent"])
    f1 = X.figure1_frame({("m", "tiny-math"): curves}, 16)
    assert {"pass@1", "majority", "deepconf-low"} <= set(f1["method"])


def test_per_problem_accuracies_average_to_the_curves():
    """The per-problem rows behind the DeepConf power analysis are the same runs as the curves: their mean over
    problems is the curve's accuracy, and a method that was not replayed is named."""
    cfg = DeepConfConfig(budget=16, budgets=(1, 4, 8, 16), pool_size=24, runs=6, n_init=4, window=4, tail_tokens=4,
                         bootstrap_resamples=50)
    grid = X.replay_grid(_synthetic_pools(), cfg)
    curves = X.curves_from_grid(grid, cfg)
    frame = X.per_problem_frame(grid, 16)
    assert list(frame["problem_id"]) == [f"p{i}" for i in range(5)]
    for method in ("majority", "deepconf-low"):
        assert frame[method].mean() == pytest.approx(X.at_budget(curves, method, 16)["accuracy"])
        assert frame[f"{method}_tokens"].sum() == pytest.approx(X.at_budget(curves, method, 16)["tokens"])
    with pytest.raises(KeyError, match="deepconf-low.*budget 2"):
        grid.per_problem_accuracy("deepconf-low", 2)
    power = X.claim_power({("m", "tiny-math"): frame}, 16)
    assert power.loc[0, "n_problems"] == 5 and 0 < power.loc[0, "power_at_current"] < 1
    wider = X.claim_power({("m", "tiny-math"): frame}, 16, margin=0.05)  # a looser margin needs fewer problems
    assert wider.loc[0, "problems_needed"] <= power.loc[0, "problems_needed"]
    # Before: one pair with < 2 problems killed the whole table; SD 0 claimed power 1 from one problem.
    single, flat = frame.head(1), frame.assign(**{"deepconf-low": frame["majority"]})
    table = X.claim_power({("m", "tiny-math"): frame, ("m", "one"): single, ("m", "flat"): flat}, 16)
    assert list(table["benchmark"]) == ["tiny-math", "one", "flat"] and table.loc[0, "note"] == ""
    assert "1 problem(s) with a verdict" in table.loc[1, "note"] and pd.isna(table.loc[1, "power_at_current"])
    assert "degenerate" in table.loc[2, "note"] and pd.isna(table.loc[2, "problems_needed"])
    with pytest.raises(KeyError, match=r"\('m', 'bare'\) has no column\(s\) \['deepconf-low'\]"):
        X.claim_power({("m", "bare"): frame[["problem_id", "majority"]]}, 16)


def test_cli_runs_the_experiment_on_a_tiny_random_model(tmp_path, tok, model):
    from falcon_h1r_lib.deepconf.__main__ import main

    ckpt = tmp_path / "rand"
    model.save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    cfg = tmp_path / "06.yaml"
    cfg.write_text(f"profile: tiny\nmodels: {{rand: {ckpt}}}\n" "max_problems: 2\nbudget: 6\nbudgets: [1, 3, 6]\npool_size: 6\n"
                   "runs: 4\nn_init: 3\nwindow: 4\ntail_tokens: 4\nmax_new_tokens: 16\nmode: both\n"
                   "bootstrap_resamples: 20\n")
    assert main(["--config", str(cfg), "--out", str(tmp_path / "out")]) == 0
    out = tmp_path / "out"
    assert len(list((out / "pools" / "rand" / "tiny-math").glob("*.parquet"))) == 2
    assert (out / "table7_deepconf.csv").exists()
    import json

    metrics = json.loads((out / "metrics.json").read_text())["metrics"]["models"]["rand"]["tiny-math"]
    assert metrics["live"]["traces_started"] <= 2 * 6 and metrics["at_budget"]["budget"] == 6
    assert metrics["pool"]["n_traces"] == 12


def _summary(majority, low, saved):
    return {"budget": 16, "majority_accuracy": majority, "deepconf_low_accuracy": low, "majority_tokens": 100.0,
            "deepconf_low_tokens": 100.0 - saved, "tokens_saved_percent": saved,
            "accuracy_difference_points": 100.0 * (low - majority)}


def test_the_deepconf_claim_over_seeds_holds_only_where_every_seed_saves_enough_at_no_real_loss():
    by_seed = {0: {("sft", "tiny-math"): _summary(0.20, 0.195, 35.0), ("rl", "tiny-math"): _summary(0.3, 0.2, 40.0)},
               1: {("sft", "tiny-math"): _summary(0.20, 0.21, 31.0), ("rl", "tiny-math"): _summary(0.3, 0.3, 20.0)},
               2: {("sft", "tiny-math"): _summary(0.18, 0.17, 33.0), ("rl", "tiny-math"): _summary(0.3, 0.31, 50.0)}}
    flat = X.claim_over_seeds(by_seed)
    assert list(flat["model"]) == ["sft"] * 4 + ["rl"] * 4  # each pair's seeds, then its mean
    assert list(flat["seed"]) == [0, 1, 2, "mean over 3 seeds"] * 2
    table = flat.set_index(["model", "seed"])
    # sft: -0.5, +1.0, -1.0 points (within the 1-point margin) and >= 30% saved every seed
    assert table.loc[("sft", 0), "claim_holds"] and table.loc[("sft", 2), "claim_holds"]
    assert not table.loc[("rl", 0), "claim_holds"]  # 10 points lost
    assert not table.loc[("rl", 1), "claim_holds"]  # no loss, but 20% saved only
    sft, rl = table.loc[("sft", "mean over 3 seeds")], table.loc[("rl", "mean over 3 seeds")]
    assert sft["claim_holds"] and not rl["claim_holds"]
    assert sft["accuracy_difference_points"] == pytest.approx(-0.5 / 3)
    assert sft["sd_accuracy_difference"] == pytest.approx(np.std([-0.5, 1.0, -1.0], ddof=1))
    assert rl["tokens_saved_percent"] == pytest.approx(110 / 3)
    assert not X.claim_over_seeds(by_seed, margin_points=0.4).set_index(["model", "seed"]).loc[
        ("sft", "mean over 3 seeds"), "claim_holds"]  # seed 0 loses 0.5 points: outside a 0.4-point margin
    one = X.claim_over_seeds({0: by_seed[0]})
    assert len(one) == 2 and "sd_accuracy_difference" not in one  # one seed: no spread rows
    with pytest.raises(ValueError, match="no seeds"):
        X.claim_over_seeds({})
    with pytest.raises(KeyError, match=r"seed 1, \('sft', 'tiny-math'\) has no \['tokens_saved_percent'\]"):
        X.claim_over_seeds({1: {("sft", "tiny-math"): {k: v for k, v in _summary(0.2, 0.2, 30).items()
                                                      if k != "tokens_saved_percent"}}})
    with pytest.raises(ValueError, match="not finite"):
        X.claim_over_seeds({1: {("sft", "tiny-math"): _summary(0.2, float("nan"), 30.0)}})


def test_run_seeds_replays_other_seeds_in_folders_of_their_own_and_reuses_their_pools(tmp_path, tok, model,
                                                                                      monkeypatch):
    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path / "runs"))
    ckpt = tmp_path / "rand"
    model.save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    cfg = DeepConfConfig(profile="tiny", models={"rand": str(ckpt)}, max_problems=2, budget=4, budgets=(1, 4),
                         pool_size=4, runs=2, n_init=2, window=4, tail_tokens=4, max_new_tokens=12,
                         bootstrap_resamples=20, mode="both")
    first = X.run(cfg, out_dir=str(tmp_path / "stage"))  # the stage's own run (seed 0)
    out = X.run_seeds(cfg, [0, 1, 1], first=first)
    assert list(out) == [0, 1]
    assert out[0] == {("rand", "tiny-math"): X.summary_at(first["curves"][("rand", "tiny-math")], 4)}
    assert set(out[1][("rand", "tiny-math")]) >= {"tokens_saved_percent", "accuracy_difference_points"}
    seeds_dir = cfg.run_dir() / "seeds"
    assert [p.name for p in seeds_dir.iterdir()] == ["seed-1"] and not (cfg.run_dir() / "metrics.json").exists()
    saved = json.loads((seeds_dir / "seed-1" / "metrics.json").read_text())
    assert saved["seed"] == 1 and saved["config"]["mode"] == "replay"  # the live run is the stage's alone
    pools = sorted((seeds_dir / "seed-1" / "pools" / "rand" / "tiny-math").glob("*.parquet"))
    assert len(pools) == 2
    stamps = [p.stat().st_mtime_ns for p in pools]
    again = X.run_seeds(cfg, [1])
    assert [p.stat().st_mtime_ns for p in pools] == stamps  # pools kept: nothing sampled again
    assert again[1] == out[1]
    with pytest.raises(ValueError, match="no pools"):
        X.run_seeds(dataclasses.replace(cfg, mode="live"), [1])
    with pytest.raises(ValueError, match="no seeds"):
        X.run_seeds(cfg, [])
