"""Arms: a stage rerun under other settings beside the notebook's own run (other seeds, the paper's ablations).

A claim that holds for one seed may not hold for the next, and an ablation compares two settings at the same budget
([P] Table 3: RL on math only vs other domain mixes; [P] Fig. 4: SFT with and without balanced data-parallel token
normalisation). Both need a stage run again without touching the notebook's own outputs and without retraining what
it reads. An *arm* is such a run:

- it has its own runs root, ``runs/<profile>/arms/<name>/``, in which the stages it reads (``UPSTREAM``) are
  symbolic links to the notebook's finished outputs: an RL arm starts from the very SFT model notebook 04 did, an
  SFT arm from notebook 03's pretrained base;
- the stage runs there unchanged, with ``$FALCON_H1R_RUNS`` pointing at the arm's root: RL as notebook 04 runs it
  (``rl.run`` then the SFT-vs-RL evaluation), SFT on 2 CPU ranks as the full profile launches it
  (``launch.command``); one code path, resumable, fingerprinted like the notebook's run;
- its summary (``arm.json``, written last and atomically, removed when the arm reruns) is what notebooks 03 and 04
  read: the overrides, the config hash, and the paired RL - SFT difference per domain (RL arms) or the SFT model
  (SFT arms, compared pairwise by ``compare_sft_arms``).

``python -m falcon_h1r_lib.arms --seeds 1 2`` runs two seed arms of notebook 04; ``--name table3-mixed --set
domains=[math,code]`` an ablation arm; ``--stage sft --name fig4-per-rank --set ...`` an SFT arm. A tiny RL arm
costs about one notebook 04 (its own Fig. 9 filter, training and evaluation), so arms are not part of
``make reproduce``.
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

from falcon_h1r_lib.config import ConfigError, is_tiny, load_config
from falcon_h1r_lib.metrics import write_json_atomic
from falcon_h1r_lib.paths import repo_relative, runs_dir

STAGE = "04_rl"
UPSTREAM = {"04_rl": ("02_data_curation", "03_sft"),  # what each stage reads: linked into its arms' roots
            "03_sft": ("02_data_curation",)}
SUMMARY_FILE = "arm.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def arm_root(name: str, profile: str = "tiny") -> Path:
    """``runs/<profile>/arms/<name>/``: the runs root arm ``name`` writes under. Raises ConfigError for a name that
    is not a plain folder name (letters, digits, ``_.-``, at most 64 characters)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"arms: arm name {name!r} must be a plain folder name: a letter or digit, then letters, "
                          "digits, '_', '.' or '-', at most 64 characters")
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


def prepare(name: str, profile: str = "tiny", stage: str = STAGE) -> Path:
    """Create arm ``name``'s root with the stages ``stage`` reads (``UPSTREAM``) linked to the notebook's finished
    outputs; returns the root. Raises MissingStageOutput (naming the notebook to run) when an upstream stage has
    not finished, and ConfigError when the root already holds a real folder (not a link) where an upstream stage
    belongs, or for a stage that has no arms."""
    from falcon_h1r_lib import stages

    if stage not in UPSTREAM:
        raise ConfigError(f"arms: no arms of stage {stage!r}; stages with arms: {', '.join(UPSTREAM)}")
    root = arm_root(name, profile)
    (root / profile).mkdir(parents=True, exist_ok=True)
    for up in UPSTREAM[stage]:
        source = stages.require(up, "metrics", profile).parent.resolve()
        link = root / profile / up
        if link.is_symlink():
            if link.resolve() == source:
                continue
            link.unlink()
        elif link.exists():
            raise ConfigError(f"arms: {link} is not a link to {source}: an arm never holds its own {up}; "
                              "remove it")
        link.symlink_to(source, target_is_directory=True)
    return root


