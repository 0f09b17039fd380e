"""SFT and RL data curation of [P] §2.1-2.2 and §3.1 (Fig. 9) as pure steps over rows.

Rows are plain dicts (a list of dicts, converted to ``datasets`` only at the write boundary in
``data.manifests``). A *problem* row follows the task-world schema (``id, domain, family, difficulty,
prompt, answer`` + domain extras); a *trace* row is a problem row joined with one teacher rollout
(``response, rollout, teacher``), so one problem id appears once per rollout.

Every step returns ``(kept_rows, StepReport)``; nothing is dropped without a counted reason, and
``run_pipeline`` returns the funnel (the list of reports) so the notebook can show it.

Departures from the paper, all forced by scale: difficulty comes from the teacher's own pass rate over
k rollouts (the paper also uses metadata and an LLM classifier); science is verified by the letter
checker, not an LLM judge; the paper's "keep a few particularly hard incorrect traces" is not done.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from falcon_h1r_lib.rewards import NO_ANSWER, AnswerBook
from falcon_h1r_lib.rewards.format import quality_issues

DOMAINS = ("math", "code", "science", "other")  # == data.tasks.DOMAINS (a test pins it)
LEVELS = (1, 2, 3, 4, 5)

Row = dict[str, Any]


# --------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------


@dataclass
class StepReport:
    """What one step did: rows in, rows out, and every dropped row counted under a reason."""

    name: str
    n_in: int
    n_out: int
    dropped_by_reason: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # step-specific facts (malformed rows, shares)

    def __post_init__(self) -> None:
        lost = self.n_in - self.n_out
        counted = sum(self.dropped_by_reason.values())
        if lost != counted:
            raise AssertionError(f"step {self.name!r}: {lost} rows lost but {counted} counted by reason")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "n_in": self.n_in,
            "n_out": self.n_out,
            "dropped_by_reason": dict(self.dropped_by_reason),
            "details": self.details,
        }


def _report(name: str, n_in: int, kept: list, reasons: Counter, **details: Any) -> StepReport:
    return StepReport(name, n_in, len(kept), dict(sorted(reasons.items())), details)


def funnel_table(reports: Sequence[StepReport]) -> list[dict[str, Any]]:
    """One flat row per step (for a pandas table in the notebook)."""
    return [
        {
            "step": r.name,
            "in": r.n_in,
            "out": r.n_out,
            "dropped": r.n_in - r.n_out,
            **{f"drop:{k}": v for k, v in r.dropped_by_reason.items()},
        }
        for r in reports
    ]


# --------------------------------------------------------------------------------------------
# Text normalisation shared by dedup, decontamination and the SFT/RL split
# --------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\d+(?:\.\d+)?|[^\W\d_]+|[+\-*/=^<>()%]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def prompt_tokens(text: str) -> list[str]:
    """Lower-cased words, numbers and operator symbols; punctuation, LaTeX markup and spacing vanish."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\\", " ")
    return _TOKEN.findall(text)


def normalize_prompt(text: str) -> str:
    """The key of exact-match dedup/decontamination: survives re-spacing, case and punctuation edits."""
    return " ".join(prompt_tokens(text))


def number_signature(text: str) -> tuple[str, ...]:
    """Sorted multiset of the numbers in a prompt (leading zeros dropped): the operands of a template
    problem, so two prompts from one template with different operands never count as duplicates."""
    nums = []
    for tok in _NUMBER.findall(unicodedata.normalize("NFKC", text)):
        whole, _, frac = tok.partition(".")
        nums.append((whole.lstrip("0") or "0") + ("." + frac if frac else ""))
    return tuple(sorted(nums))


def shingles(text: str, n: int) -> set[str]:
    """Word n-gram shingles of the normalised prompt (the whole prompt if it is shorter than n)."""
    toks = prompt_tokens(text)
    if len(toks) < n:
        return {" ".join(toks)} if toks else set()
    return {" ".join(toks[i : i + n]) for i in range(len(toks) - n + 1)}


def jaccard(a: set, b: set) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


