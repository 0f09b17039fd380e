"""RL headroom (``evaluation.headroom``): pass@k curves per level on hand-made grades where every value is known
exactly, bootstrap intervals, the paired SFT -> RL change, the refusals, and ``evaluation.benchmarks.ProblemSet``."""

from __future__ import annotations

from math import comb

import numpy as np
import pandas as pd
import pytest

from falcon_h1r_lib.config import load_config
from falcon_h1r_lib.evaluation import paired_difference
from falcon_h1r_lib.evaluation.benchmarks import ProblemSet
from falcon_h1r_lib.evaluation.headroom import (
    COMPARE_COLUMNS,
    CURVE_COLUMNS,
    compare_curves,
    pass_at_k_curve,
    power_of_two_ks,
    problem_pass_at_k,
)


def grades(correct: dict[str, list[bool | None]], levels: dict[str, int] | None = None) -> pd.DataFrame:
    """One row per sample, as ``grading.grade_all`` writes them (problem_id, sample_index, correct, difficulty)."""
    rows = [{"problem_id": pid, "sample_index": i, "correct": c, "difficulty": (levels or {}).get(pid, 1)}
            for pid, verdicts in correct.items() for i, c in enumerate(verdicts)]
    df = pd.DataFrame(rows)
    df["correct"] = df["correct"].astype(object)
    return df


def chen(n: int, c: int, k: int) -> float:
    """pass@k by its definition, 1 - C(n-c, k) / C(n, k) (Chen et al. 2021), with exact binomials."""
    return 1.0 - comb(n - c, k) / comb(n, k)


# four problems of 4 samples: c = 0, 1, 2, 4; levels 1, 1, 2, 2
TABLE = {"a": [False] * 4, "b": [True, False, False, False], "c": [True, False, True, False], "d": [True] * 4}
LEVELS = {"a": 1, "b": 1, "c": 2, "d": 2}


def test_power_of_two_ks_end_at_n():
    assert power_of_two_ks(1) == [1]
    assert power_of_two_ks(16) == [1, 2, 4, 8, 16]
    assert power_of_two_ks(12) == [1, 2, 4, 8, 12]
    for bad in (0, -4, 2.0, True):
        with pytest.raises(ValueError, match="n"):
            power_of_two_ks(bad)


def test_curve_values_are_exact_overall_and_per_level():
    curve = pass_at_k_curve(grades(TABLE, LEVELS), resamples=200)
    assert list(curve.columns) == list(CURVE_COLUMNS)
    assert list(curve["group"].unique()) == ["all", "1", "2"] and list(curve["k"].unique()) == [1, 2, 4]
    got = curve.set_index(["group", "k"])["pass_at_k"]
    c_of = {pid: sum(v) for pid, v in TABLE.items()}
    for k in (1, 2, 4):
        assert got["all", k] == pytest.approx(np.mean([chen(4, c, k) for c in c_of.values()]))
    # hand values: level 1 = problems c=0, c=1; level 2 = c=2, c=4
    assert got["1", 1] == pytest.approx((0 + 1 / 4) / 2)
    assert got["1", 2] == pytest.approx((0 + 1 / 2) / 2)  # 1 - C(3,2)/C(4,2) = 1/2
    assert got["1", 4] == pytest.approx(0.5)
    assert got["2", 1] == pytest.approx((1 / 2 + 1) / 2)
    assert got["2", 2] == pytest.approx((5 / 6 + 1) / 2)  # 1 - C(2,2)/C(4,2) = 5/6
    assert got["2", 4] == pytest.approx(1.0)
    assert (curve.groupby("group")["n_problems"].first().to_dict()) == {"all": 4, "1": 2, "2": 2}
    for _, g in curve.groupby("group"):
        assert g["pass_at_k"].is_monotonic_increasing  # pass@k never falls with k


def test_no_verdict_samples_leave_n_and_verdictless_problems_are_counted_apart():
    table = {"a": [True, None, False], "b": [None, None, None], "c": [True, True, False, False]}
    per = problem_pass_at_k(grades(table), ks=[1, 2])
    assert per.set_index("problem_id").loc["a", ["n", "n_graded", "c"]].tolist() == [3, 2, 1]
    assert np.isnan(per.set_index("problem_id").loc["b", "pass@1"])
    curve = pass_at_k_curve(grades(table), resamples=100)  # ks default to the fewest graded samples: 2
    assert curve["k"].tolist() == [1, 2, 1, 2]
    row = curve[(curve.group == "all") & (curve.k == 2)].iloc[0]
    assert row.pass_at_k == pytest.approx((chen(2, 1, 2) + chen(4, 2, 2)) / 2)
    assert (row.n_problems, row.n_left_out) == (2, 1)


