"""Power and sample size (evaluation/power.py): the analytic power matches simulation, the variance
components are recovered, problems_needed is the smallest P and monotone, the paper's effect is read from
the paper-results file, and every bad argument is named."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from falcon_h1r_lib.evaluation.metrics import paired_difference
from falcon_h1r_lib.evaluation.power import (
    POWER_TABLE_COLUMNS,
    DifferenceStats,
    PairedVariance,
    difference_stats,
    paired_variance,
    paired_variance_from_grades,
    paired_variance_from_rates,
    paper_rl_gain,
    power_noninferior,
    power_paired,
    power_table,
    problems_needed,
    problems_needed_noninferior,
)
from falcon_h1r_lib.paper_results import default_path, paper_value

Z975 = NormalDist().inv_cdf(0.975)


# --------------------------------------------------------------------------------------------
# A population with known components: p_A ~ Beta(a, b); RL lifts a fraction t of the remaining gap,
# p_B = p_A + t (1 - p_A), with t = s on a random share q of the problems (else 0), independent of p_A.
# --------------------------------------------------------------------------------------------


def true_components(a: float, b: float, q: float, s: float) -> tuple[float, float, float]:
    """(effect, var_between, var_sample) of the population, in closed form."""
    mu = a / (a + b)
    var_a = mu * (1 - mu) / (a + b + 1)
    e1, e2 = 1 - mu, var_a + (1 - mu) ** 2  # E[1 - p_A], E[(1 - p_A)^2]
    w_a = mu * (1 - mu) - var_a  # E[p_A (1 - p_A)]
    m1, m2 = q * s, q * s * s  # E[t], E[t^2]
    effect = m1 * e1
    between = m2 * e2 - effect**2
    # p_B (1 - p_B) = t (1 - t)(1 - p_A) + (1 - t)^2 p_A (1 - p_A)
    w_b = (m1 - m2) * e1 + (1 - 2 * m1 + m2) * w_a
    return effect, between, w_a + w_b


def draw_counts(rng, reps: int, problems: int, n: int, a: float, b: float, q: float, s: float):
    """(reps, problems) correct counts of A and B."""
    p_a = rng.beta(a, b, size=(reps, problems))
    t = np.where(rng.random((reps, problems)) < q, s, 0.0)
    p_b = p_a + t * (1 - p_a)
    return rng.binomial(n, p_a), rng.binomial(n, p_b)


def components(between: float, var_sample: float) -> PairedVariance:
    return PairedVariance(n_problems=50, n_samples=16, mean_difference=0.0, observed_variance=0.0,
                          var_between=between, var_sample=var_sample, mean_rate_a=0.0, mean_rate_b=0.0)


# (a, b, q, s, n, P): within-problem variance dominates; between ~ within (a few problems solved by RL)
SETTINGS = [(2.0, 6.0, 1.0, 0.1, 4, 60), (1.0, 3.0, 0.15, 0.5, 16, 60)]


@pytest.mark.parametrize(("a", "b", "q", "s", "n", "P"), SETTINGS)
def test_analytic_power_matches_simulation(a, b, q, s, n, P):
    effect, between, var_sample = true_components(a, b, q, s)
    analytic = power_paired(effect, P, n, components(between, var_sample))
    assert 0.3 < analytic < 0.8  # a setting where a wrong variance shows
    rng = np.random.default_rng(20240)
    c_a, c_b = draw_counts(rng, 2000, P, n, a, b, q, s)
    d = (c_b - c_a) / n  # (reps, P)
    lower = d.mean(axis=1) - Z975 * d.std(axis=1, ddof=1) / math.sqrt(P)
    simulated = float((lower > 0).mean())
    assert abs(analytic - simulated) < 0.05, (analytic, simulated)
    if between > 0.01:  # leaving the between-problem term out would be caught at this setting
        assert abs(power_paired(effect, P, n, components(0.0, var_sample)) - simulated) > 0.1


def test_noninferior_power_matches_simulation():
    margin, sd, P = 0.01, 0.05, 150
    analytic = power_noninferior(margin, 0.0, P, sd)
    assert 0.3 < analytic < 0.9
    rng = np.random.default_rng(7)
    d = rng.uniform(-sd * math.sqrt(3), sd * math.sqrt(3), size=(2000, P))  # mean 0, SD sd
    lower = d.mean(axis=1) - Z975 * d.std(axis=1, ddof=1) / math.sqrt(P)
    simulated = float((lower > -margin).mean())
    assert abs(analytic - simulated) < 0.05, (analytic, simulated)


# --------------------------------------------------------------------------------------------
# Variance components
# --------------------------------------------------------------------------------------------


def test_between_variance_is_recovered():
    a, b, q, s, n = SETTINGS[1][:5]
    effect, between, var_sample = true_components(a, b, q, s)
    c_a, c_b = draw_counts(np.random.default_rng(3), 1, 40_000, n, a, b, q, s)
    est = paired_variance(c_a[0], c_b[0], n)
    assert est.var_between == pytest.approx(between, rel=0.1)
    assert est.var_sample == pytest.approx(var_sample, rel=0.03)
    assert est.mean_difference == pytest.approx(effect, abs=0.005)
    assert est.var(n) == pytest.approx(est.observed_variance, rel=1e-12)  # between > 0: nothing floored


def test_between_variance_is_zero_when_every_problem_shares_one_rate():
    same = paired_variance([3] * 20, [6] * 20, 8)  # identical problems: no spread at all
    assert same.var_between == 0.0 and same.observed_variance == 0.0
    assert same.var_sample == pytest.approx((3 / 8 * 5 / 8 + 6 / 8 * 2 / 8) * 8 / 7)
    rng = np.random.default_rng(11)  # one true rate per model: the spread is all sampling noise
    shared = paired_variance(rng.binomial(8, 0.3, 40_000), rng.binomial(8, 0.4, 40_000), 8)
    assert shared.var_between < 0.002 < shared.var_within(8)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 32).flatmap(lambda n: st.tuples(
    st.just(n), st.lists(st.tuples(st.integers(0, n), st.integers(0, n)), min_size=2, max_size=40))))
def test_components_decompose_the_observed_variance(case):
    n, pairs = case
    c_a, c_b = zip(*pairs, strict=True)
    est = paired_variance(list(c_a), list(c_b), n)
    assert est.var_between >= 0.0
    if est.var_between > 0:
        assert est.var_between + est.var_within(n) == pytest.approx(est.observed_variance)
    else:  # floored: the sampling part alone explains at least the observed spread
        assert est.observed_variance <= est.var_within(n) + 1e-12


def test_grades_tables_give_the_counts_components_and_paired_difference_mean():
    rng = np.random.default_rng(5)
    c_a, c_b = rng.integers(0, 9, 12), rng.integers(0, 9, 12)

    def grades(counts):
        return pd.DataFrame([{"problem_id": f"p{i}", "sample_index": j, "correct": j < c}
                             for i, c in enumerate(counts) for j in range(8)])

    ga, gb = grades(c_a), grades(c_b)
    assert paired_variance_from_grades(ga, gb) == paired_variance(c_a, c_b, 8)
    assert paired_variance_from_grades(ga, gb).mean_difference == pytest.approx(paired_difference(ga, gb)["difference"])
    assert paired_variance_from_rates(c_a / 8, c_b / 8, 8) == paired_variance(c_a, c_b, 8)
    with pytest.raises(ValueError, match="grades_a and grades_b"):
        paired_variance_from_grades(ga, gb[gb["problem_id"] != "p0"])


def test_no_verdict_samples_give_each_problem_its_own_n():
    """Before: one "no verdict" sample made n differ between problems and the whole power analysis raised."""
    rng = np.random.default_rng(7)
    c_a, c_b = rng.integers(0, 9, 30), rng.integers(0, 9, 30)

    def grades(counts, unknown=()):
        return pd.DataFrame([{"problem_id": f"p{i}", "sample_index": j,
                              "correct": None if (i, j) in unknown else j < c}
                             for i, c in enumerate(counts) for j in range(8)])

    equal = paired_variance_from_grades(grades(c_a), grades(c_b))
    # sample 7 of problem 3 has no verdict; problem 5 has one graded sample left in A (no within information)
    unknown = {(3, 7)} | {(5, j) for j in range(1, 8)}
    mixed = paired_variance_from_grades(grades(c_a, unknown), grades(c_b))
    assert mixed.n_problems == 29 and mixed.n_dropped == 1 and mixed.n_samples == 8
    assert mixed.var_between == pytest.approx(equal.var_between, rel=0.3, abs=0.01)
    assert mixed.var_sample == pytest.approx(equal.var_sample, rel=0.1)
    with pytest.raises(ValueError, match="fewer than 2 problems have >= 2 graded samples"):
        paired_variance_from_grades(grades(c_a[:2], {(0, j) for j in range(1, 8)}), grades(c_b[:2]))


# --------------------------------------------------------------------------------------------
# problems_needed: the smallest P, monotone in n and in the effect
# --------------------------------------------------------------------------------------------

COMPONENTS = components(0.0143, 0.1296)  # the order of the tiny SFT-vs-RL pilot


@settings(max_examples=80, deadline=None)
@given(effect=st.floats(0.005, 0.5), n=st.integers(1, 256), between=st.floats(0.0, 0.1),
       var_sample=st.floats(0.0, 0.5), target=st.floats(0.05, 0.99), one_sided=st.booleans())
def test_problems_needed_is_the_smallest_p_reaching_the_target(effect, n, between, var_sample, target, one_sided):
    comp = components(between, var_sample)
    P = problems_needed(effect, n, comp, power=target, one_sided=one_sided)
    assert power_paired(effect, P, n, comp, one_sided=one_sided) >= target
    assert P == 1 or power_paired(effect, P - 1, n, comp, one_sided=one_sided) < target


def test_problems_needed_falls_with_samples_and_with_effect():
    by_n = [problems_needed(0.035, n, COMPONENTS) for n in (1, 4, 16, 32, 64, 1024)]
    assert by_n == sorted(by_n, reverse=True) and by_n[0] > by_n[-1]
    by_effect = [problems_needed(e, 16, COMPONENTS) for e in (0.01, 0.035, 0.1, 0.3)]
    assert by_effect == sorted(by_effect, reverse=True) and by_effect[0] > by_effect[-1]
    # n -> infinity leaves the between-problem floor: P >= (z + z_power)^2 var_between / effect^2
    floor = (Z975 + NormalDist().inv_cdf(0.8)) ** 2 * COMPONENTS.var_between / 0.035**2
    assert math.ceil(floor) <= by_n[-1] <= math.ceil(floor) + 2


def test_noninferior_problems_needed_is_smallest_and_monotone():
    P = problems_needed_noninferior(0.01, 0.0, 0.08)
    assert power_noninferior(0.01, 0.0, P, 0.08) >= 0.8 > power_noninferior(0.01, 0.0, P - 1, 0.08)
    assert problems_needed_noninferior(0.01, 0.005, 0.08) < P < problems_needed_noninferior(0.01, 0.0, 0.16)
    assert problems_needed_noninferior(0.02, 0.0, 0.08) < P
    assert power_noninferior(0.01, -0.01, 10_000, 0.08) == pytest.approx(0.025)  # at the margin: alpha / 2


# --------------------------------------------------------------------------------------------
# The paper's effect and the table
# --------------------------------------------------------------------------------------------


def test_paper_effect_is_read_from_the_paper_results_file(tmp_path):
    expected = (paper_value("table3_rl_ablation", "Math only", "AIME25")
                - paper_value("table3_rl_ablation", "SFT baseline", "AIME25")) / 100
    assert paper_rl_gain() == pytest.approx(expected)
    data = yaml.safe_load(default_path().read_text())
    data["tables"]["table3_rl_ablation"]["rows"]["Math only"]["AIME25"] = 90.0
    other = tmp_path / "paper_results.yaml"
    other.write_text(yaml.safe_dump(data, sort_keys=False))
    sft = paper_value("table3_rl_ablation", "SFT baseline", "AIME25")
    assert paper_rl_gain(path=other) == pytest.approx((90.0 - sft) / 100)
    ours, theirs = power_table(COMPONENTS, ns=(16,)), power_table(COMPONENTS, ns=(16,), path=other)
    assert theirs["effect_points"].iloc[0] == pytest.approx(90.0 - sft)
    assert theirs["problems_needed"].iloc[0] < ours["problems_needed"].iloc[0]
    data["tables"]["table3_rl_ablation"]["rows"]["Math only"]["AIME25"] = sft - 1.0
    other.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ValueError, match="no RL gain"):
        paper_rl_gain(path=other)


def test_power_table_rows():
    dc = DifferenceStats(n_problems=16, mean_difference=0.0, sd=0.08, n_samples=32)
    df = power_table(COMPONENTS, dc, ns=(4, 16, 64))
    assert list(df.columns) == list(POWER_TABLE_COLUMNS) and len(df) == 4
    rl = df[df["claim"] == "RL gain"]
    assert rl["n_samples"].tolist() == [4, 16, 64]
    assert rl["problems_needed"].is_monotonic_decreasing and rl["power_at_current"].is_monotonic_increasing
    effect = paper_rl_gain()
    assert rl["problems_needed"].tolist() == [problems_needed(effect, n, COMPONENTS) for n in (4, 16, 64)]
    assert rl["power_at_current"].iloc[1] == pytest.approx(power_paired(effect, 50, 16, COMPONENTS))
    row = df[df["test"] == "non-inferiority"].iloc[0]
    assert row["problems_needed"] == problems_needed_noninferior(0.01, 0.0, 0.08)
    assert row["power_at_current"] == pytest.approx(power_noninferior(0.01, 0.0, 16, 0.08))
    assert row["n_samples"] == 32 and row["sd_per_problem"] == pytest.approx(8.0)


def test_difference_stats():
    st_ = difference_stats([0.5, 0.2, 0.9], [0.4, 0.2, 0.6], n_samples=32)
    assert st_.mean_difference == pytest.approx(0.4 / 3) and st_.sd == pytest.approx(np.std([0.1, 0, 0.3], ddof=1))
    assert st_.n_problems == 3 and st_.n_samples == 32


# --------------------------------------------------------------------------------------------
# Bad input names the argument
# --------------------------------------------------------------------------------------------

NAN = float("nan")
BAD = [
    (lambda: paired_variance([1, 2], [1], 4), "c_a and c_b"),
    (lambda: paired_variance([5, 1], [1, 1], 4), "c_a must lie in"),
    (lambda: paired_variance([1, 1], [-1, 1], 4), "c_b must lie in"),
    (lambda: paired_variance([1.5, 1], [1, 1], 4), "c_a must hold whole counts"),
    (lambda: paired_variance([NAN, 1], [1, 1], 4), "c_a holds NaN"),
    (lambda: paired_variance([0, 0], [0, 0], 0), "n must be >= 1"),
    (lambda: paired_variance([0, 0], [0, 0], 1), "n must be >= 2"),
    (lambda: paired_variance([1], [1], 4), "need >= 2 problems"),
    (lambda: paired_variance_from_rates([0.1, 1.2], [0.1, 0.1], 4), "rate_a must lie in"),
    (lambda: paired_variance_from_rates([0.1, 0.2], [0.1, NAN], 4), "rate_b holds NaN"),
    (lambda: power_paired(0.0, 50, 16, COMPONENTS), "effect must be > 0"),
    (lambda: power_paired(-0.1, 50, 16, COMPONENTS), "effect must be > 0"),
    (lambda: power_paired(NAN, 50, 16, COMPONENTS), "effect must be finite"),
    (lambda: power_paired(3.5, 50, 16, COMPONENTS), "effect is a fraction"),
    (lambda: power_paired(0.035, 0, 16, COMPONENTS), "problems must be >= 1"),
    (lambda: power_paired(0.035, 50, 0, COMPONENTS), "n must be >= 1"),
    (lambda: power_paired(0.035, 50, 16, COMPONENTS, alpha=1.0), "alpha must be in"),
    (lambda: power_paired(0.035, 50, 16, COMPONENTS, alpha=NAN), "alpha must be finite"),
    (lambda: problems_needed(0.035, 16, COMPONENTS, power=0.0), "power must be in"),
    (lambda: problems_needed(0.035, 16, COMPONENTS, power=1.2), "power must be in"),
    (lambda: problems_needed(0.0, 16, COMPONENTS), "effect must be > 0"),
    (lambda: problems_needed(0.035, 0, COMPONENTS), "n must be >= 1"),
    (lambda: power_noninferior(0.0, 0.0, 16, 0.1), "margin must be > 0"),
    (lambda: power_noninferior(0.01, NAN, 16, 0.1), "true_difference must be finite"),
    (lambda: power_noninferior(0.01, 0.0, 16, -0.1), "sd_per_problem must be >= 0"),
    (lambda: power_noninferior(0.01, 0.0, 16, NAN), "sd_per_problem must be finite"),
    (lambda: power_noninferior(0.01, 0.0, 16, 0.1, alpha=0.0), "alpha must be in"),
    (lambda: problems_needed_noninferior(0.01, -0.01, 0.1), "true_difference=-0.01 must exceed"),
    (lambda: problems_needed_noninferior(0.01, 0.0, 0.1, power=1.0), "power must be in"),
    (lambda: difference_stats([0.1, 0.2], [0.1], 32), "values_b and values_a"),
    (lambda: difference_stats([0.1, 2.0], [0.1, 0.1], 32), "values_b must lie in"),
    (lambda: difference_stats([0.1, 0.2], [0.1, NAN], 32), "values_a holds NaN"),
    (lambda: power_table(COMPONENTS, ns=(16, 0)), "ns must be >= 1"),
    (lambda: power_table(COMPONENTS, ns=()), "ns must list"),
]


@pytest.mark.parametrize(("call", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_input_names_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("call", [lambda: power_paired(0.035, 50.0, 16, COMPONENTS),
                                  lambda: power_paired(0.035, 50, 16, "components"),
                                  lambda: power_paired(0.035, 50, 16, COMPONENTS, one_sided="yes"),
                                  lambda: paired_variance([1, 1], [1, 1], 4.0)])
def test_wrong_types_raise_type_error(call):
    with pytest.raises(TypeError):
        call()
