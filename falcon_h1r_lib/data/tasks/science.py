"""Science families: multiple-choice quantitative physics / chemistry questions (a GPQA stand-in).

One correct choice by construction; the three distractors are what a common mistake gives (inverted
formula, a forgotten unit conversion, a wrong molar mass, averaging speeds), topped up with arithmetic
slips. Levels: 1 direct formula, 2-3 rearranged, 4 a unit conversion or atom count, 5 two steps.
A faulty teacher follows one mistake's steps and picks that letter.
"""

from __future__ import annotations

import random
from fractions import Fraction

from . import Family

LETTERS = ("A", "B", "C", "D")
ATOMIC = {"H": 1, "He": 4, "C": 12, "N": 14, "O": 16}
FORMULAS = {  # formula -> [(element, count)]
    "H2": [("H", 2)], "He": [("He", 1)], "CH4": [("C", 1), ("H", 4)], "NH3": [("N", 1), ("H", 3)],
    "H2O": [("H", 2), ("O", 1)], "N2": [("N", 2)], "O2": [("O", 2)], "CO2": [("C", 1), ("O", 2)],
}


def _molar(formula: str) -> tuple[int, str]:
    """Molar mass and its worked sum, e.g. (18, "M(H2O)=2*1+16=18")."""
    parts = FORMULAS[formula]
    m = sum(ATOMIC[e] * k for e, k in parts)
    terms = "+".join(f"{k}*{ATOMIC[e]}" if k > 1 else str(ATOMIC[e]) for e, k in parts)
    return m, f"M({formula})={terms}={m}" if len(parts) > 1 or parts[0][1] > 1 else f"M({formula})={m}"


def _is_int(x) -> bool:
    return Fraction(x).denominator == 1


def _mc(rng: random.Random, question: str, value: int, unit: str, steps: list[str], check: str,
        mistakes: list[tuple[object, list[str]]]) -> dict:
    """Pose a 4-choice question; distractors from ``mistakes`` (value, steps), then arithmetic slips."""
    wrong: list[tuple[int, list[str]]] = []
    for v, st in mistakes:
        if _is_int(v) and 0 < v != value and all(v != w for w, _ in wrong):
            wrong.append((int(v), st))
    rng.shuffle(wrong)
    wrong = wrong[:3]
    for d in rng.sample([1, -1, 2, -2, 10, -10, 3], 7):
        if len(wrong) == 3:
            break
        v = value + d
        if v > 0 and all(v != w for w, _ in wrong):
            wrong.append((v, steps[:-1] + [steps[-1].rsplit("=", 1)[0] + f"={v}"]))
    options = [(value, steps)] + wrong
    rng.shuffle(options)
    letter = LETTERS[[v for v, _ in options].index(value)]
    return {
        "question": question, "unit": unit, "value": value, "letter": letter, "check": check,
        "choices": {LETTERS[i]: f"{v} {unit}" for i, (v, _) in enumerate(options)},
        "steps": {LETTERS[i]: st for i, (_, st) in enumerate(options)},
    }


