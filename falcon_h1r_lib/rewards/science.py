"""Verifier for multiple-choice science: the chosen letter against the key.

The teacher writes ``\\boxed{B}``; every common way a model states a choice is read too (``\\boxed{(B) 42 kJ}``,
``\\boxed{\\textbf{B}}``, ``Answer: **B**``, "the correct option is (b)", a last line "B"), by the one response
reader (`format.final_choice`), so a model is graded on its choice, not its typography. A letter is never
read from prose that states no choice. The paper grades science with an LLM judge ([P] §3.2); a letter key
needs none.
"""

from __future__ import annotations

from .format import CHOICE_LETTERS, answer_part, final_choice


def extract_choice(response: str) -> str | None:
    """The chosen letter (upper case) of the response's answer part, or None."""
    return final_choice(answer_part(response))


def verify_science(problem: dict, response: str) -> bool | None:
    """True iff the extracted letter equals ``problem["answer"]``; no letter is a wrong answer. An empty gold
    (an unlabelled source, e.g. Mixture-of-Thoughts science) gives no verdict (None); any other non-letter raises."""
    gold = str(problem["answer"]).strip().upper()
    if not gold:
        return None
    if gold not in CHOICE_LETTERS:
        raise ValueError(f"problem {problem.get('id')!r}: science answer must be a letter A-D, got {gold!r}")
    return extract_choice(response) == gold
