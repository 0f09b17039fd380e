"""The one reader of model responses in the Falcon-H1R format ``<think>\\n...\\n</think>\\n\\nanswer`` ([P] §3.2, §8).

Curation's quality filter, the RL reward, evaluation and DeepConf's votes all read a response here, so a
trace cannot be kept for SFT under one reading and rewarded or voted under another (issue 13). Readings:
- The answer is the text after the one ``</think>``. With two or more ``</think>`` there is no answer: which
  part is final is ambiguous (the text after the first close is not final, the text after the last follows
  a re-opened thought), so the response is a format violation that nothing grades.
- No ``</think>``: an opened ``<think>`` was cut off mid-thought (no answer); no tags at all: everything is
  the answer (a format violation, still graded, so models without the format can be evaluated).
- The final ``\\boxed{}`` is the last one opened; if it never closes (a truncated or garbled final answer)
  the final answer is unreadable, never an earlier box the model moved on from. Likewise the final fenced
  code block, and the final stated choice of a multiple-choice answer (`final_choice`).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
PYTHON_TAGS = ("", "python", "py", "python3")
CHOICE_LETTERS = ("A", "B", "C", "D")
# Format violations, in the order they are checked (`Response.issue` is the first that applies).
FORMAT_ISSUES = ("no_think_block", "unclosed_think", "repeated_think_close", "missing_think_open",
                 "repeated_think_open", "text_before_think", "empty_reasoning", "empty_answer")


@dataclass(frozen=True)
class Response:
    """One reading of a response: reasoning (None: no think block), answer ("" = none), first format issue."""

    reasoning: str | None
    answer: str
    issue: str | None


def parse_response(response: str) -> Response:
    """Split a response into reasoning and answer and name its first format violation (module docstring)."""
    n_close = response.count(THINK_CLOSE)
    if n_close > 1:
        return Response(None, "", "repeated_think_close")
    if n_close == 0:
        if THINK_OPEN in response:
            return Response(response.split(THINK_OPEN, 1)[1].strip(), "", "unclosed_think")
        return Response(None, response.strip(), "no_think_block")
    head, answer = response.split(THINK_CLOSE)
    answer = answer.strip()
    if THINK_OPEN not in head:
        return Response(head.strip(), answer, "missing_think_open")
    before, reasoning = head.split(THINK_OPEN, 1)
    reasoning = reasoning.strip()
    if THINK_OPEN in reasoning or THINK_OPEN in answer:
        issue = "repeated_think_open"
    elif before.strip():
        issue = "text_before_think"
    elif not reasoning:
        issue = "empty_reasoning"
    elif not answer:
        issue = "empty_answer"
    else:
        issue = None
    return Response(reasoning, answer, issue)


def split_response(response: str) -> tuple[str | None, str]:
    """(reasoning, answer) of `parse_response`, both stripped."""
    parsed = parse_response(response)
    return parsed.reasoning, parsed.answer


def answer_part(response: str) -> str:
    """The text every verifier reads: after the one ``</think>``, stripped ("" when there is none)."""
    return parse_response(response).answer


def format_ok(response: str) -> bool:
    """Exactly one ``<think>`` opening the response, one ``</think>``, non-empty reasoning and answer."""
    return parse_response(response).issue is None


def format_penalty(response: str, penalty: float = 1.0) -> float:
    """RL format term ([P] §3.2): 0 for a well-formed response, ``-penalty`` otherwise."""
    return 0.0 if format_ok(response) else -float(penalty)


# ------------------------------------------------------------------------------------------- \boxed{}
_BOX_OPEN = re.compile(r"\\boxed\s*\{")


@dataclass(frozen=True)
class Final:
    """The final box or code block of a text: `opened` says one was started, `content` None if unreadable."""

    opened: bool
    content: str | None
    tag: str = ""  # code blocks: the fence's language tag, lower-cased


def final_boxed(text: str) -> Final:
    """The last ``\\boxed{...}`` opened (nested braces allowed); content None when it never closes."""
    starts = [m.end() for m in _BOX_OPEN.finditer(text)]
    if not starts:
        return Final(False, None)
    i, depth = starts[-1], 1
    while i < len(text):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return Final(True, text[starts[-1]:i])
        i += 1
    return Final(True, None)


def last_boxed(text: str) -> str | None:
    """Content of the final ``\\boxed{}``: None when there is none or it never closes."""
    return final_boxed(text).content


# ---------------------------------------------------------------------------------------- code blocks
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+#.-]*)[ \t]*\n(.*?)```", re.DOTALL)


def final_code_block(text: str) -> Final:
    """The last fenced block of any language (LiveCodeBench's lcb_runner also takes the last fence);
    content None when its closing fence is missing (a truncated block)."""
    blocks = list(_FENCE.finditer(text))
    last = blocks[-1] if blocks else None
    tail = text[last.end():] if last else text
    if "```" in tail:  # a fence opened after the last complete block never closes
        return Final(True, None)
    if last is None:
        return Final(False, None)
    return Final(True, last.group(2), last.group(1).lower())


def last_code_block(text: str) -> str | None:
    """The final fenced block when it is Python (tagged python/py/python3 or untagged), else None."""
    block = final_code_block(text)
    return block.content if block.tag in PYTHON_TAGS else None


# ------------------------------------------------------------------------------------ multiple choice
_STYLE = re.compile(r"\\(?:text(?:bf|it|rm|tt|sf|normal)?|math(?:rm|bf|it|sf|tt|bb|normal)|boldsymbol|bm|emph"
                    r"|underline|operatorname|mbox|fbox|textup|mathbfit)\s*\{([^{}]*)\}")
# LaTeX spacing commands (\, \; \: \! "\ " \quad \qquad ~), never the line break \\: they never change a value.
LATEX_SPACING = re.compile(r"(?<!\\)\\[,;:! ]|\\q?quad(?![A-Za-z])|~")
_CUE = (r"(?i:(?:the\s+)?(?:final|correct|right|best)\s+(?:answer|option|choice)|(?:the\s+)?answer)"
        r"(?i:\s+(?:is|would\s+be|should\s+be|will\s+be))?\s*[:=]?\s*(?i:(?:option|choice)\s*)?")
# A stated letter: in parentheses or brackets (either case); upper case alone or before punctuation, never
# before a lower-case word ("A cell ..."); lower case only where the statement ends.
_LETTER = (r"(?:\(\s*(?P<p>[A-Da-d])\s*\)|\[\s*(?P<b>[A-Da-d])\s*\]"
           r"|(?P<u>[A-D])(?=$|[\s.,;:!?)\]\-–—])(?!\s+[a-z])|(?P<l>[a-d])(?=[ \t]*(?:$|\n|[.;:!?)\]])))")
_STATED = re.compile(r"\b" + _CUE + _LETTER)
# "The answer is B because ...": a capital letter mid-sentence after "is" is a label, not an article.
_STATED_IS = re.compile(r"\b(?i:(?:the\s+)?(?:(?:final|correct|right|best)\s+)?(?:answer|option|choice))"
                        r"\s+(?i:is|would\s+be|should\s+be|will\s+be)\s+(?i:(?:option|choice)\s+)?(?P<u>[A-D])\b")
_LINE = re.compile(r"^(?i:(?:so|thus|therefore|hence|finally)\s*,?\s*)?(?:" + _CUE + r")?(?i:(?:option|choice)\s*)?"
                   r"(?:\(\s*(?P<p>[A-Da-d])\s*\)(?:\s*\S.*)?|\[\s*(?P<b>[A-Da-d])\s*\](?:\s*\S.*)?"
                   r"|(?P<l>[a-d])|(?P<u>[A-D])(?:\s*[.:)\]\-–—]\s*.*)?)$")


def _plain(text: str) -> str:
    """Text with LaTeX styling, spacing and math delimiters and Markdown emphasis removed, one line each."""
    prev = None
    while prev != text:  # innermost styling first: \textbf{\text{B}} -> B
        prev, text = text, _STYLE.sub(r"\1", text)
    text = LATEX_SPACING.sub(" ", text)
    for junk in ("$", "\\(", "\\)", "\\[", "\\]", "**", "__", "`"):
        text = text.replace(junk, " ")
    text = text.replace("*", " ")
    return "\n".join(" ".join(line.split()) for line in text.splitlines())


def _letter(m: re.Match) -> str | None:
    groups = m.groupdict()
    for name in ("p", "b", "u", "l"):
        if groups.get(name):
            return groups[name].upper()
    return None


def read_choice(text: str, one_statement: bool = False) -> str | None:
    """The choice letter a statement makes ("B", "(B) 42 kJ", "B: text", "Answer: **B**", "the correct option
    is (b)", a last line "Therefore, option B."), or None: a letter is never read from other prose.
    `one_statement`: line breaks are spaces (the content of a box)."""
    text = _plain(text)
    if one_statement:
        text = " ".join(text.split())
    best: tuple[int, str] | None = None
    for m in (*_STATED.finditer(text), *_STATED_IS.finditer(text)):
        if best is None or m.start() >= best[0]:
            best = (m.start(), _letter(m))
    lines = [(i, line.strip()) for i, line in _line_starts(text) if line.strip()]
    if lines:
        start, line = lines[-1]
        m = _LINE.match(line.rstrip("."))
        if m and _letter(m) and (best is None or start >= best[0]):
            best = (start, _letter(m))
    return best[1] if best else None


def _line_starts(text: str):
    start = 0
    for line in text.split("\n"):
        yield start, line
        start += len(line) + 1


def final_choice(answer: str) -> str | None:
    """The chosen letter of an answer part: its final box's statement when it has a box (None when that box
    never closes or states no choice), else the last choice the text states."""
    box = final_boxed(answer)
    if box.opened:  # one statement: a line break inside a box is only a space
        return read_choice(box.content, one_statement=True) if box.content is not None else None
    return read_choice(answer)


# ------------------------------------------------------------------------------------- quality filters
def quality_issues(problem: dict, response: str) -> list[str]:
    """[P] §2.1 quality filters as named issues ([] = clean); curation drops a trace on the first one.

    Separate from correctness (``verify``): the format issue (FORMAT_ISSUES) first, then what the domain
    needs in the answer part (a final box, a choice, a parsable Python block).
    """
    parsed = parse_response(response)
    issues = []
    if parsed.issue == "empty_answer" and _answer_in(parsed.reasoning or "", problem.get("domain")):
        issues.append("answer_inside_think")
    elif parsed.issue is not None:
        issues.append(parsed.issue)
    answer = parsed.answer
    if parsed.reasoning is not None and not parsed.reasoning and "empty_reasoning" not in issues:
        issues.append("empty_reasoning")
    if not answer:
        if "empty_answer" not in issues and "answer_inside_think" not in issues:
            issues.append("empty_answer")
        return issues
    domain = problem.get("domain")
    reasoning = parsed.reasoning or ""
    if domain == "math":
        box = final_boxed(answer)
        if box.content is None:
            issues.append("answer_inside_think" if not box.opened and _answer_in(reasoning, domain) else "missing_boxed")
        elif not box.content.strip():
            issues.append("empty_answer")
    elif domain == "science" and final_choice(answer) is None:
        issues.append("missing_choice")
    elif domain == "code":
        block = final_code_block(answer)
        if block.content is None:
            issues.append("answer_inside_think" if not block.opened and _answer_in(reasoning, domain)
                          else "missing_code_block")
        elif block.tag not in PYTHON_TAGS:
            issues.append("wrong_language")
        else:
            try:
                ast.parse(block.content)
            except (SyntaxError, ValueError):  # ValueError: a NUL byte in the source
                issues.append("code_syntax_error")
    return issues


def _answer_in(text: str, domain: str | None) -> bool:
    """The domain's final answer sits in `text` (the reasoning): the model answered inside its thought."""
    if domain == "math":
        return final_boxed(text).content is not None
    if domain == "code":
        return final_code_block(text).content is not None
    return False
