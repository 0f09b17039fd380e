"""HF `transformers` backend: a batched, left-padded decode loop over the model's own forward and cache.

Why a loop of our own rather than `model.generate`: it gives every sequence its own seeded random stream
(so a completion does not depend on its batch), raw top-k log-probs at no extra forward, a per-sequence
stop hook, and it drops finished sequences from the batch (cache rows included) so they stop costing
compute. Prompts shared by the n samples of a request are prefilled once and the cache rows repeated.

Per step, for the A running rows:
    logits (A, V) -> raw log-probs lp = log_softmax(logits)        # stored: top-k of lp, lp[token]
    processed: stop tokens masked while < min_new_tokens, / temperature, top-p nucleus
    token = argmax (temperature 0) or inverse-CDF sampling with the row's own uniform u[row, step]
Sampling by inverse CDF over the sorted nucleus with pre-drawn uniforms is distributionally the same as
`torch.multinomial`, but vectorized across rows while each row keeps its own `torch.Generator`.

Progress is plain `tqdm` (text), not `tqdm.auto`: in a kernel without ipywidgets the latter warns, and with it the
bars become widget views that an executed notebook cannot show again. transformers' "falling back to its
reference PyTorch implementation" notices are dropped on CPU (`kernels.CPUFallbackNotices`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from falcon_h1r_lib.generation.sampling import (
    DecodeStep,
    GenerationRequest,
    SamplingConfig,
    StopHook,
    check_requests,
    sample_seed,
)
from falcon_h1r_lib.generation.traces import Trace
from falcon_h1r_lib.kernels import quiet_cpu_fallback_notices

quiet_cpu_fallback_notices()


@dataclass
class _Seq:
    request_index: int
    sample_index: int


def sample_next(logits: torch.Tensor, temperature: float, top_p: float, u: torch.Tensor | None) -> torch.Tensor:
    """Next tokens (A,) from processed logits (A, V): argmax if temperature == 0, else top-p sampling.

    `u` (A,) in [0, 1): each row's uniform draw; token = first index of the nucleus CDF above u * mass.
    """
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # (A, V)
    sorted_p, sorted_idx = probs.sort(dim=-1, descending=True, stable=True)
    if top_p < 1.0:
        mass_before = sorted_p.cumsum(-1) - sorted_p  # (A, V) mass of strictly more likely tokens
        sorted_p = sorted_p.masked_fill(mass_before >= top_p, 0.0)  # smallest prefix with mass >= top_p
    cdf = sorted_p.cumsum(-1)  # (A, V)
    target = (u.to(cdf.dtype) * cdf[:, -1]).unsqueeze(-1)  # (A, 1)
    pos = torch.searchsorted(cdf, target, right=True).clamp_(max=logits.shape[-1] - 1)
    return sorted_idx.gather(1, pos).squeeze(1)


class HFBackend:
    """`generate(requests, sampling, stop_hook) -> list[Trace]` on a transformers causal LM (CPU or GPU).

    batch_size counts sequences (request x sample) decoded together; tiny-model decoding is overhead
    bound, so large batches pay. use_cache=False re-runs the full forward each step (a reference for
    tests, same results). drop_finished removes ended rows from the batch and the cache (False keeps
    them decoding, masked out of the results; bench measures the difference). Per batch the top-k
    buffers hold B x max_new_tokens x k float32 + int32 (64 x 48K x 20: 0.5 GB at the paper's lengths).
    """

    def __init__(self, model: torch.nn.Module, tokenizer, batch_size: int = 64, use_cache: bool = True,
                 drop_finished: bool = True, progress: bool = True):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if tokenizer.pad_token_id is None:
            raise ValueError("tokenizer has no pad token: left padding needs one")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.use_cache = use_cache
        self.drop_finished = drop_finished
        self.progress = progress

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        ids = (list(request.prompt_token_ids) if request.prompt_token_ids is not None
               else self.tokenizer(request.prompt, add_special_tokens=False)["input_ids"])
        if not ids:
            raise ValueError(f"request {request.problem_id!r}: the prompt tokenizes to no tokens")
        return ids

    def _stop_ids(self, sampling: SamplingConfig) -> list[int]:
        if sampling.stop_token_ids is not None:
            return list(sampling.stop_token_ids)
        eos = self.tokenizer.eos_token_id
        if eos is None:
            raise ValueError("SamplingConfig.stop_token_ids is None and the tokenizer has no eos token")
        return [eos] if isinstance(eos, int) else list(eos)

    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig,
                 stop_hook: StopHook | None = None) -> list[Trace]:
        """One Trace per (request, sample index in `sampling.sample_indices`), ordered by request then sample."""
        order = {r.problem_id: i for i, r in enumerate(requests)}
        traces = list(self.stream(requests, sampling, stop_hook))
        return sorted(traces, key=lambda t: (order[t.problem_id], t.sample_index))

    def stream(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig,
               stop_hook: StopHook | None = None) -> Iterator[Trace]:
        """The same Traces, yielded batch by batch as each finishes (longest prompts first)."""
        requests = list(requests)
        check_requests(requests)
        prompts = [self._prompt_ids(r) for r in requests]
        stop_ids = self._stop_ids(sampling)
        # Longest prompts first, samples of a request kept together: less padding per batch.
        order = sorted(range(len(requests)), key=lambda i: -len(prompts[i]))
        seqs = [_Seq(i, s) for i in order for s in sampling.sample_indices]
        batches = [seqs[i:i + self.batch_size] for i in range(0, len(seqs), self.batch_size)]
        tokens = 0
        bar = tqdm(batches, desc="generate", unit="batch", disable=not self.progress)
        for batch in bar:
            traces = self._generate_batch(batch, requests, prompts, sampling, stop_ids, stop_hook)
            tokens += sum(t.n_tokens for t in traces)
            bar.set_postfix(tokens=tokens)
            yield from traces

    def _forward(self, **kwargs) -> tuple[torch.Tensor, object]:
        out = self.model(**kwargs, logits_to_keep=1)
        return out.logits[:, -1].float(), out.past_key_values  # (A, V)

    @torch.inference_mode()
    def _generate_batch(self, batch: list[_Seq], requests: list[GenerationRequest], prompts: list[list[int]],
                        sampling: SamplingConfig, stop_ids: list[int],
                        stop_hook: StopHook | None) -> list[Trace]:
        device = self.device
        B, max_new = len(batch), sampling.max_new_tokens
        vocab = self.model.config.vocab_size
        k = min(sampling.logprobs_topk, vocab)

        # Prefill each distinct prompt once, left padded: ids, mask, positions (U, T).
        unique = list(dict.fromkeys(s.request_index for s in batch))
        width = max(len(prompts[r]) for r in unique)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(unique), width), pad, dtype=torch.long)
        mask = torch.zeros((len(unique), width), dtype=torch.long)
        for row, r in enumerate(unique):
            ids[row, width - len(prompts[r]):] = torch.tensor(prompts[r])
            mask[row, width - len(prompts[r]):] = 1
        ids, mask = ids.to(device), mask.to(device)
        pos = (mask.cumsum(-1) - 1).clamp_(min=0)  # (U, T) position ids ignore the padding
        expand = torch.tensor([unique.index(s.request_index) for s in batch], device=device)  # (B,)

        logits, cache = self._forward(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=self.use_cache)
        if self.use_cache and (len(unique) != B or not torch.equal(expand, torch.arange(B, device=device))):
            cache.reorder_cache(expand)  # every layer's KV, conv and SSM state: (U, ...) -> (B, ...)
        logits = logits[expand]  # (B, V)
        ids, mask, pos = ids[expand], mask[expand], pos[expand]  # (B, T)
        next_pos = pos[:, -1] + 1  # (B,)

        uniforms = None
        if not sampling.greedy:  # each sequence's own stream: (B, max_new)
            uniforms = torch.stack([
                torch.rand(max_new, generator=torch.Generator().manual_seed(
                    sample_seed(sampling.seed, requests[s.request_index].problem_id, s.sample_index)),
                    dtype=torch.float64)
                for s in batch]).to(device)

        tokens = torch.zeros((B, max_new), dtype=torch.long, device=device)
        token_lp = torch.zeros((B, max_new), dtype=torch.float32, device=device)
        topk_ids = torch.zeros((B, max_new, k), dtype=torch.int32, device=device)
        topk_lp = torch.zeros((B, max_new, k), dtype=torch.float32, device=device)
        n_gen = [0] * B
        reasons = [""] * B
        stop_t = torch.tensor(stop_ids, device=device)
        active = torch.arange(B, device=device)  # (A,) batch rows still running

        alive = torch.ones(B, dtype=torch.bool, device=device)  # (A,) false: ended but kept (no drop)
        for t in range(max_new):
            lp = torch.log_softmax(logits, dim=-1)  # (A, V) raw: before temperature / top-p
            if t < sampling.min_new_tokens:
                logits = logits.index_fill(1, stop_t, float("-inf"))
            u = uniforms[active, t] if uniforms is not None else None
            token = sample_next(logits, sampling.temperature, sampling.top_p, u)  # (A,)
            rows = active[alive]  # batch rows written this step
            tokens[rows, t] = token[alive]
            token_lp[rows, t] = lp.gather(1, token[:, None]).squeeze(1)[alive]
            if k:
                top = lp[alive].topk(k, dim=-1)  # sorted, decreasing
                topk_lp[rows, t], topk_ids[rows, t] = top.values, top.indices.to(torch.int32)

            is_eos = torch.isin(token[alive], stop_t)  # (R,) over the running rows
            stopped = torch.zeros_like(is_eos)
            if stop_hook is not None:
                stopped = self._call_hook(stop_hook, batch, requests, rows, t, tokens, token_lp,
                                          topk_ids, topk_lp)
            done = is_eos | stopped
            if t + 1 == max_new:
                done = torch.ones_like(done)
            if bool(done.any()):
                for row, e, h in zip(rows[done].tolist(), is_eos[done].tolist(), stopped[done].tolist(), strict=True):
                    n_gen[row] = t + 1
                    reasons[row] = "eos" if e else ("stopped" if h else "length")
                if bool(done.all()):
                    break
                alive = alive.clone()
                alive[alive.nonzero().squeeze(1)[done]] = False
                if self.drop_finished:  # drop ended rows from the batch and from every cache layer
                    keep_idx = alive.nonzero().squeeze(1)
                    active, token, alive = active[keep_idx], token[keep_idx], alive[keep_idx]
                    mask, ids, next_pos = mask[keep_idx], ids[keep_idx], next_pos[keep_idx]
                    if self.use_cache:
                        cache.reorder_cache(keep_idx)
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)  # (A, T + t + 1)
            if self.use_cache:
                logits, cache = self._forward(input_ids=token[:, None], attention_mask=mask,
                                              position_ids=next_pos[:, None], past_key_values=cache,
                                              use_cache=True)
            else:
                ids = torch.cat([ids, token[:, None]], dim=1)
                pos = (mask.cumsum(-1) - 1).clamp_(min=0)
                logits, _ = self._forward(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)
            next_pos = next_pos + 1

        out_tokens = tokens.cpu().numpy()
        out_lp = token_lp.cpu().numpy()
        out_topk_ids = topk_ids.cpu().numpy()
        out_topk_lp = topk_lp.cpu().numpy()
        traces = []
        for row, s in enumerate(batch):
            n = n_gen[row]
            req = requests[s.request_index]
            token_ids = out_tokens[row, :n].astype(np.int32)
            traces.append(Trace(
                problem_id=req.problem_id, sample_index=s.sample_index, seed=sampling.seed, prompt=req.prompt,
                completion=self.tokenizer.decode(token_ids.tolist(), skip_special_tokens=True),
                token_ids=token_ids, token_logprobs=out_lp[row, :n], topk_ids=out_topk_ids[row, :n],
                topk_logprobs=out_topk_lp[row, :n], finish_reason=reasons[row],
                n_prompt_tokens=len(prompts[s.request_index])))
        return traces

    @staticmethod
    def _call_hook(stop_hook: StopHook, batch: list[_Seq], requests: list[GenerationRequest],
                   active: torch.Tensor, t: int, tokens, token_lp, topk_ids, topk_lp) -> torch.Tensor:
        """Show the hook the running rows `active` (batch indices) after token t; return their stop flags."""
        rows = active.tolist()
        seqs = [batch[r] for r in rows]
        step = DecodeStep(
            problem_ids=[requests[s.request_index].problem_id for s in seqs],
            sample_indices=[s.sample_index for s in seqs],
            request_indices=[s.request_index for s in seqs],
            n_generated=[t + 1] * len(rows),
            token_ids=tokens[active, t].cpu(), token_logprobs=token_lp[active, t].cpu(),
            topk_ids=topk_ids[active, t].cpu(), topk_logprobs=topk_lp[active, t].cpu(),
            history_fn=lambda i: topk_lp[rows[i], :t + 1].cpu(),
        )
        answer = stop_hook(step)
        if answer is None:
            return torch.zeros(len(rows), dtype=torch.bool, device=active.device)
        answer = torch.as_tensor(answer, dtype=torch.bool).reshape(-1)
        if answer.numel() != len(rows):
            raise ValueError(f"stop_hook returned {answer.numel()} flags for {len(rows)} running sequences")
        return answer.to(active.device)


__all__ = ["HFBackend", "sample_next"]
