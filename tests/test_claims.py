"""The paper claims' verdict rules, the claims lines nbval checks, and the README and CLAIMS.md they generate
(issue 16: typed numbers contradicted the outputs above them; every result is now rendered from metrics.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from falcon_h1r_lib import claims
from falcon_h1r_lib.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write_metrics(root: Path, stage: str, metrics: dict, config: dict | None = None, sub: str = "") -> None:
    folder = root / "tiny" / stage / sub
    folder.mkdir(parents=True, exist_ok=True)
    record = {"stage": stage, "profile": "tiny", "config": {"seed": 0, **(config or {})}, "metrics": metrics}
    (folder / "metrics.json").write_text(json.dumps(record))


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    return tmp_path


def by_id(claim_id: str) -> claims.Claim:
    return next(c for c in claims.load_claims() if c.id == claim_id)


def test_the_committed_claims_file_loads_and_every_notebook_has_a_checked_claim():
    loaded = claims.load_claims()
    assert len({c.id for c in loaded}) == len(loaded)
    checked = {c.notebook for c in loaded if c.measured_by == "notebook"}
    assert checked == {"01_architecture", "02_data_curation", "03_sft", "04_rl", "05_evaluation", "06_deepconf_scaling"}


@pytest.mark.parametrize("change, message", [
    (lambda e: e.pop("paper"), "field 'paper' must be a non-empty string"),
    (lambda e: e.update(rule="guess"), "unknown rule 'guess'"),
    (lambda e: e.update(claim="a | b"), "contains '|'"),
    (lambda e: e.update(notebook="07_other"), "unknown notebook"),
    (lambda e: e.update(extra=1), "unknown field"),
    (lambda e: e.update(rule="not_testable"), "needs a 'why'"),
    (lambda e: e.update(rule="sft_over_base"), "reads notebook 03_sft's run, not 01_architecture's"),
    (lambda e: e.update(section="No such heading"), "is no heading of notebooks/01_architecture.ipynb"),
    (lambda e: e.update(claim=e["claim"] + " "), "white space"),
])
def test_a_bad_claims_file_is_refused_naming_the_file_and_the_claim(tmp_path, change, message):
    import yaml

    data = yaml.safe_load((ROOT / claims.CLAIMS_FILE).read_text())
    change(data["claims"][2])
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message) as err:
        claims.load_claims(path)
    assert str(path) in str(err.value) and "claim 2" in str(err.value)


def test_duplicate_ids_are_refused(tmp_path):
    import yaml

    data = yaml.safe_load((ROOT / claims.CLAIMS_FILE).read_text())
    data["claims"][1]["id"] = data["claims"][0]["id"]
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="claim 1 .*unique"):
        claims.load_claims(path)


@pytest.mark.parametrize("low, high, margin, verdict", [
    (0.5, 3.0, 0, claims.HOLDS), (-0.5, 3.0, 0, claims.NOT_SHOWN), (-3.0, -0.1, 0, claims.CONTRADICTED),
    (-0.9, 2.0, 1, claims.HOLDS), (-1.5, 2.0, 1, claims.NOT_SHOWN), (-9.0, -1.2, 1, claims.CONTRADICTED),
])
def test_ci_verdict(low, high, margin, verdict):
    assert claims.ci_verdict(low, high, margin) == verdict


def test_ci_verdict_refuses_what_is_not_an_interval():
    with pytest.raises(ValueError, match="not an interval"):
        claims.ci_verdict(2.0, 1.0)
    with pytest.raises(ValueError, match="not an interval"):
        claims.ci_verdict(float("nan"), 1.0)


def test_a_claim_over_seeds_holds_or_is_contradicted_only_on_every_seed():
    assert claims.over_runs([claims.HOLDS] * 3) == claims.HOLDS
    assert claims.over_runs([claims.HOLDS, claims.HOLDS, claims.NOT_SHOWN]) == claims.NOT_SHOWN
    assert claims.over_runs([claims.CONTRADICTED] * 2) == claims.CONTRADICTED
    with pytest.raises(ValueError, match="no runs"):
        claims.over_runs([])


def sft_metrics(base_ci, sft_ci):
    return {"base_accuracy": {"math": sum(base_ci) / 2}, "sft_accuracy": {"math": sum(sft_ci) / 2},
            "base_accuracy_ci": {"math": base_ci}, "sft_accuracy_ci": {"math": sft_ci}}


@pytest.mark.parametrize("base_ci, sft_ci, verdict", [
    ([0.0, 0.03], [0.05, 0.15], claims.HOLDS),
    ([0.0, 0.06], [0.05, 0.15], claims.NOT_SHOWN),
    ([0.2, 0.3], [0.05, 0.15], claims.CONTRADICTED),
])
def test_sft_over_base_reads_the_cis_of_notebook_03(runs, base_ci, sft_ci, verdict):
    write_metrics(runs, "03_sft", sft_metrics(base_ci, sft_ci))
    line = claims.claims_lines("03_sft")
    parsed = claims.parse_line(line)
    assert parsed["id"] == "sft-lift" and parsed["verdict"] == verdict
    assert "\n" not in line  # the Fig. 4 claim is measured by arms: not one of the notebook's checked lines


def test_the_checked_line_holds_no_number_that_moves_between_cpu_types(runs):
    """Two runs whose numbers differ but whose verdict agrees print the same claims line."""
    write_metrics(runs, "03_sft", sft_metrics([0.0, 0.026], [0.047, 0.156]))
    first = claims.claims_lines("03_sft")
    write_metrics(runs, "03_sft", sft_metrics([0.0, 0.031], [0.062, 0.193]))
    assert claims.claims_lines("03_sft") == first
    assert by_id("sft-lift").paper in first


def rl_metrics(diff, lo, hi, accuracy=None):
    one = {"pass_at_1": 0.1, "ci": [0.05, 0.15], "samples_per_problem": 16}
    return {"rl_minus_sft": {"math": {"difference": diff, "ci": [lo, hi], "n_problems": 50}},
            "sft_accuracy": {"math": one}, "rl_accuracy": {"math": one},
            "curves": [{"step": i, "accuracy": a} for i, a in enumerate(accuracy or [0.1, 0.2] * 10)]}


def test_rl_lines_paired_ci_and_the_reward_halves(runs):
    write_metrics(runs, "04_rl", rl_metrics(0.004, -0.031, 0.035, [0.1] * 10 + [0.5] * 10))
    lines = [claims.parse_line(x) for x in claims.claims_lines("04_rl").splitlines()]
    assert [(x["id"], x["verdict"]) for x in lines] == [("rl-over-sft", claims.NOT_SHOWN),
                                                         ("rl-reward-rises", claims.HOLDS)]
    assert lines[0]["ours"] == "paired CI includes 0"
    write_metrics(runs, "04_rl", rl_metrics(0.05, 0.01, 0.09, [0.2, 0.1] * 10))
    lines = [claims.parse_line(x) for x in claims.claims_lines("04_rl").splitlines()]
    assert [x["verdict"] for x in lines] == [claims.HOLDS, claims.NOT_SHOWN]
    assert "RL - SFT +5.0 points [+1.0, +9.0]" in claims.find(by_id("rl-over-sft")).measured


def write_deepconf(runs: Path, per_seed: dict[int, dict[str, tuple[float, list[float]]]]) -> None:
    """Notebook 06's files for ``{seed: {model: (tokens saved %, per-problem accuracy differences)}}``."""
    import pandas as pd

    seeds = list(per_seed)
    for seed, models in per_seed.items():
        sub = "" if seed == seeds[0] else f"seeds/seed-{seed}"
        write_metrics(runs, "06_deepconf_scaling", {"models": {
            m: {"tiny-math": {"at_budget": {"tokens_saved_percent": saved}}} for m, (saved, _) in models.items()}},
            {"claim_seeds": seeds, "budget": 32, "max_problems": 16, "seed": seeds[0]}, sub=sub)
        for m, (_, diffs) in models.items():
            pd.DataFrame({"problem_id": range(len(diffs)), "majority": 0.5,
                          "deepconf-low": [0.5 + d for d in diffs]}).to_csv(
                runs / "tiny" / "06_deepconf_scaling" / sub / f"per_problem_{m}_tiny-math.csv", index=False)