# --------------------------------------------------------------------------------------------
# MinHash (datasketch is not a dependency: this is the textbook construction, ~40 lines)
# --------------------------------------------------------------------------------------------

_P31 = (1 << 31) - 1  # prime modulus; a * h < 2^62 so uint64 never overflows


def _shingle_hash(s: str) -> int:
    return int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little") % _P31


class MinHasher:
    """Universal-hash MinHash: P(sig_a[i] == sig_b[i]) = Jaccard(a, b) for each of ``num_perm`` rows."""

    def __init__(self, num_perm: int = 64, seed: int = 0):
        if num_perm <= 0:
            raise ValueError(f"num_perm must be positive, got {num_perm}")
        rng = np.random.default_rng(seed)
        self.num_perm = num_perm
        self.a = rng.integers(1, _P31, size=num_perm, dtype=np.uint64)  # (P,)
        self.b = rng.integers(0, _P31, size=num_perm, dtype=np.uint64)  # (P,)

    def signature(self, items: Iterable[str]) -> np.ndarray:
        h = np.fromiter((_shingle_hash(s) for s in items), dtype=np.uint64)  # (S,)
        if h.size == 0:
            return np.full(self.num_perm, _P31, dtype=np.uint64)
        return ((self.a[:, None] * h[None, :] + self.b[:, None]) % _P31).min(axis=1)  # (P, S) -> (P,)

    @staticmethod
    def estimate(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
        return float(np.mean(sig_a == sig_b))


def lsh_band_keys(sig: np.ndarray, bands: int) -> list[tuple[int, bytes]]:
    """Banding: two signatures collide in some band with prob. 1 - (1 - J^r)^b (r = num_perm / bands)."""
    if len(sig) % bands:
        raise ValueError(f"num_perm {len(sig)} is not divisible by lsh_bands {bands}")
    r = len(sig) // bands
    return [(i, sig[i * r : (i + 1) * r].tobytes()) for i in range(bands)]


# --------------------------------------------------------------------------------------------
# 1. Schema validation
# --------------------------------------------------------------------------------------------


def _is_str(v: Any, nonempty: bool = False) -> bool:
    return isinstance(v, str) and (bool(v.strip()) or not nonempty)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def schema_errors(row: Any, kind: str = "problem") -> list[tuple[str, str]]:
    """``(field, why)`` for every schema violation of one row; empty when the row is well formed.

    ``difficulty`` is 1..5 for generated tasks and None for real data without a level (we never
    invent one; the pass-rate weighting step does not need it).
    """
    if kind not in ("problem", "trace"):
        raise ValueError(f"kind must be 'problem' or 'trace', got {kind!r}")
    if not isinstance(row, dict):
        return [("<row>", f"expected a dict, got {type(row).__name__}")]
    errs: list[tuple[str, str]] = []

    def need(name: str, ok: bool, why: str) -> None:
        if name not in row:
            errs.append((name, "missing"))
        elif not ok:
            errs.append((name, f"{why}, got {row[name]!r:.60}"))

    need("id", _is_str(row.get("id"), nonempty=True), "expected a non-empty string")
    need("domain", row.get("domain") in DOMAINS, f"expected one of {DOMAINS}")
    need("family", _is_str(row.get("family"), nonempty=True), "expected a non-empty string")
    d = row.get("difficulty")
    need("difficulty", d is None or (_is_int(d) and d in LEVELS), "expected an int in 1..5 or null")
    need("prompt", _is_str(row.get("prompt"), nonempty=True), "expected a non-empty string")
    need("answer", _is_str(row.get("answer")), "expected a string")
    dom = row.get("domain")
    if dom == "code":
        tests = row.get("tests")
        need("tests", isinstance(tests, list) and len(tests) > 0, "expected a non-empty list")
        ep = row.get("entry_point")
        need(
            "entry_point", ep is None or _is_str(ep, nonempty=True), "expected a name or null (stdin program)"
        )
    elif dom == "science":
        ch = row.get("choices")
        # real science traces may come without options (free-form questions): a mapping or list, maybe empty
        need(
            "choices",
            isinstance(ch, (dict, list)) and len(ch) != 1,
            "expected a list or mapping of >= 2 choices (or none)",
        )
    elif dom == "other":
        need("rules", isinstance(row.get("rules"), (dict, list)), "expected a list or mapping of rules")
    if kind == "trace":
        need("response", _is_str(row.get("response")), "expected a string")
        need("rollout", _is_int(row.get("rollout")) and row.get("rollout", -1) >= 0, "expected an int >= 0")
        need("teacher", _is_str(row.get("teacher"), nonempty=True), "expected a non-empty string")
    return errs


def validate_schema(
    rows: Sequence[Row], kind: str = "problem", max_listed: int = 50
) -> tuple[list[Row], StepReport]:
    """Drop malformed rows; the report names each by index and field (first ``max_listed`` listed)."""
    kept, reasons, malformed = [], Counter(), []
    for i, row in enumerate(rows):
        errs = schema_errors(row, kind)
        if errs:
            reasons[f"malformed:{errs[0][0]}"] += 1
            if len(malformed) < max_listed:
                rid = row.get("id") if isinstance(row, dict) else None
                malformed.append({"index": i, "id": rid, "errors": [f"{f}: {w}" for f, w in errs]})
        else:
            kept.append(row)
    return kept, _report(f"schema[{kind}]", len(rows), kept, reasons, malformed=malformed)


# --------------------------------------------------------------------------------------------
# 2. Quality filters ([P] §2.1)
# --------------------------------------------------------------------------------------------

def quality_reason(row: Row) -> str | None:
    """Why a trace fails the paper's quality filters, or None if it passes: the first issue the shared
    response reader finds (`rewards.format.quality_issues`), so SFT keeps exactly what RL would reward."""
    issues = quality_issues(row, row["response"])
    return issues[0] if issues else None


def quality_filter(rows: Sequence[Row]) -> tuple[list[Row], StepReport]:
    """Format violations, empty reasoning / answer, answer only inside the thought, no final ``\\boxed{}``
    (math), no stated choice (science), a final block that is not parsable Python (code)."""
    kept, reasons = [], Counter()
    for row in rows:
        why = quality_reason(row)
        if why:
            reasons[why] += 1
        else:
            kept.append(row)
    return kept, _report("quality", len(rows), kept, reasons)


# --------------------------------------------------------------------------------------------
# 3. Verification: only correct traces ([P] §2.1: math-verify, unit tests)
# --------------------------------------------------------------------------------------------


def _default_verify() -> Callable[[Row, str], bool | None]:
    from falcon_h1r_lib.rewards import verify  # same layer; imported late so data loads without it

    return verify


def verify_traces(
    rows: Sequence[Row], verify_fn: Callable[[Row, str], bool | None] | None = None
) -> tuple[list[Row], StepReport]:
    """Keep traces the domain verifier accepts; ``None`` (no verdict) is dropped and counted apart,
    unless the row carries the source's own boolean label ``source_correct`` (full-profile sources)."""
    if verify_fn is None:  # the shared verifier, batched: duplicates once, code in parallel
        from falcon_h1r_lib.rewards import verify_batch

        verdicts = verify_batch([(row, row["response"]) for row in rows])
    else:
        verdicts = [verify_fn(row, row["response"]) for row in rows]
    kept, reasons, n_source_label = [], Counter(), 0
    per_domain: dict[str, Counter] = defaultdict(Counter)
    for row, verdict in zip(rows, verdicts):
        if verdict is None and isinstance(row.get("source_correct"), bool):
            verdict = row["source_correct"]  # the source's own label where our verifier abstains ([P]: judge)
            n_source_label += 1
        if verdict is None:
            why = "no_verdict"
        elif verdict is True:
            why = None
        elif verdict is False:
            why = "incorrect"
        else:
            raise TypeError(
                f"verify returned {verdict!r} for row {row.get('id')!r}; expected True/False/None"
            )
        per_domain[row["domain"]][why or "correct"] += 1
        if why:
            reasons[why] += 1
        else:
            kept.append(row)
    return kept, _report(
        "verify",
        len(rows),
        kept,
        reasons,
        by_domain={d: dict(c) for d, c in sorted(per_domain.items())},
        decided_by_source_label=n_source_label,
    )


# --------------------------------------------------------------------------------------------
# 4. Difficulty-aware weighting ([P] §2.2) and 5. the per-problem rollout cap ([P] §2.2: n = 12)
# --------------------------------------------------------------------------------------------


def difficulty_weight(
    pass_rate: float,
    hard_max_pass_rate: float,
    easy_min_pass_rate: float,
    hard_weight_min: float,
    hard_weight_max: float,
    easy_weight: float,
) -> tuple[str, float]:
    """(bucket, weight): hard ramps linearly from ``hard_weight_max`` at pass rate 0 to ``hard_weight_min``
    at ``hard_max_pass_rate`` ([P]: x1.25-1.75); medium 1.0; easy ``easy_weight`` ([P]: x0.5)."""
    if not 0.0 <= pass_rate <= 1.0:
        raise ValueError(f"pass_rate must be in [0, 1], got {pass_rate}")
    if pass_rate <= hard_max_pass_rate:
        frac = pass_rate / hard_max_pass_rate if hard_max_pass_rate > 0 else 0.0
        return "hard", hard_weight_max - (hard_weight_max - hard_weight_min) * frac
    if pass_rate >= easy_min_pass_rate:
        return "easy", easy_weight
    return "medium", 1.0


def weight_by_difficulty(
    rows: Sequence[Row],
    n_rollouts: dict[str, int],
    hard_max_pass_rate: float = 0.25,
    easy_min_pass_rate: float = 0.875,
    hard_weight_min: float = 1.25,
    hard_weight_max: float = 1.75,
    easy_weight: float = 0.5,
    easy_policy: str = "downweight",
    min_rollouts: int = 1,
) -> tuple[list[Row], StepReport]:
    """Add ``pass_rate`` (correct / k teacher rollouts), ``difficulty_bucket`` and ``weight`` columns.

    ``rows`` are the verified-correct traces; ``n_rollouts[id]`` is k, the rollouts the teacher made for
    that problem, so pass rate = (rows of that id) / k. ``easy_policy``: "downweight" or "drop". With
    k < ``min_rollouts`` the pass rate (0/1 or 1/1 for single-trace sources) is not trusted: bucket
    "unrated", weight 1.0, never dropped as easy ([P] §2.2 rates difficulty over n = 12 rollouts).
    """
    if easy_policy not in ("downweight", "drop"):
        raise ValueError(f"easy_policy must be 'downweight' or 'drop', got {easy_policy!r}")
    if min_rollouts < 1:
        raise ValueError(f"min_rollouts must be >= 1, got {min_rollouts}")
    correct = Counter(r["id"] for r in rows)
    kept, reasons, buckets, unrated = [], Counter(), Counter(), set()
    for row in rows:
        k = n_rollouts.get(row["id"])
        if not k:
            raise KeyError(f"row {row['id']!r}: no rollout count in n_rollouts")
        p = correct[row["id"]] / k
        if k < min_rollouts:
            bucket, w = "unrated", 1.0
            unrated.add(row["id"])
        else:
            bucket, w = difficulty_weight(
                p, hard_max_pass_rate, easy_min_pass_rate, hard_weight_min, hard_weight_max, easy_weight
            )
        buckets[bucket] += 1
        if bucket == "easy" and easy_policy == "drop":
            reasons["easy"] += 1
            continue
        kept.append({**row, "pass_rate": p, "difficulty_bucket": bucket, "weight": float(w)})
    return kept, _report(
        "difficulty_weight", len(rows), kept, reasons, rows_by_bucket=dict(sorted(buckets.items())),
        problems_unrated=len(unrated), min_rollouts=min_rollouts,
    )


def cap_rollouts(rows: Sequence[Row], max_per_problem: int, seed: int = 0) -> tuple[list[Row], StepReport]:
    """Keep at most ``max_per_problem`` correct rollouts per problem (seeded choice, original order kept)."""
    if max_per_problem <= 0:
        raise ValueError(f"max_per_problem must be positive, got {max_per_problem}")
    by_id: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_id[row["id"]].append(i)
    rng = random.Random(f"cap_rollouts|{seed}")
    keep_idx: set[int] = set()
    for pid in sorted(by_id):
        idx = by_id[pid]
        keep_idx.update(idx if len(idx) <= max_per_problem else rng.sample(idx, max_per_problem))
    kept = [row for i, row in enumerate(rows) if i in keep_idx]
    return kept, _report(
        "cap_rollouts",
        len(rows),
        kept,
        Counter({"over_cap": len(rows) - len(kept)}) if len(rows) > len(kept) else Counter(),
    )


# --------------------------------------------------------------------------------------------
# 6. Exact and near-duplicate problems
# --------------------------------------------------------------------------------------------


def _first_rows(rows: Sequence[Row]) -> dict[str, Row]:
    """Problem id -> its first row (trace rows repeat the problem once per rollout)."""
    out: dict[str, Row] = {}
    for row in rows:
        out.setdefault(row["id"], row)
    return out


def _drop_ids(
    rows: Sequence[Row], drop: dict[str, str], name: str, **details: Any
) -> tuple[list[Row], StepReport]:
    kept, reasons = [], Counter()
    for row in rows:
        why = drop.get(row["id"])
        if why:
            reasons[why] += 1
        else:
            kept.append(row)
    return kept, _report(name, len(rows), kept, reasons, **details)


def dedup_exact(rows: Sequence[Row]) -> tuple[list[Row], StepReport]:
    """Drop problems whose normalised prompt equals an earlier problem's (all rows of that id)."""
    seen: dict[str, str] = {}
    drop: dict[str, str] = {}
    for pid, row in _first_rows(rows).items():
        key = normalize_prompt(row["prompt"])
        if key in seen:
            drop[pid] = "exact_duplicate"
        else:
            seen[key] = pid
    return _drop_ids(rows, drop, "dedup_exact", problems_dropped=len(drop))


def dedup_near(
    rows: Sequence[Row],
    threshold: float = 0.8,
    shingle_n: int = 3,
    method: str = "pairwise",
    require_same_numbers: bool = True,
    num_perm: int = 64,
    lsh_bands: int = 16,
    seed: int = 0,
    max_pairwise_block: int = 5000,
) -> tuple[list[Row], StepReport]:
    """Drop problems whose prompt shingles have Jaccard >= ``threshold`` with an earlier kept problem.

    ``require_same_numbers``: also require the same number signature, so template problems that differ
    only in their operands (the whole tiny world) are never merged. ``method``: "pairwise" compares exact
    Jaccard within blocks (the number signature, or everything), bounded by ``max_pairwise_block``;
    "lsh" finds candidates by MinHash banding and accepts on the MinHash estimate (full scale).
    """
    if method not in ("pairwise", "lsh"):
        raise ValueError(f"method must be 'pairwise' or 'lsh', got {method!r}")
    firsts = _first_rows(rows)
    drop: dict[str, str] = {}
    if method == "pairwise":
        blocks: dict[tuple, list[str]] = defaultdict(list)
        for pid, row in firsts.items():
            blocks[number_signature(row["prompt"]) if require_same_numbers else ()].append(pid)
        for key, pids in blocks.items():
            if len(pids) > max_pairwise_block:
                raise ValueError(
                    f"dedup_near: block {key!r:.40} has {len(pids)} problems > max_pairwise_block "
                    f"{max_pairwise_block}; use method='lsh'"
                )
            kept_sh: list[set[str]] = []
            for pid in pids:
                sh = shingles(firsts[pid]["prompt"], shingle_n)
                if any(jaccard(sh, other) >= threshold for other in kept_sh):
                    drop[pid] = "near_duplicate"
                else:
                    kept_sh.append(sh)
    else:
        hasher = MinHasher(num_perm, seed)
        buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)
        kept_sigs: list[tuple[np.ndarray, tuple]] = []
        for pid, row in firsts.items():
            sig = hasher.signature(shingles(row["prompt"], shingle_n))
            nums = number_signature(row["prompt"]) if require_same_numbers else ()
            keys = lsh_band_keys(sig, lsh_bands)
            cands = {j for key in keys for j in buckets.get(key, ())}
            if any(
                kept_sigs[j][1] == nums and MinHasher.estimate(sig, kept_sigs[j][0]) >= threshold
                for j in cands
            ):
                drop[pid] = "near_duplicate"
                continue
            kept_sigs.append((sig, nums))
            for key in keys:
                buckets[key].append(len(kept_sigs) - 1)
    return _drop_ids(rows, drop, "dedup_near", problems_dropped=len(drop), method=method)


