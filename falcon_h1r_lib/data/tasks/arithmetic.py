"""Math families: column arithmetic with written carries, nested expressions, linear equations, fractions.

Steps are written one digit at a time, least-significant digit first with the carry ("7+9=16 c1"), the
format a 0.5M-parameter model learns on CPU (reference tiny_feasibility.md). Levels grow the operand
length, the expression depth or the number of terms. A fault perturbs one intermediate value by a small
delta and the rest is computed honestly from it, so the slip propagates to a wrong final answer.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

from . import Family


def fmt_value(v: Fraction | int) -> str:
    """Canonical math answer: "42", "-3", "3/4"."""
    v = Fraction(v)
    return str(v.numerator) if v.denominator == 1 else f"{v.numerator}/{v.denominator}"


def _delta(fault: random.Random, value: int, lo: int, hi: int) -> int:
    """A small nonzero slip keeping ``value + delta`` within [lo, hi] (a plausible wrong digit)."""
    options = [d for d in (-2, -1, 1, 2) if lo <= value + d <= hi]
    return fault.choice(options)


def _n_digits(rng: random.Random, nd: int) -> int:
    return rng.randint(10 ** (nd - 1) if nd > 1 else 1, 10**nd - 1)


def _digits(x: int, width: int) -> list[int]:
    """Digits least-significant first, zero-padded to ``width``."""
    return [(x // 10**i) % 10 for i in range(width)]


# ----------------------------------------------------------------------------------------- addition
def _add_make(rng: random.Random, level: int) -> dict:
    nd = level + 1  # level 1: 2-digit operands ... level 5: 6-digit
    return {"a": _n_digits(rng, nd), "b": _n_digits(rng, nd)}


def _add_solve(p: dict, fault: random.Random | None) -> tuple[list[str], str]:
    a, b = p["a"], p["b"]
    width = max(len(str(a)), len(str(b)))
    da, db = _digits(a, width), _digits(b, width)
    bad = fault.randrange(width) if fault else -1
    steps, out, carry = [], [], 0
    for i in range(width):
        s = da[i] + db[i] + carry
        if i == bad:
            s += _delta(fault, s, 0, 19)
        lhs = f"{da[i]}+{db[i]}" + (f"+{carry}" if carry else "")
        out.append(s % 10)
        carry = s // 10
        steps.append(f"{lhs}={s} c{carry}")
    value = sum(d * 10**i for i, d in enumerate(out)) + carry * 10**width
    return steps, fmt_value(value)


# -------------------------------------------------------------------------------------- subtraction
def _sub_make(rng: random.Random, level: int) -> dict:
    nd = level + 1
    a, b = _n_digits(rng, nd), _n_digits(rng, nd)
    if level <= 3 and a < b:  # negative results only from level 4
        a, b = b, a
    return {"a": a, "b": b}


def _sub_solve(p: dict, fault: random.Random | None) -> tuple[list[str], str]:
    a, b = p["a"], p["b"]
    steps = []
    sign, big, small = 1, a, b
    if a < b:
        sign, big, small = -1, b, a
        steps.append(f"{b}>{a} so -({b}-{a})")
    width = len(str(big))
    dg, ds = _digits(big, width), _digits(small, width)
    bad = fault.randrange(width) if fault else -1
    out, borrow = [], 0
    for i in range(width):
        top = dg[i] - borrow
        lhs = f"{dg[i]}" + (f"-{borrow}" if borrow else "") + f"-{ds[i]}"
        if top < ds[i]:
            val, borrow = top + 10 - ds[i], 1
            lhs += "+10"
        else:
            val, borrow = top - ds[i], 0
        if i == bad:
            val += _delta(fault, val, 0, 9)
        out.append(val)
        steps.append(f"{lhs}={val} b{borrow}")
    value = sign * sum(d * 10**i for i, d in enumerate(out))
    return steps, fmt_value(value)


# ----------------------------------------------------------------------------------- multiplication
def _mul_make(rng: random.Random, level: int) -> dict:
    return {"a": _n_digits(rng, level), "m": rng.randint(2, 9)}  # level digits x 1 digit


def _mul_solve(p: dict, fault: random.Random | None) -> tuple[list[str], str]:
    a, m = p["a"], p["m"]
    width = len(str(a))
    da = _digits(a, width)
    bad = fault.randrange(width) if fault else -1
    steps, out, carry = [], [], 0
    for i in range(width):
        s = da[i] * m + carry
        if i == bad:
            s += _delta(fault, s, 0, 89)
        lhs = f"{da[i]}*{m}" + (f"+{carry}" if carry else "")
        out.append(s % 10)
        carry = s // 10
        steps.append(f"{lhs}={s} c{carry}")
    value = sum(d * 10**i for i, d in enumerate(out)) + carry * 10**width
    return steps, fmt_value(value)


# ------------------------------------------------------------------------------ nested expressions
# A tree is an int leaf or [op, left, right]; rendered with parentheses around every inner subtree.
_OPS = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y}


def _expr_tree(rng: random.Random, n_ops: int):
    if n_ops == 0:
        return rng.randint(1, 9)
    k = rng.randrange(n_ops)  # ops in the left subtree
    op = rng.choice("++--*")
    return [op, _expr_tree(rng, k), _expr_tree(rng, n_ops - 1 - k)]


def render_expr(t, child: bool = False) -> str:
    if isinstance(t, int):
        return f"({t})" if (t < 0 and child) else str(t)
    s = f"{render_expr(t[1], True)}{t[0]}{render_expr(t[2], True)}"
    return f"({s})" if child else s


def _expr_values(t) -> list[int]:
    if isinstance(t, int):
        return [t]
    left, right = _expr_values(t[1]), _expr_values(t[2])
    return left + right + [_OPS[t[0]](left[-1], right[-1])]


def _expr_make(rng: random.Random, level: int) -> dict:
    for _ in range(1000):  # keep every intermediate small so traces stay short
        tree = _expr_tree(rng, level)  # level = number of operations
        if max(abs(v) for v in _expr_values(tree)) <= 99:
            return {"tree": tree}
    raise RuntimeError(f"no small expression found at level {level}")


def _reduce_once(t, fault_delta: int):
    """Evaluate the leftmost operation whose operands are both numbers; returns the new tree."""
    if isinstance(t, int):
        return t, False
    op, left, right = t
    if isinstance(left, int) and isinstance(right, int):
        return _OPS[op](left, right) + fault_delta, True
    new_left, done = _reduce_once(left, fault_delta)
    if done:
        return [op, new_left, right], True
    new_right, done = _reduce_once(right, fault_delta)
    return [op, left, new_right], done


def _expr_solve(p: dict, fault: random.Random | None) -> tuple[list[str], str]:
    tree = p["tree"]
    n_ops = len(_expr_values(tree)) // 2
    bad = fault.randrange(n_ops) if fault else -1
    steps = []
    for i in range(n_ops):
        delta = fault.choice((-2, -1, 1, 2)) if i == bad else 0
        tree, _ = _reduce_once(tree, delta)
        steps.append("=" + render_expr(tree))
    return steps, fmt_value(tree)


# -------------------------------------------------------------------------------- linear equations
def _signed(x: int) -> str:
    """"+5" / "-5": the tail of a sum."""
    return f"+{x}" if x >= 0 else f"-{-x}"


def _term(a: int) -> str:
    return {1: "x", -1: "-x"}.get(a, f"{a}x")


def _lin_make(rng: random.Random, level: int) -> dict:
    x = rng.randint(1, 12) if level <= 3 else rng.choice([v for v in range(-9, 13) if v])
    if level == 1:
        a, b = 1, rng.randint(1, 9)
    elif level == 2:
        a, b = rng.randint(2, 9), 0
    elif level == 3:
        a, b = rng.randint(2, 9), rng.randint(1, 20)
    else:
        a, b = rng.choice([2, 3, 4, 5, 6, 7, 8, 9, -2, -3]), rng.choice([v for v in range(-20, 21) if v])
    d = 0
    if level == 5:  # x on both sides: a*x+b = d*x+e
        d = rng.randint(1, 5)
        a = d + rng.randint(1, 6)
    e = a * x + b - d * x
    return {"a": a, "b": b, "d": d, "e": e, "x": x}


def _lin_lhs(p: dict) -> str:
    return _term(p["a"]) + (_signed(p["b"]) if p["b"] else "")


def _lin_rhs(p: dict) -> str:
    return (_term(p["d"]) + _signed(p["e"])) if p["d"] else str(p["e"])


def _lin_solve(p: dict, fault: random.Random | None) -> tuple[list[str], str]:
    a, b, d, e = p["a"], p["b"], p["d"], p["e"]
    slots = (["coef"] if d else []) + (["rhs"] if b else []) + (["div"] if a - d != 1 else [])
    bad = fault.choice(slots) if fault else None
    steps = []
    coef = a - d
    if d:  # a*x + b = d*x + e  ->  (a-d)*x = e-b
        if bad == "coef":
            coef += fault.choice([v for v in (-2, -1, 1, 2) if coef + v != 0])
        steps.append(f"{_term(a)}-{_term(d)}={_term(coef)}")
    rhs = e
    if b:
        rhs = e - b + (fault.choice((-2, -1, 1, 2)) if bad == "rhs" else 0)
        steps.append(f"{_term(coef)}={e}{_signed(-b)}={rhs}")
    x = Fraction(rhs, coef)
    if coef != 1:
        x += fault.choice((-2, -1, 1, 2)) if bad == "div" else 0
        steps.append(f"x={rhs}/{coef}={fmt_value(x)}")
    return steps, fmt_value(x)


def _lin_check(p: dict, final: str) -> str:
    """"check: 3*5+2=17" (x substituted back)."""
    def side(k: int, c: int) -> str:
        x = final if "/" not in final and not final.startswith("-") else f"({final})"
        return f"{k}*{x}" + (_signed(c) if c else "")

    rhs = side(p["d"], p["e"]) if p["d"] else str(p["e"])
    return f"check: {side(p['a'], p['b'])}={rhs}"


# ------------------------------------------------------------------------------------- fractions
def _frac_make(rng: random.Random, level: int) -> dict:
    if level == 1:  # simplify p/q
        q0 = rng.randint(2, 9)
        p0 = rng.choice([v for v in range(1, 2 * q0) if math.gcd(v, q0) == 1])
        k = rng.randint(2, 6)
        return {"terms": [[p0 * k, q0 * k, 1]]}
    n_terms = 2 if level <= 4 else 3
    if level == 2:  # same denominator
        q = rng.randint(3, 9)
        dens = [q] * n_terms
    else:
        dens = [rng.randint(2, 6 if level < 5 else 5) for _ in range(n_terms)]
    terms = []
    for j, q in enumerate(dens):
        sign = -1 if (j > 0 and level >= 4 and rng.random() < 0.5) else 1
        terms.append([rng.randint(1, q - 1) if q > 1 else 1, q, sign])
    return {"terms": terms}


def _frac_prompt(terms: list) -> str:
    s = ""
    for j, (num, den, sign) in enumerate(terms):
        s += ("" if j == 0 else ("+" if sign > 0 else "-")) + f"{num}/{den}"
    return s


def _frac_solve(p: dict, fault: random.Random | None) -> tuple[list[str], str]:
    terms = p["terms"]
    if len(terms) == 1:  # simplify: "gcd(6,8)=2", "6/8=3/4"
        num, den, _ = terms[0]
        g = math.gcd(num, den)
        top = num // g + (_delta(fault, num // g, 1, 99) if fault else 0)
        value = Fraction(top, den // g)
        return [f"gcd({num},{den})={g}", f"{num}/{den}={top}/{den // g}"], fmt_value(value)
    dens = [t[1] for t in terms]
    lcm = math.lcm(*dens)
    bad = fault.randrange(len(terms) + 1) if fault else -1  # a scaled numerator, or the combined one
    steps = [f"lcm({','.join(map(str, dens))})={lcm}"] if len(set(dens)) > 1 else []
    nums = []
    for j, (num, den, sign) in enumerate(terms):
        sn = num * lcm // den
        if j == bad:
            sn += _delta(fault, sn, 1, 99)
        nums.append((sn, sign))
        if den != lcm:
            steps.append(f"{num}/{den}={sn}/{lcm}")
    expr = "".join(("" if j == 0 else ("+" if s > 0 else "-")) + str(n) for j, (n, s) in enumerate(nums))
    total = sum(s * n for n, s in nums) + (fault.choice((-1, 1)) if bad == len(terms) else 0)
    steps.append(f"({expr})/{lcm}={total}/{lcm}")
    value = Fraction(total, lcm)
    g = math.gcd(total, lcm)
    if g > 1:
        steps.append(f"gcd({abs(total)},{lcm})={g}")
        steps.append(f"{total}/{lcm}={fmt_value(value)}")
    return steps, fmt_value(value)


# ---------------------------------------------------------------------------------------- registry
def _value_pose(prompt_fn, value_fn):
    return lambda p: {"prompt": prompt_fn(p), "answer": fmt_value(value_fn(p))}


def _frac_value(p: dict) -> Fraction:
    return sum((Fraction(s * n, d) for n, d, s in p["terms"]), Fraction(0))


def _check_inverse(sym: str, other: str):
    """Self-check by the inverse operation, e.g. "check: 936-589=347"."""

    def check(p: dict, final: str) -> str:
        v, o = Fraction(final), p[other]
        back = {"-": v - o, "+": v + o, "/": v / o}[sym]
        return f"check: {final}{sym}{o}={fmt_value(back)}"

    return check


FAMILIES = (
    Family(
        "math", "add", _add_make,
        _value_pose(lambda p: f"{p['a']}+{p['b']}=?", lambda p: p["a"] + p["b"]),
        _add_solve, _check_inverse("-", "b"), "digits right to left, carry",
    ),
    Family(
        "math", "sub", _sub_make,
        _value_pose(lambda p: f"{p['a']}-{p['b']}=?", lambda p: p["a"] - p["b"]),
        _sub_solve, _check_inverse("+", "b"), "digits right to left, borrow",
    ),
    Family(
        "math", "mul", _mul_make,
        _value_pose(lambda p: f"{p['a']}*{p['m']}=?", lambda p: p["a"] * p["m"]),
        _mul_solve, _check_inverse("/", "m"), "digits right to left, carry",
    ),
    Family(
        "math", "expr", _expr_make,
        _value_pose(lambda p: f"{render_expr(p['tree'])}=?", lambda p: _expr_values(p["tree"])[-1]),
        _expr_solve, lambda p, f: f"check: {render_expr(p['tree'])}={f}", "inner brackets first",
    ),
    Family(
        "math", "linear", _lin_make,
        _value_pose(lambda p: f"solve {_lin_lhs(p)}={_lin_rhs(p)}", lambda p: p["x"]),
        _lin_solve,
        _lin_check,
        "isolate x",
    ),
    Family(
        "math", "frac", _frac_make,
        _value_pose(lambda p: f"{_frac_prompt(p['terms'])}=?", _frac_value),
        _frac_solve,
        lambda p, f: f"check: gcd({abs(Fraction(f).numerator)},{Fraction(f).denominator})=1",
        "common denominator, simplify",
    ),
)