@pytest.mark.parametrize("diffs, saved, verdict", [
    ([-0.3, -0.25, -0.35, -0.3], 35.0, claims.CONTRADICTED),  # every pair's CI below -1 point
    ([0.0, 0.01, -0.005, 0.0], 35.0, claims.HOLDS),  # every pair's CI above -1 point, >= 30% saved
    ([0.0, 0.01, -0.005, 0.0], 10.0, claims.NOT_SHOWN),  # no accuracy lost, but the saving falls short
    ([-0.5, 0.4, -0.3, 0.3], 35.0, claims.NOT_SHOWN),  # 16 problems this noisy decide nothing
])
def test_deepconf_low_judges_each_model_seed_pair_on_its_bootstrap_ci(runs, diffs, saved, verdict):
    """The break test found 'contradicted' read off point estimates whose CIs spanned +-15 points."""
    per_problem = [d for d in diffs for _ in range(4)]  # 16 problems
    write_deepconf(runs, {0: {"sft": (saved, per_problem), "rl": (saved, per_problem)},
                          1: {"sft": (saved, per_problem), "rl": (saved, per_problem)}})
    parsed = claims.parse_line(claims.claims_lines("06_deepconf_scaling").splitlines()[0])
    assert parsed["id"] == "deepconf-low" and parsed["verdict"] == verdict, parsed
    measured = claims.find(by_id("deepconf-low")).measured
    assert measured.count("seed") == 4 and "(K = 32, 16 problems)" in measured