# --------------------------------------------------------------------------------------------
# 7. Decontamination against every evaluation set ([P] §4.1: exact string match)
# --------------------------------------------------------------------------------------------


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
    for pid, row in _first_rows(rows).items():
        hit = contamination(row["prompt"], index, near_threshold)
        if hit:
            drop[pid] = f"contaminated:{hit[0]}"
            per_bench[hit[1]] += 1
    return _drop_ids(
        rows,
        drop,
        "decontaminate",
        problems_dropped=len(drop),
        by_benchmark=dict(sorted(per_bench.items())),
        eval_prompts={b: len(v) for b, v in eval_sets.items()},
        boilerplate_ngrams_ignored=index.n_boilerplate,
    )


# --------------------------------------------------------------------------------------------
# 8. Mixing to target domain token shares ([P] Fig. 3)
# --------------------------------------------------------------------------------------------


def whitespace_token_count(text: str) -> int:
    """Default token counter when no tokenizer is given: whitespace-separated pieces."""
    return len(text.split())


def row_tokens(row: Row, count_tokens: Callable[[str], int]) -> int:
    return count_tokens(row["prompt"]) + (count_tokens(row["response"]) if "response" in row else 0)


def mix_to_shares(
    rows: Sequence[Row],
    target_shares: dict[str, float],
    count_tokens: Callable[[str], int] = whitespace_token_count,
    seed: int = 0,
    max_total_tokens: int | None = None,
) -> tuple[list[Row], StepReport]:
    """Subsample rows so each domain's share of tokens approaches ``target_shares``.

    The largest total T with share_d * T <= pool_d for every domain is what the pool allows (the
    scarcest domain relative to its target binds); each domain then fills share_d * T from a seeded
    shuffle. A domain with a positive target but no rows is reported and the others renormalised.
    """
    unknown = set(target_shares) - set(DOMAINS)
    if unknown:
        raise ValueError(f"target_shares: unknown domain(s) {sorted(unknown)}")
    if any(v < 0 for v in target_shares.values()) or sum(target_shares.values()) <= 0:
        raise ValueError(f"target_shares must be non-negative with a positive sum, got {target_shares}")
    toks = [row_tokens(r, count_tokens) for r in rows]
    pool: Counter = Counter()
    for r, t in zip(rows, toks, strict=True):
        pool[r["domain"]] += t
    absent = sorted(d for d, s in target_shares.items() if s > 0 and pool[d] == 0)
    shares = {d: s for d, s in target_shares.items() if s > 0 and pool[d] > 0}
    z = sum(shares.values())
    shares = {d: s / z for d, s in shares.items()} if z else {}
    total = min((pool[d] / s for d, s in shares.items()), default=0.0)
    if max_total_tokens is not None:
        total = min(total, float(max_total_tokens))
    budget = {d: s * total for d, s in shares.items()}
    order = list(range(len(rows)))
    random.Random(f"mix_to_shares|{seed}").shuffle(order)
    taken, keep = Counter(), set()
    for i in order:  # greedy fill; rows that would overshoot are skipped so smaller ones can still fit
        d = rows[i]["domain"]
        if d in budget and taken[d] + toks[i] <= budget[d] + 1e-9:
            taken[d] += toks[i]
            keep.add(i)
    kept = [r for i, r in enumerate(rows) if i in keep]
    reasons = Counter(f"mixing:{rows[i]['domain']}" for i in range(len(rows)) if i not in keep)
    got = sum(taken.values())
    return kept, _report(
        "mix_to_shares",
        len(rows),
        kept,
        reasons,
        target_share={d: target_shares[d] for d in sorted(target_shares)},
        achieved_share={d: (taken[d] / got if got else 0.0) for d in sorted(target_shares)},
        tokens={d: int(taken[d]) for d in sorted(target_shares)},
        pool_tokens={d: int(pool[d]) for d in sorted(pool)},
        absent_domains=absent,
        binding_domain=min(shares, key=lambda d: pool[d] / shares[d]) if shares else None,
    )


