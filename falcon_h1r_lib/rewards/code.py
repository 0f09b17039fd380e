"""Code verifier ([P] §3.2): the last fenced python block runs against the hidden asserts in the
sandbox; reward only if every test passes. Syntax errors are caught before spawning a process."""

from __future__ import annotations

import ast

from .format import answer_part, last_code_block

TIMEOUT_S = 5.0  # per candidate, all tests together
MEMORY_MB = 512


def extract_code(response: str) -> str | None:
    """The last python (or untagged) fenced block of the answer part."""
    return last_code_block(answer_part(response))


def verify_code(problem: dict, response: str, *, timeout_s: float = TIMEOUT_S, memory_mb: int = MEMORY_MB) -> bool | None:
    """True iff all ``problem["tests"]`` pass. False: no code, unparsable code, or any failure (error,
    timeout, memory, output flood). None: the sandbox itself could not run (no verdict on the code)."""
    tests = problem.get("tests")
    if not tests:
        raise ValueError(f"problem {problem.get('id')!r}: code domain needs non-empty 'tests'")
    code = extract_code(response)
    if code is None or not code.strip():
        return False
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    from .. import sandbox  # lazily: rewards for other domains never touch process machinery

    try:
        result = sandbox.run_tests(code, list(tests), timeout_s=timeout_s, memory_mb=memory_mb)
    except OSError:  # could not spawn the child (fd / process exhaustion): infrastructure, not the code
        return None
    return bool(result.passed)