def run_arm(name: str, overrides: Mapping[str, Any], profile: str = "tiny", force: bool = False) -> dict[str, Any]:
    """Run notebook 04's stage as arm ``name``: ``rl.run`` with the profile's config plus ``overrides`` (checked like
    any config: an unknown key or a bad value raises ConfigError), then the SFT-vs-RL evaluation. Writes and
    returns the summary: overrides, config hash, per-domain SFT / RL pass@1 and the paired RL - SFT difference
    (``evaluation.paired_difference``), wall seconds. A finished arm is not retrained (the stage's own resume)."""
    from falcon_h1r_lib import evaluation, launch, rl
    from falcon_h1r_lib.rl import report

    cfg = check_arm(name, STAGE, overrides, profile)  # nothing is created or removed for a bad name or config
    if force and not is_tiny(profile):
        raise ConfigError("arms: --force is for the tiny profile; a cluster job resumes or retrains by its fingerprint")
    sft_weights = notebook_sft_weights(profile)  # what it starts from, taken before training
    root = arm_root(name, profile)
    _clear_summary(root)
    root = prepare(name, profile)
    start = time.perf_counter()
    with runs_root_at(root):
        # as notebook 04 runs it: in process on tiny, as the launcher's jobs (filter, then GRPO) elsewhere
        metrics = rl.run(cfg, force=force) if is_tiny(profile) else launch.run_stage(cfg)
        record = evaluation.run(report.evaluation_config(cfg), models=report.compared_models(cfg, metrics),
                                out_dir=cfg.run_dir() / "eval")
        accuracy = report.accuracy_from_evaluation(record, {"sft": "sft", "rl": "rl"})
    summary = {"name": name, "stage": STAGE, "profile": profile, "root": repo_relative(root),
               "overrides": dict(overrides), "seed": cfg.seed, "domains": list(cfg.domains),
               "config_hash": cfg.config_hash(), "sft_weights": sft_weights,
               "global_steps": metrics.get("global_steps"), "wall_s": round(time.perf_counter() - start, 1),
               **accuracy}
    return _write_summary(root, summary)


SFT_FIXED = ("base_model_name_or_path", "check_base_config")  # an SFT arm starts from notebook 03's base, always


def check_arm(name: str, stage: str, overrides: Mapping[str, Any], profile: str = "tiny",
              processes: int | None = None):
    """The config arm ``name`` of ``stage`` would run (the profile's plus ``overrides``), checked before anything is
    created or removed: raises ConfigError for a bad name, a stage without arms, an arm folder that belongs to
    another stage (``_check_root``), ``profile`` among the overrides, an unknown key or a bad value, and for an SFT
    arm a base-model key (``SFT_FIXED``) or a global batch that ``processes`` ranks do not make up."""
    root = arm_root(name, profile)
    if stage not in UPSTREAM:
        raise ConfigError(f"arms: no arms of stage {stage!r}; stages with arms: {', '.join(UPSTREAM)}")
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"arms: overrides must be a mapping of config keys, got {type(overrides).__name__}")
    if "profile" in overrides:
        raise ConfigError("arms: 'profile' is not an override; give it as --profile (command line) or profile= "
                          "(Python)")
    if stage == "03_sft" and set(SFT_FIXED) & set(overrides):
        raise ConfigError(f"arms: an SFT arm starts from notebook 03's base: {', '.join(SFT_FIXED)} cannot be set")
    cfg = load_config(stage, profile, dict(overrides))
    from falcon_h1r_lib import stages

    for up in UPSTREAM[stage]:  # the notebook's stages it reads must have finished (names the notebook otherwise)
        stages.require(up, "metrics", profile)
    _check_root(root, stage, profile)
    if stage == "03_sft" and processes is not None:
        from falcon_h1r_lib.sft.base import check_global_batch

        try:
            check_global_batch(cfg, processes)
        except ValueError as err:
            raise ConfigError(f"arms: {name}: {err}") from None
    return cfg


