"""The SFT and RL data curation pipeline of [P] §2.1-2.2 and §3.1: the steps, in order, over rows.

Rows are plain dicts (a list of dicts, converted to ``datasets`` only at the write boundary in
``data.manifests``). A *problem* row follows the task-world schema (``id, domain, family, difficulty,
prompt, answer`` + domain extras); a *trace* row is a problem row joined with one teacher rollout
(``response, rollout, teacher``), so one problem id appears once per rollout.

Every step returns ``(kept_rows, StepReport)`` (``data.funnel``); nothing is dropped without a counted
reason, and ``run_pipeline`` returns the funnel (the list of reports) so the notebook can show it. The
steps live in ``data.schema``, ``data.dedup``, ``data.decontamination``, ``data.sft_rl_split``,
``data.filters`` and ``data.mixing``; the Fig. 9 filter (``data.rl_filter``) runs later, with the SFT model.

Departures from the paper, all forced by scale: difficulty comes from the teacher's own pass rate over
k rollouts (the paper also uses metadata and an LLM classifier); science is verified by the letter
checker, not an LLM judge; the paper's "keep a few particularly hard incorrect traces" is not done.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from falcon_h1r_lib.data.decontamination import decontaminate
from falcon_h1r_lib.data.dedup import dedup_exact, dedup_near
from falcon_h1r_lib.data.filters import cap_rollouts, quality_filter, verify_traces, weight_by_difficulty
from falcon_h1r_lib.data.funnel import StepReport
from falcon_h1r_lib.data.mixing import mix_to_shares, whitespace_token_count
from falcon_h1r_lib.data.schema import Row, validate_schema
from falcon_h1r_lib.data.sft_rl_split import split_sft_rl


@dataclass
class CurationResult:
    sft_rows: list[Row]  # weighted traces, mixed to the token shares
    rl_problems: list[Row]  # disjoint from SFT; the Fig. 9 filter runs later with the SFT model
    funnel: list[StepReport]

    def funnel_dicts(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.funnel]


def join_traces(problems: Sequence[Row], traces: Sequence[Row]) -> list[Row]:
    """One trace row per rollout: the problem's fields plus the trace's (``id`` stays the problem id)."""
    by_id = {p["id"]: p for p in problems}
    out = []
    for t in traces:
        p = by_id.get(t["problem_id"])
        if p is None:
            raise KeyError(
                f"trace of problem {t['problem_id']!r} (rollout {t.get('rollout')}): no such problem"
            )
        out.append({**p, **{k: v for k, v in t.items() if k != "problem_id"}})
    return out


def curate_problems(
    problems: Sequence[Row], eval_sets: dict[str, Sequence[Row]], cfg: Any
) -> tuple[list[Row], list[Row], list[StepReport]]:
    """Problem-level steps: schema, exact and near dedup, decontamination, SFT/RL split."""
    funnel = []
    rows, rep = validate_schema(problems, "problem")
    funnel.append(rep)  # noqa: E702
    rows, rep = dedup_exact(rows)
    funnel.append(rep)  # noqa: E702
    rows, rep = dedup_near(
        rows,
        cfg.near_dup_threshold,
        cfg.shingle_n,
        cfg.near_dup_method,
        cfg.near_dup_require_same_numbers,
        cfg.minhash_num_perm,
        cfg.lsh_bands,
        cfg.seed,
    )
    funnel.append(rep)  # noqa: E702
    rows, rep = decontaminate(
        rows,
        eval_sets,
        cfg.decontam_ngram_n,
        cfg.shingle_n,
        cfg.decontam_boilerplate_frac,
        cfg.decontam_near_threshold,
    )
    funnel.append(rep)  # noqa: E702
    sft, rl, rep = split_sft_rl(rows, cfg.rl_fraction, cfg.rl_domains, cfg.seed)
    funnel.append(rep)  # noqa: E702
    return sft, rl, funnel


def curate_traces(
    traces: Sequence[Row],
    cfg: Any,
    verify_fn: Callable[[Row, str], bool | None] | None = None,
    count_tokens: Callable[[str], int] = whitespace_token_count,
) -> tuple[list[Row], list[StepReport]]:
    """Trace-level steps: schema, quality, verification, difficulty weight, rollout cap, token mixing."""
    funnel = []
    rows, rep = validate_schema(traces, "trace")
    funnel.append(rep)  # noqa: E702
    n_rollouts = Counter(r["id"] for r in rows)  # k per problem, before any trace is judged
    rows, rep = quality_filter(rows)
    funnel.append(rep)  # noqa: E702
    rows, rep = verify_traces(rows, verify_fn)
    funnel.append(rep)  # noqa: E702
    rows, rep = weight_by_difficulty(
        rows,
        n_rollouts,
        cfg.hard_max_pass_rate,
        cfg.easy_min_pass_rate,
        cfg.hard_weight_min,
        cfg.hard_weight_max,
        cfg.easy_weight,
        cfg.easy_policy,
        cfg.min_rollouts_for_weighting,
    )
    funnel.append(rep)  # noqa: E702
    rows, rep = cap_rollouts(rows, cfg.max_correct_per_problem, cfg.seed)
    funnel.append(rep)  # noqa: E702
    rows, rep = mix_to_shares(rows, cfg.domain_token_shares, count_tokens, cfg.seed, cfg.max_total_tokens)
    funnel.append(rep)
    return rows, funnel


def run_pipeline(
    problems: Sequence[Row],
    eval_sets: dict[str, Sequence[Row]],
    cfg: Any,
    teacher: Any = None,
    traces: Sequence[Row] | None = None,
    verify_fn: Callable[[Row, str], bool | None] | None = None,
    count_tokens: Callable[[str], int] = whitespace_token_count,
) -> CurationResult:
    """Problems -> (SFT traces, RL problems, funnel). Traces come from ``teacher.rollouts(problem, k)``
    (tiny) or are given (full: sources ship teacher traces; only those of SFT problems are kept)."""
    if (teacher is None) == (traces is None):
        raise ValueError("run_pipeline: give exactly one of teacher (tiny) or traces (full)")
    sft_problems, rl_problems, funnel = curate_problems(problems, eval_sets, cfg)
    if teacher is not None:
        raw = [t for p in sft_problems for t in teacher.rollouts(p, cfg.rollouts_per_problem)]
        trace_rows = join_traces(sft_problems, raw)
    else:
        keep = {p["id"] for p in sft_problems}
        trace_rows = [t for t in traces if isinstance(t, dict) and t.get("id") in keep]
    sft_rows, trace_funnel = curate_traces(trace_rows, cfg, verify_fn, count_tokens)
    return CurationResult(sft_rows, rl_problems, funnel + trace_funnel)
