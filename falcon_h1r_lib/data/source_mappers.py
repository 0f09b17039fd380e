"""How each source shape becomes rows of our schema: one mapper per shape, each reading the source columns
named in ``spec.fields``. Separate from loading, which only resolves, materialises and reads a pinned commit.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from falcon_h1r_lib.data.sources import SourceSpec

LETTERS = "ABCDEFGHIJKLMNOP"


def _base(spec: SourceSpec, rec: dict, i: int) -> dict[str, Any]:
    f = spec.fields
    rid = rec[f["id"]] if "id" in f else i
    return {"id": f"{spec.name}-{rid}", "domain": spec.domain, "family": spec.name, "difficulty": None}


def _difficulty(spec: SourceSpec, rec: dict) -> int | None:
    col = spec.fields.get("difficulty")
    v = rec.get(col) if col else None
    return v if isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 5 else None


def map_problem(spec: SourceSpec, rec: dict, i: int) -> list[dict]:
    """Question + short answer (AIME, HMMT, AMO-Bench, MATH500, RL math pools)."""
    f = spec.fields
    return [
        {
            **_base(spec, rec, i),
            "difficulty": _difficulty(spec, rec),
            "prompt": str(rec[f["prompt"]]),
            "answer": str(rec[f["answer"]]),
        }
    ]


def _traces(
    spec: SourceSpec, problem: dict, responses: Sequence[str], correct: Sequence[bool | None] | None
) -> list[dict]:
    out = []
    for k, resp in enumerate(responses):
        verdict = correct[k] if correct is not None and k < len(correct) else None
        if verdict is None and spec.keep_unverified:
            verdict = True
        out.append(
            {
                **problem,
                "response": resp,
                "rollout": k,
                "teacher": spec.teacher or "unknown",
                "source_correct": verdict,
            }
        )
    return out


def map_openr1_math(spec: SourceSpec, rec: dict, i: int) -> list[dict]:
    """OpenR1-Math: one problem, several R1 generations with per-generation math-verify flags."""
    f = spec.fields
    problem = map_problem(spec, rec, i)[0]
    flags = rec.get(f.get("correct", ""), None)
    return _traces(spec, problem, list(rec[f["responses"]]), list(flags) if flags is not None else None)


def _io_tests(pairs: Any) -> list[dict[str, str]]:
    if isinstance(pairs, str):
        pairs = json.loads(pairs)
    return [{"input": str(p["input"]), "output": str(p["output"])} for p in pairs or []]


def map_codeforces_cots(spec: SourceSpec, rec: dict, i: int) -> list[dict]:
    """codeforces-cots: one prompt, one R1 generation, public examples as stdin/stdout tests."""
    f = spec.fields
    problem = {
        **_base(spec, rec, i),
        "prompt": rec[f["prompt"]],
        "answer": "",
        "tests": _io_tests(rec[f["tests"]]),
        "entry_point": None,
    }
    return _traces(spec, problem, [rec[f["response"]]], None)


def _turns(messages: Any) -> list[tuple[str, str]]:
    """(role, text) pairs from role/content or from/value message lists."""
    out = []
    for m in messages:
        role = m.get("role", m.get("from"))
        text = m.get("content", m.get("value"))
        out.append(({"human": "user", "gpt": "assistant"}.get(role, role), text))
    return out


def map_chat_traces(spec: SourceSpec, rec: dict, i: int) -> list[dict]:
    """Chat datasets with reasoning traces: prompt = last user turn, response = final assistant turn
    (earlier turns are dropped, as [P] §2.1 supervises only the last turn). Domain extras come empty:
    these sources carry no labels, so they pass verification only with ``keep_unverified``."""
    f = spec.fields
    if "messages" in f:
        msgs = rec[f["messages"]]
        turns = [("user", msgs)] if isinstance(msgs, str) else _turns(msgs)
    else:
        turns = [("user", rec[f["prompt"]])]
    if "response" in f:  # the final assistant turn lives in its own column
        turns.append(("assistant", rec[f["response"]]))
    users = [t for r, t in turns if r == "user"]
    answers = [t for r, t in turns if r == "assistant"]
    if not users or not answers:
        return []
    problem = {**_base(spec, rec, i), "prompt": users[-1], "answer": ""}
    if spec.domain == "science":
        problem["choices"] = {}
    elif spec.domain == "other":
        problem["rules"] = []
    return _traces(spec, problem, [answers[-1]], None)


def map_gpqa(spec: SourceSpec, rec: dict, i: int) -> list[dict]:
    """GPQA: the correct and three incorrect answers, shuffled into A-D by a per-question seeded RNG."""
    f = spec.fields
    options = [rec[f["correct"]], *(rec[c] for c in f["incorrect"].split(","))]
    order = list(range(len(options)))
    random.Random(f"gpqa|{rec[f['id']]}").shuffle(order)
    choices = {LETTERS[j]: str(options[o]).strip() for j, o in enumerate(order)}
    answer = LETTERS[order.index(0)]
    listing = "\n".join(f"{k}) {v}" for k, v in choices.items())
    return [
        {
            **_base(spec, rec, i),
            "prompt": f"{str(rec[f['prompt']]).strip()}\n\n{listing}",
            "answer": answer,
            "choices": choices,
        }
    ]


def map_mcq_options(spec: SourceSpec, rec: dict, i: int) -> list[dict]:
    """MMLU-Pro: an options list (up to 10) and the answer letter."""
    f = spec.fields
    choices = {LETTERS[j]: str(o) for j, o in enumerate(rec[f["options"]])}
    listing = "\n".join(f"{k}) {v}" for k, v in choices.items())
    return [
        {
            **_base(spec, rec, i),
            "prompt": f"{rec[f['prompt']]}\n\n{listing}",
            "answer": str(rec[f["answer"]]),
            "choices": choices,
        }
    ]


def map_livecodebench(spec: SourceSpec, rec: dict, i: int) -> list[dict]:
    """LiveCodeBench: public tests only (JSON). The private tests are zlib+pickle-encoded; we do not
    unpickle downloaded data, so full-profile LCB scores here use public tests (say so in tables)."""
    f = spec.fields
    meta = rec.get(f.get("metadata", ""), None) or "{}"
    meta = json.loads(meta) if isinstance(meta, str) else meta
    starter = rec.get(f.get("starter_code", ""), "") or ""
    prompt = rec[f["prompt"]] + (f"\n\nStarter code:\n```python\n{starter}\n```" if starter else "")
    return [
        {
            **_base(spec, rec, i),
            "prompt": prompt,
            "answer": "",
            "tests": _io_tests(rec[f["tests"]]),
            "entry_point": meta.get("func_name") or None,
            "starter_code": starter,
        }
    ]


def map_ifbench(spec: SourceSpec, rec: dict, i: int) -> list[dict]:
    """IFBench: the prompt and its verifiable constraints (instruction ids + their kwargs) as ``rules``."""
    f = spec.fields
    ids, kwargs = rec[f["instruction_ids"]], rec[f["kwargs"]]
    rules = [
        {"instruction_id": iid, "kwargs": {k: v for k, v in (kw or {}).items() if v is not None}}
        for iid, kw in zip(ids, kwargs, strict=True)
    ]
    return [{**_base(spec, rec, i), "prompt": rec[f["prompt"]], "answer": "", "rules": rules}]


MAPPERS: dict[str, Callable[[SourceSpec, dict, int], list[dict]]] = {
    "problem": map_problem,
    "openr1_math": map_openr1_math,
    "codeforces_cots": map_codeforces_cots,
    "chat_traces": map_chat_traces,
    "gpqa": map_gpqa,
    "mcq_options": map_mcq_options,
    "livecodebench": map_livecodebench,
    "ifbench": map_ifbench,
}
MAPPER_FIELDS: dict[str, tuple[str, ...]] = {  # source columns each mapper must be told about
    "problem": ("prompt", "answer"),
    "openr1_math": ("id", "prompt", "answer", "responses"),
    "codeforces_cots": ("id", "prompt", "response", "tests"),
    "chat_traces": (),
    "gpqa": ("id", "prompt", "correct", "incorrect"),
    "mcq_options": ("id", "prompt", "options", "answer"),
    "livecodebench": ("id", "prompt", "tests"),
    "ifbench": ("id", "prompt", "instruction_ids", "kwargs"),
}
