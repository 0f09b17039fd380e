"""DeepConf confidence calibration diagnostics (`deepconf.calibration`): AUROC (pooled vs within-problem, on pools
whose answer is known, Simpson's paradox included), length correlation, online stop shares, the cause detectors on
hand-made traces, the wiring into `experiment.run`, and errors on bad input."""

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from falcon_h1r_lib.configs import DeepConfConfig
from falcon_h1r_lib.deepconf import NO_ANSWER, OnlineSettings, OnlineTrace
from falcon_h1r_lib.deepconf import calibration as C
from falcon_h1r_lib.deepconf import experiment as X
from falcon_h1r_lib.deepconf.confidence import SCORE_NAMES

WINDOW = 2


def make_pool(pid, correct, scores=None, n_tokens=None, labels=None, confs=None, details=None):
    """A ProblemPool from explicit per-trace values: every score = `scores` unless `confs` (token confidences) given."""
    correct = np.asarray(correct, dtype=float)
    n = len(correct)
    if confs is None:
        confs = [np.full(WINDOW + 2, 10.0) for _ in range(n)]
    s = np.asarray(scores if scores is not None else [c.min() for c in confs], dtype=float)
    labels = np.asarray(labels if labels is not None else [0 if c == 1 else 1 for c in correct], dtype=np.int64)
    return X.ProblemPool(
        problem_id=pid, n_tokens=np.asarray(n_tokens if n_tokens is not None else [len(c) for c in confs]),
        labels=labels, correct=correct, label_correct={NO_ANSWER: 0.0, 0: 1.0, 1: 0.0},
        scores={name: s.copy() for name in SCORE_NAMES},
        online=[OnlineTrace.from_conf(c, WINDOW, int(lab), i) for i, (c, lab) in enumerate(zip(confs, labels))],
        details=details)


def problems(*ids):
    return [{"id": pid, "difficulty": k + 1, "prompt": "solve 3x+8=11"} for k, pid in enumerate(ids)]


# ---------------------------------------------------------------- AUROC


def test_calibrated_pool_scores_one_and_anti_calibrated_zero():
    correct = [1, 1, 1, 0, 0, 0]
    good = make_pool("p0", correct, scores=[9, 8, 7, 3, 2, 1], n_tokens=[10, 11, 12, 40, 41, 42])
    bad = make_pool("p0", correct, scores=[1, 2, 3, 7, 8, 9], n_tokens=[40, 41, 42, 10, 11, 12])
    a = C.auroc_table(C.trace_table([good], problems("p0")), resamples=50).set_index("measure")
    b = C.auroc_table(C.trace_table([bad], problems("p0")), resamples=50).set_index("measure")
    for m in SCORE_NAMES:
        assert a.loc[m, "pooled_auroc"] == a.loc[m, "within_auroc"] == 1.0
        assert b.loc[m, "pooled_auroc"] == b.loc[m, "within_auroc"] == 0.0
    assert a.loc[C.LENGTH, "within_auroc"] == 1.0 and b.loc[C.LENGTH, "within_auroc"] == 0.0  # shorter = confident
    assert a.loc["mean", "n_problems"] == 1 and a.loc["mean", "n_correct"] == 3 and a.loc["mean", "resamples"] == 50


def test_simpsons_paradox_pooled_high_within_zero():
    # easy problem: high scores, mostly correct; hard: low scores, mostly wrong; within each, correct score LOWER
    easy = make_pool("easy", [1] * 6 + [0], scores=[8, 8.2, 8.4, 8.6, 8.8, 9, 9.5])
    hard = make_pool("hard", [1] + [0] * 6, scores=[1, 2, 2.2, 2.4, 2.6, 2.8, 3])
    a = C.auroc_table(C.trace_table([easy, hard], problems("easy", "hard")), resamples=100).set_index("measure")
    assert a.loc["mean", "pooled_auroc"] == pytest.approx(36 / 49)
    assert a.loc["mean", "within_auroc"] == 0.0 and a.loc["mean", "n_problems"] == 2
    assert a.loc["mean", "ci_low"] == a.loc["mean", "ci_high"] == 0.0


