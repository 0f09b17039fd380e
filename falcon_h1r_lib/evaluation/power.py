"""Power and sample size for the paper's two held-out claims: how many problems P x samples n per problem
a profile needs to see the paper's effect at its own accuracy level.

Claims (all effects are fractions of problems: 3.5 points = 0.035):

1. **RL gain** (paired superiority, [P] Table 3: "Math only" minus "SFT baseline" on AIME25, read from
   ``data_manifests/paper_results.yaml`` by ``paper_rl_gain``). Both models answer the same P problems, n
   samples each; the estimate is the mean over problems of d_i = p̂_B,i - p̂_A,i (``metrics.paired_difference``).
2. **DeepConf non-inferiority** ([P] §5.2 / Fig. 1 claim: DeepConf-low's accuracy is within 1 point of
   majority@K, or better, at >= 30% fewer tokens): the lower bound of the CI of mean(deepconf_i - majority_i)
   must lie above -margin. Each per-problem accuracy is itself an average over R resampled runs of one
   pool, so the per-problem differences are taken as given data and only their SD enters.

Variance of the paired mean (Miller 2024, "Adding Error Bars to Evals", arXiv 2411.00640: questions drawn
from a super-population, K resampled answers per question, paired differences, power analysis). Problem i
has true rates p_A,i, p_B,i; given them, the 2n samples are independent Bernoulli draws and
p̂ = c / n. By the law of total variance over the problem population::

    E[d̂_i | p] = d_i = p_B,i - p_A,i
    Var(d̂_i | p) = (p_A,i (1 - p_A,i) + p_B,i (1 - p_B,i)) / n          (within-problem sampling)
    Var(d̂_i)     = var_between + var_sample / n
                   var_between = Var_i(d_i)                          (between problems, true rates)
                   var_sample  = E_i[p_A,i (1 - p_A,i) + p_B,i (1 - p_B,i)]  (one sample of each model)
    Var(mean_i d̂_i) = (var_between + var_sample / n) / P             (P problems drawn independently)

Estimation from a pilot with P0 problems and n0 >= 2 samples (``paired_variance``): since
E[p̂ (1 - p̂) | p] = p (1 - p)(1 - 1/n0),

    var_sample^ = mean_i [p̂_A,i (1 - p̂_A,i) + p̂_B,i (1 - p̂_B,i)] * n0 / (n0 - 1)   (unbiased; Miller's mean of
                                                                                  per-question sample variances)
    s^2         = sample variance of d̂_i over problems (ddof = 1)    (unbiased for var_between + var_sample / n0)
    var_between^ = max(0, s^2 - var_sample^ / n0)                    (the within part subtracted, floored at 0)

Only the second term shrinks with n: past n ~ var_sample / var_between more samples buy almost nothing.

Tests (normal approximation with the variance taken as known; the paired bootstrap of
``metrics.paired_difference`` is its resampling analogue). ``z(q)`` is the standard normal quantile.

- superiority: "seen" = the two-sided (1 - alpha) CI lies above 0 (a wrong-direction rejection does not
  count), power = Phi(effect / SE - z(1 - alpha/2)); ``one_sided=True`` uses z(1 - alpha);
- non-inferiority: "seen" = that CI's lower bound lies above -margin, power at true difference D =
  Phi((D + margin) / SE - z(1 - alpha/2)), SE = sd / sqrt(P);
- the smallest P reaching a target power is ceil((z_crit + z(power))^2 var / effect^2), checked by
  evaluating the power at P and P - 1.

Every bad argument raises ``ValueError`` (``TypeError`` for a non-integer count) naming the argument.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

# Table keys of the RL claim (row and column names in paper_results.yaml, not numbers).
RL_TABLE, RL_ROW, SFT_ROW, RL_BENCHMARK = "table3_rl_ablation", "Math only", "SFT baseline", "AIME25"
# The Table 3 column that measures each domain (its benchmark in [P] Table 3).
PAPER_BENCHMARK_OF_DOMAIN = {"math": "AIME25", "code": "LCB-v6", "science": "GPQA-Diamond"}
# The Table 3 row of an RL run on these domains (sorted); "Math -> Code" (two sequential stages) has no key.
PAPER_RL_ROW_OF_DOMAINS = {("math",): "Math only", ("code",): "Code only", ("science",): "Science only",
                           ("code", "math"): "Math + Code"}
# The DeepConf claim's tolerance ([P] §5.2 / Fig. 1 wording "within 1 point or better"; a claim threshold,
# not a measured result: paper_results.yaml quotes no majority@K column to derive it from).
DEEPCONF_MARGIN = 0.01
_NORMAL = NormalDist()


# --------------------------------------------------------------------------------------------
# Argument checks: each message names the function and the argument
# --------------------------------------------------------------------------------------------


def _count(where: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where}: {name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{where}: {name} must be >= {minimum}, got {value}")
    return int(value)


def _real(where: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{where}: {name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{where}: {name} must be finite, got {value}")
    return value


def _open_unit(where: str, name: str, value: Any) -> float:
    value = _real(where, name, value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{where}: {name} must be in (0, 1), got {value}")
    return value


def _effect(where: str, name: str, value: Any) -> float:
    value = _real(where, name, value)
    if value <= 0.0:
        raise ValueError(f"{where}: {name} must be > 0, got {value}")
    if value > 1.0:
        raise ValueError(f"{where}: {name} is a fraction of problems (3.5 points = 0.035), got {value}")
    return value


def _array(where: str, name: str, values: Any, low: float, high: float) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{where}: {name} must be a non-empty 1-D array (one value per problem), got shape {x.shape}")
    if np.isnan(x).any():
        raise ValueError(f"{where}: {name} holds NaN at problem(s) {np.flatnonzero(np.isnan(x))[:5].tolist()}")
    bad = np.flatnonzero((x < low) | (x > high))
    if bad.size:
        raise ValueError(f"{where}: {name} must lie in [{low:g}, {high:g}], got {x[bad[0]]!r} at problem {bad[0]}")
    return x


def _same_length(where: str, names: tuple[str, str], a: np.ndarray, b: np.ndarray) -> None:
    if a.size != b.size:
        raise ValueError(f"{where}: {names[0]} and {names[1]} must have one value per problem each, "
                         f"got lengths {a.size} and {b.size}")


def _critical(alpha: float, one_sided: bool, where: str) -> float:
    """z of the test: lower bound of the two-sided (1 - alpha) CI, or of the one-sided level-alpha test."""
    if not isinstance(one_sided, bool):
        raise TypeError(f"{where}: one_sided must be a bool, got {one_sided!r}")
    return _NORMAL.inv_cdf(1.0 - (alpha if one_sided else alpha / 2.0))


# --------------------------------------------------------------------------------------------
# Variance components of the paired difference
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairedVariance:
    """Variance components of the per-problem pass@1 difference d_i = p̂_B,i - p̂_A,i (fractions, not points).

    ``var(n) = var_between + var_sample / n`` is the variance of one problem's d̂_i with n samples per model;
    ``standard_error(n, P) = sqrt(var(n) / P)`` that of the mean over P problems (module docstring).
    """

    n_problems: int  # P0 problems of the pilot the components were estimated on
    n_samples: int  # n0 samples per problem per model in that pilot
    mean_difference: float  # mean_i d̂_i (B - A) of the pilot
    observed_variance: float  # s^2: sample variance (ddof = 1) of d̂_i over problems at n0
    var_between: float  # Var_i(true d_i), estimated as max(0, s^2 - var_sample / n0)
    var_sample: float  # E_i[p_A(1 - p_A) + p_B(1 - p_B)]: within-problem variance of a 1-sample difference
    mean_rate_a: float  # pass@1 of A (mean_i p̂_A,i), the accuracy level the components belong to
    mean_rate_b: float  # pass@1 of B
    n_dropped: int = 0  # problems of the pilot left out (fewer than 2 graded samples: ``paired_variance_from_grades``)

    def var_within(self, n: int) -> float:
        """Within-problem (sampling) variance of d̂_i with n samples per model: var_sample / n."""
        return self.var_sample / _count("PairedVariance.var_within", "n", n, 1)

    def var(self, n: int) -> float:
        """Variance of one problem's d̂_i with n samples per model: var_between + var_sample / n."""
        return self.var_between + self.var_within(n)

    def standard_error(self, n: int, problems: int) -> float:
        """Standard error of mean_i d̂_i over ``problems`` problems with n samples each."""
        return math.sqrt(self.var(n) / _count("PairedVariance.standard_error", "problems", problems, 1))