# --------------------------------------------------------------------------------------------
# 9. SFT and RL problems disjoint ([P] §3.1: RL data deduplicated against SFT)
# --------------------------------------------------------------------------------------------


def split_sft_rl(
    rows: Sequence[Row], rl_fraction: float, rl_domains: Sequence[str] = ("math",), seed: int = 0
) -> tuple[list[Row], list[Row], StepReport]:
    """Assign whole problems (all rows sharing an id *or* a normalised prompt) to SFT or RL.

    Only ``rl_domains`` feed RL ([P] §3.4: the released model used math-only RL); of those, a seeded
    ``rl_fraction`` of the prompt groups go to RL. The report's n_out counts SFT rows + RL rows.
    """
    if not 0.0 <= rl_fraction <= 1.0:
        raise ValueError(f"rl_fraction must be in [0, 1], got {rl_fraction}")
    # the unit of assignment is the normalised prompt, so ids sharing a prompt land on the same side
    firsts = _first_rows(rows)
    group_of = {pid: normalize_prompt(row["prompt"]) for pid, row in firsts.items()}
    rl_groups = sorted({group_of[pid] for pid, r in firsts.items() if r["domain"] in rl_domains})
    rng = random.Random(f"split_sft_rl|{seed}")
    rng.shuffle(rl_groups)
    chosen = set(rl_groups[: round(rl_fraction * len(rl_groups))])
    sft = [r for r in rows if group_of[r["id"]] not in chosen]
    rl = [r for r in rows if group_of[r["id"]] in chosen]
    assert_disjoint(sft, rl)
    report = StepReport(
        "split_sft_rl",
        len(rows),
        len(sft) + len(rl),
        {},
        {
            "sft_rows": len(sft),
            "rl_rows": len(rl),
            "rl_problems": len({r["id"] for r in rl}),
            "sft_problems": len({r["id"] for r in sft}),
            "rl_domains": list(rl_domains),
        },
    )
    return sft, rl, report


