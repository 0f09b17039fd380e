"""Throughput of the HF backend against plain `model.generate`, side by side in one run.

    python -m falcon_h1r_lib.generation.bench [--batches 8 64] [--new-tokens 64] [--repeats 3]

The tiny hybrid (random init) decodes a fixed length (stop tokens masked until max_new_tokens, in both
paths) from random prompts, sampling at the paper's T = 0.6, top-p 0.95; the two paths alternate within
each repeat so machine-load drifts hit both alike; the median time is kept. Our backend also records
the top-20 raw log-probs per token, which plain `generate` does not. A second measurement shows what
dropping finished rows saves: half the sequences are ended by a stop hook at a quarter of the length.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from falcon_h1r_lib.generation.hf_backend import HFBackend
from falcon_h1r_lib.generation.sampling import GenerationRequest, SamplingConfig
from falcon_h1r_lib.models import build_model, falcon_h1_config
from falcon_h1r_lib.tokenizer import build_tokenizer


def _requests(batch: int, prompt_len: int, vocab: int, seed: int) -> list[GenerationRequest]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, vocab, (batch, prompt_len), generator=gen)  # (B, T), no special ids
    return [GenerationRequest(f"bench-{i}", "", tuple(row.tolist())) for i, row in enumerate(ids)]


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(batches=(8, 64), new_tokens: int = 64, prompt_len: int = 32, repeats: int = 3, width: int = 128,
        seed: int = 0, threads: int | None = 1) -> list[dict]:
    """Rows {batch, backend_tok_s, generate_tok_s, ratio, ...}; ratio = backend / generate tokens/s."""
    if threads:
        torch.set_num_threads(threads)
    tok = build_tokenizer(vocab_size=512)
    model = build_model(falcon_h1_config("tiny", width=width, vocab_size=len(tok)), seed=seed)
    device = next(model.parameters()).device
    cfg = SamplingConfig(n=1, temperature=0.6, top_p=0.95, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                         seed=seed, logprobs_topk=20)
    rows = []
    for batch in batches:
        reqs = _requests(batch, prompt_len, len(tok), seed)
        backend = HFBackend(model, tok, batch_size=batch, progress=False)
        ids = torch.tensor([r.prompt_token_ids for r in reqs], device=device)  # equal lengths: no padding

        def ours(backend=backend, reqs=reqs):
            traces = backend.generate(reqs, cfg)
            assert all(t.n_tokens == new_tokens for t in traces)

        def plain(ids=ids):
            with torch.inference_mode():
                out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=0.6,
                                     top_p=0.95, top_k=0, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                     pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
            assert out.shape[1] == ids.shape[1] + new_tokens

        ours(), plain()  # warm-up: one-off lookups and allocations are not timed
        t_ours, t_plain = [], []
        for _ in range(repeats):
            t_ours.append(_time(ours))
            t_plain.append(_time(plain))
        tokens = batch * new_tokens
        rows.append({"batch": batch, "new_tokens": new_tokens, "prompt_len": prompt_len, "repeats": repeats,
                     "backend_s": statistics.median(t_ours), "generate_s": statistics.median(t_plain),
                     "backend_tok_s": tokens / statistics.median(t_ours),
                     "generate_tok_s": tokens / statistics.median(t_plain),
                     "ratio": statistics.median(t_plain) / statistics.median(t_ours)})
    rows.append(_drop_effect(model, tok, max(batches), new_tokens, prompt_len, repeats, seed, cfg))
    return rows


def _drop_effect(model, tok, batch, new_tokens, prompt_len, repeats, seed, cfg) -> dict:
    """Half the rows stopped by a hook at new_tokens // 4: wall time with and without dropping them."""
    reqs = _requests(batch, prompt_len, len(tok), seed + 1)
    cut = max(1, new_tokens // 4)

    def hook(step):
        return [int(p.split("-")[1]) % 2 == 1 and n >= cut for p, n in zip(step.problem_ids, step.n_generated, strict=True)]

    times = {True: [], False: []}
    for _ in range(repeats):
        for drop in (True, False):
            be = HFBackend(model, tok, batch_size=batch, drop_finished=drop, progress=False)
            times[drop].append(_time(lambda be=be: be.generate(reqs, cfg, stop_hook=hook)))
    return {"batch": batch, "case": "half the rows stopped at 1/4 length", "drop_s": statistics.median(times[True]),
            "keep_s": statistics.median(times[False]),
            "speedup": statistics.median(times[False]) / statistics.median(times[True])}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: leave torch's default)")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = run(args.batches, args.new_tokens, args.prompt_len, args.repeats, args.width, threads=args.threads)
    for row in rows:
        if "ratio" in row:
            print(f"batch {row['batch']:>3}: backend {row['backend_tok_s']:8.1f} tok/s, model.generate "
                  f"{row['generate_tok_s']:8.1f} tok/s, ratio {row['ratio']:.2f}")
        else:
            print(f"batch {row['batch']:>3}, {row['case']}: drop {row['drop_s']:.2f} s, keep {row['keep_s']:.2f} s, "
                  f"speedup {row['speedup']:.2f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