def _speed(rng: random.Random, level: int) -> dict:
    v, t = rng.randint(2, 20), rng.randint(2, 10)
    d = v * t
    if level == 1:
        return _mc(rng, f"a cart moves {d} m in {t} s. what is its speed?", v, "m/s",
                   ["v=d/t", f"v={d}/{t}={v}"], f"check: {v}*{t}={d}",
                   [(d * t, ["v=d*t", f"v={d}*{t}={d * t}"]), (d - t, ["v=d-t", f"v={d}-{t}={d - t}"]),
                    (d + t, ["v=d+t", f"v={d}+{t}={d + t}"])])
    if level == 2:
        return _mc(rng, f"a cart moves at {v} m/s for {t} s. how far does it go?", d, "m",
                   ["d=v*t", f"d={v}*{t}={d}"], f"check: {d}/{t}={v}",
                   [(v + t, ["d=v+t", f"d={v}+{t}={v + t}"]), (Fraction(v, t), ["d=v/t", f"d={v}/{t}={Fraction(v, t)}"]),
                    (v * (t - 1), ["d=v*(t-1)", f"d={v}*{t - 1}={v * (t - 1)}"])])
    if level == 3:
        return _mc(rng, f"a cart at {v} m/s covers {d} m. how long does it take?", t, "s",
                   ["t=d/v", f"t={d}/{v}={t}"], f"check: {v}*{t}={d}",
                   [(d * v, ["t=d*v", f"t={d}*{v}={d * v}"]), (d - v, ["t=d-v", f"t={d}-{v}={d - v}"]),
                    (Fraction(v * 10, t), ["t=10*v/t", f"t={10 * v}/{t}"])])
    if level == 4:
        v, tm = rng.randint(1, 9), rng.randint(1, 5)
        ts, d = 60 * tm, 60 * tm * v
        return _mc(rng, f"a cart moves {d} m in {tm} min. what is its speed in m/s?", v, "m/s",
                   [f"t={tm}*60={ts} s", f"v={d}/{ts}={v}"], f"check: {v}*{ts}={d}",
                   [(Fraction(d, tm), ["minutes not converted", f"v={d}/{tm}={Fraction(d, tm)}"]),
                    (d * tm, ["v=d*t", f"v={d}*{tm}={d * tm}"]),
                    (Fraction(d, tm * 100), ["t={tm}*100 s", f"v={d}/{tm * 100}={Fraction(d, tm * 100)}"])])
    for _ in range(100):  # level 5: average speed over two legs
        t1, t2, v1, v = rng.randint(2, 6), rng.randint(2, 6), rng.randint(2, 9), rng.randint(2, 9)
        d1, total = v1 * t1, v * (t1 + t2)
        d2 = total - d1
        if d2 > 0 and d2 % t2 == 0 and d2 // t2 != v1:
            break
    else:
        raise RuntimeError("speed level 5: no two-leg trip found")
    v2 = Fraction(d2, t2)
    return _mc(rng, f"a cart moves {d1} m in {t1} s, then {d2} m in {t2} s. what is its average speed?", v, "m/s",
               [f"d={d1}+{d2}={total}", f"t={t1}+{t2}={t1 + t2}", f"v={total}/{t1 + t2}={v}"],
               f"check: {v}*{t1 + t2}={total}",
               [((v1 + v2) / 2, ["average the two speeds", f"v=({v1}+{v2})/2={(v1 + v2) / 2}"]),
                (Fraction(total, t1), [f"d={total}", f"v={total}/{t1}={Fraction(total, t1)}"]),
                (v1, ["first leg only", f"v={d1}/{t1}={v1}"])])


def _ohm(rng: random.Random, level: int) -> dict:
    i, r = rng.randint(1, 9), rng.randint(2, 20)
    v = i * r
    if level == 1:
        return _mc(rng, f"a current of {i} A flows through {r} ohm. what is the voltage?", v, "V",
                   ["V=I*R", f"V={i}*{r}={v}"], f"check: {v}/{r}={i}",
                   [(Fraction(r, i), ["V=R/I", f"V={r}/{i}={Fraction(r, i)}"]), (i + r, ["V=I+R", f"V={i}+{r}={i + r}"]),
                    (r - i, ["V=R-I", f"V={r}-{i}={r - i}"])])
    if level == 2:
        return _mc(rng, f"{v} V is applied across {r} ohm. what is the current?", i, "A",
                   ["I=V/R", f"I={v}/{r}={i}"], f"check: {i}*{r}={v}",
                   [(v * r, ["I=V*R", f"I={v}*{r}={v * r}"]), (v - r, ["I=V-R", f"I={v}-{r}={v - r}"]),
                    (Fraction(r, v), ["I=R/V", f"I={r}/{v}"])])
    if level == 3:
        return _mc(rng, f"{v} V drives {i} A through a resistor. what is its resistance?", r, "ohm",
                   ["R=V/I", f"R={v}/{i}={r}"], f"check: {i}*{r}={v}",
                   [(v * i, ["R=V*I", f"R={v}*{i}={v * i}"]), (v + i, ["R=V+I", f"R={v}+{i}={v + i}"]),
                    (v - i, ["R=V-I", f"R={v}-{i}={v - i}"])])
    if level == 4:
        r, v = rng.choice([10, 20, 40, 50, 100, 200, 250, 500]), rng.randint(1, 12)
        ma = 1000 * v // r
        return _mc(rng, f"{v} V drives {ma} mA through a resistor. what is its resistance?", r, "ohm",
                   [f"I={ma}/1000 A", f"R={v}*1000/{ma}={r}"], f"check: {ma}*{r}/1000={v}",
                   [(Fraction(v, ma), ["mA not converted", f"R={v}/{ma}={Fraction(v, ma)}"]),
                    (r * 1000, ["converted the wrong way", f"R={v}*1000000/{ma}={r * 1000}"]),
                    (Fraction(r, 10), ["I={ma}/100 A", f"R={v}*100/{ma}={Fraction(r, 10)}"]), (v * ma, ["R=V*I", f"R={v * ma}"])])
    r1, r2 = rng.randint(2, 10), rng.randint(2, 10)
    v = i * (r1 + r2)
    return _mc(rng, f"{v} V is applied across {r1} ohm and {r2} ohm in series. what is the current?", i, "A",
               [f"R={r1}+{r2}={r1 + r2}", f"I={v}/{r1 + r2}={i}"], f"check: {i}*{r1 + r2}={v}",
               [(Fraction(v, r1), ["only the first resistor", f"I={v}/{r1}={Fraction(v, r1)}"]),
                (Fraction(v, r1 * r2), [f"R={r1}*{r2}={r1 * r2}", f"I={v}/{r1 * r2}"]),
                (Fraction(v, r1) + Fraction(v, r2), ["treated as parallel", f"I={v}/{r1}+{v}/{r2}"]),
                (v * (r1 + r2), ["I=V*R", f"I={v}*{r1 + r2}={v * (r1 + r2)}"])])


