"""Evaluation: pass@k / maj@k / bootstrap pinned against hand-computed cases, grading through the reward
verifiers (no verdict counted apart), the benchmark registry vs paper Table 9, tables, and the CLI end to end."""

import itertools
import json
import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from falcon_h1r_lib import config as C
from falcon_h1r_lib.configs import EvaluationConfig
from falcon_h1r_lib.evaluation import (
    BENCHMARKS,
    bootstrap_ci,
    get_benchmark,
    grade,
    grade_all,
    maj_at_k,
    mean_pass_at_1,
    paired_difference,
    paper_vs_ours,
    pass_at_k,
    summarize,
    ungradable_reason,
    write_table,
)
from falcon_h1r_lib.paper_results import paper_value

# ------------------------------------------------------------------ pass@k


def brute_pass_at_k(n, c, k):
    """Fraction of size-k subsets of n samples (c correct) holding a correct one, by enumeration."""
    outcomes = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return Fraction(sum(any(outcomes[i] for i in s) for s in subsets), len(subsets))


def test_pass_at_k_edges():
    for n in (1, 4, 16):
        assert pass_at_k(n, 0, n) == 0.0  # n = k, nothing correct
        assert pass_at_k(n, 1, n) == 1.0  # n = k: the one correct sample is always drawn
        assert pass_at_k(n, n, n) == 1.0
        for k in range(1, n + 1):
            assert pass_at_k(n, 0, k) == 0.0  # c = 0
            assert pass_at_k(n, n, k) == 1.0  # c = n
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 is c / n


def test_pass_at_k_matches_subset_enumeration():
    for n in range(1, 8):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(float(brute_pass_at_k(n, c, k)), abs=1e-12), (n, c, k)
    # a mid case by hand: n=5, c=2, k=2 -> 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)


def test_pass_at_k_is_stable_at_large_n():
    exact = 1 - Fraction(math.comb(512 - 7, 64), math.comb(512, 64))
    assert pass_at_k(512, 7, 64) == pytest.approx(float(exact), rel=1e-12)


@pytest.mark.parametrize("args", [(3, 1, 4), (3, 4, 2), (-1, 0, 1), (3, -1, 1), (3, 1, 0), (3, 1, -2)])
def test_pass_at_k_rejects_bad_counts(args):
    with pytest.raises(ValueError):
        pass_at_k(*args)


def test_pass_at_k_rejects_non_ints():
    with pytest.raises(TypeError):
        pass_at_k(4.0, 1, 1)
    with pytest.raises(TypeError):
        pass_at_k(4, True, 1)


def test_mean_pass_at_1_leaves_no_verdict_out():
    # problem 1: 1 of 2 graded correct (None left out); problem 2: nothing graded (left out); problem 3: 2/2
    assert mean_pass_at_1([[True, False, None], [None, None], [True, True]]) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="no problem has a verdict"):
        mean_pass_at_1([[None], [None, None]])


# ------------------------------------------------------------------ majority vote


def test_maj_tie_goes_to_the_earliest_first_answer():
    vote = maj_at_k(["3", "5", "5", "3"])
    assert (vote.answer, vote.index, vote.votes, vote.tied) == ("3", 0, 2, True)
    vote = maj_at_k(["5", "3", "3", "5"])
    assert (vote.answer, vote.index, vote.tied) == ("5", 0, True)
    vote = maj_at_k(["1", "2", "2"])
    assert (vote.answer, vote.index, vote.votes, vote.tied) == ("2", 1, 2, False)


def test_maj_pools_equivalent_answers():
    answers = ["7", "0.5", "7", "\\frac{1}{2}", "1/2"]
    vote = maj_at_k(answers)
    assert (vote.answer, vote.index, vote.votes) == ("0.5", 1, 3)
    # by exact string, the same answers elect "7": pooling is what changes the outcome
    assert maj_at_k(answers, equivalent=lambda a, b: a == b).answer == "7"


def test_maj_abstentions_never_win():
    vote = maj_at_k([None, None, None, "4"])
    assert (vote.answer, vote.index, vote.votes, vote.n_answers) == ("4", 3, 1, 1)
    vote = maj_at_k([None, None])
    assert vote.answer is None and vote.index is None and vote.votes == 0
    assert maj_at_k([]).answer is None