def assert_disjoint(a: Sequence[Row], b: Sequence[Row], names: tuple[str, str] = ("SFT", "RL")) -> None:
    """Raise naming the first shared problem id or normalised prompt."""
    ids = {r["id"] for r in a}
    prompts = {normalize_prompt(r["prompt"]): r["id"] for r in a}
    for r in b:
        if r["id"] in ids:
            raise AssertionError(f"{names[0]} and {names[1]} share problem id {r['id']!r}")
        key = normalize_prompt(r["prompt"])
        if key in prompts:
            raise AssertionError(
                f"{names[0]} problem {prompts[key]!r} and {names[1]} problem {r['id']!r} share a prompt"
            )


def remove_overlap(
    rows: Sequence[Row], reference: Sequence[Row], name: str = "dedup_vs_sft"
) -> tuple[list[Row], StepReport]:
    """Drop rows whose id or normalised prompt occurs in ``reference`` (RL pool vs the SFT set)."""
    ids = {r["id"] for r in reference}
    prompts = {normalize_prompt(r["prompt"]) for r in reference}
    kept, reasons = [], Counter()
    for r in rows:
        if r["id"] in ids:
            reasons["overlap_id"] += 1
        elif normalize_prompt(r["prompt"]) in prompts:
            reasons["overlap_prompt"] += 1
        else:
            kept.append(r)
    return kept, _report(name, len(rows), kept, reasons)


