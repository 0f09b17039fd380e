"""Benchmark prompts: random token ids with no special or added token, reproducible from a seed."""

from __future__ import annotations


def allowed_token_ids(tokenizer) -> list[int]:
    """Every id but the special and added ones (pad, eos, ChatML markers, <think>): plain text tokens only."""
    excluded = set(tokenizer.all_special_ids) | set(tokenizer.get_added_vocab().values())
    allowed = [i for i in range(len(tokenizer)) if i not in excluded]
    if not allowed:
        raise ValueError(f"tokenizer of {len(tokenizer)} ids has no non-special token to build prompts from")
    return allowed


def prompt_token_ids(tokenizer, batch: int, prompt_len: int, seed: int) -> list[list[int]]:
    """(batch, prompt_len) random token ids, no special ids, from a `torch.Generator` seeded with `seed`."""
    import torch

    if batch < 1 or prompt_len < 1:
        raise ValueError(f"batch and prompt_len must be >= 1, got batch={batch}, prompt_len={prompt_len}")
    allowed = torch.tensor(allowed_token_ids(tokenizer))
    gen = torch.Generator().manual_seed(int(seed))
    idx = torch.randint(len(allowed), (batch, prompt_len), generator=gen)  # (B, T) indices into `allowed`
    return allowed[idx].tolist()


__all__ = ["allowed_token_ids", "prompt_token_ids"]