def test_maj_at_k_uses_the_first_k():
    assert maj_at_k(["1", "2", "2"], k=1).answer == "1"
    assert maj_at_k(["1", "2", "2"], k=3).answer == "2"
    with pytest.raises(ValueError):
        maj_at_k(["1"], k=2)
    with pytest.raises(ValueError):
        maj_at_k(["1"], k=0)


# ------------------------------------------------------------------ bootstrap


def test_bootstrap_ci_contains_mean_and_is_seeded():
    x = np.random.default_rng(1).random(40)
    lo, hi = bootstrap_ci(x, resamples=500, seed=3)
    assert lo < x.mean() < hi
    assert (lo, hi) == bootstrap_ci(x, resamples=500, seed=3)
    assert (lo, hi) != bootstrap_ci(x, resamples=500, seed=4)
    lo90, hi90 = bootstrap_ci(x, resamples=500, seed=3, level=0.5)
    assert lo < lo90 < hi90 < hi  # a lower level gives a narrower interval
    assert bootstrap_ci([0.25, 0.25, 0.25]) == (0.25, 0.25)
    with pytest.raises(ValueError):
        bootstrap_ci([])
    with pytest.raises(ValueError):
        bootstrap_ci([0.5], level=1.0)


def _grades(rates: dict[str, list[bool | None]]) -> pd.DataFrame:
    return pd.DataFrame([{"problem_id": pid, "sample_index": i, "correct": v}
                         for pid, vs in rates.items() for i, v in enumerate(vs)])


def test_paired_difference_removes_shared_problem_variance():
    rng = np.random.default_rng(0)
    difficulty = rng.random(60)  # problems from easy to hard, shared by both models
    a = {f"p{i}": list(rng.random(16) < d) for i, d in enumerate(difficulty)}
    b = {f"p{i}": list(rng.random(16) < min(1.0, d + 0.1)) for i, d in enumerate(difficulty)}
    res = paired_difference(_grades(a), _grades(b))
    rate_a = np.mean([np.mean(v) for v in a.values()])
    rate_b = np.mean([np.mean(v) for v in b.values()])
    assert res["difference"] == pytest.approx(rate_b - rate_a)
    lo, hi = res["ci"]
    assert lo < res["difference"] < hi and lo > 0  # a +10-point shift is found on 60 problems
    lo_a, hi_a = bootstrap_ci([np.mean(v) for v in a.values()], resamples=2000)
    assert hi - lo < 0.5 * (hi_a - lo_a)  # much narrower than one model's own interval
    assert res["b_better"] + res["a_better"] + res["ties"] == res["n_problems"] == 60
    swapped = paired_difference(_grades(b), _grades(a))
    assert swapped["difference"] == pytest.approx(-res["difference"])


def test_paired_difference_leaves_out_ungraded_and_refuses_other_problems():
    a = _grades({"p1": [True, False], "p2": [None, None], "p3": [False, False]})
    b = _grades({"p1": [True, True], "p2": [True, True], "p3": [False, True]})
    res = paired_difference(a, b)
    assert (res["n_problems"], res["n_left_out"]) == (2, 1)
    assert res["difference"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="different problems"):
        paired_difference(a, _grades({"p1": [True], "p9": [True]}))


# ------------------------------------------------------------------ grading

MATH = {"id": "m1", "domain": "math", "answer": "34", "difficulty": 2}


def test_grade_empty_and_unboxed_completions():
    g = grade(MATH, "")
    assert (g.correct, g.answer, g.empty, g.has_boxed) == (False, None, True, False)
    g = grade(MATH, "<think>30+4</think>\n\nI do not know")
    assert (g.correct, g.answer, g.has_boxed) == (False, None, False)
    g = grade(MATH, "<think>30+4</think>\n\nthe answer is 34")  # no box: math-verify's extraction
    assert (g.correct, g.answer, g.has_boxed) == (True, "34", False)
    g = grade(MATH, "<think>cut off mid-thought")  # truncated: no answer part
    assert (g.correct, g.answer) == (False, None)
    g = grade(MATH, "<think>x</think>\n\n\\boxed{33} no, \\boxed{34}")  # the last box is the answer
    assert (g.correct, g.answer, g.has_boxed) == (True, "34", True)


