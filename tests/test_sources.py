"""Full-profile sources: YAMLs are complete and honest, unpinned revisions are refused, and every loader
maps local files shaped like its Hub dataset into rows the curation pipeline accepts (never the Hub)."""

from __future__ import annotations

import json

import pytest

from falcon_h1r_lib.config import ConfigError
from falcon_h1r_lib.configs import CurationConfig
from falcon_h1r_lib.data import curation, schema
from falcon_h1r_lib.data import sources as S
from falcon_h1r_lib.paths import manifests_dir

FULL = manifests_dir() / "full"


def _specs(name: str) -> dict[str, S.SourceSpec]:
    return {s.name: s for s in S.load_source_specs(FULL / f"{name}.yaml")}


def test_yamls_name_every_domain_and_benchmark_without_invented_hashes():
    sft, rl, ev = _specs("sft_sources"), _specs("rl_sources"), _specs("eval_benchmarks")
    assert {s.domain for s in sft.values()} == set(S.DOMAINS)
    assert all(s.role == "sft" and s.teacher for s in sft.values())
    assert len({s.teacher for s in sft.values()}) == 1  # [P] §2.2: a single teacher
    assert {s.role for s in rl.values()} == {"rl"}
    assert {
        "aime24",
        "aime25",
        "hmmt25",
        "amo-bench",
        "math500",
        "gpqa-diamond",
        "livecodebench-v6",
        "mmlu-pro",
        "ifbench",
    } <= set(ev)
    for s in [*sft.values(), *rl.values(), *ev.values()]:
        assert s.revision is None or s.pinned, (
            f"{s.name}: revision {s.revision!r} is neither null nor a commit"
        )
    text = (FULL / "sft_sources.yaml").read_text()
    assert "does not publish" in text and "NOT FOUND" in text


