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
            "the claim does not hold here (it saves tokens but loses more than 1 point).") in text
    assert "from 18.7% to 18.2% (-0.5 points): the claim holds." in text  # within the 1-point margin
    assert "(tail) separates correct from wrong traces with AUROC 0.54 [0.38, 0.70] over 8 problems: no better" in text
    assert "cuts 91% of correct and 80% of wrong traces" in text
    assert "50% are shorter than the problem's shortest correct trace (correct traces: 0%)" in text
    assert "**Over 2 seeds (sft / tiny-math):** the claim holds for 0 of 2; accuracy difference -9.5 points" in text
    assert "needs about 6,300 problems; this run has 16." in text and text.count("**Power") == 1
    assert "live" not in text  # an entry without replayed curves says nothing
    stingy = reading.deepconf_reading({"m": {"b": _entry(0.2, 0.2, 12.0, best=None)}}, 32)
    assert "saves less than 30%" in stingy and "AUROC" not in stingy
