"""Hub stand-ins and pinned loading: local dataset git repos in each source's own schema, pinned by the `pin`
command, loaded at exactly the pinned commit, and the full curation path (SFT + RL + eval) run on them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from falcon_h1r_lib.config import ConfigError
from falcon_h1r_lib.configs import CurationConfig
from falcon_h1r_lib.data import schema, sft_rl_split, standins
from falcon_h1r_lib.data import sources as S
from falcon_h1r_lib.data.__main__ import main as data_main
from falcon_h1r_lib.paths import manifests_dir, profiles_dir

FULL = manifests_dir() / "full"
ROWS = 6


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """Stand-ins of every source, unpinned copies kept aside, then the three copies pinned by the CLI."""
    root = tmp_path_factory.mktemp("hub")
    out = standins.write_standins(root, n_per_source=ROWS, seed=0)
    unpinned = tmp_path_factory.mktemp("unpinned")
    for path in out["manifests"].values():
        shutil.copy(path, unpinned / Path(path).name)
    assert data_main(["pin", "--sources", *out["manifests"].values()]) == 0
    return {**out, "root": root, "unpinned": unpinned}


def _specs(path) -> dict[str, S.SourceSpec]:
    return {s.name: s for s in S.load_source_specs(path)}


def test_manifest_copies_differ_from_full_only_by_mirror_and_pinned_revisions(hub):
    for kind in standins.SOURCE_FILES:
        full = (FULL / f"{kind}.yaml").read_text().splitlines()
        copy = (hub["unpinned"] / f"{kind}.yaml").read_text().splitlines()
        assert [line for line in copy if line not in full] == [f"mirror: {hub['root']}"]
        assert [line for line in copy if line != f"mirror: {hub['root']}"] == full
        pinned = Path(hub["manifests"][kind]).read_text().splitlines()
        changed = [(a, b) for a, b in zip(copy, pinned, strict=True) if a != b]
        assert changed and all(a.strip().startswith("revision: null") and "revision:" in b for a, b in changed)
        doc_full, doc_pinned = yaml.safe_load("\n".join(full)), yaml.safe_load("\n".join(pinned))
        assert doc_pinned.pop("mirror") == str(hub["root"])
        assert all(S.is_pinned(s.pop("revision")) for s in doc_pinned["sources"])
        assert doc_pinned == {"sources": [{k: v for k, v in s.items() if k != "revision"} for s in doc_full["sources"]]}


def test_every_source_loads_in_its_own_schema_at_the_pinned_commit(hub):
    for path in hub["manifests"].values():
        for spec in S.load_source_specs(path):
            rows, info = S.load_source(spec, "rehearsal")
            assert info["revision"] == spec.revision and info["kind"] == "mirror", spec.name
            kept, rep = schema.validate_schema(rows, "trace" if spec.role == "sft" else "problem")
            assert rows and rep.n_out == len(rows), (spec.name, rep.details["malformed"][:2])
            if spec.role != "sft":  # one row per record; LiveCodeBench reads test6.jsonl only, not test5
                assert len(rows) == ROWS, spec.name
    lcb = S.load_source(_specs(hub["manifests"]["eval_benchmarks"])["livecodebench-v6"], "rehearsal")[0]
    assert all(t["input"] and t["output"] for p in lcb for t in p["tests"]) and lcb[0]["entry_point"] is None


def test_standin_content_is_verified_by_our_verifiers(hub):
    from falcon_h1r_lib.rewards import verify

    sft = _specs(hub["manifests"]["sft_sources"])
    traces, _ = S.load_source(sft["openr1-math"], "rehearsal")
    verdicts = [verify(t, t["response"]) for t in traces]
    assert verdicts == [t["source_correct"] for t in traces] and True in verdicts and False in verdicts
    code, _ = S.load_source(sft["codeforces-cots-py"], "rehearsal")
    assert {verify(t, t["response"]) for t in code} >= {True}  # stdin/stdout programs pass their examples
    ev = _specs(hub["manifests"]["eval_benchmarks"])
    (g, *_), _ = S.load_source(ev["gpqa-diamond"], "rehearsal")
    assert g["choices"][g["answer"]] and verify(g, f"<think>\nx\n</think>\n\n\\boxed{{{g['answer']}}}")
    science, _ = S.load_source(sft["mot-science"], "rehearsal")  # unlabelled: no verdict, kept on the source flag
    assert {verify(t, t["response"]) for t in science} == {None} and all(t["source_correct"] for t in science)


def test_load_reads_exactly_the_pinned_commit_after_a_push(hub, tmp_path):
    spec = _specs(hub["manifests"]["rl_sources"])["deepscaler-math"]
    before, info = S.load_source(spec, "rehearsal")
    repo = hub["root"] / spec.hub_id
    (parquet,) = repo.glob("*/*.parquet")
    import datasets

    datasets.Dataset.from_list([{"problem": "pushed later", "answer": "1", "solution": ""}]).to_parquet(str(parquet))
    standins.git(repo, "commit", "-qam", "a push after pinning", env=standins._GIT_ENV)
    head = standins.git(repo, "rev-parse", "HEAD")
    assert head != spec.revision
    after, info2 = S.load_source(spec, "rehearsal")
    assert after == before and info2["revision"] == info["revision"] == spec.revision
    moved = tmp_path / "rl.yaml"  # re-pinning keeps the pin; --update moves it to the head (the pushed row)
    shutil.copy(hub["manifests"]["rl_sources"], moved)
    assert data_main(["pin", "--sources", str(moved)]) == 0
    assert S.load_source_specs(moved)[0].revision == spec.revision
    assert data_main(["pin", "--update", "--sources", str(moved)]) == 0
    (spec2,) = S.load_source_specs(moved)
    rows, info3 = S.load_source(spec2, "rehearsal")
    assert info3["revision"] == head and [r["prompt"] for r in rows] == ["pushed later"]


def test_hub_load_downloads_the_commit_it_resolved(hub, monkeypatch):
    """A push between resolving and downloading cannot go unrecorded: the download asks for the resolved sha."""
    import huggingface_hub

    spec = _specs(hub["manifests"]["eval_benchmarks"])["aime25"]
    local = S.materialize(spec, spec.revision)
    # a branch name (allowed unpinned) is resolved once; a pinned commit is used as is, with no lookup at all
    hub_spec = S.SourceSpec(**{**{f: getattr(spec, f) for f in spec.__dataclass_fields__}, "mirror": None,
                               "revision": "main"})
    heads = iter(["a" * 40, "b" * 40])  # the branch moves after the first resolution
    calls = []

    class FakeApi:
        def dataset_info(self, repo_id, revision=None):
            return type("Info", (), {"sha": next(heads)})()

    def fake_snapshot(repo_id, repo_type, revision, allow_patterns=None):
        calls.append((repo_id, repo_type, revision, allow_patterns))
        return str(local)

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: str(local / "README.md"))
    rows, info = S.load_source(hub_spec, "full", allow_unpinned=True)
    assert calls == [(spec.hub_id, "dataset", "a" * 40, ["default/test-00000-of-00001.parquet", "README.md"])]
    assert info["revision"] == "a" * 40 and info["kind"] == "hub" and len(rows) == ROWS
    pinned = S.SourceSpec(**{**{f: getattr(hub_spec, f) for f in spec.__dataclass_fields__}, "revision": "c" * 40})
    S.load_source(pinned, "full")
    assert calls[-1][2] == "c" * 40 and next(heads) == "b" * 40  # the API was not asked again


def test_pin_edits_only_revision_values_and_check_lists_unpinned(hub, tmp_path, capsys):
    path = tmp_path / "eval.yaml"
    shutil.copy(hub["unpinned"] / "eval_benchmarks.yaml", path)
    assert data_main(["pin", "--check", "--sources", str(path)]) == 1
    assert "'aime24' is not pinned" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"eval.yaml: source 'aime24'.*not a commit.*data pin --sources"):
        S.load_source(_specs(path)["aime24"], "rehearsal")
    old = path.read_text()
    assert data_main(["pin", "--sources", str(path)]) == 0
    new = path.read_text()
    assert old.count("\n") == new.count("\n")
    for a, b in zip(old.splitlines(), new.splitlines(), strict=True):
        if a != b:  # the value changes, the comment stays
            assert a == "    revision: null  # pin on first download"
            assert b.startswith('    revision: "') and b.endswith('"  # pin on first download')
    assert "# Evaluation benchmarks of [P]" in new and data_main(["pin", "--check", "--sources", str(path)]) == 0
    assert {s.revision for s in S.load_source_specs(path)} == {s.revision for s in S.load_source_specs(
        hub["manifests"]["eval_benchmarks"])}


def test_full_path_on_standins_writes_rl_problems_disjoint_from_sft(hub, tmp_path, monkeypatch):
    from falcon_h1r_lib.data import build

    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path / "runs"))
    cfg = CurationConfig.from_yaml(profiles_dir() / "rehearsal" / "02_data_curation.yaml", {
        "sources_file": hub["manifests"]["sft_sources"], "rl_sources_file": hub["manifests"]["rl_sources"],
        "eval_sources_file": hub["manifests"]["eval_benchmarks"]})
    assert cfg.profile == "rehearsal" and cfg.rl_fraction == 0.0  # full's settings: RL only from rl_sources_file
    metrics = build.run(cfg)
    sft, rl = build.load_output(cfg, "sft"), build.load_output(cfg, "rl_problems")
    assert sft and rl and {r["family"] for r in rl} == {"deepscaler-math"}
    sft_rl_split.assert_disjoint(sft, rl)
    rl_funnel = {r["step"]: r for r in metrics["funnel_rl"]}
    assert rl_funnel["rl:dedup_exact"]["dropped"] == 1 and rl_funnel["rl:decontaminate"]["dropped"] == 1
    assert rl_funnel["rl:dedup_vs_sft"]["dropped"] == 1  # the planted cases, each removed once
    decon = next(r for r in metrics["funnel"] if r["step"] == "decontaminate")
    assert decon["drop:contaminated:exact"] == 1 and "openr1-math-standin-00000" not in {r["id"] for r in sft}
    assert metrics["difficulty_buckets_sft"].get("unrated", 0) > 0  # single-trace sources are not "easy"
    assert {i["revision"] for i in metrics["sources"]} == {s.revision for s in S.load_source_specs(
        hub["manifests"]["sft_sources"])}


def test_rehearsal_benchmarks_load_from_the_standin_manifest(hub):
    from falcon_h1r_lib.evaluation import get_benchmark

    bench = get_benchmark("AIME24", "rehearsal")
    rows = bench.load_problems(3, sources_file=hub["manifests"]["eval_benchmarks"])
    assert len(rows) == 3 and all(r["family"] == "aime24" for r in rows)
    with pytest.raises(ConfigError, match="not a commit"):
        bench.load_problems(3, sources_file=str(hub["unpinned"] / "eval_benchmarks.yaml"))