def test_unknown_key_and_unpinned_revision_are_refused(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text(
        "sources:\n  - {name: x, hub_id: a/b, revision: null, split: train, role: eval, domain: math,"
        " mapper: problem, fields: {prompt: q, answer: a}, revison: main}\n"
    )
    with pytest.raises(ConfigError, match="revison"):
        S.load_source_specs(bad)
    spec = _specs("eval_benchmarks")["aime24"]
    with pytest.raises(ConfigError, match="aime24.*not a commit"):
        S.load_source(spec, profile="full")  # refused before any network access
    S.check_pinned(spec, "full", allow_unpinned=True)
    S.check_pinned(spec, "tiny")
    assert S.is_pinned("0" * 40) and not S.is_pinned("main") and not S.is_pinned(None)


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


FIXTURES = {
    "aime24": [
        {
            "id": 60,
            "problem": "Find $x$ if $2x = 14$.",
            "solution": "...",
            "answer": "7",
            "url": "u",
            "year": "2024",
        }
    ],
    "aime25": [{"problem": "Compute 3^4.", "answer": "81", "id": "0"}],
    "hmmt25": [{"problem_idx": 1, "problem": "Compute 2+2.", "answer": "4", "problem_type": ["Algebra"]}],
    "amo-bench": [{"question_id": 1, "prompt": "Find the least n.", "answer": "12", "answer_type": "number"}],
    "math500": [
        {
            "problem": "What is 1+1?",
            "solution": "2",
            "answer": "2",
            "subject": "Algebra",
            "level": 1,
            "unique_id": "test/algebra/1.json",
        }
    ],
    "gpqa-diamond": [
        {
            "Record ID": "rec1",
            "Question": "Which particle is charged?",
            "Correct Answer": "electron",
            "Incorrect Answer 1": "neutron",
            "Incorrect Answer 2": "photon",
            "Incorrect Answer 3": "neutrino",
        }
    ],
    "livecodebench-v6": [
        {
            "question_title": "t",
            "question_content": "Read n and print n+1.",
            "platform": "atcoder",
            "question_id": "abc1",
            "contest_id": "abc",
            "contest_date": "2025-01-01",
            "starter_code": "",
            "difficulty": "easy",
            "public_test_cases": json.dumps([{"input": "1\n", "output": "2\n", "testtype": "stdin"}]),
            "private_test_cases": "eJz=",
            "metadata": "{}",
        }
    ],
    "mmlu-pro": [
        {
            "question_id": 7,
            "question": "2+2?",
            "options": ["3", "4", "5"],
            "answer": "B",
            "answer_index": 1,
            "cot_content": "",
            "category": "math",
            "src": "x",
        }
    ],
    "ifbench": [
        {
            "key": 3,
            "prompt": "Write a haiku without commas.",
            "instruction_id_list": ["punctuation:no_comma"],
            "kwargs": [{"n": None}],
        }
    ],
    "openr1-math": [
        {
            "problem": "What is 3+4?",
            "solution": "7",
            "answer": "7",
            "problem_type": "Algebra",
            "question_type": "math-word-problem",
            "source": "olympiads",
            "uuid": "u-1",
            "is_reasoning_complete": [True, True],
            "generations": [
                "<think>\n3+4=7\n</think>\n\n\\boxed{7}",
                "<think>\n3+4=8\n</think>\n\n\\boxed{8}",
            ],
            "correctness_math_verify": [True, False],
            "correctness_llama": None,
            "finish_reasons": None,
            "correctness_count": 1,
            "messages": [],
        }
    ],
    "codeforces-cots-py": [
        {
            "id": "1A",
            "title": "Add one",
            "description": "d",
            "prompt": "Read n, print n+1.",
            "generation": "<think>\nread\n</think>\n\n```python\nn = int(input())\nprint(n + 1)\n```",
            "examples": [{"input": "1\n", "output": "2\n"}],
            "finish_reason": "stop",
        }
    ],
    "mot-science": [
        {
            "messages": [
                {"role": "user", "content": "Why is the sky blue?"},
                {"role": "assistant", "content": "<think>\nscattering\n</think>\n\nRayleigh scattering."},
            ],
            "num_tokens": 20,
            "source": "science",
        }
    ],
    "nemotron-chat-if": [
        {
            "input": [{"role": "user", "content": "Say hi in three words."}],
            "output": "<think>\nshort\n</think>\n\nHi there friend.",
            "category": "chat",
            "reasoning": "on",
            "generator": "DeepSeek-R1",
        },
        {
            "input": [{"role": "user", "content": "No reasoning here."}],
            "output": "ok",
            "category": "chat",
            "reasoning": "off",
            "generator": "x",
        },
    ],
    "deepscaler-math": [{"problem": "Compute 5*6.", "answer": "30", "solution": "30"}],
}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_each_loader_maps_a_local_file_shaped_like_its_source(name, tmp_path):
    specs = {**_specs("sft_sources"), **_specs("rl_sources"), **_specs("eval_benchmarks")}
    spec = specs[name]
    files = _jsonl(tmp_path / f"{name}.jsonl", FIXTURES[name])
    rows, info = S.load_source(spec, profile="full", local_files=files)
    assert rows and info["hub_id"] == spec.hub_id and info["local_files"] == [f"{name}.jsonl"]
    kind = "trace" if spec.role == "sft" else "problem"
    kept, rep = schema.validate_schema(rows, kind)
    assert rep.n_out == len(rows), rep.details["malformed"]
    assert all(r["domain"] == spec.domain and r["family"] == name for r in rows)


def test_mapping_details(tmp_path):
    ev, sft = _specs("eval_benchmarks"), _specs("sft_sources")
    (g,) = S.map_records(ev["gpqa-diamond"], FIXTURES["gpqa-diamond"])
    assert g["choices"][g["answer"]] == "electron" and f"{g['answer']}) electron" in g["prompt"]
    (m,) = S.map_records(ev["math500"], FIXTURES["math500"])
    assert m["difficulty"] == 1 and m["id"] == "math500-test/algebra/1.json"
    (lcb,) = S.map_records(ev["livecodebench-v6"], FIXTURES["livecodebench-v6"])
    assert lcb["tests"] == [{"input": "1\n", "output": "2\n"}] and lcb["entry_point"] is None
    (ifb,) = S.map_records(ev["ifbench"], FIXTURES["ifbench"])
    assert ifb["rules"] == [{"instruction_id": "punctuation:no_comma", "kwargs": {}}]
    traces = S.map_records(sft["openr1-math"], FIXTURES["openr1-math"])
    assert [(t["rollout"], t["source_correct"]) for t in traces] == [(0, True), (1, False)]
    assert traces[0]["teacher"] == "deepseek-ai/DeepSeek-R1"
    path = _jsonl(tmp_path / "n.jsonl", FIXTURES["nemotron-chat-if"])
    assert len(S.read_records(sft["nemotron-chat-if"], path)) == 1  # reasoning "off" filtered out
    parquet = tmp_path / "m.parquet"
    import datasets

    datasets.Dataset.from_list(FIXTURES["math500"]).to_parquet(str(parquet))
    rows, _ = S.load_source(ev["math500"], local_files=str(parquet))
    assert rows == [m]


def test_loaded_sources_run_through_curation(tmp_path):
    sft, ev = _specs("sft_sources"), _specs("eval_benchmarks")
    files = {n: _jsonl(tmp_path / f"{n}.jsonl", FIXTURES[n]) for n in FIXTURES}
    traces, infos = S.load_sources(list(sft.values()), local_files=files)
    evals = S.eval_sets_from_sources(list(ev.values()), local_files=files)
    assert {i["name"] for i in infos} == set(sft) and set(evals) == set(ev)
    leaked = {**traces[0], "id": "leak", "prompt": FIXTURES["aime25"][0]["problem"]}
    cfg = CurationConfig.from_dict(
        {
            "profile": "full",
            "rl_fraction": 0.0,
            "near_dup_method": "lsh",
            "minhash_num_perm": 64,
            "lsh_bands": 16,
            "decontam_near_threshold": None,
            "decontam_ngram_n": 13,
        }
    )
    verdicts = lambda row, resp: None  # noqa: E731  our verifier abstains: only source labels decide
    res = curation.run_pipeline(traces + [leaked], evals, cfg, traces=traces + [leaked], verify_fn=verdicts)
    decon = next(r for r in res.funnel if r.name == "decontaminate")
    assert decon.dropped_by_reason == {"contaminated:exact": 1}
    verify = next(r for r in res.funnel if r.name == "verify")
    # openr1 rollout 1 is labelled wrong; the codeforces trace has no label and our verifier abstained
    assert verify.dropped_by_reason == {"incorrect": 1, "no_verdict": 1}
    assert {r["family"] for r in res.sft_rows} <= set(sft) and res.sft_rows


def test_pinned_hub_source_needs_no_network_to_resolve(monkeypatch):
    """A pinned commit is its own answer: a cached, pinned source loads offline (before: HfApi was always called)."""
    import huggingface_hub

    from falcon_h1r_lib.data import sources as S

    def no_network(*a, **k):
        raise AssertionError("HfApi called for a pinned source")

    monkeypatch.setattr(huggingface_hub, "HfApi", no_network)
    spec = S.SourceSpec(name="x", hub_id="org/x", revision="a" * 40, split="train", role="rl", domain="math",
                        mapper="problem", fields={"prompt": "problem", "answer": "answer"})
    assert S.resolve_revision(spec) == "a" * 40


def test_a_key_given_twice_in_a_sources_file_is_named_with_its_line(tmp_path):
    from falcon_h1r_lib.config import ConfigError
    from falcon_h1r_lib.data import sources as S

    bad = tmp_path / "s.yaml"
    bad.write_text("sources:\n  - name: a\n    revision: main\n    revision: abc\n")
    with pytest.raises(ConfigError, match=r"s.yaml:4: duplicate key 'revision'"):
        S.load_source_specs(bad)


def test_sources_file_that_is_not_a_mapping_is_named(tmp_path):
    from falcon_h1r_lib.config import ConfigError
    from falcon_h1r_lib.data import sources as S

    bad = tmp_path / "s.yaml"
    bad.write_text("- name: a\n")
    with pytest.raises(ConfigError, match="s.yaml: expected a top-level 'sources:' list"):
        S.load_source_specs(bad)
