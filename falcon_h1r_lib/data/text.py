"""Prompt text as dedup, decontamination and the SFT/RL split compare it: normalised tokens, number
signatures, shingles, Jaccard and MinHash/LSH. Pure text helpers, so task generators and sources use them too.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable

import numpy as np

_TOKEN = re.compile(r"\d+(?:\.\d+)?|[^\W\d_]+|[+\-*/=^<>()%]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def prompt_tokens(text: str) -> list[str]:
    """Lower-cased words, numbers and operator symbols; punctuation, LaTeX markup and spacing vanish."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\\", " ")
    return _TOKEN.findall(text)


def normalize_prompt(text: str) -> str:
    """The key of exact-match dedup/decontamination: survives re-spacing, case and punctuation edits."""
    return " ".join(prompt_tokens(text))


def number_signature(text: str) -> tuple[str, ...]:
    """Sorted multiset of the numbers in a prompt (leading zeros dropped): the operands of a template
    problem, so two prompts from one template with different operands never count as duplicates."""
    nums = []
    for tok in _NUMBER.findall(unicodedata.normalize("NFKC", text)):
        whole, _, frac = tok.partition(".")
        nums.append((whole.lstrip("0") or "0") + ("." + frac if frac else ""))
    return tuple(sorted(nums))


def shingles(text: str, n: int) -> set[str]:
    """Word n-gram shingles of the normalised prompt (the whole prompt if it is shorter than n)."""
    toks = prompt_tokens(text)
    if len(toks) < n:
        return {" ".join(toks)} if toks else set()
    return {" ".join(toks[i : i + n]) for i in range(len(toks) - n + 1)}


def jaccard(a: set, b: set) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


# --------------------------------------------------------------------------------------------
# MinHash (datasketch is not a dependency: this is the textbook construction, ~40 lines)
# --------------------------------------------------------------------------------------------

_P31 = (1 << 31) - 1  # prime modulus; a * h < 2^62 so uint64 never overflows


def _shingle_hash(s: str) -> int:
    return int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little") % _P31


class MinHasher:
    """Universal-hash MinHash: P(sig_a[i] == sig_b[i]) = Jaccard(a, b) for each of ``num_perm`` rows."""

    def __init__(self, num_perm: int = 64, seed: int = 0):
        if num_perm <= 0:
            raise ValueError(f"num_perm must be positive, got {num_perm}")
        rng = np.random.default_rng(seed)
        self.num_perm = num_perm
        self.a = rng.integers(1, _P31, size=num_perm, dtype=np.uint64)  # (P,)
        self.b = rng.integers(0, _P31, size=num_perm, dtype=np.uint64)  # (P,)

    def signature(self, items: Iterable[str]) -> np.ndarray:
        h = np.fromiter((_shingle_hash(s) for s in items), dtype=np.uint64)  # (S,)
        if h.size == 0:
            return np.full(self.num_perm, _P31, dtype=np.uint64)
        return ((self.a[:, None] * h[None, :] + self.b[:, None]) % _P31).min(axis=1)  # (P, S) -> (P,)

    @staticmethod
    def estimate(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
        return float(np.mean(sig_a == sig_b))


def lsh_band_keys(sig: np.ndarray, bands: int) -> list[tuple[int, bytes]]:
    """Banding: two signatures collide in some band with prob. 1 - (1 - J^r)^b (r = num_perm / bands)."""
    if len(sig) % bands:
        raise ValueError(f"num_perm {len(sig)} is not divisible by lsh_bands {bands}")
    r = len(sig) // bands
    return [(i, sig[i * r : (i + 1) * r].tobytes()) for i in range(bands)]