def test_a_missing_seed_run_is_named(runs):
    write_deepconf(runs, {0: {"sft": (35.0, [-0.1] * 16)}})
    record = json.loads((runs / "tiny" / "06_deepconf_scaling" / "metrics.json").read_text())
    record["config"]["claim_seeds"] = [0, 2]
    (runs / "tiny" / "06_deepconf_scaling" / "metrics.json").write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="seed-2/metrics.json"):
        claims.claims_lines("06_deepconf_scaling")


def test_a_stage_that_has_not_run_is_named_in_the_lines_and_not_run_on_the_page(runs):
    with pytest.raises(ConfigError, match="03_sft/metrics.json: no metrics yet"):
        claims.claims_lines("03_sft")
    verdicts = {c.id: f.verdict for c, f in claims.findings("tiny")}
    assert verdicts["sft-lift"] == claims.NOT_RUN
    assert verdicts["tables4-6-rivals"] == claims.NOT_SHOWN  # needs no run: not testable at tiny scale


def test_a_metrics_file_without_a_field_or_with_a_wrong_type_names_the_claim_and_the_field(runs):
    write_metrics(runs, "03_sft", {"base_accuracy": {"math": 0.0}})
    with pytest.raises(ConfigError, match="claim sft-lift .*03_sft.*metrics.json has no sft_accuracy"):
        claims.claims_lines("03_sft")
    write_metrics(runs, "01_architecture", {"fig8_vllm": None, "tiny_parameters": 1})
    with pytest.raises(ConfigError, match="claim fig8-throughput .*AttributeError"):
        claims.find(by_id("fig8-throughput"))


