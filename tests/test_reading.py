"""Reading paragraphs rendered from results: every number comes from the input, the verdict follows the numbers."""

from __future__ import annotations

import pandas as pd
import pytest

from falcon_h1r_lib import reading


def _results(rl=0.11, rl_ci=(0.05, 0.18)):
    rows = [("base", 0.01, (0.0, 0.026)), ("sft", 0.099, (0.047, 0.156)), ("rl", rl, rl_ci)]
    math = [{"model": m, "benchmark": "tiny-math", "pass_at_1": p, "pass_at_1_ci": list(ci), "n_problems": 32,
             "samples_per_problem": 4} for m, p, ci in rows]
    code = [{"model": "sft", "benchmark": "tiny-code", "pass_at_1": 0.5, "pass_at_1_ci": [0.3, 0.7], "n_problems": 16,
             "samples_per_problem": 4}]
    return pd.DataFrame(math + code)


def test_the_evaluation_reading_quotes_each_interval_and_reads_only_separated_ones_as_differences():
    text = reading.evaluation_reading(_results())
    assert "base 1.0% [0.0, 2.6], sft 9.9% [4.7, 15.6], rl 11.0% [5.0, 18.0]" in text
    assert "sft is above base; rl is within noise of sft" in text  # [0, 2.6] vs [4.7, 15.6]: apart; rl overlaps
    assert "(32 problems x 4 samples)" in text and "**tiny-code** (16 problems x 4 samples): sft 50.0%" in text
    assert "one checkpoint only" in text
    worse = reading.evaluation_reading(_results(rl=0.002, rl_ci=(0.0, 0.01)))
    assert "rl is below sft" in worse  # the text changes with the numbers, not with the author
    nan = _results()
    nan.loc[2, "pass_at_1_ci"] = None
    assert "rl 11.0% [no interval]" in reading.evaluation_reading(nan)
    with pytest.raises(KeyError, match="pass_at_1_ci"):
        reading.evaluation_reading(_results().drop(columns="pass_at_1_ci"))


def _entry(majority, low, saved, best="tail", within=0.54, beats=False):
    return {"at_budget": {"budget": 32, "majority_accuracy": majority, "deepconf_low_accuracy": low,
                          "tokens_saved_percent": saved, "accuracy_difference_points": 100 * (low - majority)},
            "calibration": {
                "best_measure": best, "best_beats_chance": beats,
                "auroc": {best: {"within": within, "ci": [0.38, 0.70], "n_problems": 8}} if best else {},
                "stops": {"scope": "mixed problems", "stop_rate_correct": 0.91, "stop_rate_wrong": 0.80},
                "causes": {"wrong, top 10%": {"n": 46, "short": 0.5, "copied_from_prompt": 0.13},
                           "correct, all": {"n": 72, "short": 0.0, "copied_from_prompt": 0.08}}}}


def test_the_deepconf_reading_renders_its_verdict_from_the_numbers():
    models = {"sft": {"tiny-math": _entry(0.135, 0.046, 34.6)}, "rl": {"tiny-math": _entry(0.187, 0.182, 32.0)},
              "live": {"tiny-math": {"live": {}}}}
    over = pd.DataFrame([{"model": "sft", "benchmark": "tiny-math", "seed": s, "accuracy_difference_points": d,
                          "tokens_saved_percent": 35.0, "claim_holds": False} for s, d in ((0, -8.9), (1, -10.1))]
                        + [{"model": "sft", "benchmark": "tiny-math", "seed": "mean over 2 seeds",
                            "accuracy_difference_points": -9.5, "tokens_saved_percent": 35.0, "claim_holds": False}])
    power = pd.DataFrame([{"model": "sft", "benchmark": "tiny-math", "n_problems": 16, "sd_points": 28.4,
                           "problems_needed": 6300, "margin_points": 1.0},
                          {"model": "rl", "benchmark": "tiny-math", "n_problems": 1, "sd_points": float("nan"),
                           "problems_needed": pd.NA, "margin_points": 1.0}])
    text = reading.deepconf_reading(models, 32, over, power)
    assert ("DeepConf-low uses 35% fewer tokens than majority@32 and moves accuracy from 13.5% to 4.6% (-8.9 points): "
            "the point estimate misses the claim (it saves tokens but loses more than 1 point).") in text
    assert "from 18.7% to 18.2% (-0.5 points): the point estimate meets the claim." in text  # within the 1-point margin
    assert "(tail) separates correct from wrong traces with AUROC 0.54 [0.38, 0.70] over 8 problems: no better" in text
    assert "cuts 91% of correct and 80% of wrong traces" in text
    assert "50% are shorter than the problem's shortest correct trace (correct traces: 0%)" in text
    assert "**Over 2 seeds (sft / tiny-math):** the point estimate meets the claim for 0 of 2; accuracy difference -9.5 points" in text
    assert "needs about 6,300 problems; this run has 16." in text and text.count("**Power") == 1
    assert "live" not in text  # an entry without replayed curves says nothing
    stingy = reading.deepconf_reading({"m": {"b": _entry(0.2, 0.2, 12.0, best=None)}}, 32)
    assert "saves less than 30%" in stingy and "AUROC" not in stingy


def _sft_table():
    return pd.DataFrame([
        {"benchmark": "tiny-math", "domain": "math", "problems": 48, "samples/problem": 4, "base pass@1": 0.01,
         "base CI": [0.0, 0.026], "SFT pass@1": 0.099, "SFT CI": [0.047, 0.156]},
        {"benchmark": "tiny-science", "domain": "science", "problems": 16, "samples/problem": 4, "base pass@1": 0.28,
         "base CI": [0.17, 0.39], "SFT pass@1": 0.34, "SFT CI": [0.2, 0.48]}]).set_index("benchmark")


