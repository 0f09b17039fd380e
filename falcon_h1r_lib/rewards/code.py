"""Code verifier ([P] §3.2): the last fenced python block runs against the hidden asserts in the
sandbox; reward only if every test passes. Syntax errors are caught before spawning a process."""

from __future__ import annotations

import ast

from .format import answer_part, last_code_block

TIMEOUT_S = 5.0  # per candidate, all tests together
MEMORY_MB = 512


def extract_code(response: str) -> str | None:
    """The final fenced block of the answer part when it is Python (tagged or untagged), else None."""
    return last_code_block(answer_part(response))


def verify_code(problem: dict, response: str, *, timeout_s: float = TIMEOUT_S, memory_mb: int = MEMORY_MB) -> bool | None:
    """True iff all ``problem["tests"]`` pass, as judged by the sandbox's grader process (the candidate cannot
    reach it). False: no code, unparsable code, or any failure (error, timeout, memory, output flood).
    None: the sandbox could not run, or a test passes the solution something it cannot be handed."""
    tests = problem.get("tests")
    if not tests:
        raise ValueError(f"problem {problem.get('id')!r}: code domain needs non-empty 'tests'")
    code = extract_code(response)
    if code is None or not code.strip():
        return False
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):  # ValueError: a NUL byte in the source
        return False
    from .. import sandbox  # lazily: rewards for other domains never touch process machinery

    try:
        if all(isinstance(t, dict) for t in tests):  # competitive-programming style: stdin -> expected stdout
            return _passes_io_tests(sandbox, code, tests, timeout_s, memory_mb)
        result = sandbox.run_tests(code, list(tests), timeout_s=timeout_s, memory_mb=memory_mb)
    except OSError:  # could not spawn the child (fd / process exhaustion): infrastructure, not the code
        return None
    if result.error_type == "UnsupportedTest":  # a test hands the solution what cannot cross to it: no verdict
        return None
    return bool(result.passed)


def _passes_io_tests(sandbox, code: str, tests: list[dict], timeout_s: float, memory_mb: int) -> bool:
    """Every ``{"input", "output"}`` pair: run the program on the input, compare trimmed output lines."""
    for i, case in enumerate(tests):
        if "input" not in case or "output" not in case:
            raise ValueError(f"io test {i}: needs 'input' and 'output' keys, got {sorted(case)}")
        result = sandbox.run_python(code, stdin=str(case["input"]), timeout_s=timeout_s, memory_mb=memory_mb)
        if result.status != "ok" or _lines(result.stdout) != _lines(str(case["output"])):
            return False
    return True


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip().splitlines()]