def test_grade_reads_traces_records_and_strings():
    from falcon_h1r_lib.generation import Trace

    text = "<think>x</think>\n\n\\boxed{34}"
    trace = Trace("m1", 3, 0, "q", text, [5, 6], [-0.1, -0.2], [[5], [6]], [[-0.1], [-0.2]], "eos")
    g = grade(MATH, trace)
    assert (g.correct, g.sample_index, g.n_tokens, g.finish_reason) == (True, 3, 2, "eos")
    g = grade(MATH, {"problem_id": "m1", "sample_index": 1, "text": text, "n_tokens": 9, "finish_reason": "length"})
    assert (g.correct, g.sample_index, g.n_tokens, g.finish_reason) == (True, 1, 9, "length")
    with pytest.raises(TypeError):
        grade(MATH, {"problem_id": "m1"})


def test_no_verdict_is_counted_not_scored():
    unreadable_gold = {"id": "m2", "domain": "math", "answer": "\\text{}"}  # the verifier abstains
    ifbench = {"id": "if1", "domain": "other", "rules": [{"instruction_id": "count:keywords", "kwargs": {}}]}
    g = grade(unreadable_gold, "<think>a</think>\n\n\\boxed{5}")
    assert g.correct is None and "abstained" in g.note
    g = grade(ifbench, "<think>a</think>\n\nsome text")
    assert g.correct is None and "count:keywords" in g.note
    problems = [MATH, unreadable_gold]
    traces = [{"problem_id": "m1", "sample_index": i, "text": t, "n_tokens": 3, "finish_reason": "eos"}
              for i, t in enumerate(["\\boxed{34}", "\\boxed{3}"])]
    traces += [{"problem_id": "m2", "sample_index": i, "text": "\\boxed{5}", "n_tokens": 3, "finish_reason": "eos"}
               for i in range(2)]
    grades = grade_all(problems, traces)
    assert len(grades) == 4 and list(grades["correct"]) == [True, False, None, None]
    s = summarize(grades, ks=(1, 2), resamples=200)
    assert s["no_verdict"] == 2 and s["n_problems"] == 2 and s["n_problems_graded"] == 1
    assert s["pass_at_1"] == pytest.approx(0.5)  # problem m1 only, never 0.25
    assert s["pass_at_1_no_verdict_as_wrong"] == pytest.approx(0.25)
    assert s["pass_at_k"] == {"1": pytest.approx(0.5), "2": pytest.approx(1.0)}
    assert s["maj_no_verdict"] == 1
    only_none = summarize(grades[grades["problem_id"] == "m2"])
    assert only_none["pass_at_1"] is None and only_none["no_verdict"] == 2
    with pytest.raises(KeyError, match="nope"):
        grade_all(problems, [{"problem_id": "nope", "text": ""}])


def test_summarize_by_hand():
    rows = [  # p1: 3/4 correct, answers 5,5,5,7 -> maj 5 (correct); p2: 1/4, answers 2,9,9,None -> maj 9 (wrong)
        ("p1", 0, True, "5"), ("p1", 1, True, "5"), ("p1", 2, False, "7"), ("p1", 3, True, "5"),
        ("p2", 0, True, "2"), ("p2", 1, False, "9"), ("p2", 2, False, "9"), ("p2", 3, False, None),
    ]
    df = pd.DataFrame(rows, columns=["problem_id", "sample_index", "correct", "answer"])
    df["correct"] = df["correct"].astype(object)
    df["domain"], df["difficulty"], df["n_tokens"], df["finish_reason"] = "math", [1] * 4 + [3] * 4, 10, "eos"
    s = summarize(df, ks=(1, 2, 4, 5), resamples=300, seed=0)
    assert s["pass_at_1"] == pytest.approx((0.75 + 0.25) / 2)
    assert s["pass_at_k"]["2"] == pytest.approx((1.0 + pass_at_k(4, 1, 2)) / 2)
    assert s["pass_at_k"]["4"] == pytest.approx(1.0) and s["pass_at_k"]["5"] is None  # k > n: undefined
    assert s["maj_at_n"] == pytest.approx(0.5) and s["no_answer"] == 1
    assert s["by_difficulty"] == {"1": {"n_problems": 1, "pass_at_1": 0.75}, "3": {"n_problems": 1, "pass_at_1": 0.25}}
    lo, hi = s["pass_at_1_ci"]
    assert lo <= s["pass_at_1"] <= hi


