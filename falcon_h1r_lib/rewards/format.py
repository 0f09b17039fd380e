"""The Falcon-H1R response format ``<think>\\n...\\n</think>\\n\\nanswer`` ([P] §3.2, §8): splitting, the
format reward, and the quality filters of [P] §2.1 (empty reasoning or answer, math without a final
``\\boxed{}``, code that does not parse).
"""

from __future__ import annotations

import ast
import re

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_FENCE = re.compile(r"```[ \t]*(python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def split_response(response: str) -> tuple[str | None, str]:
    """(reasoning, answer). No ``</think>``: an opened ``<think>`` means the trace was cut off mid-thought
    (reasoning, "" - no answer); no tags at all means everything is the answer (reasoning None)."""
    if THINK_CLOSE in response:
        head, answer = response.rsplit(THINK_CLOSE, 1)
        reasoning = head.split(THINK_OPEN, 1)[1] if THINK_OPEN in head else head
        return reasoning, answer
    if THINK_OPEN in response:
        return response.split(THINK_OPEN, 1)[1], ""
    return None, response


def answer_part(response: str) -> str:
    """The text after the last ``</think>`` (what every verifier reads), stripped."""
    return split_response(response)[1].strip()


def format_ok(response: str) -> bool:
    """Exactly one ``<think>`` opening the response, one ``</think>``, non-empty reasoning and answer."""
    text = response.strip()
    if not text.startswith(THINK_OPEN) or text.count(THINK_OPEN) != 1 or text.count(THINK_CLOSE) != 1:
        return False
    reasoning, answer = split_response(text)
    return bool(reasoning and reasoning.strip()) and bool(answer.strip())


def format_penalty(response: str, penalty: float = 1.0) -> float:
    """RL format term ([P] §3.2): 0 for a well-formed response, ``-penalty`` otherwise."""
    return 0.0 if format_ok(response) else -float(penalty)


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (nested braces allowed); None when absent or unclosed."""
    start = text.rfind("\\boxed{")
    while start != -1:
        i, depth = start + len("\\boxed{"), 1
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return text[start + len("\\boxed{") : i - 1]
        start = text.rfind("\\boxed{", 0, start)  # unclosed: fall back to an earlier box
    return None


def last_code_block(text: str) -> str | None:
    """The last fenced code block tagged python (or untagged), without its fences."""
    blocks = _FENCE.findall(text)
    return blocks[-1][1] if blocks else None


def quality_issues(problem: dict, response: str) -> list[str]:
    """[P] §2.1 quality filters as named issues ([] = clean). Separate from correctness (``verify``)."""
    issues = []
    reasoning, answer = split_response(response)
    answer = answer.strip()
    if not format_ok(response):
        issues.append("bad_format")
    if reasoning is None or not reasoning.strip():
        issues.append("empty_reasoning")
    if not answer:
        issues.append("empty_answer")
    domain = problem.get("domain")
    if domain == "math" and answer and last_boxed(answer) is None:
        issues.append("missing_boxed")
    if domain == "science" and answer:
        from .science import extract_choice

        if extract_choice(response) is None:
            issues.append("missing_choice")
    if domain == "code" and answer:
        code = last_code_block(answer)
        if code is None:
            issues.append("no_code_block")
        else:
            try:
                ast.parse(code)
            except SyntaxError:
                issues.append("code_syntax_error")
    return issues