def paired_variance_from_rates(rate_a: Sequence[float], rate_b: Sequence[float], n: int) -> PairedVariance:
    """``PairedVariance`` from per-problem pass rates p̂ = c / n of models A and B on the same problems.

    rate_a, rate_b: (P,) in [0, 1], problem i at position i in both; n: samples per problem per model
    (>= 2: one sample cannot separate within- from between-problem variance). Needs P >= 2 (a variance).
    Raises ValueError naming the argument (lengths, range, NaN, n).
    """
    where = "paired_variance"
    n = _count(where, "n", n, 1)
    if n < 2:
        raise ValueError(f"{where}: n must be >= 2 to separate within- from between-problem variance, got {n}")
    a = _array(where, "rate_a", rate_a, 0.0, 1.0)  # (P,)
    b = _array(where, "rate_b", rate_b, 0.0, 1.0)  # (P,)
    _same_length(where, ("rate_a", "rate_b"), a, b)
    if a.size < 2:
        raise ValueError(f"{where}: rate_a and rate_b need >= 2 problems for a variance, got {a.size}")
    d = b - a  # (P,)
    observed = float(np.var(d, ddof=1))
    var_sample = float(np.mean(a * (1.0 - a) + b * (1.0 - b)) * n / (n - 1))
    between = max(0.0, observed - var_sample / n)
    return PairedVariance(n_problems=int(a.size), n_samples=n, mean_difference=float(d.mean()),
                          observed_variance=observed, var_between=between, var_sample=var_sample,
                          mean_rate_a=float(a.mean()), mean_rate_b=float(b.mean()))


