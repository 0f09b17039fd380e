"""Which generated problems are training data and which are held-out evaluation (tiny profile).

Training and evaluation draw the task generator with seeds from disjoint ranges, defined here once so
curation (decontamination) and evaluation use the very same held-out problems. Disjoint seeds do not
guarantee disjoint problems (small operand ranges repeat), which is why curation still decontaminates.
"""

from __future__ import annotations

TINY_EVAL_SEED_BASE = 1_000_000_000  # eval seeds are >= this; training seeds must stay below it
TINY_EVAL_BENCHMARKS = {
    "math": "tiny-math",
    "code": "tiny-code",
    "science": "tiny-science",
    "other": "tiny-other",
}


def train_seed(seed: int) -> int:
    """Check a training seed lies below the evaluation range and return it."""
    if not 0 <= seed < TINY_EVAL_SEED_BASE:
        raise ValueError(
            f"training seed {seed} must be in [0, {TINY_EVAL_SEED_BASE}) (eval seeds live above)"
        )
    return seed


def tiny_train_problems(domain: str, n: int, seed: int, difficulty: int | None = None) -> list[dict]:
    """``n`` training problems of ``domain`` from a training seed."""
    from falcon_h1r_lib.data import tasks

    return tasks.generate(domain, n, train_seed(seed), difficulty)


def tiny_eval_problems(
    domain: str, n: int, seed_base: int = TINY_EVAL_SEED_BASE, difficulty: int | None = None
) -> list[dict]:
    """``n`` held-out problems of ``domain`` (duplicates by normalised prompt removed, order kept).

    Seed = ``seed_base`` (>= TINY_EVAL_SEED_BASE); asking for a larger ``n`` extends the same list.
    """
    from falcon_h1r_lib.data import tasks
    from falcon_h1r_lib.data.text import normalize_prompt

    if seed_base < TINY_EVAL_SEED_BASE:
        raise ValueError(f"eval seed_base {seed_base} must be >= TINY_EVAL_SEED_BASE {TINY_EVAL_SEED_BASE}")
    out, seen, m = [], set(), n
    while len(out) < n:  # generate() is prefix-stable, so draw more until n distinct prompts exist
        out, seen = [], set()
        for p in tasks.generate(domain, m, seed_base, difficulty):
            key = normalize_prompt(p["prompt"])
            if key not in seen:
                seen.add(key)
                out.append(p)
        if m > 20 * max(n, 1):
            raise ValueError(f"tiny_eval_problems: only {len(out)} distinct {domain} prompts among {m} drawn")
        m = m + max(n - len(out), 1) * 2
    return out[:n]


def tiny_eval_sets(n_per_domain: int, seed_base: int = TINY_EVAL_SEED_BASE) -> dict[str, list[dict]]:
    """The tiny held-out benchmarks, one per domain: ``{"tiny-math": [...], ...}``."""
    return {name: tiny_eval_problems(d, n_per_domain, seed_base) for d, name in TINY_EVAL_BENCHMARKS.items()}
