"""Verifier for multiple-choice science: the chosen letter against the key.

The teacher writes ``\\boxed{B}``; ``Answer: B`` / ``the answer is (B)`` and a bare ``B`` are accepted
too, so a model that learned either convention is graded on its choice, not its typography.
The paper grades science with an LLM judge ([P] §3.2); a letter key needs none.
"""

from __future__ import annotations

import re

from .format import answer_part, last_boxed

_BOXED_LETTER = re.compile(r"^\s*(?:\\text\{)?\(?([A-Da-d])\)?\}?\s*$")
_ANSWER_LETTER = re.compile(r"answer\s*(?:is)?\s*[:=]?\s*\(?\s*([A-D])\b\)?", re.IGNORECASE)
_BARE_LETTER = re.compile(r"^\(?([A-Da-d])\)?\.?$")


def extract_choice(response: str) -> str | None:
    """The chosen letter (upper case) from the answer part, or None."""
    answer = answer_part(response)
    if not answer:
        return None
    box = last_boxed(answer)
    if box is not None:
        m = _BOXED_LETTER.match(box)
        return m.group(1).upper() if m else None
    hits = _ANSWER_LETTER.findall(answer)
    if hits:
        return hits[-1].upper()
    m = _BARE_LETTER.match(answer)
    return m.group(1).upper() if m else None


def verify_science(problem: dict, response: str) -> bool:
    """True iff the extracted letter equals ``problem["answer"]``; no letter is a wrong answer."""
    gold = str(problem["answer"]).strip().upper()
    if gold not in ("A", "B", "C", "D"):
        raise ValueError(f"problem {problem.get('id')!r}: science answer must be a letter A-D, got {gold!r}")
    return extract_choice(response) == gold