def paired_variance(c_a: Sequence[int], c_b: Sequence[int], n: int) -> PairedVariance:
    """``PairedVariance`` from per-problem correct counts: c_a, c_b (P,) integers in [0, n] out of n samples
    per problem per model (n >= 2). Raises ValueError naming the argument (lengths, range, NaN, n)."""
    where = "paired_variance"
    n = _count(where, "n", n, 1)
    a = _array(where, "c_a", c_a, 0.0, float(n))
    b = _array(where, "c_b", c_b, 0.0, float(n))
    for name, x in (("c_a", a), ("c_b", b)):
        frac = np.flatnonzero(x != np.round(x))
        if frac.size:
            raise ValueError(f"{where}: {name} must hold whole counts, got {x[frac[0]]!r} at problem {frac[0]}")
    _same_length(where, ("c_a", "c_b"), a, b)
    return paired_variance_from_rates(a / n, b / n, n)


def paired_variance_from_grades(grades_a: pd.DataFrame, grades_b: pd.DataFrame) -> PairedVariance:
    """``PairedVariance`` from two ``grading.grade_all`` tables (one row per sample) on the same problems: A's and
    B's graded counts per problem (``metrics.problem_table``), each problem with its own numbers of graded
    samples n_A,i and n_B,i ("no verdict" samples are left out, as pass@1 leaves them out).

    With unequal n the within part of Var(d̂_i) is estimated per problem without bias,
    p̂_A (1 - p̂_A) / (n_A - 1) + p̂_B (1 - p̂_B) / (n_B - 1), and var_between^ = max(0, s^2 - its mean); with equal n
    this is ``paired_variance``. ``n_samples`` is then the median n. Problems with fewer than 2 graded samples
    in either table carry no within-problem information and are left out (counted in ``n_dropped``). Raises
    ValueError when the tables cover different problems or fewer than 2 problems remain."""
    from falcon_h1r_lib.evaluation.metrics import problem_table

    where = "paired_variance_from_grades"
    ta = problem_table(grades_a).set_index("problem_id")
    tb = problem_table(grades_b).set_index("problem_id")
    missing = sorted(set(ta.index) ^ set(tb.index))
    if missing:
        raise ValueError(f"{where}: grades_a and grades_b cover different problems, e.g. {missing[:3]}")
    tb = tb.loc[ta.index]
    n_a, n_b = ta["n_graded"].to_numpy(dtype=np.int64), tb["n_graded"].to_numpy(dtype=np.int64)  # (P,)
    if len(set(n_a) | set(n_b)) == 1:
        return paired_variance(ta["c"].to_numpy(), tb["c"].to_numpy(), int(n_a[0]))
    keep = (n_a >= 2) & (n_b >= 2)
    if keep.sum() < 2:
        raise ValueError(f"{where}: fewer than 2 problems have >= 2 graded samples in both tables "
                         f"({int(keep.sum())} of {keep.size})")
    a = ta["c"].to_numpy(dtype=np.float64)[keep] / n_a[keep]
    b = tb["c"].to_numpy(dtype=np.float64)[keep] / n_b[keep]
    d = b - a  # (P,)
    within = a * (1 - a) / (n_a[keep] - 1) + b * (1 - b) / (n_b[keep] - 1)  # unbiased Var(d̂_i | p) per problem
    observed = float(np.var(d, ddof=1))
    var_sample = float(np.mean(a * (1 - a) * n_a[keep] / (n_a[keep] - 1) + b * (1 - b) * n_b[keep] / (n_b[keep] - 1)))
    return PairedVariance(n_problems=int(keep.sum()), n_samples=int(np.median(np.concatenate([n_a[keep], n_b[keep]]))),
                          mean_difference=float(d.mean()), observed_variance=observed,
                          var_between=max(0.0, observed - float(within.mean())), var_sample=var_sample,
                          mean_rate_a=float(a.mean()), mean_rate_b=float(b.mean()), n_dropped=int((~keep).sum()))