def _density(rng: random.Random, level: int) -> dict:
    rho, vol = rng.randint(1, 12), rng.randint(2, 10)
    m = rho * vol
    if level == 1:
        return _mc(rng, f"a block of {m} g has a volume of {vol} cm3. what is its density?", rho, "g/cm3",
                   ["rho=m/V", f"rho={m}/{vol}={rho}"], f"check: {rho}*{vol}={m}",
                   [(m * vol, ["rho=m*V", f"rho={m}*{vol}={m * vol}"]), (m - vol, ["rho=m-V", f"rho={m}-{vol}={m - vol}"]),
                    (Fraction(vol, m), ["rho=V/m", f"rho={vol}/{m}"])])
    if level == 2:
        return _mc(rng, f"a block of density {rho} g/cm3 has a volume of {vol} cm3. what is its mass?", m, "g",
                   ["m=rho*V", f"m={rho}*{vol}={m}"], f"check: {m}/{vol}={rho}",
                   [(rho + vol, ["m=rho+V", f"m={rho}+{vol}={rho + vol}"]),
                    (Fraction(vol, rho), ["m=V/rho", f"m={vol}/{rho}"]),
                    (Fraction(rho, vol), ["m=rho/V", f"m={rho}/{vol}"])])
    if level == 3:
        return _mc(rng, f"a block of {m} g has a density of {rho} g/cm3. what is its volume?", vol, "cm3",
                   ["V=m/rho", f"V={m}/{rho}={vol}"], f"check: {rho}*{vol}={m}",
                   [(m * rho, ["V=m*rho", f"V={m}*{rho}={m * rho}"]), (m - rho, ["V=m-rho", f"V={m}-{rho}={m - rho}"]),
                    (m + rho, ["V=m+rho", f"V={m}+{rho}={m + rho}"])])
    if level == 4:
        vol = rng.choice([100, 200, 250, 400, 500, 1000])
        m = rho * vol
        kg = f"{m / 1000:g}"
        return _mc(rng, f"a block of {kg} kg has a volume of {vol} cm3. what is its density?", rho, "g/cm3",
                   [f"m={kg}*1000={m} g", f"rho={m}/{vol}={rho}"], f"check: {rho}*{vol}={m}",
                   [(Fraction(m, 1000 * vol), ["kg not converted", f"rho={kg}/{vol}"]),
                    (rho * 1000, ["converted the wrong way", f"rho={m * 1000}/{vol}={rho * 1000}"]),
                    (rho * 10, ["m={kg}*10000 g", f"rho={m * 10}/{vol}={rho * 10}"])])
    for _ in range(10_000):  # level 5: two pieces glued together (rare for rho = 1: keep drawing)
        v1, v2, rho1 = rng.randint(2, 8), rng.randint(2, 8), rng.randint(1, 12)
        m1, total = rho1 * v1, rho * (v1 + v2)
        m2 = total - m1
        if m2 > 0 and rho1 != rho:
            break
    else:
        raise RuntimeError("density level 5: no two-piece block found")
    return _mc(rng, f"a {m1} g piece of {v1} cm3 is glued to a {m2} g piece of {v2} cm3. what is the density "
               "of the whole?", rho, "g/cm3",
               [f"m={m1}+{m2}={total}", f"V={v1}+{v2}={v1 + v2}", f"rho={total}/{v1 + v2}={rho}"],
               f"check: {rho}*{v1 + v2}={total}",
               [((Fraction(m1, v1) + Fraction(m2, v2)) / 2, ["average the two densities", "rho=(m1/V1+m2/V2)/2"]),
                (rho1, ["first piece only", f"rho={m1}/{v1}={rho1}"]),
                (Fraction(total, v1), [f"m={total}", f"rho={total}/{v1}"])])