# --------------------------------------------------------------------------------------------
# 10. RL prompt filter ([P] Fig. 9) from k SFT-model rollouts
# --------------------------------------------------------------------------------------------


def rl_filter_decision(
    outcomes: Sequence[bool],
    truncated: Sequence[bool],
    answers: Sequence[str | None],
    rng: random.Random,
    keep_fraction_all_truncated: float,
    keep_fraction_minority: float,
    domain: str = "math",
) -> tuple[str, str]:
    """("keep" | "discard", reason) for one prompt, given its k rollouts ([P] Fig. 9, k = 8).

    k/k correct -> discard (too easy); some correct -> keep; none correct: all truncated -> keep a
    small random subset; else majority answer frequency f >= k/2 -> discard (consistent error, likely a
    bad label), f < k/2 -> keep a small random subset. ``rng`` is drawn only in the two sampled branches.
    Answers are counted by value, grouped as votes are (``rewards.AnswerBook`` for ``domain``: "0.5" and
    "\\frac{1}{2}" are one answer); None or blank answers never count.
    """
    k = len(outcomes)
    if k == 0:
        raise ValueError("rl_filter_decision: no rollouts")
    if len(truncated) != k or len(answers) != k:
        raise ValueError(
            f"rl_filter_decision: {k} outcomes but {len(truncated)} truncated flags, {len(answers)} answers"
        )
    for name, frac in (
        ("keep_fraction_all_truncated", keep_fraction_all_truncated),
        ("keep_fraction_minority", keep_fraction_minority),
    ):
        if not 0.0 <= frac <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {frac}")
    n_correct = sum(bool(o) for o in outcomes)
    if n_correct == k:
        return "discard", "all_correct"
    if n_correct > 0:
        return "keep", "partial"
    if all(truncated):
        return (
            ("keep", "all_truncated_sampled")
            if rng.random() < keep_fraction_all_truncated
            else ("discard", "all_truncated")
        )
    book = AnswerBook(domain)
    votes = Counter(g for g in map(book.label, answers) if g != NO_ANSWER)
    f = votes.most_common(1)[0][1] if votes else 0
    if f >= k / 2:
        return "discard", "consistent_error"
    return (
        ("keep", "no_majority_sampled")
        if rng.random() < keep_fraction_minority
        else ("discard", "no_majority")
    )


