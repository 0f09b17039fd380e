"""Arms: notebook 04's RL stage rerun under other settings (another seed, other RL domains) beside its own run.

A claim that holds for one seed may not hold for the next, and an ablation compares two settings at the same budget
([P] Table 3: RL on math only vs other domain mixes). Both need the RL stage run again without touching the
notebook's own outputs and without retraining what it reads. An *arm* is such a run:

- it has its own runs root, ``runs/<profile>/arms/<name>/``, in which the upstream stages (02 curation, 03 SFT) are
  symbolic links to the notebook's finished outputs: every arm starts from the very SFT model notebook 04 did;
- the stage runs there unchanged (``rl.run``, then the SFT-vs-RL evaluation of ``rl.report``), with
  ``$FALCON_H1R_RUNS`` pointing at the arm's root: one code path, resumable, fingerprinted like the notebook's run;
- its summary (``arm.json``: the overrides, the paired RL - SFT difference per domain with its CI, the wall time)
  is what notebook 04 and ``claims_over_arms`` read.

``python -m falcon_h1r_lib.arms --seeds 1 2`` runs two seed arms; ``--name mixed --set domains=[math,code]``
one ablation arm. Each tiny arm costs about one notebook 04 (its own Fig. 9 filter, training and evaluation).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from falcon_h1r_lib.config import ConfigError, load_config
from falcon_h1r_lib.paths import repo_relative, runs_dir

STAGE = "04_rl"
UPSTREAM = ("02_data_curation", "03_sft")  # what the RL stage reads: linked into every arm's root
SUMMARY_FILE = "arm.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def arm_root(name: str, profile: str = "tiny") -> Path:
    """``runs/<profile>/arms/<name>/``: the runs root arm ``name`` writes under. Raises ConfigError for a name that
    is not a plain folder name (letters, digits, ``_.-``, at most 64 characters)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"arms: arm name {name!r} must be a plain folder name (letters, digits, '_', '.', '-', "
                          "at most 64 characters, not starting with a dot or dash)")
    return runs_dir(profile) / "arms" / name


@contextmanager
def runs_root_at(root: Path) -> Iterator[None]:
    """``$FALCON_H1R_RUNS`` set to ``root`` inside the block, restored (or unset again) after it, also on errors."""
    before = os.environ.get("FALCON_H1R_RUNS")
    os.environ["FALCON_H1R_RUNS"] = str(root)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("FALCON_H1R_RUNS", None)
        else:
            os.environ["FALCON_H1R_RUNS"] = before


def prepare(name: str, profile: str = "tiny") -> Path:
    """Create arm ``name``'s root with its upstream stages linked to the notebook's finished outputs; returns the
    root. Raises MissingStageOutput (naming the notebook to run) when an upstream stage has not finished, and
    ConfigError when the root already holds a real folder (not a link) where an upstream stage belongs."""
    from falcon_h1r_lib import stages

    root = arm_root(name, profile)
    (root / profile).mkdir(parents=True, exist_ok=True)
    for up in UPSTREAM:
        source = stages.require(up, "metrics", profile).parent.resolve()
        link = root / profile / up
        if link.is_symlink():
            if link.resolve() == source:
                continue
            link.unlink()
        elif link.exists():
            raise ConfigError(f"arms: {link} is a folder, not a link to {source}: an arm never holds its own "
                              f"{up}; remove it")
        link.symlink_to(source, target_is_directory=True)
    return root