def test_the_sft_reading_renders_training_and_accuracy_from_the_run():
    metrics = {"sft": {"epochs": 3.0, "rows": 6702, "steps": 2514, "global_batch": 8, "wall_time_s": 373.2}}
    levels = {"2": {"pass_at_1": 0.0625, "n_problems": 4}, "1": {"pass_at_1": 0.2857, "n_problems": 14},
              "5": {"pass_at_1": 0.0, "n_problems": 14}}
    text = reading.sft_reading(_sft_table(), metrics, levels)
    assert "SFT ran 3 epochs over 6,702 curated traces (2,514 steps at batch 8)." in text
    assert "**math** (tiny-math, 48 problems x 4 samples): 1.0% [0.0, 2.6] -> 9.9% [4.7, 15.6]: SFT is above" in text
    assert "**science** (tiny-science, 16 problems x 4 samples): 28.0% [17.0, 39.0] -> 34.0% [20.0, 48.0]: SFT is " \
           "within noise of the base." in text
    assert "level 1 28.6% (14), level 2 6.2% (4), level 5 0.0% (14)" in text  # sorted by level, not by key order
    with pytest.raises(KeyError, match="SFT CI"):
        reading.sft_reading(_sft_table().drop(columns="SFT CI"), metrics)


def _rl_accuracy(diff, ci):
    one = {"n_problems": 50, "samples_per_problem": 16}
    return {"sft_accuracy": {"math": {"pass_at_1": 0.0875, "ci": [0.046, 0.136], **one}},
            "rl_accuracy": {"math": {"pass_at_1": 0.0875 + diff, "ci": [0.0425, 0.15], **one}},
            "rl_minus_sft": {"math": {"difference": diff, "ci": list(ci), "n_problems": 50, "b_better": 10,
                                      "a_better": 6}}}


def test_the_rl_reading_states_the_claim_by_its_interval_and_renders_the_development_runs():
    curves = [{"accuracy": a} for a in [0.1] * 10 + [0.2] * 10]
    runs = reading.development_runs()
    assert len(runs) == 14 and all(r["rl_minus_sft"] is not None for r in runs)
    text = reading.rl_reading(_rl_accuracy(0.00375, (-0.031, 0.035)), curves, {"calls_saved_fraction": 0.189}, runs)
    assert text.startswith("**Reading: the paper's RL gain is not shown at this scale.**")
    assert "goes from 0.10 (first half of the steps) to 0.20 (second half): +10.0 points [+10.0, +10.0], a rise." in text
    noisy = reading.rl_reading(_rl_accuracy(0.00375, (-0.031, 0.035)), [{"accuracy": a} for a in [0.1, 0.3] * 10],
                               {"calls_saved_fraction": 0.189}, runs)
    assert "(second half): +0.0 points [" in noisy and "within noise." in noisy  # the reward claim's rule
    assert "8.8% [4.6, 13.6] (SFT) to 9.1% [4.2, 15.0] (RL), 50 problems x 16 samples" in text
    assert "+0.4 points [-3.1, +3.5], RL better on 10 problems and SFT on 6" in text and "saved 19%" in text
    assert "Over the 11 runs with lr <= 2e-4 the mean is +0.9 points (range -3.3 to +5.1)" in text
    assert "| levels <= 3, 1,037 problems (419 kept) | lr 2e-4, aux CE 1.0, seed 1 | -2.1 |" in text
    assert "| all 1,837 problems (551 kept) | lr 1e-4 | +3.3 [-0.3, +7.5] |" in text
    shown = reading.rl_reading(_rl_accuracy(0.045, (0.0075, 0.085)), curves, {"calls_saved_fraction": 0.2})
    assert shown.startswith("**Reading: the paper's RL gain is shown at this scale.**")
    over = pd.DataFrame({"run": ["this notebook", "seed-1", "seed-2", "mean over 3 runs"],
                         "rl_minus_sft": [0.4, 0.4, 2.0, 0.93], "ci_excludes_0": [False, False, False, False]})
    assert "Over 3 seeds the difference is +0.9 points (SD 0.9); 0 of 3 intervals exclude 0." in reading.rl_reading(
        _rl_accuracy(0.004, (-0.03, 0.035)), curves, {"calls_saved_fraction": 0.2}, over_seeds=over)
    with pytest.raises(KeyError, match="no sft_accuracy result for 'code'"):
        reading.rl_reading(_rl_accuracy(0.0, (-0.1, 0.1)), curves, {"calls_saved_fraction": 0.2}, domain="code")


def test_a_development_run_without_its_fields_is_named(tmp_path):
    bad = tmp_path / "runs.yaml"
    bad.write_text("runs:\n  - {pool: a, setting: b, lr: 1.0e-4, rl_minus_sft: 1.0}\n  - {pool: a, setting: b}\n")
    with pytest.raises(ValueError, match=r"runs\.yaml: run 1 has no \['lr', 'rl_minus_sft'\]"):
        reading.development_runs(bad)


def test_notebook_03s_table_shows_rounded_intervals():
    from falcon_h1r_lib.sft import report

    one = {"domain": "math", "n_problems": 48, "samples_per_problem": 4, "pass_at_1": 0.01,
           "pass_at_1_ci": [0.0, 0.026041666666666668]}
    table = report.accuracy_table({"evaluation": {"base": {"tiny-math": one}, "sft": {"tiny-math": {
        **one, "pass_at_1_ci": None}}}})
    assert table.loc["tiny-math", "base CI"] == [0.0, 0.026] and table.loc["tiny-math", "SFT CI"] is None
