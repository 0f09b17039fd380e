"""Programmatic teacher: format, verifiability of clean traces, injected errors, lengths, determinism."""

from __future__ import annotations

import math
import statistics

import pytest

from falcon_h1r_lib.data.tasks import DOMAINS, LEVELS, generate
from falcon_h1r_lib.data.teacher import STYLES, Teacher
from falcon_h1r_lib.rewards import extract_code, format_ok, quality_issues, verify


def _passes(code: str, tests: list[str]) -> bool:
    ns: dict = {}
    try:
        exec(code, ns)  # noqa: S102 - our own template code; model code goes through the sandbox
        for t in tests:
            exec(t, ns)  # noqa: S102
    except Exception:  # noqa: BLE001
        return False
    return True


def _correct(problem: dict, response: str) -> bool:
    """verify() for math/science/other; code checked in-process (sandbox runs are in test_rewards)."""
    if problem["domain"] == "code":
        code = extract_code(response)
        return code is not None and _passes(code, problem["tests"])
    return verify(problem, response) is True


@pytest.fixture(scope="module")
def problems() -> list[dict]:
    return [p for d in DOMAINS for lv in LEVELS for p in generate(d, 8, seed=3, difficulty=lv)]


@pytest.fixture(scope="module", params=sorted(STYLES))
def noisy_traces(request, problems):
    t = Teacher(request.param, error_rate=0.3, self_check_prob=0.5, seed=1, format_error_rate=0.15)
    return [(p, tr) for p in problems for tr in t.rollouts(p, 4)]


def test_trace_schema_and_format(noisy_traces):
    for p, tr in noisy_traces:
        assert {"problem_id", "domain", "difficulty", "teacher", "rollout", "response", "injected_error",
                "injected_kind", "n_chars"} <= set(tr)
        assert tr["problem_id"] == p["id"] and tr["n_chars"] == len(tr["response"])
        assert tr["response"].startswith("<think>\n") and "\n</think>\n\n" in tr["response"]


def test_clean_traces_verify_and_pass_quality_filters(noisy_traces):
    clean = [(p, tr) for p, tr in noisy_traces if not tr["injected_error"]]
    assert len(clean) > 0.4 * len(noisy_traces)
    for p, tr in clean:
        assert format_ok(tr["response"]) and quality_issues(p, tr["response"]) == [], tr["response"]
        assert _correct(p, tr["response"]), tr["response"]


def test_content_errors_fail_verification(noisy_traces):
    bad = [(p, tr) for p, tr in noisy_traces if tr["injected_kind"] in ("wrong_step", "bug", "wrong_letter", "rule_broken")]
    assert {p["domain"] for p, _ in bad} == set(DOMAINS)
    caught = sum(not _correct(p, tr["response"]) for p, tr in bad)
    assert caught == len(bad)  # every content slip reaches the final answer by construction


def test_format_defects_fail_quality_filters(noisy_traces):
    defects = [(p, tr) for p, tr in noisy_traces
               if tr["injected_kind"] and tr["injected_kind"].split("+")[-1] in
               ("empty_reasoning", "missing_boxed", "syntax_error", "empty_answer")]
    kinds = {tr["injected_kind"].split("+")[-1] for _, tr in defects}
    assert kinds == {"empty_reasoning", "missing_boxed", "syntax_error", "empty_answer"}
    for p, tr in defects:
        assert quality_issues(p, tr["response"]), tr["response"]


def test_error_rates_are_honoured(problems):
    math_ps = [p for p in problems if p["domain"] == "math"]
    assert not any(tr["injected_error"] for p in math_ps for tr in Teacher(error_rate=0.0).rollouts(p, 3))
    always = [tr for p in math_ps for tr in Teacher(error_rate=1.0).rollouts(p, 3)]
    assert sum(tr["injected_kind"] == "wrong_step" for tr in always) >= 0.95 * len(always)
    with pytest.raises(ValueError, match="error_rate"):
        Teacher(error_rate=1.5)
    with pytest.raises(ValueError, match="style"):
        Teacher("shouty")


def test_rollouts_are_seeded_per_problem_and_index(problems):
    t = Teacher("verbose", error_rate=0.2, seed=4)
    p = problems[7]
    ks = t.rollouts(p, 6)
    assert ks == Teacher("verbose", error_rate=0.2, seed=4).rollouts(p, 6)
    assert t.rollout(p, 5) == ks[5]  # independent of the order rollouts are drawn in
    assert len({tr["response"] for tr in t.rollouts(problems[60], 12)}) > 1  # rollouts differ
    assert [tr["response"] for tr in Teacher("verbose", seed=5).rollouts(p, 6)] != [tr["response"] for tr in ks]


def test_lengths_vary_log_normally_and_grow_with_difficulty():
    t = Teacher("concise", error_rate=0.0, self_check_prob=0.4, seed=0)
    by_level = {lv: [tr["n_chars"] for p in generate("math", 60, 0, difficulty=lv) for tr in t.rollouts(p, 2)]
                for lv in LEVELS}
    means = [statistics.mean(v) for v in by_level.values()]
    assert all(a < b for a, b in zip(means[:-1], means[1:], strict=True)), means
    for d in DOMAINS:
        lens = [tr["n_chars"] for p in generate(d, 150, 1) for tr in t.rollouts(p, 2)]
        assert statistics.pstdev(math.log(n) for n in lens) > 0.2, d
        assert max(lens) <= 600


def test_styles_differ_in_phrasing_and_length(problems):
    c, v = Teacher("concise", error_rate=0.0, seed=0), Teacher("verbose", error_rate=0.0, seed=0)
    ps = [p for p in problems if p["domain"] == "math"]
    rc = [tr["response"] for p in ps for tr in c.rollouts(p, 2)]
    rv = [tr["response"] for p in ps for tr in v.rollouts(p, 2)]
    assert statistics.mean(map(len, rv)) > 1.2 * statistics.mean(map(len, rc))
    assert sum("the answer is" in x for x in rv) == len(rv) and not any("the answer is" in x for x in rc)


def test_error_slope_makes_hard_levels_fail_more():
    t = Teacher(error_rate=0.3, error_slope=0.5)
    assert t.error_rate_at(1) == 0.0 and t.error_rate_at(3) == 0.3 and abs(t.error_rate_at(5) - 0.6) < 1e-12
    assert Teacher(error_rate=0.3).error_rate_at(5) == 0.3  # slope 0: the old constant rate
    assert Teacher(error_rate=0.9, error_slope=1.0).error_rate_at(5) == 1.0  # clipped
    with pytest.raises(ValueError, match="error_slope"):
        Teacher(error_slope=-1.0)
