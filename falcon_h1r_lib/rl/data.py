"""RL prompts ([P] §3.1, Fig. 9): a pool disjoint from SFT and from evaluation, filtered by the SFT model.

Pool = notebook 02's held-out ``rl_problems`` of the chosen domains + freshly generated training-seed
problems (tiny), exact-deduplicated, decontaminated against the held-out benchmarks, and deduplicated
against the SFT set (ids and normalised prompts), checked with ``assert_disjoint``. Filter = ``k``
rollouts of the SFT model per problem (paper: 8, temperature 0.6, top-p 0.95) through
``data.rl_filter``: drop 8/8 (too easy) and consistent errors, keep partial successes, sample the rest.
The kept problems' SFT pass rates give the Fig. 5 difficulty histogram.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from falcon_h1r_lib import stages
from falcon_h1r_lib.configs import CurationConfig, RLStageConfig
from falcon_h1r_lib.data import splits
from falcon_h1r_lib.data.decontamination import decontaminate
from falcon_h1r_lib.data.dedup import dedup_exact
from falcon_h1r_lib.data.funnel import StepReport, funnel_table
from falcon_h1r_lib.data.rl_filter import rl_filter
from falcon_h1r_lib.data.sft_rl_split import assert_disjoint, remove_overlap
from falcon_h1r_lib.rl.rewards import PROBLEM_COLUMN

FILTER_FILE = stages.stage("04_rl").outputs["filter"]  # one row per pool problem: its k outcomes and the decision



# The fields of notebook 02's recorded config that ``build_pool`` reads (tiny: the held-out sets it decontaminates
# against and how): what RL's fingerprint takes from that config, so other 02 settings do not retrain RL unless
# they change 02's files (which the fingerprint follows by content).
POOL_FIELDS_FROM_02 = ("profile", "eval_problems_per_domain", "decontam_ngram_n", "shingle_n",
                       "decontam_boilerplate_frac", "decontam_near_threshold")


def build_pool(cfg: RLStageConfig, cfg02: CurationConfig, rl_rows: Sequence[dict], sft_rows: Sequence[dict],
               ) -> tuple[list[dict], list[dict[str, Any]]]:
    """(pool problems, funnel rows). Disjoint from SFT and decontaminated against the tiny benchmarks."""
    funnel: list[StepReport] = []
    pool = [r for r in rl_rows if r["domain"] in cfg.domains]
    funnel.append(StepReport("rl_problems_of_02", len(rl_rows), len(pool),
                                      {"other_domain": len(rl_rows) - len(pool)} if len(rl_rows) > len(pool) else {},
                                      {"domains": list(cfg.domains)}))
    if cfg.profile == "tiny" and cfg.extra_problems_per_domain:
        extra = [p for d in cfg.domains for p in splits.tiny_train_problems(
            d, cfg.extra_problems_per_domain, splits.train_seed(cfg.extra_problems_seed))]
        pool = pool + extra
        funnel.append(StepReport("plus_generated", len(pool), len(pool), {},
                                          {"seed": cfg.extra_problems_seed, "generated": len(extra)}))
    pool, rep = dedup_exact(pool)
    funnel.append(rep)
    if cfg.profile == "tiny":
        eval_sets = splits.tiny_eval_sets(cfg02.eval_problems_per_domain)
        pool, rep = decontaminate(pool, eval_sets, cfg02.decontam_ngram_n, cfg02.shingle_n,
                                           cfg02.decontam_boilerplate_frac, cfg02.decontam_near_threshold)
        funnel.append(rep)
    pool, rep = remove_overlap(pool, sft_rows, "dedup_vs_sft")
    funnel.append(rep)
    assert_disjoint(sft_rows, pool)
    if cfg.pool_max_difficulty is not None:
        pool, rep = cap_difficulty(pool, cfg.pool_max_difficulty)
        funnel.append(rep)
    if cfg.filter_max_problems is not None and len(pool) > cfg.filter_max_problems:
        capped = cap_per_domain(pool, cfg.filter_max_problems, cfg.domains, cfg.seed)
        funnel.append(StepReport("cap_filter_budget", len(pool), len(capped),
                                          {"over_budget": len(pool) - len(capped)}, {}))
        pool = capped
    return pool, funnel_table(funnel)


def cap_difficulty(pool: Sequence[dict], max_level: int) -> tuple[list[dict], StepReport]:
    """Problems up to ``max_level``: a tiny-profile saving. The tiny SFT model solves ~1% of levels 4-5, so
    nearly all of them come back 0/k from the Fig. 9 filter; sampling them would cost most of its time."""
    for i, p in enumerate(pool):
        if not isinstance(p.get("difficulty"), numbers.Integral) or isinstance(p.get("difficulty"), bool):
            raise ValueError(f"RL pool row {i} ({p.get('id')!r}): field 'difficulty' must be an int level to apply "
                             f"pool_max_difficulty, got {p.get('difficulty')!r}")
    kept = [p for p in pool if p["difficulty"] <= max_level]
    return kept, StepReport("cap_difficulty", len(pool), len(kept),
                                     {"above_level": len(pool) - len(kept)} if len(kept) < len(pool) else {},
                                     {"max_level": max_level})


def cap_per_domain(pool: Sequence[dict], cap: int, domains: Sequence[str], seed: int) -> list[dict]:
    """A seeded subset of at most ``cap`` problems, split evenly over ``domains`` (mixed-domain RL, [P] Table 3);
    a domain with fewer problems than its share leaves the rest to the others. Pool order is kept."""
    rng = random.Random(f"rl_pool|{seed}")
    by_domain = {d: [i for i, p in enumerate(pool) if p["domain"] == d] for d in domains}
    for idx in by_domain.values():
        rng.shuffle(idx)
    chosen: list[int] = []
    left = cap
    for n_left, d in enumerate(sorted(by_domain, key=lambda d: len(by_domain[d])), start=0):
        share = left // (len(by_domain) - n_left)
        take = by_domain[d][:share]
        chosen += take
        left -= len(take)
    return [pool[i] for i in sorted(chosen)]


def filter_key(cfg: RLStageConfig, pool: Sequence[dict], model_fingerprint: str) -> str:
    """What the filter's outcome depends on: the SFT weights, the pool, the sampling and the rules."""
    blob = json.dumps({"model": model_fingerprint, "ids": [p["id"] for p in pool], "prompts": [p["prompt"] for p in pool],
                       "k": cfg.filter_rollouts, "t": cfg.filter_temperature, "top_p": cfg.filter_top_p,
                       "max_new": cfg.filter_max_new_tokens, "system": cfg.system_prompt, "seed": cfg.seed},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def rollout_outcomes(pool: Sequence[dict], backend, tokenizer, system_prompt: str, cfg: RLStageConfig,
                     ) -> dict[str, dict[str, list]]:
    """``{id: {"outcomes", "truncated", "answers"}}`` from ``filter_rollouts`` samples of the SFT model."""
    from falcon_h1r_lib.generation import SamplingConfig, chat_request
    from falcon_h1r_lib.rewards import extract_answer, verify_batch

    requests = [chat_request(p["id"], p["prompt"], tokenizer, system_prompt) for p in pool]
    sampling = SamplingConfig(n=cfg.filter_rollouts, temperature=cfg.filter_temperature, top_p=cfg.filter_top_p,
                              max_new_tokens=cfg.filter_max_new_tokens, seed=cfg.seed, logprobs_topk=0)
    traces = backend.generate(requests, sampling)
    by_id = {p["id"]: p for p in pool}
    verdicts = verify_batch([(by_id[t.problem_id], t.completion) for t in traces])
    out: dict[str, dict[str, list]] = {p["id"]: {"outcomes": [], "truncated": [], "answers": []} for p in pool}
    for t, v in zip(traces, verdicts):
        r = out[t.problem_id]
        r["outcomes"].append(v is True)  # None (no verdict) is not a success; counted in no_verdict below
        r["truncated"].append(t.finish_reason == "length")
        r["answers"].append(extract_answer(t.completion, by_id[t.problem_id]["domain"]))
        r.setdefault("no_verdict", 0)
        r["no_verdict"] += v is None
    return out


def outcomes_table(pool: Sequence[dict], outcomes: Mapping[str, Mapping[str, list]]) -> pd.DataFrame:
    """One row per problem: id, domain, family, difficulty, k, correct, truncated, no_verdict, answers."""
    rows = []
    for p in pool:
        o = outcomes[p["id"]]
        rows.append({"id": p["id"], "domain": p["domain"], "family": p.get("family"), "difficulty": p.get("difficulty"),
                     "k": len(o["outcomes"]), "correct": int(sum(o["outcomes"])), "truncated": int(sum(o["truncated"])),
                     "no_verdict": int(o.get("no_verdict", 0)),
                     "outcomes": [bool(x) for x in o["outcomes"]], "truncated_flags": [bool(x) for x in o["truncated"]],
                     "answers": [a if a is not None else "" for a in o["answers"]]})
    return pd.DataFrame(rows)


def table_outcomes(df: pd.DataFrame) -> dict[str, dict[str, list]]:
    """Inverse of ``outcomes_table`` (empty answers back to None)."""
    return {r.id: {"outcomes": list(map(bool, r.outcomes)), "truncated": list(map(bool, r.truncated_flags)),
                   "answers": [a or None for a in r.answers], "no_verdict": int(r.no_verdict)}
            for r in df.itertuples()}


def apply_filter(pool: Sequence[dict], outcomes: Mapping[str, Mapping[str, list]], cfg: RLStageConfig,
                 ) -> tuple[list[dict], dict[str, Any]]:
    """``data.rl_filter`` with the config's sampled-subset fractions; returns (kept rows, report dict)."""
    kept, rep = rl_filter(pool, {k: dict(v) for k, v in outcomes.items()}, cfg.keep_fraction_all_truncated,
                                   cfg.keep_fraction_minority, seed=cfg.seed)
    return kept, rep.to_dict()


def pass_rate_histogram(rows: Sequence[Mapping[str, Any]], k: int, key: str = "sft_pass_rate") -> dict[str, int]:
    """Fig. 5 analog: problems per SFT pass rate c/k, c = 0..k (as "c/k" keys, in order)."""
    counts = Counter(round(float(r[key]) * k) for r in rows)
    return {f"{c}/{k}": int(counts.get(c, 0)) for c in range(k + 1)}


def to_training_rows(problems: Sequence[dict], system_prompt: str) -> list[dict[str, Any]]:
    """TRL conversational prompt rows: system + user turn (as in SFT and evaluation) and the problem JSON."""
    return [{"prompt": [{"role": "system", "content": system_prompt}, {"role": "user", "content": p["prompt"]}],
             PROBLEM_COLUMN: json.dumps(p, sort_keys=True, default=str), "id": p["id"]} for p in problems]


__all__ = ["FILTER_FILE", "apply_filter", "build_pool", "filter_key", "outcomes_table",
           "pass_rate_histogram", "rollout_outcomes", "table_outcomes", "to_training_rows"]
