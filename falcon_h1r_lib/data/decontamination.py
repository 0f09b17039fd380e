"""Decontamination against every evaluation set ([P] §4.1: exact string match, here also n-gram, contained
and near matches): an index of the benchmarks' prompts and the step that drops training problems hitting it.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from falcon_h1r_lib.data.funnel import StepReport, drop_ids
from falcon_h1r_lib.data.schema import Row, first_rows
from falcon_h1r_lib.data.text import jaccard, number_signature, prompt_tokens, shingles


def _ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


@dataclass
class EvalIndex:
    """What training prompts are checked against: per benchmark, normalised prompts, informative n-grams
    with the numbers of the eval prompts that hold them, and (number signature -> shingles)."""

    ngram_n: int
    shingle_n: int
    exact: dict[str, str]  # normalised prompt -> benchmark
    ngrams: dict[tuple[str, ...], list[tuple[str, Counter]]]  # n-gram -> [(benchmark, eval prompt's numbers)]
    by_numbers: dict[
        tuple[str, ...], list[tuple[str, str, set[str]]]
    ]  # signature -> [(bench, norm, shingles)]
    n_boilerplate: int  # n-grams ignored because too many eval prompts share them


def build_eval_index(
    eval_sets: dict[str, Sequence[Row]], ngram_n: int = 13, shingle_n: int = 3, boilerplate_frac: float = 0.05
) -> EvalIndex:
    """Index every benchmark's prompts. An n-gram found in at least ``boilerplate_frac`` of one
    benchmark's prompts (and in at least 2) is template/instruction text, not evidence of a leak."""
    exact, by_numbers = {}, defaultdict(list)
    owners: dict[tuple[str, ...], list[tuple[str, Counter]]] = defaultdict(list)
    boilerplate: set[tuple[str, ...]] = set()
    for bench, problems in eval_sets.items():
        doc_freq: Counter = Counter()
        for p in problems:
            toks = prompt_tokens(p["prompt"])
            exact.setdefault(" ".join(toks), bench)
            nums = Counter(number_signature(p["prompt"]))
            grams = _ngrams(toks, ngram_n)
            doc_freq.update(grams)
            for g in grams:
                owners[g].append((bench, nums))
            by_numbers[number_signature(p["prompt"])].append(
                (bench, " ".join(toks), shingles(p["prompt"], shingle_n))
            )
        limit = max(2, math.ceil(boilerplate_frac * len(problems)))
        boilerplate.update(g for g, c in doc_freq.items() if c >= limit)
    ngrams = {g: o for g, o in owners.items() if g not in boilerplate}
    return EvalIndex(ngram_n, shingle_n, exact, ngrams, dict(by_numbers), len(owners) - len(ngrams))


def contamination(prompt: str, index: EvalIndex, near_threshold: float | None) -> tuple[str, str] | None:
    """(reason, benchmark) if ``prompt`` leaks an eval problem: exact normalised match; an informative
    shared n-gram *and* every number of that eval prompt present (template worlds share n-grams across
    different operands; a real leak carries its numbers); the same numbers with the whole eval prompt
    inside (a copy with text around it); or, with ``near_threshold``, the same numbers and shingle
    Jaccard >= threshold (a reworded copy)."""
    toks = prompt_tokens(prompt)
    key = " ".join(toks)
    if key in index.exact:
        return "exact", index.exact[key]
    nums = Counter(number_signature(prompt))
    for g in _ngrams(toks, index.ngram_n):
        for bench, eval_nums in index.ngrams.get(g, ()):
            if not eval_nums - nums:  # multiset containment
                return "ngram", bench
    same_numbers = index.by_numbers.get(number_signature(prompt), ())
    padded = f" {key} "
    for bench, eval_key, _ in same_numbers:
        if f" {eval_key} " in padded:
            return "contained", bench
    if near_threshold is not None:
        sh = shingles(prompt, index.shingle_n)
        for bench, _, other in same_numbers:
            if jaccard(sh, other) >= near_threshold:
                return "near", bench
    return None


def decontaminate(
    rows: Sequence[Row],
    eval_sets: dict[str, Sequence[Row]],
    ngram_n: int = 13,
    shingle_n: int = 3,
    boilerplate_frac: float = 0.05,
    near_threshold: float | None = None,
) -> tuple[list[Row], StepReport]:
    """Drop every problem that matches any evaluation set; the report counts hits per benchmark."""
    if not eval_sets:
        raise ValueError("decontaminate: no evaluation sets given; decontamination needs something to check")
    index = build_eval_index(eval_sets, ngram_n, shingle_n, boilerplate_frac)
    drop: dict[str, str] = {}
    per_bench: Counter = Counter()
    for pid, row in first_rows(rows).items():
        hit = contamination(row["prompt"], index, near_threshold)
        if hit:
            drop[pid] = f"contaminated:{hit[0]}"
            per_bench[hit[1]] += 1
    return drop_ids(
        rows,
        drop,
        "decontaminate",
        problems_dropped=len(drop),
        by_benchmark=dict(sorted(per_bench.items())),
        eval_prompts={b: len(v) for b, v in eval_sets.items()},
        boilerplate_ngrams_ignored=index.n_boilerplate,
    )
