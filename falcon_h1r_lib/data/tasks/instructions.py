"""The "other" domain: verifiable instruction following (an IFEval-style stand-in for [P]'s IF / chat mix).

Each prompt states constraints that ``rewards.instructions`` checks programmatically (word counts, case,
first / last word, a required word, a numbered list, no commas, how many items come from a named set).
Levels stack more constraints. The canonical answer is one compliant text; a faulty teacher breaks
at least one rule (an extra word, wrong case, a dropped item), checked with the same rule checker.
"""

from __future__ import annotations

import random

from ...rewards.instructions import check_rules, words
from . import Family

POOLS = {
    "colors": ["red", "blue", "green", "black", "white", "pink", "gray", "brown"],
    "animals": ["cat", "dog", "cow", "pig", "hen", "fox", "owl", "bee"],
    "fruits": ["apple", "pear", "plum", "fig", "lime", "kiwi", "grape", "peach"],
}
STARTS = ("my", "here", "ok")


def _phrase(rule: dict) -> str | None:
    """The prompt wording of one rule (``count_from`` is part of the request itself)."""
    r = rule["rule"]
    return {
        "word_count": lambda: f"exactly {rule['exact']} words" if "exact" in rule else f"at most {rule.get('max')} words",
        "all_lowercase": lambda: "all lowercase",
        "all_uppercase": lambda: "all capitals",
        "starts_with": lambda: f"start with {rule['value']}",
        "ends_with": lambda: f"end with {rule['value']}",
        "contains_word": lambda: f"include the word {rule['value']}",
        "numbered_list": lambda: "as a numbered list",
        "no_commas": lambda: "no commas",
        "count_from": lambda: None,
    }[r]()


def _name_make(rng: random.Random, level: int) -> dict:
    topic = rng.choice(sorted(POOLS))
    n = rng.randint(2, 3 if level < 5 else 5)
    items = rng.sample(POOLS[topic], n)
    ws = list(items)
    rules: list[dict] = [{"rule": "count_from", "values": POOLS[topic], "n": n}]
    if level >= 2:
        rules.append({"rule": "all_lowercase"})
    if level >= 4:
        start = rng.choice(STARTS)
        ws = [start] + ws
        rules.append({"rule": "starts_with", "value": start})
    if level >= 5:
        ws = ws + ["done"]
        rules += [{"rule": "ends_with", "value": "done"}, {"rule": "no_commas"}]
    if level >= 3:
        rules.append({"rule": "word_count", "exact": len(ws)})
    return {"request": f"name {n} {topic}", "topic": topic, "items": items, "rules": rules, "text": " ".join(ws)}


def _list_make(rng: random.Random, level: int) -> dict:
    topic = rng.choice(sorted(POOLS))
    n = rng.randint(2, 3 if level < 5 else 5)
    items = rng.sample(POOLS[topic], n)
    rules: list[dict] = [{"rule": "numbered_list", "n": n}, {"rule": "count_from", "values": POOLS[topic], "n": n}]
    upper = level in (3, 5)
    if level >= 2:
        rules.append({"rule": "all_uppercase" if upper else "all_lowercase"})
    if level >= 4:
        must = rng.choice(POOLS[topic])
        if must not in items:
            items[rng.randrange(n)] = must
        rules.append({"rule": "contains_word", "value": must})
    if level >= 5:
        rules.append({"rule": "no_commas"})
    text = "\n".join(f"{i + 1}. {w.upper() if upper else w}" for i, w in enumerate(items))
    return {"request": f"list {n} {topic}", "topic": topic, "items": items, "rules": rules, "text": text}


def _yesno_make(rng: random.Random, level: int) -> dict:
    if rng.random() < 0.5:
        k = rng.randint(2, 99)
        asked = rng.choice(["even", "odd"])
        truth = "even" if k % 2 == 0 else "odd"
        yn = "yes" if asked == truth else "no"
        question, ws, key = f"is {k} {asked}?", [yn, str(k), "is", truth], str(k)
    else:
        a, b = rng.sample(range(2, 99), 2)
        yn = "yes" if a > b else "no"
        question, ws, key = f"is {a} more than {b}?", [yn, str(a), "is", "more" if a > b else "less"], str(a)
    rules: list[dict] = [{"rule": "starts_with", "value": yn}]
    if level == 2:
        ws = [yn]
        rules.append({"rule": "word_count", "max": 3})
    if level >= 3:
        rules += [{"rule": "contains_word", "value": key}, {"rule": "word_count", "max": 5}]
    if level == 4:
        rules.append({"rule": "all_uppercase"})
        ws = [w.upper() for w in ws]
    if level == 5:
        ws = ws + ["for", "sure"]
        rules = [r for r in rules if r["rule"] != "word_count"]
        rules += [{"rule": "word_count", "exact": 6}, {"rule": "all_lowercase"}, {"rule": "ends_with", "value": "sure"}]
    return {"request": f"{question} start with yes or no", "yn": yn, "items": ws, "rules": rules, "text": " ".join(ws)}


def _pose(p: dict) -> dict:
    phrases = [ph for r in p["rules"] if (ph := _phrase(r)) and not (r["rule"] == "starts_with" and "yn" in p)]
    prompt = p["request"] + (". " + ", ".join(phrases) if phrases else "") + "."
    return {"prompt": prompt, "answer": p["text"], "rules": [dict(r) for r in p["rules"]]}


def _steps(p: dict) -> list[str]:
    if "yn" in p:
        head = [f"{' '.join(p['items'][1:4])} so {p['yn']}"] if len(p["items"]) > 1 else [f"so {p['yn']}"]
    else:
        head = [f"{p['topic']}: {' '.join(p['items'])}"]
    return head + [f"{ph}: ok" for r in p["rules"] if (ph := _phrase(r))]


_MUTATIONS = (
    lambda t, r: t + " also",
    lambda t, r: t.rsplit("\n" if "\n" in t else " ", 1)[0],
    lambda t, r: t.upper() if t != t.upper() else t.lower(),
    lambda t, r: "well " + t.split(" ", 1)[-1] if "\n" not in t else "0. " + t,
    lambda t, r: t.replace(" ", ", ", 1),
    lambda t, r: t.replace(t.split()[-1], r.choice(["so", "then"])),
)


def _solve(p: dict, fault: random.Random | None) -> tuple[list[str], str]:
    text = p["text"]
    if fault:
        for i in fault.sample(range(len(_MUTATIONS)), len(_MUTATIONS)):
            bad = _MUTATIONS[i](text, fault)
            if bad.strip() and not all(check_rules(p["rules"], bad)):
                text = bad
                break
    return _steps(p), text


def _check(p: dict, final: str) -> str:
    n_lines = final.count("\n") + 1
    return f"check: {len(words(final))} words" + (f" {n_lines} lines" if n_lines > 1 else "")


FAMILIES = tuple(
    Family("other", name, make, _pose, _solve, _check, "follow every rule")
    for name, make in (("name", _name_make), ("list", _list_make), ("yesno", _yesno_make))
)
