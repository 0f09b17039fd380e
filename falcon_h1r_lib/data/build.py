"""The curation stage end to end: ``run(cfg)`` in process, ``python -m falcon_h1r_lib.data --config FILE``.

tiny: generate a task pool -> teacher rollouts -> the paper's curation pipeline -> Parquet + manifests.
full (and its rehearsal): the open sources of ``sources_file`` (pinned revisions) through the same pipeline,
plus the RL problems of ``rl_sources_file``: exact-deduplicated, decontaminated and made disjoint from SFT.
Outputs go to ``runs/<profile>/02_data_curation/``; tiny manifests are also written to
``data_manifests/tiny/`` (committed: they pin the sha256 of data anyone can regenerate).
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from falcon_h1r_lib.config import ConfigError, is_tiny
from falcon_h1r_lib.configs import CurationConfig
from falcon_h1r_lib.data import manifests, splits
from falcon_h1r_lib.data.curation import run_pipeline
from falcon_h1r_lib.data.decontamination import decontaminate
from falcon_h1r_lib.data.dedup import dedup_exact
from falcon_h1r_lib.data.funnel import StepReport, funnel_table
from falcon_h1r_lib.data.mixing import whitespace_token_count
from falcon_h1r_lib.data.schema import validate_schema
from falcon_h1r_lib.data.sft_rl_split import assert_disjoint, remove_overlap
from falcon_h1r_lib.data.tasks import DOMAINS
from falcon_h1r_lib.paths import manifests_dir

COMMITTED_MANIFESTS = ("sft", "rl_problems", "eval")
GENERATOR_VERSION = "tasks-1"  # bump when generators or the teacher change what a seed produces


def _tokenizer_corpus(problems: list[dict], teacher) -> list[str]:
    """Prompts and one teacher rollout per problem: what the tiny tokenizer must encode well."""
    return [p["prompt"] for p in problems] + [teacher.rollout(p, 0)["response"] for p in problems]


def build_tiny_inputs(cfg: CurationConfig):
    """(problem pool, eval sets, teacher) of the tiny profile, all seeded from ``cfg.seed``."""
    from falcon_h1r_lib.data.teacher import Teacher

    problems = [p for d in DOMAINS for p in splits.tiny_train_problems(d, cfg.problems_per_domain.get(d, 0), cfg.seed)]
    eval_sets = splits.tiny_eval_sets(cfg.eval_problems_per_domain)
    teacher = Teacher(
        cfg.teacher_style, error_rate=cfg.teacher_error_rate, self_check_prob=cfg.teacher_self_check_prob,
        seed=cfg.seed, format_error_rate=cfg.teacher_format_error_rate, error_slope=cfg.teacher_error_slope,
    )
    return problems, eval_sets, teacher


def _length_stats(rows: list[dict], count_tokens) -> dict[str, dict[str, float]]:
    by_domain: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        by_domain[r["domain"]].append(count_tokens(r["response"]))
    out = {}
    for d, lens in sorted(by_domain.items()):
        logs = [math.log(max(n, 1)) for n in lens]
        out[d] = {"n": len(lens), "median": statistics.median(lens), "mean": statistics.fmean(lens),
                  "max": max(lens), "log_std": statistics.pstdev(logs) if len(logs) > 1 else 0.0}
    return out


def _mixture(rows: list[dict], count_tokens) -> dict[str, dict[str, float]]:
    samples = Counter(r["domain"] for r in rows)
    tokens = Counter()
    for r in rows:
        tokens[r["domain"]] += count_tokens(r["prompt"]) + count_tokens(r["response"])
    n, t = sum(samples.values()) or 1, sum(tokens.values()) or 1
    return {d: {"samples": samples[d], "sample_share": samples[d] / n, "tokens": tokens[d],
                "token_share": tokens[d] / t} for d in DOMAINS}


def run(cfg: CurationConfig, force: bool = False) -> dict[str, Any]:
    """Run the stage and return its metrics; skips work whose outputs already match ``cfg``."""
    from falcon_h1r_lib.metrics import Stopwatch, clear_record, write_metrics

    out = cfg.run_dir()
    done = out / "metrics.json"
    if not force and done.exists():
        record = json.loads(done.read_text())
        if record.get("config_hash") == cfg.config_hash():
            try:
                for name in COMMITTED_MANIFESTS:
                    load_output(cfg, name)
                return record["metrics"]
            except (manifests.ManifestError, OSError):
                pass  # outputs changed or vanished: rebuild
    clear_record(cfg)  # until the new record is written, later stages see 02 as unfinished
    clock = Stopwatch()
    if is_tiny(cfg.profile):
        metrics = _run_tiny(cfg, out)
        reads: list[str] = []
    else:
        metrics, reads = _run_full(cfg, out)
    path = write_metrics(cfg, metrics, wall_time_s=clock.seconds(), reads=reads)
    return json.loads(path.read_text())["metrics"]  # as written (JSON keys), so a skipped rerun returns the same


def manifest_path(cfg: CurationConfig, name: str) -> Path:
    """Where dataset ``name`` keeps its manifest: committed ``data_manifests/tiny/`` or beside the data."""
    if cfg.profile == "tiny" and name in COMMITTED_MANIFESTS:
        return manifests_dir() / "tiny" / f"{name}.manifest.json"
    return manifests.manifest_path_for(cfg.run_dir(create=False) / f"{name}.parquet")


def load_output(cfg: CurationConfig, name: str) -> list[dict]:
    """Rows of one dataset this stage wrote (``sft``, ``rl_problems``, ``eval``), hash-checked."""
    return manifests.load_dataset_checked(manifest_path(cfg, name))


def output_digest(cfg: CurationConfig, name: str) -> str:
    """What dataset ``name`` (``sft``, ``rl_problems``, ...) holds, read from its manifest alone: a short sha256 over
    the sha256 and row count of each data file and the JSON-encoded columns. Cheap (no data file is read) and
    sound: ``load_output`` refuses files whose hash differs from the manifest's. A later stage puts it in its
    fingerprint, so a rerun of this stage that writes other rows retrains it, and one that writes the same bytes
    does not. Raises ManifestError naming the manifest when it is missing or unreadable."""
    import hashlib

    manifest = manifests.read_manifest(manifest_path(cfg, name))
    blob = json.dumps({"files": [[f["sha256"], f["rows"]] for f in manifest["files"]],
                       "json_columns": manifest["json_columns"]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _write(rows, out: Path, name: str, cfg, source: dict, funnel, count_tokens, counter_name, tiny: bool):
    manifest_path = manifests_dir() / "tiny" / f"{name}.manifest.json" if tiny else None
    return manifests.write_dataset(
        rows, out / f"{name}.parquet", {"name": name, "source": source, "funnel": funnel,
                                         "config_hash": cfg.config_hash()},
        count_tokens=count_tokens, token_counter=counter_name, manifest_path=manifest_path,
    )


def _run_tiny(cfg: CurationConfig, out: Path) -> dict[str, Any]:
    from falcon_h1r_lib.tokenizer import build_tokenizer, save_tokenizer

    problems, eval_sets, teacher = build_tiny_inputs(cfg)
    tok = build_tokenizer(_tokenizer_corpus(problems, teacher), vocab_size=cfg.tokenizer_vocab_size, seed=cfg.seed)
    save_tokenizer(tok, out / "tokenizer")

    def count_tokens(text: str) -> int:
        return len(tok.encode(text, add_special_tokens=False))

    raw = [t for p in problems for t in teacher.rollouts(p, cfg.rollouts_per_problem)]
    result = run_pipeline(problems, eval_sets, cfg, teacher=teacher, count_tokens=count_tokens)
    assert_disjoint(result.sft_rows, result.rl_problems)
    source = {"generator": "falcon_h1r_lib.data.tasks", "version": GENERATOR_VERSION, "seed": cfg.seed,
              "teacher": {"style": cfg.teacher_style, "error_rate": cfg.teacher_error_rate,
                          "error_slope": cfg.teacher_error_slope,
                          "format_error_rate": cfg.teacher_format_error_rate,
                          "self_check_prob": cfg.teacher_self_check_prob}}
    counter = f"tiny tokenizer ({len(tok)} tokens, runs/tiny/02_data_curation/tokenizer)"
    eval_rows = [p for rows in eval_sets.values() for p in rows]
    # teacher pass rate over k rollouts (from the weighting step): the difficulty signal at this stage
    pass_rate = {r["id"]: r["pass_rate"] for r in result.sft_rows}
    level = {r["id"]: r["difficulty"] for r in result.sft_rows}
    written = {
        "sft": _write(result.sft_rows, out, "sft", cfg, source, result.funnel, count_tokens, counter, True),
        "rl_problems": _write(result.rl_problems, out, "rl_problems", cfg, source, result.funnel, count_tokens,
                              counter, True),
        "eval": _write(eval_rows, out, "eval", cfg, {**source, "seed_base": splits.TINY_EVAL_SEED_BASE}, [],
                       count_tokens, counter, True),
        "raw_traces": _write(raw, out, "raw_traces", cfg, source, [], count_tokens, counter, False),
    }
    return {
        "funnel": funnel_table(result.funnel),
        "rows": {k: m["rows"] for k, m in written.items()},
        "mixture_sft": _mixture(result.sft_rows, count_tokens),
        "target_token_shares": dict(cfg.domain_token_shares),
        "length_tokens_raw": _length_stats(raw, count_tokens),
        "length_tokens_sft": _length_stats(result.sft_rows, count_tokens),
        "teacher_pass_rate": {
            "by_level": {lvl: statistics.fmean(v for i, v in pass_rate.items() if level[i] == lvl)
                         for lvl in sorted(set(level.values()))},
            "histogram_sft_problems": dict(sorted(Counter(round(v, 3) for v in pass_rate.values()).items())),
        },
        "difficulty_buckets_sft": dict(Counter(r.get("difficulty_bucket") for r in result.sft_rows)),
        "injected_errors_in_sft": sum(bool(r.get("injected_error")) for r in result.sft_rows),
        "tokenizer_vocab": len(tok),
        "manifests": {k: str(Path(m["files"][0]["path"])) for k, m in written.items()},
    }


def curate_rl_sources(rows: list[dict], sft_problems: list[dict], eval_sets: dict[str, list[dict]],
                      cfg: CurationConfig) -> tuple[list[dict], list[StepReport]]:
    """RL problems of the RL sources ([P] §3.1): schema, ``rl_domains``, exact dedup, decontamination against
    the benchmarks, then every problem that shares an id or prompt with the SFT pool removed."""
    funnel = []
    rows, rep = validate_schema(rows, "problem")
    funnel.append(dataclasses.replace(rep, name="rl:schema"))
    other = Counter(r["domain"] for r in rows if r["domain"] not in cfg.rl_domains)
    kept = [r for r in rows if r["domain"] in cfg.rl_domains]
    funnel.append(StepReport("rl:domains", len(rows), len(kept),
                             {f"domain:{d}": n for d, n in sorted(other.items())}))
    rows, rep = dedup_exact(kept)
    funnel.append(dataclasses.replace(rep, name="rl:dedup_exact"))
    rows, rep = decontaminate(rows, eval_sets, cfg.decontam_ngram_n, cfg.shingle_n,
                              cfg.decontam_boilerplate_frac, cfg.decontam_near_threshold)
    funnel.append(dataclasses.replace(rep, name="rl:decontaminate"))
    rows, rep = remove_overlap(rows, sft_problems, "rl:dedup_vs_sft")
    funnel.append(rep)
    return rows, funnel


def _run_full(cfg: CurationConfig, out: Path) -> tuple[dict[str, Any], list[str]]:
    from falcon_h1r_lib.data.sources import load_source, load_source_specs, load_sources

    if not cfg.sources_file or not cfg.eval_sources_file:
        raise ConfigError(f"{cfg.STAGE} ({cfg.profile}): keys 'sources_file' and 'eval_sources_file' are required")
    specs = load_source_specs(cfg.sources_file)
    rl_specs = load_source_specs(cfg.rl_sources_file) if cfg.rl_sources_file else []
    eval_specs = load_source_specs(cfg.eval_sources_file)
    traces, infos = load_sources(specs, cfg.profile, cfg.allow_unpinned, limit=cfg.max_rows_per_source)
    rl_rows, rl_infos = load_sources(rl_specs, cfg.profile, cfg.allow_unpinned, limit=cfg.max_rows_per_source)
    eval_sets, eval_infos = {}, []
    for spec in eval_specs:  # every benchmark whole: decontamination checks against all of it
        rows, info = load_source(spec, cfg.profile, cfg.allow_unpinned)
        eval_sets[spec.name] = rows
        eval_infos.append({**info, "rows": len(rows)})
    problems = list({t["id"]: {k: v for k, v in t.items() if k not in ("response", "rollout", "teacher",
                                                                        "source_correct")} for t in traces}.values())
    result = run_pipeline(problems, eval_sets, cfg, traces=traces)
    # RL problems: the rl_fraction split (0 in the full profile) plus the RL sources, disjoint from every SFT problem
    rl_from_sources, rl_funnel = curate_rl_sources(rl_rows, [*problems, *result.rl_problems], eval_sets, cfg)
    rl_problems = [*result.rl_problems, *rl_from_sources]
    assert_disjoint(result.sft_rows, rl_problems)
    assert_disjoint(problems, rl_from_sources, ("SFT pool", "RL sources"))
    source = {"sources": infos}
    rl_source = {"sources": infos + rl_infos}
    written = {
        "sft": _write(result.sft_rows, out, "sft", cfg, source, result.funnel, None, None, False),
        "rl_problems": _write(rl_problems, out, "rl_problems", cfg, rl_source, result.funnel + rl_funnel,
                              None, None, False),
        "eval": _write([p for rows in eval_sets.values() for p in rows], out, "eval", cfg,
                       {"sources": eval_infos}, [], None, None, False),
    }
    metrics = {
        "funnel": funnel_table(result.funnel),
        "funnel_rl": funnel_table(rl_funnel),
        "rows": {k: m["rows"] for k, m in written.items()},
        "mixture_sft": _mixture(result.sft_rows, whitespace_token_count),
        "target_token_shares": dict(cfg.domain_token_shares),
        "difficulty_buckets_sft": dict(Counter(r.get("difficulty_bucket") for r in result.sft_rows)),
        "sources": infos,
        "rl_sources": rl_infos,
        "eval_sources": eval_infos,
    }
    reads = [cfg.sources_file, cfg.eval_sources_file] + ([cfg.rl_sources_file] if cfg.rl_sources_file else [])
    return metrics, reads