def _moles(rng: random.Random, level: int) -> dict:
    hint = "(H=1 He=4 C=12 N=14 O=16)"
    f = rng.choice(sorted(FORMULAS))
    mm, mm_step = _molar(f)
    n = rng.randint(1, 9)
    m = n * mm
    if level == 1:
        return _mc(rng, f"{m} g of a gas with molar mass {mm} g/mol. how many moles?", n, "mol",
                   ["n=m/M", f"n={m}/{mm}={n}"], f"check: {n}*{mm}={m}",
                   [(m * mm, ["n=m*M", f"n={m}*{mm}={m * mm}"]), (m - mm, ["n=m-M", f"n={m}-{mm}={m - mm}"]),
                    (Fraction(mm, m), ["n=M/m", f"n={mm}/{m}"])])
    if level == 2:
        first = FORMULAS[f][0][0]
        return _mc(rng, f"how many moles are {m} g of {f}? {hint}", n, "mol",
                   [mm_step, f"n={m}/{mm}={n}"], f"check: {n}*{mm}={m}",
                   [(Fraction(m, ATOMIC[first]), [f"M({f})={ATOMIC[first]}", f"n={m}/{ATOMIC[first]}"]),
                    (m * mm, [mm_step, f"n={m}*{mm}={m * mm}"]), (m - mm, [mm_step, f"n={m}-{mm}={m - mm}"])])
    if level == 3:
        return _mc(rng, f"what is the mass of {n} mol of {f}? {hint}", m, "g",
                   [mm_step, f"m={n}*{mm}={m}"], f"check: {m}/{mm}={n}",
                   [(mm, [mm_step, "forgot n", f"m={mm}"]), (n + mm, [mm_step, f"m={n}+{mm}={n + mm}"]),
                    (Fraction(mm, n), [mm_step, f"m={mm}/{n}"])])
    if level == 4:  # moles of atoms of one element
        many = [(g, e, k) for g, parts in FORMULAS.items() for e, k in parts if k > 1]
        f, e, k = rng.choice(many)
        mm, mm_step = _molar(f)
        m = n * mm
        return _mc(rng, f"{m} g of {f}: how many moles of {e} atoms? {hint}", k * n, "mol",
                   [mm_step, f"n({f})={m}/{mm}={n}", f"n({e})={k}*{n}={k * n}"], f"check: {k * n}/{k}={n}",
                   [(n, [mm_step, f"n={m}/{mm}={n}", "forgot the atom count"]),
                    (Fraction(m, ATOMIC[e]), [f"n={m}/{ATOMIC[e]}"]),
                    (Fraction(k * m, ATOMIC[e]), [f"n={k}*{m}/{ATOMIC[e]}"])])
    f2 = rng.choice([g for g in sorted(FORMULAS) if g != f])
    mm2, mm2_step = _molar(f2)
    n2 = rng.randint(1, 9)
    m2 = n2 * mm2
    return _mc(rng, f"{m} g of {f} and {m2} g of {f2}. how many moles in total? {hint}", n + n2, "mol",
               [mm_step, mm2_step, f"n={m}/{mm}+{m2}/{mm2}={n}+{n2}={n + n2}"], f"check: {n}*{mm}+{n2}*{mm2}={m + m2}",
               [(Fraction(m + m2, mm), [mm_step, f"n=({m}+{m2})/{mm}"]),
                (Fraction(m + m2, mm + mm2), [f"M={mm}+{mm2}", f"n={m + m2}/{mm + mm2}"]),
                (n, [mm_step, f"n={m}/{mm}={n}", "forgot the second gas"])])


def _pose(p: dict) -> dict:
    choices = "\n".join(f"{k}) {v}" for k, v in p["choices"].items())
    return {"prompt": f"{p['question']}\n{choices}", "answer": p["letter"], "choices": dict(p["choices"])}


def _solve(p: dict, fault: random.Random | None) -> tuple[list[str], str]:
    letter = p["letter"]
    if fault:
        letter = fault.choice([k for k in p["choices"] if k != p["letter"]])
    return list(p["steps"][letter]) + [f"{p['choices'][letter]} is choice {letter}"], letter


FAMILIES = tuple(
    Family("science", name, make, _pose, _solve, lambda p, final: p["check"], plan)
    for name, make, plan in (
        ("speed", _speed, "use v=d/t"),
        ("ohm", _ohm, "use V=I*R"),
        ("density", _density, "use rho=m/V"),
        ("moles", _moles, "use n=m/M"),
    )
)