# --------------------------------------------------------------------------------------------
# Paired superiority (claim 1)
# --------------------------------------------------------------------------------------------


def power_paired(effect: float, problems: int, n: int, components: PairedVariance, alpha: float = 0.05,
                 one_sided: bool = False) -> float:
    """Power in [0, 1] to see a true mean gain ``effect`` (fraction, > 0) of B over A with ``problems``
    problems x ``n`` samples per model: Phi(effect / SE - z_crit), SE = sqrt((var_between + var_sample / n) / P),
    z_crit = z(1 - alpha/2) (CI above 0) or z(1 - alpha) (``one_sided``). Zero variance gives 1."""
    where = "power_paired"
    effect = _effect(where, "effect", effect)
    problems = _count(where, "problems", problems, 1)
    n = _count(where, "n", n, 1)
    alpha = _open_unit(where, "alpha", alpha)
    _components(where, components)
    crit = _critical(alpha, one_sided, where)
    se = components.standard_error(n, problems)
    return 1.0 if se == 0.0 else _NORMAL.cdf(effect / se - crit)


def problems_needed(effect: float, n: int, components: PairedVariance, power: float = 0.8,
                    alpha: float = 0.05, one_sided: bool = False) -> int:
    """Smallest P (>= 1) with ``power_paired(effect, P, n, components, alpha, one_sided) >= power``:
    ceil((z_crit + z(power))^2 (var_between + var_sample / n) / effect^2)."""
    where = "problems_needed"
    effect = _effect(where, "effect", effect)
    n = _count(where, "n", n, 1)
    power = _open_unit(where, "power", power)
    alpha = _open_unit(where, "alpha", alpha)
    _components(where, components)
    var = components.var(n)
    return _smallest(lambda p: power_paired(effect, p, n, components, alpha, one_sided), power,
                     (_critical(alpha, one_sided, where) + _NORMAL.inv_cdf(power)) ** 2 * var / effect**2)


def _components(where: str, components: Any) -> None:
    if not isinstance(components, PairedVariance):
        raise TypeError(f"{where}: components must be a PairedVariance (paired_variance(...)), "
                        f"got {type(components).__name__}")


def _smallest(power_at, target: float, estimate: float) -> int:
    """The smallest integer P >= 1 with power_at(P) >= target, from the closed-form ``estimate`` (power is
    increasing in P) corrected for rounding at the boundary."""
    p = max(1, math.ceil(estimate))
    while p > 1 and power_at(p - 1) >= target:
        p -= 1
    while power_at(p) < target:
        p += 1
    return p


# --------------------------------------------------------------------------------------------
# Non-inferiority (claim 2)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DifferenceStats:
    """Per-problem differences taken as given data (e.g. DeepConf-low minus majority@K accuracy, each
    averaged over R runs): their mean and SD over problems (ddof = 1), fractions."""

    n_problems: int
    mean_difference: float
    sd: float
    n_samples: int | None = None  # samples (traces, budget K) per problem behind each accuracy, if known