def _check_root(root: Path, stage: str, profile: str) -> None:
    """An arm folder holds one stage's run: its own stage folder (never a link) and links to what that stage reads,
    nothing else, under its own name. Raises ConfigError naming what is in the way (an arm name reused for another
    stage, a link to another arm, a file where a folder or link belongs)."""
    if root.is_symlink() or (root.exists() and root.resolve() != root.parent.resolve() / root.name):
        raise ConfigError(f"arms: {root} is a link to {root.resolve()}: an arm is a folder of its own; choose "
                          "another name")
    if root.exists() and not root.is_dir():
        raise ConfigError(f"arms: {root} is a file, not an arm folder; remove it")
    summary = root / SUMMARY_FILE
    if summary.exists() and not summary.is_file():
        raise ConfigError(f"arms: {summary} is not a file; remove it")
    if summary.is_file():
        try:
            recorded = json.loads(summary.read_text(encoding="utf-8")).get("stage", stage)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            recorded = stage  # an unreadable summary is rewritten; the folders below still decide
        if recorded != stage:
            raise ConfigError(f"arms: {root} is an arm of stage {recorded}, not {stage}: choose another name")
    base = root / profile
    if base.exists() and (base.is_symlink() or not base.is_dir()):
        raise ConfigError(f"arms: {base} is not a folder; remove it")
    if not base.is_dir():
        return
    own = base / stage
    if own.is_symlink():
        raise ConfigError(f"arms: {own} is a link to another run's {stage}: {root.name} is an arm of another "
                          "stage; choose another name")
    if own.exists() and not own.is_dir():
        raise ConfigError(f"arms: {own} is not a folder; remove it")
    for up in UPSTREAM[stage]:
        if (base / up).exists() and not (base / up).is_symlink():
            raise ConfigError(f"arms: {base / up} is not a link to the notebook's {up}: an arm never holds its own "
                              f"{up}; remove it")
    for entry in base.iterdir():
        if entry.name not in (stage, *UPSTREAM[stage]) and not entry.name.startswith("."):
            raise ConfigError(f"arms: {entry} does not belong to an arm of {stage}: {root.name} is an arm of "
                              "another stage; choose another name")


def notebook_sft_weights(profile: str = "tiny") -> str:
    """``weights_fingerprint`` of notebook 03's SFT model: what every arm of notebook 04 starts from. An arm whose
    summary holds another value started from an SFT model that has since been retrained."""
    from falcon_h1r_lib import stages
    from falcon_h1r_lib.models.identity import weights_fingerprint

    return weights_fingerprint(stages.require("03_sft", "sft", profile))


def _clear_summary(root: Path) -> None:
    """An arm about to (re)run has no summary until it finishes: a failed rerun never leaves the last one behind."""
    (root / SUMMARY_FILE).unlink(missing_ok=True)


def _write_json(path: Path, obj: Mapping[str, Any]) -> None:
    """``path`` written atomically; NaN or infinity raise ValueError."""
    write_json_atomic(path, obj, default=str, allow_nan=False)


