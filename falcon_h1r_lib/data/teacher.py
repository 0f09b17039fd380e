"""A programmatic teacher: renders a problem's worked solution as a Falcon-H1R trace
``<think>\\n...\\n</think>\\n\\nanswer`` ([P] §8), with the defects real teacher traces have.

It stands in for the unnamed teacher models of [P] §2.1:
- lengths vary like [P] Fig. 2 (roughly log-normal per domain): a per-trace verbosity drawn log-normally
  switches on a restatement, a plan, detours ("wait, ...": a slip noticed and redone) and a self-check
  that re-derives the result; the core grows with difficulty; ``max_chars`` keeps tiny traces short;
- styles differ in phrasing, so the single- vs multi-teacher ablation ([P] §2.2) has two teachers;
- ``error_rate`` injects content errors that reach the final answer (a wrong digit carried on, a wrong
  letter, a buggy function, a broken rule), ``format_error_rate`` the defects of the quality filters
  (empty reasoning, no ``\\boxed{}``, code that does not parse, no answer). Each trace records what was
  injected; curation must find these with the verifiers, never by reading the record.
Each rollout is seeded by (style, seed, problem id, rollout index): reproducible in any order.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from .tasks import family_of


@dataclass(frozen=True)
class Style:
    """How one teacher writes: the same reasoning, different surface (and different verbosity)."""

    name: str
    sigma: float  # log-normal spread of the per-trace verbosity
    restate_prob: float
    plan_prob: float
    restate: str  # "{prompt}"
    plan: str  # "{plan}"
    step: str  # "{i}" (1-based), "{step}"
    detour: str  # "{bad}", "{step}": a slip, noticed and redone
    detour_plain: str  # a detour for steps without digits: a second look
    check_prefix: str  # replaces the family's "check:"
    conclude: str | None  # "{final}"
    math_answer: str  # "{box}"
    code_answer: str  # "{block}"


STYLES = {
    "concise": Style(
        "concise", sigma=0.45, restate_prob=0.15, plan_prob=0.0, restate="{prompt}", plan="",
        step="{step}", detour="{bad}\nwait, {step}", detour_plain="recheck", check_prefix="check:",
        conclude=None, math_answer="{box}", code_answer="{block}",
    ),
    "verbose": Style(
        "verbose", sigma=0.6, restate_prob=0.6, plan_prob=0.7, restate="task: {prompt}", plan="plan: {plan}",
        step="{i}) {step}", detour="{i}) {bad}\nhmm, that is wrong. again: {step}",
        detour_plain="let me read the task again", check_prefix="to verify:", conclude="so the answer is {final}",
        math_answer="the answer is {box}", code_answer="here is the function:\n{block}",
    ),
}

CONTENT_ERRORS = {"math": "wrong_step", "code": "bug", "science": "wrong_letter", "other": "rule_broken"}
FORMAT_ERRORS = {
    "math": ("empty_reasoning", "missing_boxed", "empty_answer"),
    "code": ("empty_reasoning", "syntax_error", "empty_answer"),
    "science": ("empty_reasoning", "missing_boxed", "empty_answer"),
    "other": ("empty_reasoning", "empty_answer"),
}
_NUMBER = re.compile(r"\d+")


def _slip(step: str, rng: random.Random) -> str | None:
    """The step with one digit of a result changed (the first number after the last "=", else the last
    number): what a detour writes before correcting itself."""
    eq = step.rfind("=")
    m = _NUMBER.search(step, eq + 1) if eq != -1 else None
    if m is None:
        found = list(_NUMBER.finditer(step))
        if not found:
            return None
        m = found[-1]
    i = rng.randrange(m.start(), m.end())
    d = rng.choice([c for c in "0123456789" if c != step[i]])
    return step[:i] + d + step[i + 1 :]


class Teacher:
    """``Teacher("concise", error_rate=0.1).rollouts(problem, k)`` -> k trace dicts."""

    def __init__(
        self,
        style: str = "concise",
        error_rate: float = 0.1,
        self_check_prob: float = 0.3,
        seed: int = 0,
        format_error_rate: float = 0.0,
        detour_prob: float = 0.1,
        max_chars: int = 600,
        error_slope: float = 0.0,
    ):
        if style not in STYLES:
            raise ValueError(f"style {style!r} not in {sorted(STYLES)}")
        for name, p in (("error_rate", error_rate), ("self_check_prob", self_check_prob),
                        ("format_error_rate", format_error_rate), ("detour_prob", detour_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        self.style = STYLES[style]
        self.error_rate = error_rate
        self.self_check_prob = self_check_prob
        self.seed = seed
        self.format_error_rate = format_error_rate
        self.detour_prob = detour_prob
        self.max_chars = max_chars
        if error_slope < 0:
            raise ValueError(f"error_slope must be >= 0, got {error_slope}")
        self.error_slope = error_slope

    @property
    def name(self) -> str:
        return self.style.name

    def error_rate_at(self, difficulty: int | None) -> float:
        """Slip probability at a level: ``error_rate * (1 + error_slope * (level - 3))``, clipped to [0, 1].

        Real teachers fail more on hard problems; a positive slope gives pass-rate difficulty its meaning.
        """
        level = 3 if difficulty is None else difficulty
        return min(1.0, max(0.0, self.error_rate * (1.0 + self.error_slope * (level - 3))))

    def rollouts(self, problem: dict, k: int) -> list[dict]:
        return [self.rollout(problem, r) for r in range(k)]

    def traces(self, problems: list[dict], k: int) -> list[dict]:
        """``k`` rollouts for each problem, problem-major."""
        return [t for p in problems for t in self.rollouts(p, k)]

    def rollout(self, problem: dict, index: int) -> dict:
        rng = random.Random(f"teacher|{self.style.name}|{self.seed}|{problem['id']}|{index}")
        fam = family_of(problem)
        verbosity = rng.lognormvariate(0.0, self.style.sigma)  # [P] Fig. 2: log-normal lengths
        kind = None
        steps, final = list(problem["solution_steps"]), problem["answer"]
        if rng.random() < self.error_rate_at(problem.get("difficulty")):
            fault = random.Random(rng.getrandbits(64))
            for _ in range(10):  # a slip can cancel out (x*0); try another
                bad_steps, bad_final = fam.solve(problem["params"], fault)
                if bad_final != problem["answer"]:
                    steps, final, kind = bad_steps, bad_final, CONTENT_ERRORS[problem["domain"]]
                    break
        fmt_defect = None
        if rng.random() < self.format_error_rate:
            fmt_defect = rng.choice(FORMAT_ERRORS[problem["domain"]])
        extras = {
            "restate": rng.random() < min(0.95, self.style.restate_prob * verbosity),
            "plan": rng.random() < min(0.95, self.style.plan_prob * verbosity),
            "check": kind is None and rng.random() < min(0.95, self.self_check_prob * verbosity),
            "detours": [i for i in range(len(steps)) if rng.random() < min(0.5, self.detour_prob * verbosity)][:2],
        }
        detour_rng = random.Random(rng.getrandbits(64))
        response = self._render(problem, fam, steps, final, extras, fmt_defect, detour_rng)
        for drop in ("detours", "check", "plan", "restate"):  # stay within the tiny length budget
            if len(response) <= self.max_chars:
                break
            extras[drop] = [] if drop == "detours" else False
            response = self._render(problem, fam, steps, final, extras, fmt_defect, random.Random(0))
        if fmt_defect:
            kind = f"{kind}+{fmt_defect}" if kind else fmt_defect
        return {
            "problem_id": problem["id"], "domain": problem["domain"], "family": problem["family"],
            "difficulty": problem["difficulty"], "teacher": self.style.name, "rollout": index,
            "response": response, "injected_error": kind is not None, "injected_kind": kind,
            "n_chars": len(response),
        }

    def _render(self, problem, fam, steps, final, extras, fmt_defect, rng) -> str:
        st = self.style
        lines = []
        if extras["restate"]:
            lines.append(st.restate.format(prompt=problem["prompt"].split("\n")[0][:48]))
        if extras["plan"]:
            lines.append(st.plan.format(plan=fam.plan))
        for i, step in enumerate(steps, 1):
            line = st.step.format(i=i, step=step)
            if i - 1 in extras["detours"]:
                bad = _slip(step, rng)
                line = (st.detour.format(i=i, bad=bad, step=step) if bad is not None
                        else st.detour_plain + "\n" + line)
            lines.append(line)
        domain = problem["domain"]
        if st.conclude and domain in ("math", "science"):
            lines.append(st.conclude.format(final=final))
        if extras["check"]:
            lines.append(fam.check(problem["params"], final).replace("check:", st.check_prefix, 1))
        reasoning = "" if fmt_defect == "empty_reasoning" else "\n".join(lines)
        answer = self._answer(domain, final, fmt_defect, problem)
        return f"<think>\n{reasoning}\n</think>\n\n{answer}"

    def _answer(self, domain: str, final: str, fmt_defect: str | None, problem: dict) -> str:
        st = self.style
        if fmt_defect == "empty_answer":
            return ""
        if domain in ("math", "science"):
            if fmt_defect == "missing_boxed":  # math: the bare value; science: the choice text, no letter
                return final if domain == "math" else problem["choices"][final]
            return st.math_answer.format(box=f"\\boxed{{{final}}}")
        if domain == "code":
            code = final
            if fmt_defect == "syntax_error":
                code = code.replace("):\n", ")\n", 1)  # the def line loses its colon
            return st.code_answer.format(block=f"```python\n{code}\n```")
        return final