def difference_stats(values_b: Sequence[float], values_a: Sequence[float],
                     n_samples: int | None = None) -> DifferenceStats:
    """Mean and SD (ddof = 1) of values_b - values_a: (P,) per-problem accuracies in [0, 1], same order,
    P >= 2. Raises ValueError naming the argument (lengths, range, NaN)."""
    where = "difference_stats"
    b = _array(where, "values_b", values_b, 0.0, 1.0)
    a = _array(where, "values_a", values_a, 0.0, 1.0)
    _same_length(where, ("values_b", "values_a"), b, a)
    if a.size < 2:
        raise ValueError(f"{where}: values_b and values_a need >= 2 problems for an SD, got {a.size}")
    if n_samples is not None:
        n_samples = _count(where, "n_samples", n_samples, 1)
    d = b - a
    return DifferenceStats(n_problems=int(d.size), mean_difference=float(d.mean()), sd=float(np.std(d, ddof=1)),
                           n_samples=n_samples)


def power_noninferior(margin: float, true_difference: float, problems: int, sd_per_problem: float,
                      alpha: float = 0.05, one_sided: bool = False) -> float:
    """Power in [0, 1] of the non-inferiority test H0: D <= -margin vs H1: D > -margin on the mean of P
    per-problem differences (B - A) with SD ``sd_per_problem``, when the true mean difference is
    ``true_difference`` (fractions): Phi((true_difference + margin) sqrt(P) / sd - z_crit), z_crit as in
    ``power_paired``. With sd = 0 the result is 1 if true_difference > -margin, else 0."""
    where = "power_noninferior"
    margin = _effect(where, "margin", margin)
    true_difference = _real(where, "true_difference", true_difference)
    if not -1.0 <= true_difference <= 1.0:
        raise ValueError(f"{where}: true_difference is a fraction in [-1, 1], got {true_difference}")
    problems = _count(where, "problems", problems, 1)
    sd = _sd(where, sd_per_problem)
    alpha = _open_unit(where, "alpha", alpha)
    crit = _critical(alpha, one_sided, where)
    shift = true_difference + margin
    if sd == 0.0:
        return 1.0 if shift > 0 else 0.0
    return _NORMAL.cdf(shift * math.sqrt(problems) / sd - crit)


def problems_needed_noninferior(margin: float, true_difference: float, sd_per_problem: float,
                                power: float = 0.8, alpha: float = 0.05, one_sided: bool = False) -> int:
    """Smallest P with ``power_noninferior(...) >= power``: ceil((z_crit + z(power))^2 sd^2 /
    (true_difference + margin)^2). Needs true_difference > -margin (else no P suffices: ValueError)."""
    where = "problems_needed_noninferior"
    margin = _effect(where, "margin", margin)
    true_difference = _real(where, "true_difference", true_difference)
    if true_difference <= -margin:
        raise ValueError(f"{where}: true_difference={true_difference} must exceed -margin={-margin}: "
                         "no number of problems shows non-inferiority of a method that is worse than the margin")
    sd = _sd(where, sd_per_problem)
    power = _open_unit(where, "power", power)
    alpha = _open_unit(where, "alpha", alpha)
    return _smallest(lambda p: power_noninferior(margin, true_difference, p, sd, alpha, one_sided), power,
                     (_critical(alpha, one_sided, where) + _NORMAL.inv_cdf(power)) ** 2 * sd**2
                     / (true_difference + margin) ** 2)


def _sd(where: str, value: Any) -> float:
    value = _real(where, "sd_per_problem", value)
    if value < 0.0:
        raise ValueError(f"{where}: sd_per_problem must be >= 0, got {value}")
    return value


# --------------------------------------------------------------------------------------------
# The paper's effect and the notebook table
# --------------------------------------------------------------------------------------------