def run_arm(name: str, overrides: Mapping[str, Any], profile: str = "tiny", force: bool = False) -> dict[str, Any]:
    """Run notebook 04's stage as arm ``name``: ``rl.run`` with the profile's config plus ``overrides`` (checked like
    any config: an unknown key or a bad value raises ConfigError), then the SFT-vs-RL evaluation. Writes and
    returns the summary: overrides, config hash, per-domain SFT / RL pass@1 and the paired RL - SFT difference
    (``evaluation.paired_difference``), wall seconds. A finished arm is not retrained (the stage's own resume)."""
    from falcon_h1r_lib import evaluation, rl
    from falcon_h1r_lib.rl import report

    overrides = dict(overrides)
    if "profile" in overrides:
        raise ConfigError("arms: 'profile' is not an override; pass profile= instead")
    root = prepare(name, profile)
    start = time.perf_counter()
    with runs_root_at(root):
        cfg = load_config(STAGE, profile, overrides)
        metrics = rl.run(cfg, force=force)
        record = evaluation.run(report.evaluation_config(cfg), models=report.compared_models(cfg, metrics),
                                out_dir=cfg.run_dir() / "eval")
        accuracy = report.accuracy_from_evaluation(record, {"sft": "sft", "rl": "rl"})
    summary = {"name": name, "profile": profile, "root": repo_relative(root), "overrides": overrides,
               "seed": cfg.seed, "domains": list(cfg.domains), "config_hash": cfg.config_hash(),
               "global_steps": metrics.get("global_steps"), "wall_s": round(time.perf_counter() - start, 1),
               **accuracy}
    (root / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def read_arms(profile: str = "tiny", names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The summaries of the finished arms under ``runs/<profile>/arms/`` (all, or ``names`` in that order); an
    arm without ``arm.json`` has not finished and is left out. Raises ConfigError naming a summary that is not
    valid JSON, or a named arm that has not finished."""
    base = runs_dir(profile) / "arms"
    wanted = list(names) if names is not None else sorted(p.name for p in base.glob("*") if p.is_dir())
    out = []
    for name in wanted:
        path = arm_root(name, profile) / SUMMARY_FILE
        if not path.exists():
            if names is not None:
                raise ConfigError(f"arms: {path} does not exist: run `python -m falcon_h1r_lib.arms --name {name} "
                                  "...` first")
            continue
        try:
            out.append(json.loads(path.read_text()))
        except json.JSONDecodeError as err:
            raise ConfigError(f"arms: {path} is not valid JSON ({err}); rerun that arm") from None
    return out


def seed_arms(cfg, found: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The arms of ``found`` (``read_arms``) that ran ``cfg`` (an RLStageConfig) with only another seed: same
    config hash once the seed is set back. An arm run under older settings, or an ablation, is not one of them."""
    import dataclasses

    return [a for a in found if a.get("seed") != cfg.seed
            and dataclasses.replace(cfg, seed=a.get("seed")).config_hash() == a.get("config_hash")]


def ablation_table(runs: Sequence[Mapping[str, Any]]):
    """One row per run (its name and RL domains), one column per evaluated domain: RL - SFT pass@1 in points with
    the paired 95% CI, as ``"+1.2 [-0.4, +2.9]"``; empty where that run did not evaluate the domain ([P] Table 3
    rows are RL domain mixes, its columns benchmarks of each domain)."""
    import pandas as pd

    rows = []
    for r in runs:
        row = {"run": r.get("name"), "RL domains": "+".join(r.get("domains", ()))}
        for domain, d in r["rl_minus_sft"].items():
            lo, hi = d["ci"]
            row[domain] = f"{100 * d['difference']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
        rows.append(row)
    return pd.DataFrame(rows).set_index("run").fillna("")


def claims_over_arms(runs: Sequence[Mapping[str, Any]], domain: str = "math"):
    """One row per run (notebook 04's own and each arm: ``{"name", "seed", "domains", "rl_minus_sft", ...}``) with
    the paired RL - SFT difference on ``domain`` in points and its 95% CI, whether the CI excludes 0, plus (with 2
    runs or more) a last row with the mean difference, its sample SD over the runs (ddof 1) and whether every CI
    excludes 0. Raises KeyError naming a run
    that has no result for ``domain``."""
    import pandas as pd

    rows = []
    for r in runs:
        diff = r["rl_minus_sft"].get(domain)
        if diff is None:
            raise KeyError(f"run {r.get('name')!r} has no RL - SFT result for domain {domain!r} "
                           f"(it has {sorted(r['rl_minus_sft'])})")
        lo, hi = diff["ci"]
        rows.append({"run": r.get("name"), "seed": r.get("seed"), "domains": "+".join(r.get("domains", ())),
                     "sft_pass_at_1": 100 * r["sft_accuracy"][domain]["pass_at_1"],
                     "rl_pass_at_1": 100 * r["rl_accuracy"][domain]["pass_at_1"],
                     "rl_minus_sft": 100 * diff["difference"], "ci_low": 100 * lo, "ci_high": 100 * hi,
                     "ci_excludes_0": bool(lo > 0 or hi < 0), "n_problems": diff["n_problems"]})
    table = pd.DataFrame(rows)
    if len(table) >= 2:
        d = table["rl_minus_sft"]
        spread = {"run": f"mean over {len(d)} runs", "rl_minus_sft": d.mean(), "sd_over_runs": d.std(ddof=1),
                  "ci_excludes_0": bool(table["ci_excludes_0"].all())}
        table = pd.concat([table, pd.DataFrame([spread])], ignore_index=True)
    return table.astype({"seed": "Int64", "n_problems": "Int64"})


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m falcon_h1r_lib.arms [--seeds S ...] [--name NAME] [--set KEY=VALUE ...] [--profile P]``."""
    import argparse

    import yaml

    parser = argparse.ArgumentParser(prog="python -m falcon_h1r_lib.arms", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[], help="one arm per seed, named seed-<S>")
    parser.add_argument("--name", help="the arm's name (without --seeds: one arm; with: a prefix, <name>-seed-<S>)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="an RLStageConfig override, VALUE read as YAML (domains=[math,code]); repeatable")
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--force", action="store_true", help="retrain the arm from the SFT model")
    a = parser.parse_args(argv)
    overrides: dict[str, Any] = {}
    for item in a.sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--set {item!r}: expected KEY=VALUE")
        overrides[key.strip()] = yaml.safe_load(value)
    if not a.seeds and not a.name:
        parser.error("give --seeds, --name or both")
    arms = ([(f"{a.name}-seed-{s}" if a.name else f"seed-{s}", {**overrides, "seed": s}) for s in a.seeds]
            if a.seeds else [(a.name, overrides)])
    for name, over in arms:
        summary = run_arm(name, over, profile=a.profile, force=a.force)
        print(json.dumps({k: summary[k] for k in ("name", "seed", "domains", "rl_minus_sft", "wall_s")}, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