def test_ungradable_reasons():
    assert ungradable_reason(MATH) is None
    assert "A-D" in ungradable_reason({"id": "x", "domain": "science", "answer": "G"})
    assert ungradable_reason({"id": "x", "domain": "code", "tests": [{"input": "1", "output": "1"}]}) is None
    assert "functional" in ungradable_reason(
        {"id": "x", "domain": "code", "tests": [{"input": "1", "output": "1"}], "entry_point": "f"})
    assert ungradable_reason({"id": "x", "domain": "other", "rules": [{"rule": "no_commas"}]}) is None


# ------------------------------------------------------------------ registry


def test_tiny_benchmarks_are_the_decontaminated_held_out_sets():
    from falcon_h1r_lib.data import splits

    cap = C.load_config("02_data_curation", "tiny").eval_problems_per_domain
    for domain, name in splits.TINY_EVAL_BENCHMARKS.items():
        b = get_benchmark(name, "tiny")
        assert b.domain == domain and b.gradable
        problems = b.load_problems(5)
        assert [p["id"] for p in problems] == [p["id"] for p in splits.tiny_eval_sets(cap)[name][:5]]
        assert all(f"s{splits.TINY_EVAL_SEED_BASE}" in p["id"] for p in problems)  # eval seed range
    with pytest.raises(C.ConfigError, match="decontaminated"):
        get_benchmark("tiny-math", "tiny").load_problems(cap + 1)


def test_tiny_benchmark_cap_follows_notebook_02s_recorded_config(monkeypatch, tmp_path):
    """Once notebook 02 has run, the cap is what it decontaminated against, not what its YAML says."""
    import dataclasses
    import json

    from falcon_h1r_lib.evaluation.benchmarks import tiny_eval_size

    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    yaml_cap = C.load_config("02_data_curation", "tiny").eval_problems_per_domain
    assert tiny_eval_size() == yaml_cap  # not run yet: the YAML is the plan
    ran = dataclasses.replace(C.load_config("02_data_curation", "tiny"), eval_problems_per_domain=7)
    (tmp_path / "tiny" / "02_data_curation").mkdir(parents=True)
    (tmp_path / "tiny" / "02_data_curation" / "metrics.json").write_text(json.dumps({"config": ran.to_dict()}))
    assert tiny_eval_size() == 7 != yaml_cap
    assert len(get_benchmark("tiny-math", "tiny").load_problems(7)) == 7
    with pytest.raises(C.ConfigError, match="only the first 7"):
        get_benchmark("tiny-math", "tiny").load_problems(8)


def test_full_benchmarks_follow_paper_table9():
    from falcon_h1r_lib.data.sources import load_source_specs

    sources = {s.name for s in load_source_specs("data_manifests/full/eval_benchmarks.yaml")}
    names = ["AIME24", "AIME25", "HMMT25", "AMO-Bench", "MATH500", "GPQA-Diamond", "LCB-v6", "MMLU-Pro", "IFBench"]
    assert list(BENCHMARKS["full"]) == names
    for name in names:
        b = get_benchmark(name, "full")
        assert b.samples_per_problem == paper_value("table9_evaluation_settings", name, "responses_per_query")
        assert b.max_new_tokens == paper_value("table9_evaluation_settings", name, "max_response_length")
        assert (b.temperature, b.top_p) == (0.6, 0.95)
        assert b.source in sources
        assert b.gradable or b.why_not_gradable
        paper_value(b.paper_table, "Falcon-H1R-7B", b.paper_column)  # the column exists in its table
    assert get_benchmark("AIME25", "full").samples_per_problem == 16
    assert not get_benchmark("IFBench", "full").gradable
    s = get_benchmark("GPQA-Diamond", "full").sampling(seed=3)
    assert (s.n, s.max_new_tokens, s.temperature, s.top_p, s.seed) == (5, 32768, 0.6, 0.95, 3)
    with pytest.raises(C.ConfigError, match="known"):
        get_benchmark("AIME26", "full")


def test_full_benchmark_loads_from_an_offline_mirror(tmp_path):
    mirror = tmp_path / "aime.jsonl"
    mirror.write_text("\n".join(json.dumps({"id": i, "problem": f"What is {i}+1?", "answer": str(i + 1)})
                                for i in range(3)))
    problems = get_benchmark("AIME24", "full").load_problems(2, local_files=str(mirror))
    assert [p["id"] for p in problems] == ["aime24-0", "aime24-1"] and problems[1]["answer"] == "2"
    assert grade(problems[1], "<think>1+1</think>\n\n\\boxed{2}").correct is True