def test_without_levels_there_is_one_curve():
    df = grades(TABLE).drop(columns="difficulty")
    curve = pass_at_k_curve(df, by=None, resamples=100)
    assert curve["group"].unique().tolist() == ["all"]
    with pytest.raises(KeyError, match="difficulty"):
        pass_at_k_curve(df)


def test_ci_contains_the_estimate_is_seeded_and_shrinks_with_more_problems():
    rng = np.random.default_rng(0)

    def table(n_problems: int) -> pd.DataFrame:
        rates = np.tile([0.0, 0.1, 0.3, 0.6], n_problems // 4)
        return grades({f"p{i}": list(rng.random(8) < r) for i, r in enumerate(rates)})

    small, large = table(12), table(240)
    a, b = pass_at_k_curve(small, seed=3), pass_at_k_curve(large, seed=3)
    for curve in (a, b):
        assert ((curve.ci_low <= curve.pass_at_k) & (curve.pass_at_k <= curve.ci_high)).all()
    assert pass_at_k_curve(small, seed=3).equals(a)  # same seed, same interval
    width = lambda c: (c.ci_high - c.ci_low).to_numpy()  # noqa: E731
    assert (width(b) < width(a)).all()
    assert (width(b) < 0.6 * width(a)).any()  # ~ 1/sqrt(20) of the problems' spread: far narrower
    assert (pass_at_k_curve(large, ci_level=0.5).pipe(width) < width(b)).all()


def test_compare_curves_signs_and_k1_is_the_paired_difference():
    # RL sharpens: the problem SFT solved 1/4 it now solves 4/4 (pass@1 up), the one it solved 1/4 elsewhere is lost
    before = grades({"a": [True, False, False, False], "b": [True, False, False, False], "c": [False] * 4},
                    {"a": 1, "b": 2, "c": 2})
    after = grades({"a": [True] * 4, "b": [False] * 4, "c": [False] * 4}, {"a": 1, "b": 2, "c": 2})
    diff = compare_curves(before, after, resamples=500)
    assert list(diff.columns) == list(COMPARE_COLUMNS)
    d = diff.set_index(["group", "k"])
    assert d.loc[("all", 1), "difference"] == pytest.approx((3 / 4 - 1 / 4) / 3)  # pass@1 up
    assert d.loc[("all", 4), "difference"] == pytest.approx(-1 / 3)  # pass@4 down: a stays solved, b is lost
    assert d.loc[("1", 4), "difference"] == 0 and d.loc[("2", 4), "difference"] == pytest.approx(-0.5)
    assert d.loc[("2", 1), "difference"] < 0 < d.loc[("1", 1), "difference"]
    assert (d.loc[("2", 4), ["after_better", "before_better", "ties"]].tolist()) == [0, 1, 1]
    assert (d["ci_low"] <= d["difference"] + 1e-12).all() and (d["difference"] <= d["ci_high"] + 1e-12).all()
    ref = paired_difference(before, after, resamples=500, seed=0)
    assert d.loc[("all", 1), "difference"] == pytest.approx(ref["difference"])
    assert [d.loc[("all", 1), "ci_low"], d.loc[("all", 1), "ci_high"]] == pytest.approx(ref["ci"])
    swapped = compare_curves(after, before, resamples=500).set_index(["group", "k"])
    assert np.allclose(swapped["difference"], -d["difference"])


def test_compare_refuses_other_problems_and_other_levels():
    before = grades(TABLE, LEVELS)
    with pytest.raises(ValueError, match="different problems.*'d'"):
        compare_curves(before, grades({k: v for k, v in TABLE.items() if k != "d"}, LEVELS))
    with pytest.raises(ValueError, match="'difficulty' differs.*'a'"):
        compare_curves(before, grades(TABLE, {**LEVELS, "a": 3}))
    with pytest.raises(KeyError, match=r"compare_curves\(after\).*\['correct'\]"):
        compare_curves(before, before.drop(columns="correct"))


@pytest.mark.parametrize("call,error,match", [
    (lambda: pass_at_k_curve(grades(TABLE, LEVELS), ks=[1, 8]), ValueError, r"k=8 exceeds the n=4 graded samples"),
    (lambda: pass_at_k_curve(grades(TABLE, LEVELS), ks=[0]), ValueError, "int >= 1"),
    (lambda: pass_at_k_curve(grades(TABLE, LEVELS), ks=[]), ValueError, "ks is empty"),
    (lambda: pass_at_k_curve(grades(TABLE, LEVELS).iloc[:0]), ValueError, "empty"),
    (lambda: pass_at_k_curve(grades(TABLE, LEVELS).drop(columns=["problem_id"])), KeyError, r"\['problem_id'\]"),
    (lambda: pass_at_k_curve(grades({"a": [None, None]})), ValueError, "no problem has a verdict"),
    (lambda: pass_at_k_curve(grades(TABLE, LEVELS).assign(correct=1)), ValueError, "True / False / None"),
    (lambda: pass_at_k_curve(grades(TABLE, LEVELS).to_dict()), TypeError, "DataFrame"),
    (lambda: pass_at_k_curve(pd.concat([grades({"a": [True]}, {"a": 1}), grades({"a": [False]}, {"a": 2})])),
     ValueError, "changes within problem"),
])
def test_bad_input_is_refused_by_name(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_problem_set_serves_its_list_and_refuses_bad_ones():
    problems = tuple({"id": f"m{i}", "domain": "math", "prompt": f"{i}+1?", "answer": str(i + 1)} for i in range(3))
    kw = {"name": "rl-pool-math", "profile": "tiny", "domain": "math", "samples_per_problem": 4, "max_new_tokens": 8,
          "paper_table": ""}
    bench = ProblemSet(problems=problems, **kw)
    assert [p["id"] for p in bench.load_problems()] == ["m0", "m1", "m2"]
    assert [p["id"] for p in bench.load_problems(2, sources_file="ignored")] == ["m0", "m1"]
    assert bench.sampling(seed=1, n=8).n == 8
    with pytest.raises(ValueError, match="no problems"):
        ProblemSet(**kw)
    with pytest.raises(ValueError, match=r"\['c1'\] are not of domain 'math'"):
        ProblemSet(problems=(*problems, {"id": "c1", "domain": "code"}), **kw)
    with pytest.raises(ValueError, match="repeated problem ids.*m0"):
        ProblemSet(problems=(*problems, problems[0]), **kw)


# ------------------------------------------------------------------------------------------ notebook 04 wiring


def trained(n: int, levels=(1, 2, 3)) -> list[dict]:
    return [{"id": f"t{i}", "domain": "math", "prompt": f"{i}+1?", "answer": str(i + 1), "difficulty": levels[i % 3]}
            for i in range(n)]


def test_headroom_sets_hold_out_and_a_seeded_sample_of_the_trained_problems():
    from falcon_h1r_lib.rl import report

    cfg = load_config("04_rl", "tiny")
    sets = report.headroom_sets(cfg, trained(200))
    assert {k: v["kind"] for k, v in sets.items()} == {"tiny-math": "held-out", "rl-pool-math": "rl-pool"}
    pool = sets["rl-pool-math"]["benchmark"]
    assert len(pool.problems) == cfg.headroom_max_problems and pool.max_new_tokens == cfg.max_completion_length
    assert [p["id"] for p in report.headroom_sets(cfg, trained(200))["rl-pool-math"]["benchmark"].problems] == [
        p["id"] for p in pool.problems]  # seeded: the same sample every run
    assert [p["id"] for p in pool.problems] != [f"t{i}" for i in range(cfg.headroom_max_problems)]  # not a prefix
    for s in sets.values():  # one protocol: n samples, the headroom seed (not the filter's), evaluation sampling
        ecfg = s["config"]
        assert (ecfg.samples_per_problem, ecfg.seed) == (cfg.headroom_samples, cfg.seed + 1)
        assert ecfg.temperature == report.evaluation_config(cfg).temperature
    assert sets["tiny-math"]["config"].max_problems == cfg.headroom_max_problems
    assert len(report.headroom_sets(cfg, trained(7))["rl-pool-math"]["benchmark"].problems) == 7  # fewer: all
    with pytest.raises(ValueError, match="no 'math' problem"):
        report.headroom_sets(cfg, [])


def test_headroom_samples_both_models_on_every_set_and_records_curves(monkeypatch, tmp_path):
    import falcon_h1r_lib.evaluation.pipeline as pipeline
    import falcon_h1r_lib.generation as generation
    from falcon_h1r_lib.rl import report

    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    cfg = load_config("04_rl", "tiny", {"sft_model_path": "runs/tiny/03_sft/sft"})
    sets = report.headroom_sets(cfg, trained(9))
    verdicts = {"sft": [True, False, False, False], "rl": [True, True, False, False]}
    opened, closed = [], []

    def fake_evaluate(ecfg, bench, backend, tok, model, label, out):
        problems = bench.load_problems(ecfg.max_problems if bench.name == "tiny-math" else None)[:4]
        g = grades({p["id"]: verdicts[label] for p in problems}, {p["id"]: p.get("difficulty", 1) for p in problems})
        path = out / "grades" / label / f"{bench.name}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        g.to_parquet(path)
        return {"grades_file": str(path), "traces_file": "t", "traces_reused": False, "sample_wall_s": 1.0,
                "pass_at_1": 0.0, "n_samples": len(g), "n_problems": len(problems), "max_new_tokens": 8}

    monkeypatch.setattr(pipeline, "evaluate_benchmark", fake_evaluate)
    monkeypatch.setattr(pipeline, "make_backend", lambda ecfg, model: (opened.append(model) or model, "tok"))
    monkeypatch.setattr(generation, "close_backend", closed.append)
    record = report.headroom(cfg, {"model_dir": "runs/tiny/04_rl/rl"}, sets)
    assert opened == closed == ["runs/tiny/03_sft/sft", "runs/tiny/04_rl/rl"]  # one engine at a time
    assert set(record["sets"]) == {"tiny-math", "rl-pool-math"} and record["seed"] == cfg.seed + 1
    assert set(record["sets"]["rl-pool-math"]["models"]) == {"sft", "rl"}
    curves, change = report.headroom_tables(cfg, record)
    assert set(curves["set"]) == set(record["sets"]) and set(curves["model"]) == {"sft", "rl"}
    one = change[(change["set"] == "tiny-math") & (change["group"] == "all")].set_index("k")
    assert one.loc[1, "difference"] == pytest.approx(0.25) and one.loc[4, "difference"] == 0
    monkeypatch.setattr(report, "_add_to_metrics", lambda cfg, extra: extra)  # metrics.json itself: record_accuracy's
    metrics = report.record_headroom(cfg, record, curves, change)
    assert len(metrics["headroom"]["curves"]) == len(curves)
    written = pd.read_csv(tmp_path / "tiny" / "04_rl" / "headroom_rl_minus_sft.csv")
    assert len(written) == len(change) and set(written.columns) >= set(COMPARE_COLUMNS)


def test_trained_problems_are_the_filters_kept_rows_and_need_its_file(monkeypatch, tmp_path):
    """The RL pool sample reads the filter file the stage wrote (never samples): partial successes kept, 8/8 dropped."""
    from falcon_h1r_lib.rl import data as rl_data
    from falcon_h1r_lib.rl import stage
    from falcon_h1r_lib.stages import MissingStageOutput

    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    cfg = load_config("04_rl", "tiny")
    pool = trained(3)
    monkeypatch.setattr(stage, "_pool", lambda cfg: (pool, [], "key1"))
    with pytest.raises(MissingStageOutput, match=r"rl_filter_rollouts\.parquet.*04_rl\.ipynb"):
        stage.trained_problems(cfg)
    k = cfg.filter_rollouts
    outcomes = {"t0": [True] * k, "t1": [True] + [False] * (k - 1), "t2": [True, True] + [False] * (k - 2)}
    outcomes = {pid: {"outcomes": o, "truncated": [False] * k, "answers": ["1"] * k} for pid, o in outcomes.items()}
    out = cfg.run_dir()
    rl_data.outcomes_table(pool, outcomes).to_parquet(out / rl_data.FILTER_FILE)
    (out / (rl_data.FILTER_FILE + ".key")).write_text("key1\n")
    assert [p["id"] for p in stage.trained_problems(cfg)] == ["t1", "t2"]
    monkeypatch.setattr(stage, "_pool", lambda cfg: (pool, [], "another SFT model"))
    with pytest.raises(MissingStageOutput, match="no Fig. 9 filter results"):
        stage.trained_problems(cfg)