def paper_rl_gain(benchmark: str = RL_BENCHMARK, path: str | os.PathLike | None = None, rl_row: str = RL_ROW) -> float:
    """The paper's RL gain as a fraction: ([P] Table 3 ``rl_row`` (default "Math only") - "SFT baseline") / 100 on
    ``benchmark``, read from the paper-results file (``path``, default ``data_manifests/paper_results.yaml``).
    Raises ValueError when that cell shows no gain."""
    from falcon_h1r_lib.paper_results import paper_value

    gain = (paper_value(RL_TABLE, rl_row, benchmark, path=path) - paper_value(RL_TABLE, SFT_ROW, benchmark, path=path))
    if gain <= 0:
        raise ValueError(f"paper_rl_gain: {RL_TABLE} shows no RL gain for {rl_row!r} on {benchmark} ({gain:+.1f} "
                         "points); a power analysis needs a positive effect")
    return gain / 100.0


POWER_TABLE_COLUMNS = ("claim", "test", "effect_points", "n_samples", "problems_needed", "current_problems",
                       "power_at_current", "sd_per_problem", "source")


def power_table(rl: PairedVariance, deepconf: DifferenceStats | None = None, ns: Sequence[int] = (4, 16, 64),
                power: float = 0.8, alpha: float = 0.05, one_sided: bool = False,
                margin: float = DEEPCONF_MARGIN, true_difference: float = 0.0, benchmark: str = RL_BENCHMARK,
                path: str | os.PathLike | None = None, rl_row: str = RL_ROW) -> pd.DataFrame:
    """One row per (claim, n samples): P needed for ``power`` and the power at the current P.

    RL gain: one row per n in ``ns``, effect = ``paper_rl_gain(benchmark, path, rl_row)``, variance
    ``rl.var(n)``, current P = ``rl.n_problems``. DeepConf (if given): one row at its own n (the budget K the
    SD was measured at), non-inferiority with ``margin``, assuming ``true_difference`` (0: the methods are
    equal), current P = ``deepconf.n_problems``. Effects and SDs in points (x100); ``attrs`` keeps
    power, alpha, sidedness. Columns: ``POWER_TABLE_COLUMNS``.
    """
    where = "power_table"
    _components(where, rl)
    if not len(ns):
        raise ValueError(f"{where}: ns must list at least one number of samples")
    ns = [_count(where, "ns", n, 1) for n in ns]
    effect = paper_rl_gain(benchmark, path, rl_row)
    rows = []
    for n in ns:
        rows.append({
            "claim": "RL gain", "test": "paired superiority", "effect_points": 100.0 * effect, "n_samples": n,
            "problems_needed": problems_needed(effect, n, rl, power, alpha, one_sided),
            "current_problems": rl.n_problems,
            "power_at_current": power_paired(effect, rl.n_problems, n, rl, alpha, one_sided),
            "sd_per_problem": 100.0 * math.sqrt(rl.var(n)),
            "source": f"[P] Table 3: {rl_row} - {SFT_ROW} on {benchmark}"})
    if deepconf is not None:
        if not isinstance(deepconf, DifferenceStats):
            raise TypeError(f"{where}: deepconf must be a DifferenceStats (difference_stats(...)), "
                            f"got {type(deepconf).__name__}")
        rows.append({
            "claim": "DeepConf within margin", "test": "non-inferiority", "effect_points": 100.0 * margin,
            "n_samples": deepconf.n_samples,
            "problems_needed": problems_needed_noninferior(margin, true_difference, deepconf.sd, power, alpha,
                                                           one_sided),
            "current_problems": deepconf.n_problems,
            "power_at_current": power_noninferior(margin, true_difference, deepconf.n_problems, deepconf.sd, alpha,
                                                  one_sided),
            "sd_per_problem": 100.0 * deepconf.sd,
            "source": "[P] §5.2 claim: DeepConf-low within the margin of majority@K"})
    df = pd.DataFrame(rows, columns=list(POWER_TABLE_COLUMNS))
    df["n_samples"] = df["n_samples"].astype("Int64")
    df.attrs.update(power=power, alpha=alpha, one_sided=one_sided, true_difference=true_difference)
    return df


__all__ = ["DEEPCONF_MARGIN", "POWER_TABLE_COLUMNS", "DifferenceStats", "PairedVariance", "difference_stats",
           "paired_variance", "paired_variance_from_grades", "paired_variance_from_rates", "paper_rl_gain",
           "power_noninferior", "power_paired", "power_table", "problems_needed", "problems_needed_noninferior"]