# ------------------------------------------------------------------ tables and config


def test_paper_vs_ours_layout(tmp_path):
    results = [
        {"model": "sft", "benchmark": "tiny-math", "pass_at_1": 0.4321, "pass_at_1_ci": [0.3, 0.55],
         "samples_per_problem": 4, "n_problems": 32, "seed": 0, "no_verdict": 0},
        {"model": "sft", "benchmark": "AIME25", "pass_at_1": 0.5, "samples_per_problem": 16, "n_problems": 30,
         "seed": 0, "no_verdict": 1},
        {"model": "sft", "benchmark": "tiny-code", "pass_at_1": 0.1},  # another table: not listed here
    ]
    df = paper_vs_ours(results, "table4_math", paper_models=("Falcon-H1R-7B", "Qwen3-8B"))
    assert list(df["benchmark"]) == ["AIME24", "AIME25", "HMMT25", "AMO-Bench", "MATH500", "tiny-math"]
    row = df.set_index("benchmark")
    assert row.loc["AIME25", "paper: Falcon-H1R-7B"] == 83.1 and row.loc["AIME25", "paper: Qwen3-8B"] == 65.8
    assert row.loc["AIME25", "ours: sft"] == 50.0 and row.loc["AIME25", "samples/problem"] == "16"
    assert row.loc["tiny-math", "ours: sft"] == 43.2 and row.loc["tiny-math", "CI: sft"] == "[30.0, 55.0]"
    assert pd.isna(row.loc["tiny-math", "paper: Falcon-H1R-7B"]) and pd.isna(row.loc["AIME24", "ours: sft"])
    assert "stand-in" in row.loc["tiny-math", "note"] and "not run" in row.loc["AIME24", "note"]
    csv, md = write_table(df, tmp_path / "t4")
    assert pd.read_csv(csv).shape == df.shape
    text = md.read_text()
    assert "| AIME25 | 83.1 | 65.8 | 50.0 |" in text and "Table 4" in text
    with pytest.raises(KeyError):
        paper_vs_ours(results, "table7_deepconf")


def test_profiles_carry_the_paper_protocol():
    from falcon_h1r_lib.tokenizer import FALCON_SYSTEM_PROMPT, TINY_SYSTEM_PROMPT, system_turn

    full = C.load_config("05_evaluation", "full")
    assert full.system_prompt is None and system_turn(full.system_prompt) == FALCON_SYSTEM_PROMPT  # as in 03/04/06
    assert EvaluationConfig().system_prompt == TINY_SYSTEM_PROMPT  # config.py cannot import the tokenizer
    assert (full.temperature, full.top_p, full.backend) == (0.6, 0.95, "vllm")
    assert all(get_benchmark(n, "full").gradable for n in full.benchmarks)
    tiny = C.load_config("05_evaluation", "tiny")
    assert tiny == EvaluationConfig() and all(n in BENCHMARKS["tiny"] for n in tiny.benchmarks)
    with pytest.raises(C.ConfigError, match="pass_ks"):
        EvaluationConfig(pass_ks=(0,))


# ------------------------------------------------------------------ CLI end to end


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import torch

    from falcon_h1r_lib.models import build_model, falcon_h1_config
    from falcon_h1r_lib.tokenizer import build_tokenizer, save_tokenizer

    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("ckpt")
    tok = build_tokenizer(vocab_size=300)
    build_model(falcon_h1_config("tiny", width=32, vocab_size=len(tok)), seed=0).save_pretrained(path)
    save_tokenizer(tok, path)
    return path


def test_requests_carry_the_configured_system_turn(checkpoint):
    from falcon_h1r_lib.evaluation.pipeline import build_requests
    from falcon_h1r_lib.tokenizer import TINY_SYSTEM_PROMPT, load_tokenizer

    tok = load_tokenizer(checkpoint)
    cfg = EvaluationConfig(prompt_template="Q: {prompt} Put the answer in \\boxed{}.")
    (req,) = build_requests([{"id": "m1", "prompt": "2+2=?"}], tok, cfg)
    assert req.problem_id == "m1"
    assert req.prompt == f"<|im_start|>system\n{TINY_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\nQ: 2+2=? Put the answer in \\boxed{{}}.<|im_end|>\n<|im_start|>assistant\n"