def rl_filter(
    rows: Sequence[Row],
    rollouts: dict[str, dict[str, Sequence]],
    keep_fraction_all_truncated: float = 0.1,
    keep_fraction_minority: float = 0.1,
    seed: int = 0,
) -> tuple[list[Row], StepReport]:
    """Apply ``rl_filter_decision`` to every RL problem; ``rollouts[id]`` holds its ``outcomes``,
    ``truncated`` and ``answers`` lists. Kept rows get an ``rl_filter`` column with the reason."""
    rng = random.Random(f"rl_filter|{seed}")
    kept, reasons, kept_by = [], Counter(), Counter()
    for row in rows:
        r = rollouts.get(row["id"])
        if r is None:
            raise KeyError(f"rl_filter: no rollouts for problem {row['id']!r}")
        decision, why = rl_filter_decision(
            r["outcomes"],
            r["truncated"],
            r["answers"],
            rng,
            keep_fraction_all_truncated,
            keep_fraction_minority,
            row["domain"],
        )
        if decision == "keep":
            kept.append(
                {**row, "rl_filter": why, "sft_pass_rate": sum(map(bool, r["outcomes"])) / len(r["outcomes"])}
            )
            kept_by[why] += 1
        else:
            reasons[why] += 1
    return kept, _report("rl_filter", len(rows), kept, reasons, kept_by_reason=dict(sorted(kept_by.items())))


# --------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------


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