def _write_summary(root: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """``arm.json``, written last and atomically: an arm stopped at any point has no summary or the whole one."""
    _write_json(root / SUMMARY_FILE, summary)
    return summary


def run_sft_arm(name: str, overrides: Mapping[str, Any], profile: str = "tiny", processes: int = 2) -> dict[str, Any]:
    """Notebook 03's SFT (not its pretraining) as arm ``name`` on ``processes`` CPU ranks: the full profile's launch
    path (``launch.command``: ``accelerate launch`` with FSDP over gloo through the ``fsdp_on_cpu`` shim, as the
    rehearsal runs it), from notebook 03's own base model, with the profile's config plus ``overrides`` ([P] Fig. 4
    analog: ``average_tokens_across_devices`` on / off). The global batch stays the config's: ``overrides`` must
    set ``per_device_train_batch_size`` so that ranks x per-device x accumulation = ``global_batch_size``
    (``launch.preflight`` raises ConfigError naming the numbers before any rank starts). Returns and writes the
    summary (world size, steps, loss log, the SFT model's absolute path). Raises RuntimeError naming the job's log
    when a rank fails."""
    from falcon_h1r_lib import launch, stages
    from falcon_h1r_lib.metrics import read_metrics

    if not is_tiny(profile):
        raise ConfigError(f"arms: SFT arms run on this machine's CPU ranks (tiny profile), not {profile!r}: on a "
                          "cluster, launch notebook 03's job with the setting changed (falcon_h1r_lib.launch)")
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ConfigError(f"arms: processes must be an int >= 1, got {processes!r}")
    check_arm(name, "03_sft", overrides, profile, processes=processes)
    base = stages.require("03_sft", "base", profile).resolve()  # notebook 03's pretrained base: every arm's start
    _clear_summary(arm_root(name, profile))
    root = prepare(name, profile, stage="03_sft")
    start = time.perf_counter()
    with runs_root_at(root):
        cfg = load_config("03_sft", profile, {"base_model_name_or_path": str(base), "check_base_config": False,
                                              **overrides})
        plan = launch.LaunchConfig(profile=profile, cpu=True, processes_per_node=processes,
                                   main_process_port=launch.free_port())
        config_file = launch.write_job_config(cfg)
        launch.preflight("03_sft", config_file, processes)
        launch.execute(launch.command("03_sft", config_file, plan), cfg.run_dir() / "job.log", profile,
                       launch.job_env(profile, launch=plan))
        sft = read_metrics("03_sft", profile)["metrics"]["sft"]
        sft_model = stages.require("03_sft", "sft", profile).resolve()
    summary = {"name": name, "stage": "03_sft", "profile": profile, "root": repo_relative(root),
               "overrides": dict(overrides), "seed": cfg.seed, "config_hash": cfg.config_hash(),
               "world_size": sft["world_size"], "steps": sft["steps"], "global_batch": sft["global_batch"],
               "loss_log": sft["loss_log"], "base_model": str(base), "sft_model": str(sft_model),
               "wall_s": round(time.perf_counter() - start, 1)}
    return _write_summary(root, summary)


def compare_sft_arms(a: str, b: str, profile: str = "tiny", benchmark: str = "tiny-math", max_problems: int = 50,
                     samples_per_problem: int = 16, seed: int = 0) -> dict[str, Any]:
    """The SFT models of finished SFT arms ``a`` and ``b`` on one held-out benchmark with notebook 05's protocol:
    pass@1 of each (bootstrap CI) and the paired difference b - a (``evaluation.paired_difference``). Written to
    arm ``b``'s root as ``vs-<a>.json`` and returned as {"a", "b", "benchmark", "a_accuracy", "b_accuracy",
    "b_minus_a"} (each keyed by domain). Raises ConfigError when either arm has not finished."""
    from falcon_h1r_lib import evaluation
    from falcon_h1r_lib.evaluation.benchmarks import get_benchmark
    from falcon_h1r_lib.models.identity import weights_fingerprint
    from falcon_h1r_lib.rl import report
    from falcon_h1r_lib.tokenizer import system_turn

    if a == b or arm_root(a, profile).resolve() == arm_root(b, profile).resolve():
        raise ConfigError(f"arms: compare two different arms, got {a!r} and {b!r} (one folder)")
    arm_a, arm_b = read_arms(profile, names=[a, b])
    for arm in (arm_a, arm_b):
        if arm.get("stage") != "03_sft":
            raise ConfigError(f"arms: {arm.get('name')!r} is not an SFT arm (stage {arm.get('stage')!r})")
    prompts = {arm["name"]: load_config("03_sft", profile, arm["overrides"]).system_prompt for arm in (arm_a, arm_b)}
    if prompts[a] != prompts[b]:
        raise ConfigError(f"arms: {a} and {b} were trained with other system prompts ({prompts}): one evaluation "
                          "protocol cannot serve both")
    ecfg = evaluation.stage_config(profile, seed=seed, benchmarks=[benchmark], max_problems=max_problems,
                                   samples_per_problem=samples_per_problem, system_prompt=system_turn(prompts[b]))
    root_b = arm_root(b, profile)
    record = evaluation.run(ecfg, models={a: arm_a["sft_model"], b: arm_b["sft_model"]},
                            out_dir=root_b / f"eval-vs-{a}")
    acc = report.accuracy_from_evaluation(record, {"sft": a, "rl": b})
    result = {"a": a, "b": b, "benchmark": benchmark, "domain": get_benchmark(benchmark).domain,
              "weights": {arm["name"]: weights_fingerprint(arm["sft_model"]) for arm in (arm_a, arm_b)},
              "a_accuracy": acc["sft_accuracy"], "b_accuracy": acc["rl_accuracy"], "b_minus_a": acc["rl_minus_sft"]}
    _write_json(root_b / f"vs-{a}.json", result)
    return result


def read_arms(profile: str = "tiny", names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The summaries of the finished arms under ``runs/<profile>/arms/`` (all, or ``names`` in that order); an
    arm without ``arm.json`` has not finished, and a folder whose name is no arm name (``.ipynb_checkpoints``) is
    none: both are left out. Raises ConfigError naming a summary that cannot be read or is not a JSON object with
    a ``name``, or a named arm that has not finished."""
    base = runs_dir(profile) / "arms"
    if names is None:
        wanted = sorted(p.name for p in base.glob("*") if p.is_dir() and _NAME.fullmatch(p.name))
    else:
        wanted = list(names)
    out = []
    for name in wanted:
        path = arm_root(name, profile) / SUMMARY_FILE
        if not path.is_file():
            if names is not None:
                raise ConfigError(f"arms: {path} does not exist: run that arm first (`python -m falcon_h1r_lib.arms "
                                  f"--name {name} ...`, with `--stage sft` for an SFT arm; README \"Arms\")")
            continue
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ConfigError(f"arms: {path} cannot be read as JSON ({err}); rerun that arm") from None
        if not isinstance(summary, dict) or not isinstance(summary.get("name"), str):
            raise ConfigError(f"arms: {path} is not an arm summary (a JSON object with a 'name'); rerun that arm")
        if summary["name"] != name or path.parent.resolve() != (base / name).resolve().parent / name:
            raise ConfigError(f"arms: {path} holds arm {summary['name']!r}, not {name!r} (a renamed or linked arm "
                              "folder); rerun it under its own name")
        out.append(summary)
    return out


def seed_arms(cfg, found: Sequence[Mapping[str, Any]], sft_weights: str | None = None) -> list[Mapping[str, Any]]:
    """The arms of ``found`` (``read_arms``) that ran ``cfg`` (an RLStageConfig) with only another seed: same config
    hash once the seed is set back and, when ``sft_weights`` is given (``notebook_sft_weights``), started from that
    very SFT model. One arm per seed (the first by name); an arm run under older settings or from a since
    retrained SFT model, an ablation, or a summary without a usable seed is not one of them."""
    import dataclasses

    out, seeds = [], {cfg.seed}
    for a in found:
        seed = a.get("seed")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed in seeds:
            continue
        if sft_weights is not None and a.get("sft_weights") != sft_weights:
            continue
        try:
            same = dataclasses.replace(cfg, seed=seed).config_hash() == a.get("config_hash")
        except ConfigError:
            continue
        if same:
            out.append(a)
            seeds.add(seed)
    return out


def _domains(run: Mapping[str, Any]) -> str:
    domains = run.get("domains") or ()
    return domains if isinstance(domains, str) else "+".join(map(str, domains))


def _result(run: Mapping[str, Any], key: str, domain: str) -> Mapping[str, Any]:
    try:
        return run[key][domain]
    except (KeyError, TypeError):
        raise KeyError(f"run {run.get('name')!r} has no {key} result for domain {domain!r}") from None


def claims_over_arms(runs: Sequence[Mapping[str, Any]], domain: str = "math"):
    """One row per run (notebook 04's own and each arm: ``{"name", "seed", "domains", "rl_minus_sft", ...}``) with
    the paired RL - SFT difference on ``domain`` in points and its 95% CI, whether the CI excludes 0, plus (with 2
    runs or more) a last row with the mean difference, its sample SD over the runs (ddof 1) and whether every CI
    excludes 0 on the side of the mean. Raises KeyError naming a run without a result for ``domain``, ValueError
    for no runs or a run whose difference or CI is not a finite number."""
    import math

    import pandas as pd

    if not runs:
        raise ValueError("claims_over_arms: no runs")
    rows = []
    for r in runs:
        diff = _result(r, "rl_minus_sft", domain)
        try:
            lo, hi = (float(x) for x in diff["ci"])
            d = float(diff["difference"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"run {r.get('name')!r}: RL - SFT on {domain!r} has no numeric difference and CI: "
                             f"{diff!r}") from None
        if not all(math.isfinite(x) for x in (d, lo, hi)):
            raise ValueError(f"run {r.get('name')!r}: RL - SFT on {domain!r} is not finite: {d} [{lo}, {hi}]")
        for key in ("sft_accuracy", "rl_accuracy"):
            p = _result(r, key, domain).get("pass_at_1")
            if not isinstance(p, (int, float)) or not math.isfinite(p):
                raise ValueError(f"run {r.get('name')!r}: {key} on {domain!r} is not a finite pass@1: {p!r}")
        rows.append({"run": r.get("name"), "seed": r.get("seed"), "domains": _domains(r),
                     "sft_pass_at_1": 100 * _result(r, "sft_accuracy", domain)["pass_at_1"],
                     "rl_pass_at_1": 100 * _result(r, "rl_accuracy", domain)["pass_at_1"],
                     "rl_minus_sft": 100 * d, "ci_low": 100 * lo, "ci_high": 100 * hi,
                     "ci_excludes_0": bool(lo > 0 or hi < 0), "n_problems": diff.get("n_problems")})
    table = _with_mean_row(pd.DataFrame(rows), "rl_minus_sft", "run", "runs")
    whole = table["seed"].dropna().map(lambda x: isinstance(x, (int, float)) and float(x).is_integer()).all()
    return table.astype({"n_problems": "Int64", **({"seed": "Int64"} if whole else {})})



def _with_mean_row(table, column: str, label_column: str, unit: str):
    """``table`` (one row per run: ``column`` in points, ``ci_low``, ``ci_high``) plus, with 2 runs or more, a row
    ``"mean over N <unit>"``: the mean of ``column``, its sample SD (ddof 1) as ``sd_over_<unit>``, and
    ``ci_excludes_0`` true only when every run's CI excludes 0 on the side of the mean (a claim over seeds)."""
    import pandas as pd

    if len(table) < 2:
        return table
    d = table[column]
    same_side = (table["ci_low"] > 0).all() if d.mean() > 0 else (table["ci_high"] < 0).all()
    mean = {label_column: f"mean over {len(d)} {unit}", column: d.mean(), f"sd_over_{unit}": d.std(ddof=1),
            "ci_excludes_0": bool(same_side and d.mean() != 0)}
    return pd.concat([table, pd.DataFrame([mean])], ignore_index=True)

def ablation_table(runs: Sequence[Mapping[str, Any]]):
    """One row per run (its name and RL domains), one column per evaluated domain: RL - SFT pass@1 in points with
    the paired 95% CI, as ``"+1.2 [-0.4, +2.9]"``; empty where that run did not evaluate the domain ([P] Table 3
    rows are RL domain mixes, its columns benchmarks of each domain). An arm run over seeds (``NAME``,
    ``NAME-seed-S``, ...) gets a last row ``"NAME: mean over seeds"``: the mean difference and its SD (ddof 1) over
    its runs, as ``"+1.2 (SD 0.8, 3 seeds)"``. No runs: an empty table. Raises KeyError
    naming a run without RL - SFT results."""
    import math
    import statistics

    import pandas as pd

    rows, by_arm = [], {}
    for r in runs:
        row = {"run": r.get("name"), "RL domains": _domains(r)}
        results = r.get("rl_minus_sft")
        if not isinstance(results, Mapping):
            raise KeyError(f"run {r.get('name')!r} has no rl_minus_sft results")
        group = by_arm.setdefault(re.sub(r"-seed-\d+$", "", str(r.get("name"))), {"domains": row["RL domains"]})
        for domain, d in results.items():
            lo, hi = d["ci"]
            if not all(math.isfinite(x) for x in (d["difference"], lo, hi)):
                raise ValueError(f"run {r.get('name')!r}: RL - SFT on {domain!r} is not finite: {d!r}")
            row[domain] = f"{100 * d['difference']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
            group.setdefault(domain, []).append(100 * d["difference"])
        rows.append(row)
    for name, group in by_arm.items():  # an arm and its seeds (``--name NAME --seeds ...``): mean and SD over them
        domains = group.pop("domains")
        if max(map(len, group.values()), default=0) >= 2:
            rows.append({"run": f"{name}: mean over seeds", "RL domains": domains, **{
                domain: (f"{statistics.mean(v):+.1f} (SD {statistics.stdev(v):.1f}, {len(v)} seeds)"
                         if len(v) >= 2 else "") for domain, v in group.items()}})
    return pd.DataFrame(rows, columns=None if rows else ["run", "RL domains"]).set_index("run").fillna("")


def fig4_comparison(profile: str = "tiny", a: str = "fig4-per-rank", b: str = "fig4-balanced"):
    """The Fig. 4 analog's table once ``compare_sft_arms(a, b)`` has run: pass@1 of each arm's SFT model and the
    paired difference (b - a) in points with 95% CIs, plus each arm's world size, steps and wall time; None
    before then, and when either arm has been retrained since (its weights are not the ones compared)."""
    import pandas as pd

    from falcon_h1r_lib.models.identity import weights_fingerprint

    path = arm_root(b, profile) / f"vs-{a}.json"
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
        weights = result["weights"]
        domain = result["domain"]
        accuracies = {a: result["a_accuracy"][domain], b: result["b_accuracy"][domain]}
        diff = result["b_minus_a"][domain]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise ConfigError(f"arms: {path} is not a comparison of {a} and {b} ({type(err).__name__}: {err}); rerun "
                          f"`python -m falcon_h1r_lib.arms --compare {a} {b}`") from None
    try:
        arms_ = {x["name"]: x for x in read_arms(profile, names=[a, b])}
    except ConfigError:  # an arm is rerunning (no summary yet)
        return None
    if any(weights_fingerprint(arms_[n]["sft_model"]) != weights.get(n) for n in (a, b)):
        return None
    rows = []
    for label in (a, b):
        acc = accuracies[label]
        flag = load_config("03_sft", profile, arms_[label]["overrides"]).average_tokens_across_devices
        rows.append({"run": label, "average_tokens_across_devices": flag, "world_size": arms_[label]["world_size"],
                     "steps": arms_[label]["steps"], "pass@1 (%)": 100 * acc["pass_at_1"],
                     "CI (%)": [round(100 * x, 1) for x in acc["ci"]], "wall_s": arms_[label]["wall_s"]})
    rows.append({"run": f"{b} - {a} (paired)", "pass@1 (%)": 100 * diff["difference"],
                 "CI (%)": [round(100 * x, 1) for x in diff["ci"]]})
    return pd.DataFrame(rows).set_index("run")


def fig4_arm_names(seed: int, own_seed: int = 0) -> tuple[str, str]:
    """The (per-rank, balanced) SFT arm names of the Fig. 4 analog for ``seed``: ``fig4-per-rank`` /
    ``fig4-balanced`` at the SFT config's own seed, ``fig4-per-rank-seed-<S>`` / ``fig4-balanced-seed-<S>``
    otherwise (the names ``python -m falcon_h1r_lib.arms --stage sft --name fig4-... --seeds S`` gives)."""
    suffix = "" if seed == own_seed else f"-seed-{seed}"
    return f"fig4-per-rank{suffix}", f"fig4-balanced{suffix}"


def fig4_over_seeds(profile: str = "tiny", seeds: Sequence[int] = (0, 1, 2)):
    """The Fig. 4 analog over seeds: one row per seed whose two arms have been compared (``fig4_comparison`` of
    ``fig4_arm_names(seed)``, same weights), with each arm's pass@1 (%), balanced - per-rank in points, its paired
    95% CI and the problems each side wins; with 2 seeds or more, a last row with the mean difference, its sample
    SD over seeds (ddof 1) and whether every CI excludes 0 on the side of the mean (Deliver 4: a claim over seeds).
    None when no seed has a comparison. Raises ConfigError as ``fig4_comparison`` does for a corrupt comparison."""
    import pandas as pd

    own_seed = load_config("03_sft", profile).seed
    rows = []
    for seed in dict.fromkeys(seeds):
        a, b = fig4_arm_names(seed, own_seed)
        table = fig4_comparison(profile, a, b)
        if table is None:
            continue
        result = json.loads((arm_root(b, profile) / f"vs-{a}.json").read_text(encoding="utf-8"))
        diff = result["b_minus_a"][result["domain"]]
        lo, hi = (100 * x for x in diff["ci"])
        rows.append({"seed": seed, "per-rank pass@1 (%)": table.loc[a, "pass@1 (%)"],
                     "balanced pass@1 (%)": table.loc[b, "pass@1 (%)"],
                     "balanced - per-rank": 100 * diff["difference"], "ci_low": lo, "ci_high": hi,
                     "ci_excludes_0": bool(lo > 0 or hi < 0), "balanced better / worse / ties":
                         f"{diff.get('b_better')} / {diff.get('a_better')} / {diff.get('ties')}"})
    if not rows:
        return None
    return _with_mean_row(pd.DataFrame(rows), "balanced - per-rank", "seed", "seeds").set_index("seed")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m falcon_h1r_lib.arms [--stage rl|sft] [--seeds S ...] [--name NAME] [--set KEY=VALUE ...]``, or
    ``--compare A B``. Every arm's name and config is checked before the first one runs."""
    import argparse

    from falcon_h1r_lib.cli import parse_overrides

    parser = argparse.ArgumentParser(prog="python -m falcon_h1r_lib.arms", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", action="extend", default=[],
                        help="one arm per seed, named seed-<S> (repeatable)")
    parser.add_argument("--name", help="the arm's name (without --seeds: one arm; with: a prefix, <name>-seed-<S>)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="a stage config override, VALUE read as YAML (domains=[math,code]); repeatable")
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--force", action="store_true", help="retrain an RL arm from the SFT model")
    parser.add_argument("--stage", choices=("rl", "sft"), default="rl",
                        help="rl: notebook 04's stage (default); sft: notebook 03's SFT on --processes CPU ranks")
    parser.add_argument("--processes", type=int, default=2, help="ranks of an SFT arm (default 2)")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"),
                        help="evaluate the SFT models of finished SFT arms A and B, paired (B - A); nothing else")
    a = parser.parse_args(argv)
    try:
        if a.compare:
            if a.seeds or a.name or a.sets or a.force or a.stage != "rl":
                parser.error("--compare takes two finished SFT arms and nothing else (no --seeds, --name, --set, "
                             "--stage or --force)")
            result = compare_sft_arms(*a.compare, profile=a.profile)
            print(json.dumps(result["b_minus_a"], default=str))
            return 0
        overrides = parse_overrides(a.sets)
        if not a.seeds and not a.name:
            parser.error("give --seeds, --name or both")
        if a.seeds and "seed" in overrides:
            parser.error("--seeds and --set seed=...: give the seeds one way")
        if a.stage == "sft" and a.force:
            parser.error("--force: an SFT arm retrains when its settings change; remove its folder to redo it")
        seeds = list(dict.fromkeys(a.seeds))  # each seed once, in the order given
        own_seed = load_config(STAGE, a.profile).seed if a.stage == "rl" and seeds else None
        if own_seed in seeds:
            parser.error(f"--seeds {own_seed}: that is the notebook's own seed (its run is the first of the claim)")
        arms = ([(f"{a.name}-seed-{s}" if a.name else f"seed-{s}", {**overrides, "seed": s}) for s in seeds]
                if seeds else [(a.name, overrides)])
        stage = "03_sft" if a.stage == "sft" else STAGE
        for name, over in arms:  # every name and config first: nothing is created, removed or trained for a bad one
            check_arm(name, stage, over, a.profile, processes=a.processes if a.stage == "sft" else None)
        for name, over in arms:
            if a.stage == "sft":
                summary = run_sft_arm(name, over, profile=a.profile, processes=a.processes)
                print(json.dumps({k: summary[k] for k in ("name", "world_size", "steps", "wall_s")}, default=str))
            else:
                summary = run_arm(name, over, profile=a.profile, force=a.force)
                print(json.dumps({k: summary[k] for k in ("name", "seed", "domains", "rl_minus_sft", "wall_s")},
                                 default=str))
    except ConfigError as err:
        parser.error(str(err))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
