"""Procedurally generated, verifiable reasoning tasks in the paper's four domains ([P] §2.1, Fig. 3).

The tiny profile stands in for the paper's curated math / code / science / "other" mixture with problems
whose ground truth is known by construction, at difficulty levels 1..5, so SFT, RL and voting have a
range where a 0.5M-parameter model is neither perfect nor hopeless (reference tiny_feasibility.md:
2-4 digit addition is learned to ~100%, 2x1 multiplication to ~50%). Every problem carries a worked
solution (``solution_steps``) that the programmatic teacher (``data.teacher``) renders as a trace.

Problem schema (one JSON-serialisable dict; curation and manifests rely on these names):
    id, domain, family, difficulty (1..5), prompt, answer, solution_steps, params
    code    -> tests (assert statements), entry_point
    science -> choices {letter: text}
    other   -> rules (machine-checkable constraints, see rewards.instructions)
``answer`` is canonical: math "42" / "-3" / "3/4"; science a letter; code the reference solution;
other a compliant text. ``params`` is the family's own description, read back by the teacher.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

DOMAINS = ("math", "code", "science", "other")
LEVELS = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class Family:
    """One task template. ``solve(params, fault)`` returns (steps, final); a non-None ``fault`` RNG makes
    it commit one realistic mistake and carry on honestly from it, as a teacher's slip would."""

    domain: str
    name: str
    make: Callable[[random.Random, int], dict]  # (rng, level) -> params (JSON-able)
    pose: Callable[[dict], dict]  # params -> {"prompt", "answer", domain extras}
    solve: Callable[[dict, random.Random | None], tuple[list[str], str]]
    check: Callable[[dict, str], str]  # params, final -> a self-check line re-deriving the result
    plan: str  # the one-line plan the verbose teacher states first


def _registry() -> dict[str, dict[str, Family]]:
    from . import arithmetic, instructions, programming, science

    reg: dict[str, dict[str, Family]] = {d: {} for d in DOMAINS}
    for module in (arithmetic, programming, science, instructions):
        for fam in module.FAMILIES:
            reg[fam.domain][fam.name] = fam
    return reg


FAMILIES: dict[str, dict[str, Family]] = _registry()


def family_of(problem: dict) -> Family:
    """The family that generated ``problem`` (the teacher re-solves from its ``params``)."""
    try:
        return FAMILIES[problem["domain"]][problem["family"]]
    except KeyError as e:
        raise ValueError(
            f"problem {problem.get('id')!r}: unknown domain/family "
            f"{problem.get('domain')!r}/{problem.get('family')!r}"
        ) from e


def problem_id(domain: str, family: str, seed: int, index: int, difficulty: int | None = None) -> str:
    """Stable id, e.g. "math-add-s7-000012" (a fixed level adds "d3": "math-add-s7d3-000012")."""
    level = "" if difficulty is None else f"d{difficulty}"
    return f"{domain}-{family}-s{seed}{level}-{index:06d}"


def generate(
    domain: str,
    n: int,
    seed: int,
    difficulty: int | None = None,
    families: Sequence[str] | None = None,
) -> list[dict]:
    """``n`` problems of ``domain``; families drawn uniformly, levels uniformly unless ``difficulty``.

    Problem ``i`` depends only on (domain, seed, difficulty, families, i), so ``generate(.., n=10)`` is a
    prefix of ``generate(.., n=20)`` and the id names the content.
    """
    if domain not in DOMAINS:
        raise ValueError(f"domain {domain!r} not in {DOMAINS}")
    if difficulty is not None and difficulty not in LEVELS:
        raise ValueError(f"difficulty {difficulty!r} not in {LEVELS}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    names = sorted(FAMILIES[domain]) if families is None else list(families)
    for name in names:
        if name not in FAMILIES[domain]:
            raise ValueError(f"family {name!r} not in domain {domain!r}: {sorted(FAMILIES[domain])}")
    if not names:
        raise ValueError("families must not be empty")
    out = []
    for i in range(n):
        rng = random.Random(f"{domain}|{seed}|{difficulty}|{','.join(names)}|{i}")
        fam = FAMILIES[domain][rng.choice(names)]
        level = difficulty if difficulty is not None else rng.choice(LEVELS)
        params = fam.make(rng, level)
        steps, final = fam.solve(params, None)
        posed = fam.pose(params)
        problem = {
            "id": problem_id(domain, fam.name, seed, i, difficulty),
            "domain": domain,
            "family": fam.name,
            "difficulty": level,
            **posed,
            "solution_steps": steps,
            "params": params,
        }
        if problem["answer"] != final:  # construction and worked solution must agree
            raise AssertionError(f"{problem['id']}: answer {problem['answer']!r} != worked solution {final!r}")
        out.append(problem)
    return out