def test_a_corrupt_metrics_file_is_an_error_not_a_missing_run(runs):
    (runs / "tiny" / "03_sft").mkdir(parents=True)
    (runs / "tiny" / "03_sft" / "metrics.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        claims.findings("tiny")


def test_the_pages_are_not_regenerated_from_an_incomplete_run(runs, tmp_path):
    write_metrics(runs, "03_sft", sft_metrics([0.0, 0.03], [0.05, 0.15]))
    readme = tmp_path / "README.md"
    readme.write_text(f"x\n{claims.README_BEGIN}\nold\n{claims.README_END}\n")
    with pytest.raises(ConfigError, match="lacks the runs of .*table8-architecture"):
        claims.render("tiny", readme)
    assert "old" in readme.read_text()


def test_halves_difference():
    early, late, lo, hi = claims.halves_difference([0.1, 0.1, 0.3, 0.3])
    assert (early, late) == (pytest.approx(0.1), pytest.approx(0.3)) and lo == pytest.approx(20) == hi
    with pytest.raises(ValueError, match="at least 4"):
        claims.halves_difference([0.1, 0.2, 0.3])


def test_parse_line_round_trips_and_refuses_an_edited_line():
    claim = by_id("rl-over-sft")
    line = claims.claim_line(claim, claims.Finding("paired CI includes 0", claims.NOT_SHOWN, "x"))
    assert claims.parse_line(line) == {"id": claim.id, "claim": claim.claim, "source": claim.source,
                                       "paper": claim.paper, "ours": "paired CI includes 0", "verdict": "not shown"}
    with pytest.raises(ValueError, match="not a claims line"):
        claims.parse_line(line.replace("not shown", "probably holds"))


def test_update_readme_replaces_only_the_marked_block():
    text = f"intro\n{claims.README_BEGIN}\nold\n{claims.README_END}\noutro\n"
    new = claims.update_readme(text, f"{claims.README_BEGIN}\nnew\n{claims.README_END}")
    assert new == f"intro\n{claims.README_BEGIN}\nnew\n{claims.README_END}\noutro\n"
    with pytest.raises(ValueError, match="exactly one"):
        claims.update_readme("no markers", "x")
    with pytest.raises(ValueError, match="exactly one"):
        claims.update_readme(f"{claims.README_END}{claims.README_BEGIN}", "x")


def test_the_claims_page_lists_every_claim_with_a_link_to_its_notebook(runs):
    write_metrics(runs, "03_sft", sft_metrics([0.0, 0.03], [0.05, 0.15]))
    page = claims.claims_page("tiny")
    for claim in claims.load_claims():
        row = next(line for line in page.splitlines() if line.startswith(f"| {claim.claim} |"))
        assert f"(notebooks/{claim.notebook}.ipynb#Claims)" in row and claim.paper in row
    assert "held-out math pass@1: base 1.5% [0.0, 3.0] -> SFT 10.0% [5.0, 15.0]" in page
    assert "| **not run** |" in page  # the claims whose stage has not run


def committed_lines() -> dict[str, dict[str, str]]:
    out = {}
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for parsed in claims.notebook_claims(path):
            out[parsed["id"]] = {**parsed, "notebook": path.stem}
    return out


def table_rows(text: str) -> dict[str, list[str]]:
    """Markdown table rows keyed by their first cell (the claim)."""
    return {cells[0]: cells for cells in ([c.strip() for c in line.strip().strip("|").split("|")]
                                          for line in text.splitlines() if line.startswith("| "))}


def test_every_claim_is_printed_by_its_committed_notebook_and_only_its_own_runs_are_checked():
    lines = committed_lines()
    for claim in claims.load_claims():
        assert claim.id in lines, f"{claim.notebook}.ipynb prints no claims line for {claim.id}: `make publish`"
        assert lines[claim.id]["notebook"] == claim.notebook
        assert (lines[claim.id]["claim"], lines[claim.id]["paper"]) == (claim.claim, claim.paper)
        assert lines[claim.id]["checked"] == ("yes" if claim.measured_by == "notebook" else "no"), claim.id


def test_the_readme_and_the_claims_page_agree_with_the_committed_notebooks():
    """The README's results and CLAIMS.md are generated from the same run as the committed notebooks' outputs:
    a notebook republished without them (or a hand edit) fails here."""
    lines = committed_lines()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index(claims.README_BEGIN):readme.index(claims.README_END)]
    readme_rows, page_rows = table_rows(block), table_rows((ROOT / claims.PAGE).read_text(encoding="utf-8"))
    for claim_id, line in lines.items():
        claim = line["claim"]
        assert claim in readme_rows, f"README.md's results have no row for {claim_id}"
        assert readme_rows[claim][2] == line["ours"], (claim_id, readme_rows[claim], line)
        assert readme_rows[claim][3] == f"**{line['verdict']}**", (claim_id, readme_rows[claim], line)
        assert page_rows[claim][4] == f"**{line['verdict']}**", (claim_id, page_rows[claim], line)
    assert len(lines) >= 6


def write_table3_arms(runs: Path, code_correct: list[int], n_train: int) -> None:
    import pandas as pd

    for name, d in [("table3-math", 0.01), ("table3-math-seed-1", 0.0), ("table3-math-seed-2", 0.02),
                    ("table3-mixed", 0.01), ("table3-mixed-seed-1", 0.03), ("table3-mixed-seed-2", 0.0)]:
        root = runs / "tiny" / "arms" / name
        stage = root / "tiny" / "04_rl"
        stage.mkdir(parents=True, exist_ok=True)
        (root / "arm.json").write_text(json.dumps({"name": name, "stage": "04_rl", "rl_minus_sft": {
            "math": {"difference": d, "ci": [d - 0.03, d + 0.03]}}}))
        if "mixed" in name:
            pd.DataFrame({"domain": ["math"] + ["code"] * len(code_correct), "k": 8,
                          "correct": [3, *code_correct]}).to_parquet(stage / "rl_filter_rollouts.parquet")
            (stage / "metrics.json").write_text(json.dumps({"metrics": {"data": {"n_train": n_train}}}))


def test_a_table3_ablation_whose_mixed_arm_kept_no_code_prompt_is_named_as_such(runs):
    """Issue 14's oddity: the mixed arm's seed 0 equalled the math-only arm's, because the SFT model solves every
    level-1-3 code prompt with all 8 rollouts and the Fig. 9 filter drops them: both arms trained on math only."""
    write_table3_arms(runs, [8, 8, 8], n_train=400)
    found = claims.find(by_id("table3-math-vs-mixed"))
    assert found.verdict == claims.NOT_SHOWN and found.ours.endswith("so both are math only")
    assert "0 of 400 / 0 of 400 / 0 of 400 training prompts" in found.measured
    write_table3_arms(runs, [3, 5, 8], n_train=20)  # 2 learnable code prompts of 20: a real mix, judged on the CIs
    found = claims.find(by_id("table3-math-vs-mixed"))
    assert (found.ours, found.verdict) == ("neither lifts math on every seed", claims.NOT_SHOWN)