def test_a_null_system_prompt_samples_with_falcons_system_turn(checkpoint):
    """None means Falcon's system prompt, resolved to its text before rendering (a model's own chat template may
    have another default), so traces keyed by prompt text are shared with runs that spelled the prompt out."""
    from falcon_h1r_lib.evaluation.pipeline import build_requests
    from falcon_h1r_lib.tokenizer import FALCON_SYSTEM_PROMPT, load_tokenizer

    class NoDefaultSystemTurn:  # a chat template that inserts no system turn of its own
        def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
            return "".join(f"[{m['role']}] {m['content']}\n" for m in messages) + "[assistant]"

    problems = [{"id": "m1", "prompt": "2+2=?"}]
    for tok in (load_tokenizer(checkpoint), NoDefaultSystemTurn()):
        (null,) = build_requests(problems, tok, EvaluationConfig(system_prompt=None))
        (spelled,) = build_requests(problems, tok, EvaluationConfig(system_prompt=FALCON_SYSTEM_PROMPT))
        assert null.prompt == spelled.prompt and FALCON_SYSTEM_PROMPT in null.prompt


def test_cli_end_to_end(checkpoint, tmp_path):
    from falcon_h1r_lib.evaluation.__main__ import main
    from falcon_h1r_lib.generation import read_traces

    out = tmp_path / "out"
    argv = ["--config", "falcon_h1r_lib/profiles/tiny/05_evaluation.yaml", "--model", f"rand={checkpoint}",
            "--out", str(out), "--set", "max_problems=3", "--set", "samples_per_problem=2",
            "--set", "max_new_tokens=8", "--set", "benchmarks=[tiny-math, tiny-code, tiny-other]"]
    assert main(argv) == 0
    record = json.loads((out / "metrics.json").read_text())
    assert record["stage"] == "05_evaluation" and record["config"]["max_problems"] == 3
    benches = record["metrics"]["models"]["rand"]["benchmarks"]
    assert set(benches) == {"tiny-math", "tiny-code", "tiny-other"}
    for name, s in benches.items():
        assert (s["n_problems"], s["n_samples"], s["samples_per_problem"], s["seed"]) == (3, 6, 2, 0)
        assert 0.0 <= s["pass_at_1"] <= 1.0 and s["pass_at_k"]["4"] is None and not s["traces_reused"]
        traces = read_traces(out / "traces" / "rand" / f"{name}.parquet")
        assert len(traces) == 6 and all(t.n_tokens <= 8 and t.topk == 20 for t in traces)
        grades = pd.read_parquet(out / "grades" / "rand" / f"{name}.parquet")
        assert len(grades) == 6 and set(grades["problem_id"]) == {t.problem_id for t in traces}
    for table in ("table4_math", "table5_code", "table6_general"):
        md = (out / "tables" / f"{table}_paper_vs_ours.md").read_text()
        assert "ours: rand" in md
    assert not (out / "tables" / "table6_general_paper_vs_ours.csv").read_text().count("tiny-science")
    # a re-run with the same model, problems and sampling reads the traces back instead of sampling
    assert main(argv) == 0
    again = json.loads((out / "metrics.json").read_text())["metrics"]["models"]["rand"]["benchmarks"]
    assert all(s["traces_reused"] for s in again.values())
    assert {n: s["pass_at_1"] for n, s in again.items()} == {n: s["pass_at_1"] for n, s in benches.items()}


def test_vllm_backend_is_configured_lazily(checkpoint):
    """The vLLM path builds its engine config from the profile without importing vllm (it runs on GPUs)."""
    from falcon_h1r_lib.evaluation.pipeline import make_backend
    from falcon_h1r_lib.generation import VLLMBackend

    full = C.load_config("05_evaluation", "full", overrides={"vllm": {"tensor_parallel_size": 2}})
    backend, tok = make_backend(full, str(checkpoint))
    assert isinstance(backend, VLLMBackend) and backend._llm is None
    assert (backend.config.tensor_parallel_size, backend.config.dtype) == (2, "bfloat16")
    assert backend.config.model == str(checkpoint) and tok.chat_template
