"""Curation steps ([P] §2.1-2.2, §3.1, Fig. 9): each step's drops are counted, and the claims hold."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from falcon_h1r_lib.config import ConfigError
from falcon_h1r_lib.configs import CurationConfig
from falcon_h1r_lib.data import (
    curation,
    decontamination,
    dedup,
    filters,
    mixing,
    rl_filter,
    schema,
    sft_rl_split,
    splits,
    tasks,
    text,
)


def _problem(i: int, domain: str = "math", prompt: str | None = None, **extra) -> dict:
    row = {
        "id": f"p{i}",
        "domain": domain,
        "family": "add",
        "difficulty": 2,
        "prompt": prompt or f"What is {i} + {i + 7}?",
        "answer": str(2 * i + 7),
    }
    if domain == "code":
        row.update(tests=["assert f(1) == 1"], entry_point="f")
    if domain == "science":
        row.update(choices={"A": "1", "B": "2"})
    if domain == "other":
        row.update(rules=[{"rule": "no_commas"}])
    return {**row, **extra}


def _trace(problem: dict, k: int, response: str) -> dict:
    return {**problem, "response": response, "rollout": k, "teacher": "concise"}


def test_domains_match_task_world():
    assert schema.DOMAINS == tasks.DOMAINS


# ---------------------------------------------------------------- schema


def test_schema_drops_only_the_malformed_row_and_names_index_and_field():
    rows = [_problem(i) for i in range(6)]
    rows[3] = {**rows[3], "difficulty": 9}
    del rows[5]["prompt"]
    kept, rep = schema.validate_schema(rows)
    assert [r["id"] for r in kept] == ["p0", "p1", "p2", "p4"]
    assert rep.dropped_by_reason == {"malformed:difficulty": 1, "malformed:prompt": 1}
    listed = {m["index"]: m["errors"] for m in rep.details["malformed"]}
    assert set(listed) == {3, 5}
    assert "difficulty" in listed[3][0] and listed[5] == ["prompt: missing"]


def test_schema_domain_extras_and_traces():
    code = _problem(1, "code")
    del code["tests"]
    bad_trace = _trace(_problem(2), -1, "<think>x</think> \\boxed{1}")
    _, rep = schema.validate_schema([code, _problem(3, "science"), _problem(4, "other")])
    assert rep.dropped_by_reason == {"malformed:tests": 1}
    _, rep = schema.validate_schema([bad_trace], kind="trace")
    assert rep.dropped_by_reason == {"malformed:rollout": 1}
    real = [p for d in tasks.DOMAINS for p in tasks.generate(d, 5, 0)]
    assert schema.validate_schema(real)[1].n_out == len(real)


# ---------------------------------------------------------------- quality and verification


@pytest.mark.parametrize(
    "domain,response,reason",
    [
        ("math", "<think>\n2+3=5\n</think>\n\nThe answer is \\boxed{5}", None),
        ("math", "<think>\n\n</think>\n\n\\boxed{5}", "empty_reasoning"),
        ("math", "<think>\nso \\boxed{5}\n</think>\n\n", "answer_inside_think"),
        ("math", "<think>\nadd\n</think>\n\n", "empty_answer"),
        ("math", "<think>\nadd\n</think>\n\nfive", "missing_boxed"),
        ("math", "add them: \\boxed{5}", "no_think_block"),
        ("code", "<think>\nloop\n</think>\n\n```python\ndef f(x):\n    return x\n```", None),
        ("code", "<think>\nloop\n</think>\n\n```python\ndef f(x)\n    return x\n```", "code_syntax_error"),
        ("code", "<think>\nloop\n</think>\n\n```cpp\nint f(int x){return x;}\n```", "wrong_language"),
        ("code", "<think>\n```python\ndef f(x):\n    return x\n```\n</think>\n\ndone", "answer_inside_think"),
        ("science", "<think>\nohm\n</think>\n\nB", None),
        ("science", "<think>\nohm\n</think>\n\n42 kJ", "missing_choice"),  # option text, no letter
        ("math", "so <think>\nadd\n</think>\n\n\\boxed{5}", "text_before_think"),
        ("math", "<think>\nadd\n</think>\n\n\\boxed{5}\n</think>\n\n\\boxed{6}", "repeated_think_close"),
        ("math", "<think>\nadd\n</think>\n\n\\boxed{5} or \\boxed{6", "missing_boxed"),  # unclosed final box
        ("code", "<think>\nloop\n</think>\n\n```python\ndef f(x):\n    return x\n```\n```python\ndef g(", "missing_code_block"),
    ],
)
def test_quality_reasons(domain, response, reason):
    assert filters.quality_reason(_trace(_problem(0, domain), 0, response)) == reason


def test_a_trace_kept_for_sft_is_one_the_reward_can_read():
    """Curation and the verifiers share one reader: every trace the quality filter keeps has an answer that
    extraction finds, and every trace without one is dropped (teacher traces with injected format defects)."""
    from falcon_h1r_lib.data.teacher import Teacher
    from falcon_h1r_lib.rewards import extract_answer

    teacher = Teacher("concise", error_rate=0.2, seed=2, format_error_rate=0.4)
    rows = [{**p, "response": t["response"], "rollout": t["rollout"], "teacher": "concise"}
            for d in tasks.DOMAINS for p in tasks.generate(d, 6, 5) for t in teacher.rollouts(p, 3)]
    rows += [_trace(_problem(0, "math"), 0, resp) for resp in (
        "<think>\na\n</think>\n\n\\boxed{1} or \\boxed{2", "<think>\na\n</think>\n\\boxed{1}</think>\\boxed{1}",
        "\\boxed{1}", "<think>\na\n</think>\n\n\\boxed{}")]
    kept = {id(r) for r in filters.quality_filter(rows)[0]}
    assert 0 < len(kept) < len(rows)
    for row in rows:
        if row["domain"] in ("math", "science", "code"):
            readable = extract_answer(row["response"], row["domain"]) is not None
            assert readable or id(row) not in kept, row["response"]


def test_verify_counts_no_verdict_apart_and_uses_source_labels():
    rows = [_trace(_problem(i), 0, "r") for i in range(6)]
    rows[4]["source_correct"] = True
    verdicts = {"p0": True, "p1": False, "p2": None, "p3": True, "p4": None, "p5": False}
    kept, rep = filters.verify_traces(rows, lambda row, resp: verdicts[row["id"]])
    assert [r["id"] for r in kept] == ["p0", "p3", "p4"]
    assert rep.dropped_by_reason == {"incorrect": 2, "no_verdict": 1}
    assert rep.details["decided_by_source_label"] == 1


# ---------------------------------------------------------------- difficulty, cap


def test_difficulty_weights_follow_the_paper_ranges():
    args = (0.25, 0.875, 1.25, 1.75, 0.5)
    assert filters.difficulty_weight(0.0, *args) == ("hard", 1.75)
    assert filters.difficulty_weight(0.25, *args) == ("hard", 1.25)
    bucket, w = filters.difficulty_weight(0.125, *args)
    assert bucket == "hard" and w == pytest.approx(1.5)
    assert filters.difficulty_weight(0.5, *args) == ("medium", 1.0)
    assert filters.difficulty_weight(1.0, *args) == ("easy", 0.5)


def test_weight_column_from_pass_rate_and_easy_drop():
    hard, easy = _problem(0), _problem(1)
    rows = [_trace(hard, 0, "r")] + [_trace(easy, k, "r") for k in range(8)]  # 1/8 vs 8/8 correct
    kept, _ = filters.weight_by_difficulty(rows, {"p0": 8, "p1": 8})
    w = {r["id"]: (r["pass_rate"], r["weight"]) for r in kept}
    assert w["p0"] == (0.125, pytest.approx(1.5)) and w["p1"] == (1.0, 0.5)
    kept, rep = filters.weight_by_difficulty(rows, {"p0": 8, "p1": 8}, easy_policy="drop")
    assert {r["id"] for r in kept} == {"p0"} and rep.dropped_by_reason == {"easy": 8}


def test_single_trace_pass_rates_are_unrated_not_easy():
    """Sources with 1 trace per problem give pass rates 0/1 or 1/1: below min_rollouts no bucket is trusted."""
    one, four = _problem(0), _problem(1)
    rows = [_trace(one, 0, "r")] + [_trace(four, k, "r") for k in range(4)]  # 1/1 and 4/4 correct
    kept, rep = filters.weight_by_difficulty(rows, {"p0": 1, "p1": 4}, easy_policy="drop", min_rollouts=4)
    assert {(r["id"], r["difficulty_bucket"], r["weight"]) for r in kept} == {("p0", "unrated", 1.0)}
    assert rep.dropped_by_reason == {"easy": 4} and rep.details["rows_by_bucket"] == {"easy": 4, "unrated": 1}
    assert rep.details["problems_unrated"] == 1
    cfg = CurationConfig(min_rollouts_for_weighting=2, max_correct_per_problem=4)
    good = [{**r, "response": "<think>\nsum\n</think>\n\n\\boxed{7}"} for r in rows]  # passes quality
    out, funnel = curation.curate_traces(good, cfg, verify_fn=lambda row, resp: True)
    weigh = next(r for r in funnel if r.name == "difficulty_weight")
    assert weigh.details["rows_by_bucket"] == {"easy": 4, "unrated": 1}
    with pytest.raises(ConfigError, match="min_rollouts_for_weighting"):
        CurationConfig(min_rollouts_for_weighting=0)


def test_cap_keeps_at_most_n_per_problem():
    rows = [_trace(_problem(i), k, "r") for i in range(3) for k in range(2 + 5 * i)]
    kept, rep = filters.cap_rollouts(rows, 4, seed=1)
    assert Counter(r["id"] for r in kept) == {"p0": 2, "p1": 4, "p2": 4}
    assert rep.dropped_by_reason == {"over_cap": len(rows) - 10}


# ---------------------------------------------------------------- dedup, MinHash


def test_exact_and_near_dedup_spare_other_operands():
    rows = [
        _problem(0, prompt="What is 12 + 30? Reply with a boxed number please."),
        _problem(1, prompt="what is 12+30 ?  reply with a boxed number, please"),  # exact after normalising
        _problem(2, prompt="What is 12 + 30? Reply with a boxed number please now."),  # near copy
        _problem(
            3, prompt="What is 12 + 31? Reply with a boxed number please."
        ),  # other operands: a new problem
    ]
    rows, rep1 = dedup.dedup_exact(rows)
    rows, rep2 = dedup.dedup_near(rows, threshold=0.7, shingle_n=2)
    assert [r["id"] for r in rows] == ["p0", "p3"]
    assert rep1.dropped_by_reason == {"exact_duplicate": 1} and rep2.dropped_by_reason == {
        "near_duplicate": 1
    }


def test_minhash_estimates_jaccard_and_lsh_matches_pairwise():
    a = {f"w{i}" for i in range(100)}
    b = {f"w{i}" for i in range(20, 120)}  # J = 80 / 120
    h = text.MinHasher(num_perm=256, seed=3)
    assert text.MinHasher.estimate(h.signature(a), h.signature(b)) == pytest.approx(80 / 120, abs=0.08)
    rng = random.Random(0)
    words = [f"word{i}" for i in range(40)]
    base = [" ".join(rng.choices(words, k=30)) for _ in range(30)]
    rows = [_problem(i, prompt=t) for i, t in enumerate(base)]
    rows += [_problem(100 + i, prompt=t + " extra") for i, t in enumerate(base[:10])]  # 10 near copies
    pw, _ = dedup.dedup_near(rows, 0.8, 3, "pairwise", require_same_numbers=False)
    lsh, _ = dedup.dedup_near(rows, 0.8, 3, "lsh", require_same_numbers=False, num_perm=128, lsh_bands=32)
    assert len(pw) == 30 and {r["id"] for r in lsh} == {r["id"] for r in pw}


# ---------------------------------------------------------------- decontamination


def test_decontamination_removes_planted_copies_and_spares_the_pool():
    cfg = CurationConfig()
    evals = splits.tiny_eval_sets(20)
    planted = []
    for bench, probs in evals.items():
        for j, p in enumerate(probs[:5]):
            planted.append({**p, "id": f"copy-{bench}-{j}"})
            loud = p["prompt"].upper().replace(" ", "  ").replace("?", " ?!") + "  "
            planted.append({**p, "id": f"reformat-{bench}-{j}", "prompt": loud})
            planted.append(
                {**p, "id": f"prefixed-{bench}-{j}", "prompt": "Please solve this. " + p["prompt"]}
            )
    pool, _ = dedup.dedup_exact([p for d in tasks.DOMAINS for p in splits.tiny_train_problems(d, 60, 7)])
    kept, rep = decontamination.decontaminate(
        pool + planted,
        evals,
        cfg.decontam_ngram_n,
        cfg.shingle_n,
        cfg.decontam_boilerplate_frac,
        cfg.decontam_near_threshold,
    )
    kept_ids = {r["id"] for r in kept}
    assert not [p["id"] for p in planted if p["id"] in kept_ids]  # 0 survivors
    eval_keys = {text.normalize_prompt(p["prompt"]) for ps in evals.values() for p in ps}
    clean = [p for p in pool if text.normalize_prompt(p["prompt"]) not in eval_keys]
    survivors = sum(p["id"] in kept_ids for p in clean)
    assert survivors >= 0.8 * len(clean), (survivors, len(clean), rep.dropped_by_reason)
    assert set(rep.details["by_benchmark"]) == set(evals)


def test_ngram_hit_needs_the_eval_numbers():
    evals = {
        "bench": [_problem(0, prompt="a long shared template sentence about a tank that holds 17 litres")]
    }
    rows = [
        _problem(1, prompt="a long shared template sentence about a tank that holds 23 litres"),
        _problem(2, prompt="Intro. a long shared template sentence about a tank that holds 17 litres today"),
    ]
    kept, rep = decontamination.decontaminate(rows, evals, ngram_n=6)
    assert [r["id"] for r in kept] == ["p1"] and rep.dropped_by_reason == {"contaminated:ngram": 1}


# ---------------------------------------------------------------- mixing, split


def test_mixing_hits_target_shares_when_the_pool_allows():
    rng = random.Random(0)
    rows = []
    for d, n in (("math", 400), ("code", 300), ("science", 200), ("other", 200)):
        for _ in range(n):
            rows.append(_trace(_problem(len(rows), d), 0, " ".join(["tok"] * rng.randint(5, 15))))
    shares = {"math": 0.568, "code": 0.298, "science": 0.071, "other": 0.064}
    kept, rep = mixing.mix_to_shares(rows, shares, seed=0)
    for d, s in shares.items():
        assert rep.details["achieved_share"][d] == pytest.approx(s, abs=0.01)
    assert rep.details["binding_domain"] == "math"
    kept2, rep2 = mixing.mix_to_shares([r for r in rows if r["domain"] != "other"], shares)
    assert rep2.details["absent_domains"] == ["other"] and kept2


def test_sft_and_rl_are_disjoint_by_id_and_prompt():
    rows = [_problem(i) for i in range(40)] + [_problem(100 + i, "code") for i in range(10)]
    rows.append(_problem(999, prompt=rows[0]["prompt"]))  # same prompt, other id: must land with p0
    sft, rl, rep = sft_rl_split.split_sft_rl(rows, 0.5, ("math",), seed=0)
    sft_rl_split.assert_disjoint(sft, rl)
    assert len(sft) + len(rl) == len(rows) and all(r["domain"] == "math" for r in rl)
    assert {r["id"] for r in rl} & {"p0", "p999"} in (set(), {"p0", "p999"})
    with pytest.raises(AssertionError, match="share a prompt"):
        sft_rl_split.assert_disjoint([rows[0]], [rows[-1]])
    kept, rep = sft_rl_split.remove_overlap(rows[:5] + [rows[-1]], rows[:3])
    assert rep.dropped_by_reason == {"overlap_id": 3, "overlap_prompt": 1}


# ---------------------------------------------------------------- RL filter (Fig. 9)


def _decide(outcomes, truncated=None, answers=None, draw=0.5, f_trunc=0.1, f_min=0.1, domain="math"):
    k = len(outcomes)
    rng = random.Random(0)
    rng.random = lambda: draw  # the branch's draw, fixed
    return rl_filter.rl_filter_decision(
        outcomes, truncated or [False] * k, answers or [None] * k, rng, f_trunc, f_min, domain
    )


def test_rl_filter_rules_of_fig9():
    assert _decide([True] * 8) == ("discard", "all_correct")
    assert _decide([True] + [False] * 7) == ("keep", "partial")
    assert _decide([False] * 8, [True] * 8, draw=0.05) == ("keep", "all_truncated_sampled")
    assert _decide([False] * 8, [True] * 8, draw=0.5) == ("discard", "all_truncated")
    four = ["7"] * 4 + ["1", "2", "3", None]
    assert _decide([False] * 8, answers=four) == ("discard", "consistent_error")
    three = ["7"] * 3 + ["1", "2", "3", None, None]
    assert _decide([False] * 8, answers=three, draw=0.5) == ("discard", "no_majority")
    assert _decide([False] * 8, answers=three, draw=0.01) == ("keep", "no_majority_sampled")
    assert _decide([False] * 5, answers=["7"] * 3 + ["1", "2"]) == ("discard", "consistent_error")  # 3 >= 5/2
    assert _decide([False] * 5, answers=["7"] * 2 + ["1", "2", "3"], draw=0.9)[1] == "no_majority"
    # answers count by value, as votes do: 1/2, 0.5 and \frac{1}{2} are one wrong answer given 4 times
    halves = ["\\frac{1}{2}", "0.5", "1/2", " 0.5 ", "3", "4", "", None]
    assert _decide([False] * 8, answers=halves) == ("discard", "consistent_error")
    letters = ["B", "b", "C", "D"] * 2  # a science letter is case-insensitive, other text is not
    assert _decide([False] * 8, answers=letters, domain="science") == ("discard", "consistent_error")
    assert _decide([False] * 8, answers=letters, draw=0.9, domain="other") == ("discard", "no_majority")
    with pytest.raises(ValueError, match="truncated"):
        rl_filter.rl_filter_decision([True], [True, False], [None], random.Random(0), 0.1, 0.1)


def test_rl_filter_keeps_the_configured_fraction():
    rng = random.Random(1)
    kept = sum(
        rl_filter.rl_filter_decision([False] * 8, [True] * 8, [None] * 8, rng, 0.1, 0.1)[0] == "keep"
        for _ in range(4000)
    )
    assert 300 < kept < 500
    rows = [_problem(i) for i in range(3)]
    rollouts = {
        "p0": {"outcomes": [True] * 8, "truncated": [False] * 8, "answers": ["1"] * 8},
        "p1": {"outcomes": [True, False] * 4, "truncated": [False] * 8, "answers": ["1"] * 8},
        "p2": {"outcomes": [False] * 8, "truncated": [False] * 8, "answers": ["9"] * 8},
    }
    kept, rep = rl_filter.rl_filter(rows, rollouts)
    assert [r["id"] for r in kept] == ["p1"] and kept[0]["sft_pass_rate"] == 0.5
    assert rep.dropped_by_reason == {"all_correct": 1, "consistent_error": 1}


# ---------------------------------------------------------------- the pipeline on the task world


def test_pipeline_on_a_small_tiny_pool():
    from falcon_h1r_lib.data.teacher import Teacher

    cfg = CurationConfig(
        problems_per_domain={"math": 12, "code": 12, "science": 12, "other": 12}, eval_problems_per_domain=10, rollouts_per_problem=4, max_correct_per_problem=2
    )
    problems = [p for d in tasks.DOMAINS for p in splits.tiny_train_problems(d, cfg.problems_per_domain[d], 0)]
    bad = {**problems[0], "id": "broken"}
    del bad["answer"]
    teacher = Teacher(cfg.teacher_style, cfg.teacher_error_rate, cfg.teacher_self_check_prob, cfg.seed)
    res = curation.run_pipeline(
        problems + [bad], splits.tiny_eval_sets(cfg.eval_problems_per_domain), cfg, teacher=teacher
    )
    names = [r.name for r in res.funnel]
    assert names[0] == "schema[problem]" and names[-1] == "mix_to_shares"
    assert res.funnel[0].dropped_by_reason == {"malformed:answer": 1}
    assert res.sft_rows and all(r["weight"] > 0 and "pass_rate" in r for r in res.sft_rows)
    assert max(Counter(r["id"] for r in res.sft_rows).values()) <= cfg.max_correct_per_problem
    sft_rl_split.assert_disjoint(res.sft_rows, res.rl_problems)
    trace_steps = res.funnel[5:]  # each trace step's input is the previous step's output
    assert all(b.n_in == a.n_out for a, b in zip(trace_steps, trace_steps[1:], strict=False))