def test_within_auroc_skips_one_class_problems_and_its_ci_is_seeded():
    rng = np.random.default_rng(0)
    pools = [make_pool(f"p{i}", c, scores=rng.normal(size=6) + 2 * np.asarray(c))
             for i, c in enumerate([[1, 0, 1, 0, 1, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0], [0] * 6, [1] * 6])]
    t = C.trace_table(pools, problems(*[p.problem_id for p in pools]))
    a = C.auroc_table(t, resamples=200, seed=3)
    assert (a["n_problems"] == 3).all()  # the all-wrong and all-correct problems have no within-problem AUROC
    assert ((a.ci_low <= a.within_auroc) & (a.within_auroc <= a.ci_high)).all()
    pd.testing.assert_frame_equal(a, C.auroc_table(t, resamples=200, seed=3))
    per = [C.auroc(t[t.problem_id == p]["correct"], t[t.problem_id == p]["mean"]) for p in ("p0", "p1", "p2")]
    assert a.set_index("measure").loc["mean", "within_auroc"] == pytest.approx(np.mean(per))


def test_auroc_undefined_with_one_class_and_refuses_bad_input():
    assert np.isnan(C.auroc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert C.auroc([1, 0, np.nan], [2.0, 1.0, 5.0]) == 1.0  # no verdict: left out
    with pytest.raises(ValueError, match="shape"):
        C.auroc([1, 0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="non-finite"):
        C.auroc([1, 0], [np.nan, 1.0])


def test_length_correlation_of_a_length_proxy_is_minus_one():
    pools = [make_pool(f"p{i}", [1, 0, 1, 0], scores=[-10, -20, -30, -40], n_tokens=[10, 20, 30, 40]) for i in range(2)]
    lc = C.length_correlation(C.trace_table(pools, problems("p0", "p1"))).set_index("measure")
    assert lc.loc["mean", "spearman_rho"] == pytest.approx(-1.0)
    assert lc.loc["mean", "within_rho"] == pytest.approx(-1.0) and lc.loc["mean", "n_problems"] == 2


# ---------------------------------------------------------------- online stops


def _dip(n=6):
    c = np.full(n, 10.0)
    c[3:5] = 1.0  # a full window of mean 1: the online rule stops here when s > 1
    return c


def test_stop_rule_that_stops_only_wrong_traces():
    # 6 correct flat traces (lowest group 10), 2 wrong with a dip: any 4-trace warm-up holds >= 2 correct, so
    # s = 90th percentile of the warm-up = 10, every later wrong trace stops and no correct one does
    conf = [np.full(6, 10.0)] * 6 + [_dip()] * 2
    pool = make_pool("p0", [1] * 6 + [0] * 2, confs=conf)
    settings = OnlineSettings(budget=8, n_init=4, keep_top_percent=10, window=WINDOW, consensus_tau=None)
    s = C.stop_shares([pool], settings, runs=20, seed=1).set_index("scope")
    row = s.loc["all problems"]
    assert row.n_warmup == 80 and row.n_stopped + row.n_finished == 80
    assert row.stop_rate_correct == 0.0 and row.stop_rate_wrong == 1.0
    assert row.correct_share_stopped == 0.0 and row.correct_share_finished == 1.0
    assert s.loc["mixed problems"].n_stopped == row.n_stopped


def test_stop_rule_that_kills_correct_traces_and_scopes():
    anti = make_pool("p0", [0] * 6 + [1] * 2, confs=[np.full(6, 10.0)] * 6 + [_dip()] * 2)
    unsolved = make_pool("p1", [0] * 8, confs=[np.full(6, 10.0)] * 6 + [_dip()] * 2)
    settings = OnlineSettings(budget=8, n_init=4, keep_top_percent=10, window=WINDOW, consensus_tau=None)
    s = C.stop_shares([anti, unsolved], settings, runs=10, seed=0).set_index("scope")
    assert s.loc["mixed problems", "stop_rate_correct"] == 1.0 and s.loc["mixed problems", "stop_rate_wrong"] == 0.0
    assert s.loc["all problems", "n_warmup"] == 80 and s.loc["mixed problems", "n_warmup"] == 40


def test_stop_shares_refuse_bad_pools():
    settings = OnlineSettings(budget=8, n_init=4, window=WINDOW, consensus_tau=None)
    with pytest.raises(ValueError, match="no problem pools"):
        C.stop_shares([], settings)
    with pytest.raises(ValueError, match="fewer than budget=8"):
        C.stop_shares([make_pool("p0", [1, 0, 1])], settings)


# ---------------------------------------------------------------- cause detectors on hand-made traces


class FakeTokenizer:
    VOCAB = {0: "<think>", 1: "\n", 2: "1", 3: "2", 4: "</think>", 5: "\\boxed{", 6: "}", 7: " b", 8: "x="}

    def decode(self, ids, skip_special_tokens=False):
        return "".join(self.VOCAB[i] for i in ids)


def test_repeated_lines_detector():
    assert C.repeated_line_share("a\nb\na\n\n") == pytest.approx(1 / 3)
    assert C.repeated_line_share("x=1\ny=2\n") == 0.0 and C.repeated_line_share("") == 0.0


def test_copied_from_prompt_detector():
    assert C.copied_from_prompt("11", "solve 3x+8=11") and C.copied_from_prompt("3", "solve 3x+8=11")
    assert C.copied_from_prompt("-8", "solve 3x+8=11")  # sign ignored
    assert not C.copied_from_prompt("1", "solve 3x+8=11")  # a digit of 11 is not the number 11
    assert not C.copied_from_prompt(None, "solve 3x+8=11") and not C.copied_from_prompt("  ", "7")
    assert C.copied_from_prompt("x", "solve 3x+8=11") and not C.copied_from_prompt("y", "solve 3x+8=11")
    assert C.copied_from_prompt("x+8", "solve 3x + 8=11")


def test_template_tokens_and_lowest_window():
    mask = C.template_token_mask([0, 1, 2, 3, 1, 4, 5, 2, 6, 7, 8], FakeTokenizer())
    assert mask.tolist() == [True, True, False, False, True, True, True, False, True, False, False]
    assert C.lowest_window([3.0, 1.0, 2.0], n_tokens=6, window=4) == (1, pytest.approx(0.5))
    assert C.lowest_window([1.0, 2.0, 3.0], n_tokens=6, window=4) == (0, pytest.approx(2 / 6))
    assert C.lowest_window([5.0], n_tokens=3, window=16) == (0, 0.5)  # shorter than the window: one group
    with pytest.raises(ValueError, match="no group"):
        C.lowest_window([], 3, 2)


def hand_trace(i, ids, text):
    return SimpleNamespace(token_ids=np.asarray(ids), n_tokens=len(ids), sample_index=i, finish_reason="eos",
                           completion=text)


def test_trace_details_and_flags_on_hand_made_traces():
    # window 2; the lowest window of trace 0 is its template end, of trace 1 its content
    t0 = hand_trace(0, [0, 2, 3, 4, 5, 2, 6], "<think>12</think>\\boxed{1}")
    t1 = hand_trace(1, [0, 2, 2, 1, 2, 2, 1, 4, 5, 2, 2, 6], "<think>\n11\n11\n</think>\\boxed{11}")
    t2 = hand_trace(2, [0, 2, 1, 2, 1, 4, 5, 3, 6], "<think>\n1\n1\n</think>\\boxed{2}")
    confs = [np.array([9, 9, 9, 9, 1, 1, 9.0]), np.array([9, 1, 1, 9, 9, 9, 9, 9, 9, 9, 9, 9.0]),
             np.array([9.0] * 9)]
    groups = [OnlineTrace.from_conf(c, WINDOW, 0).groups for c in confs]
    problem = {"id": "p0", "difficulty": 3, "prompt": "solve 3x+8=11"}
    d = C.trace_details(problem, [t0, t1, t2], ["1", "11", "2"], groups, WINDOW, FakeTokenizer())
    assert d.lowest_window_start.tolist() == [4, 1, 0]
    assert d.lowest_window_template_share.tolist() == [0.5, 0.0, 0.5]  # "\boxed{", "1" / "1", "1" / "<think>", "1"
    assert d.copied_from_prompt.tolist() == [False, True, False]
    assert d.repeated_line_share.tolist() == [0.0, 0.25, 0.25]
    pool = make_pool("p0", [1, 0, 0], scores=[5, 9, 1], n_tokens=[7, 12, 9], confs=confs, details=d)
    t = C.trace_table([pool], [problem])
    assert t.difficulty.tolist() == [3] * 3 and t.answer.tolist() == ["1", "11", "2"] and t.mixed.all()
    assert t.short.tolist() == [False, False, False] and t.repeated_lines.tolist() == [False, True, True]
    assert t.degenerate.tolist() == [False, True, True]
    causes = C.cause_table(t, "mean", keep_top_percent=10).set_index("group")
    hi = causes.loc["wrong, top 10%"]  # the top-10% trace by score is trace 1: wrong, copied, repeated lines
    assert hi.n == 1 and hi.copied_from_prompt == 1.0 and hi.repeated_lines == 1.0 and hi.template_dominated == 0.0
    assert causes.loc["correct, all"].copied_from_prompt == 0.0 and causes.loc["correct, all"].template_dominated == 1.0
    assert causes.loc["correct, top 10%"].n == 0 and np.isnan(causes.loc["correct, top 10%"].copied_from_prompt)


def test_short_is_undefined_without_a_correct_trace_and_no_answer_is_degenerate():
    solved = make_pool("a", [1, 0, 0], n_tokens=[10, 5, 12], labels=[0, 1, NO_ANSWER], scores=[1, 2, 3])
    unsolved = make_pool("b", [0, 0], n_tokens=[3, 4], scores=[1, 2])
    t = C.trace_table([solved, unsolved], problems("a", "b"))
    assert t.short.tolist()[:3] == [False, True, False] and t.short.isna().tolist()[3:] == [True, True]
    assert t.degenerate.tolist() == [False, True, True, False, False]
    assert t.mixed.tolist() == [True, True, True, False, False]
    assert t.finish_reason.isna().all()  # pools without details: the detail columns are empty, not invented


# ---------------------------------------------------------------- errors and the summary


def test_errors_name_the_problem_or_field():
    pool = make_pool("p0", [1, 0])
    with pytest.raises(ValueError, match="no problem pools"):
        C.trace_table([], problems("p0"))
    with pytest.raises(ValueError, match="'p9' is not among"):
        C.trace_table([make_pool("p9", [1, 0])], problems("p0"))
    pool.scores["tail"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"'p0' holds 2 traces .*'tail': 3"):
        C.trace_table([pool], problems("p0"))
    with pytest.raises(ValueError, match="empty"):
        C.auroc_table(pd.DataFrame())
    with pytest.raises(KeyError, match="'tail'"):
        C.auroc_table(pd.DataFrame({"problem_id": ["p0"], "correct": [1.0], "n_tokens": [3], "mean": [1.0],
                                    "bottom10": [1.0], "lowest_group": [1.0]}))
    with pytest.raises(ValueError, match="2 traces, 1 answers, 2 group"):
        C.trace_details({"id": "p0"}, [hand_trace(0, [1], ""), hand_trace(1, [1], "")], ["1"], [[1.0], [1.0]], 2)
    with pytest.raises(ValueError, match="both correct and wrong"):
        C.cause_table(C.trace_table([make_pool("p0", [0, 0])], problems("p0")))


def test_diagnose_summary_is_json_ready_with_and_without_mixed_problems():
    conf = [np.full(6, 10.0)] * 6 + [_dip()] * 2
    settings = OnlineSettings(budget=8, n_init=4, keep_top_percent=10, window=WINDOW, consensus_tau=None)
    d = C.diagnose([make_pool("p0", [1] * 6 + [0] * 2, confs=conf)], problems("p0"), settings, runs=4, resamples=20)
    s = json.loads(json.dumps(d["summary"], allow_nan=False))
    assert s["auroc"]["lowest_group"]["within"] == 1.0 and s["best_measure"] in SCORE_NAMES
    assert s["stops"]["scope"] == "mixed problems" and s["stops"]["stop_rate_wrong"] == 1.0
    assert s["causes"]["wrong, all"]["n"] == 2 and s["resamples"] == 20 and s["runs"] == 4
    flat = C.diagnose([make_pool("p0", [0] * 8, confs=conf)], problems("p0"), settings, runs=2, resamples=20)
    s = json.loads(json.dumps(flat["summary"], allow_nan=False))
    assert s["causes"] is None and s["auroc"]["mean"]["within"] is None and s["best_measure"] is None
    assert s["stops"]["scope"] == "all problems"


def test_run_writes_the_trace_table_and_the_summary(tmp_path, tok, model):
    from falcon_h1r_lib.generation import HFBackend

    ckpt = tmp_path / "rand"
    model.save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    cfg = DeepConfConfig(profile="tiny", models={"rand": str(ckpt)}, max_problems=2, budget=4, budgets=(1, 4),
                         pool_size=4, runs=2, n_init=2, window=4, tail_tokens=4, max_new_tokens=12,
                         bootstrap_resamples=20)
    res = X.run(cfg, backends={"rand": (HFBackend(model, tok, batch_size=64, progress=False), tok)},
                out_dir=str(tmp_path / "out"))
    table = pd.read_csv(tmp_path / "out" / "calibration_rand_tiny-math.csv")
    assert len(table) == 2 * 4 and {"lowest_group", "lowest_window_template_share", "degenerate"} <= set(table.columns)
    assert table.lowest_window_template_share.between(0, 1).all()  # the tokenizer was passed through
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())["metrics"]["models"]["rand"]["tiny-math"]
    assert set(saved["calibration"]) >= {"auroc", "stops", "causes", "spearman_length"}
    assert set(res["calibration"][("rand", "tiny-math")]) == {"traces", "auroc", "length", "stops", "causes", "summary"}
