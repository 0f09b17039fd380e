"""vLLM backend on hand-built fakes shaped like vllm 0.31's engine (`LLMEngine.add_request / step /
abort_request`, DELTA `RequestOutput`s with `Logprob` dicts): conversion, seeds, greedy copies, stop hook,
the in-flight cap and host memory. The real engine runs in `test_vllm_engine.py`."""

import tracemalloc
import zlib
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from falcon_h1r_lib.generation import GenerationRequest, SamplingConfig, VLLMBackend, VLLMConfig
from falcon_h1r_lib.generation import vllm_backend as vb
from falcon_h1r_lib.generation.sampling import request_seed, sample_seed


@dataclass
class Logprob:  # vllm.logprobs.Logprob
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:  # vllm.outputs.CompletionOutput (the fields we read)
    index: int
    token_ids: list
    logprobs: list | None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:  # vllm.outputs.RequestOutput (the fields we read)
    request_id: str
    outputs: list
    finished: bool = False


EOS = 3


def test_position_logprobs_exact():
    # sampled token inside the top-2: 2 entries; outside: k + 1 entries, ranks from 1
    assert vb.position_logprobs({5: Logprob(-0.125, 1), 9: Logprob(-2.5, 2)}, 5, 2, "w") == (-0.125, [5, 9], [-0.125, -2.5])
    lp, ids, lps = vb.position_logprobs({7: Logprob(-3.0, 5), 4: Logprob(-1.0, 2), 6: Logprob(-0.5, 1)}, 7, 2, "w")
    assert (lp, ids, lps) == (-3.0, [6, 4], [-0.5, -1.0])
    assert vb.position_logprobs({7: Logprob(-3.0, 5)}, 7, 0, "w") == (-3.0, [], [])
    with pytest.raises(ValueError, match="'q7' sample 0 position 0: sampled token 5 missing"):
        vb.position_logprobs({9: Logprob(-1.0, 1), 8: Logprob(-2.0, 2)}, 5, 2, "'q7' sample 0 position 0")
    with pytest.raises(ValueError, match="1 top-ranked entries, expected k=2"):
        vb.position_logprobs({9: Logprob(-1.0, 1)}, 9, 2, "w")


def test_finish_reason_mapping():
    assert vb.finish_reason("stop", None, EOS, [EOS], "w") == "eos"  # eos: stop_reason None
    assert vb.finish_reason("stop", 11, 11, [EOS], "w") == "eos"  # a stop token id
    assert vb.finish_reason("stop", "</answer>", 5, [EOS], "w") == "stopped"  # a stop string
    assert vb.finish_reason("abort", None, 5, [EOS], "w") == "stopped"
    assert vb.finish_reason("length", None, 5, [EOS], "w") == "length"
    with pytest.raises(ValueError, match="w: unfinished or unknown vLLM finish_reason None"):
        vb.finish_reason(None, None, 5, [EOS], "w")


def test_config_and_sharding():
    cfg = VLLMConfig(model="tiiuae/Falcon-H1R-7B", tensor_parallel_size=4, data_parallel_size=2,
                     data_parallel_rank=1, engine_kwargs={"swap_space": 4})
    kw = cfg.llm_kwargs()
    assert kw["tensor_parallel_size"] == 4 and kw["logprobs_mode"] == "raw_logprobs" and kw["swap_space"] == 4
    assert "data_parallel_size" not in kw and "max_in_flight" not in kw  # backend-side settings
    with pytest.raises(ValueError, match="data_parallel_rank"):
        VLLMConfig(model="m", data_parallel_size=2, data_parallel_rank=2)
    with pytest.raises(ValueError, match=r"unknown VLLMConfig key\(s\) \['tp'\]"):
        VLLMConfig.from_dict({"model": "m", "tp": 2})
    with pytest.raises(ValueError, match="src: VLLMConfig.max_in_flight must be an int >= 1"):
        VLLMConfig.from_dict({"model": "m", "max_in_flight": 0}, source="src")
    reqs = [GenerationRequest(f"p{i}", "x") for i in range(5)]
    assert [r.problem_id for r in vb.shard_requests(reqs, 1, 2)] == ["p1", "p3"]


def test_cpu_engines_never_split_a_seeded_prefill():
    kw = vb.cpu_safe_kwargs(VLLMConfig(model="m", enable_prefix_caching=True,
                                       engine_kwargs={"enable_chunked_prefill": True}).llm_kwargs())
    assert kw["enable_prefix_caching"] is False and kw["enable_chunked_prefill"] is False and kw["model"] == "m"


# ---------------------------------------------------------------- a fake engine


V = 50


def _step(pid: str, sample: int, pos: int, k: int) -> tuple[int, dict]:
    """Deterministic fake decoding of (problem, sample, position): token and its top-k logprob dict."""
    gen = torch.Generator().manual_seed(zlib.crc32(f"{pid}/{sample}/{pos}".encode()))
    lp = torch.log_softmax(torch.randn(V, generator=gen), -1)
    token = int(torch.randint(4, V, (1,), generator=gen))
    order = lp.argsort(descending=True).tolist()
    return token, {t: Logprob(float(lp[t]), order.index(t) + 1) for t in order[:k] + [token]}


@dataclass
class FakeEngine:
    """One token per step for every running request (DELTA outputs), like vLLM's LLMEngine."""

    requests: dict = field(default_factory=dict)
    added: list = field(default_factory=list)
    aborted: list = field(default_factory=list)
    peak_running: int = 0
    record: bool = True  # off when measuring memory: the log itself grows with the pool

    def add_request(self, rid, prompt, params):
        _, pid, sample = rid.split("\x1f")
        self.requests[rid] = {"params": params, "pos": 0, "key": (pid, int(sample))}
        if self.record:
            self.added.append((rid, params))
        self.peak_running = max(self.peak_running, len(self.requests))

    def has_unfinished_requests(self):
        return bool(self.requests)

    def abort_request(self, rids):
        self.aborted += rids
        for rid in rids:
            self.requests.pop(rid, None)

    def step(self):
        outs = []
        for rid, st in list(self.requests.items()):
            p = st["params"]
            token, entries = _step(*st["key"], st["pos"], p.logprobs)
            st["pos"] += 1
            finished = st["pos"] == p.max_tokens
            outs.append(RequestOutput(rid, [CompletionOutput(0, [token], [entries], "length" if finished else None)],
                                      finished))
            if finished:
                del self.requests[rid]
        return outs


class FakeLLM:
    def __init__(self):
        self.llm_engine = FakeEngine()

    def get_tokenizer(self):
        return SimpleNamespace(eos_token_id=EOS, decode=lambda ids, skip_special_tokens: " ".join(map(str, ids)))


@pytest.fixture
def fake_params(monkeypatch):
    def params(sampling, seed, stop_ids=(), extra_args=None):
        return SimpleNamespace(n=1, max_tokens=sampling.max_new_tokens, seed=None if sampling.greedy else seed,
                               logprobs=sampling.logprobs_topk, extra_args=extra_args, temperature=sampling.temperature)
    monkeypatch.setattr(vb, "sampling_params", params)


def _requests(n=3):
    return [GenerationRequest(f"p{i}", f"prompt {i}", (1, 2, 3 + i)) for i in range(n)]


def _backend(**cfg):
    return VLLMBackend(VLLMConfig(model="fake", **cfg), llm=FakeLLM(), progress=False)


def test_each_sample_is_a_request_seeded_like_vllm_children(fake_params):
    be = _backend()
    traces = be.generate(_requests(), SamplingConfig(n=2, max_new_tokens=4, logprobs_topk=3, seed=5))
    assert [(t.problem_id, t.sample_index) for t in traces] == [(f"p{i}", s) for i in range(3) for s in range(2)]
    seeds = {rid.split("\x1f", 1)[1]: p.seed for rid, p in be.llm.llm_engine.added}
    assert seeds["p1\x1f1"] == sample_seed(5, "p1", 1) == request_seed(5, "p1") + 1  # vLLM child i: seed + i
    for t in traces:
        want = [_step(t.problem_id, t.sample_index, pos, 3) for pos in range(4)]
        assert t.token_ids.tolist() == [w[0] for w in want] and t.finish_reason == "length"
        assert t.n_prompt_tokens == 3 and t.topk_logprobs.shape == (4, 3)
        assert t.completion == " ".join(str(w[0]) for w in want)
        np.testing.assert_array_equal(t.topk_logprobs[0], sorted((lp.logprob for lp in want[0][1].values()),
                                                                  reverse=True)[:3])


def test_first_sample_index_continues_a_pool(fake_params):
    whole = _backend().generate(_requests(1), SamplingConfig(n=5, max_new_tokens=3, logprobs_topk=2, seed=1))
    tail = _backend().generate(_requests(1), SamplingConfig(n=2, max_new_tokens=3, logprobs_topk=2, seed=1,
                                                            first_sample_index=3))
    assert [t.sample_index for t in tail] == [3, 4] and tail == whole[3:]


def test_greedy_n_is_one_request_copied(fake_params):
    be = _backend()
    traces = be.generate(_requests(2), SamplingConfig(n=3, temperature=0.0, max_new_tokens=3, logprobs_topk=2,
                                                      first_sample_index=1))
    assert len(be.llm.llm_engine.added) == 2  # vLLM refuses n > 1 at temperature 0: one request each
    assert all(p.seed is None for _, p in be.llm.llm_engine.added)
    assert [(t.problem_id, t.sample_index) for t in traces] == [(p, s) for p in ("p0", "p1") for s in (1, 2, 3)]
    assert traces[0].token_ids.tolist() == traces[2].token_ids.tolist()


def test_in_flight_cap_bounds_the_engine_and_early_exit_aborts(fake_params):
    be = _backend(max_in_flight=2)
    traces = be.generate(_requests(3), SamplingConfig(n=3, max_new_tokens=2, logprobs_topk=2))
    assert len(traces) == 9 and be.llm.llm_engine.peak_running == 2
    stream = be.stream(_requests(3), SamplingConfig(n=3, max_new_tokens=4, logprobs_topk=2))
    next(stream)
    stream.close()  # the consumer stops: nothing may stay behind in the engine
    assert not be.llm.llm_engine.requests and be.llm.llm_engine.aborted


def test_hook_path_aborts_and_truncates(fake_params):
    be = _backend()
    shown = []

    def hook(step):
        shown.append(len(step))
        for row in range(len(step)):
            assert step.history(row).shape == (step.n_generated[row], 3)
            torch.testing.assert_close(step.history(row)[-1], step.topk_logprobs[row])
        return [i == 1 and n == 2 for i, n in zip(step.sample_indices, step.n_generated, strict=True)]

    traces = be.generate(_requests(), SamplingConfig(n=2, max_new_tokens=5, logprobs_topk=3, seed=5), stop_hook=hook)
    assert [(t.problem_id, t.sample_index) for t in traces] == [(f"p{i}", s) for i in range(3) for s in range(2)]
    aborted = {rid.split("\x1f", 1)[1] for rid in be.llm.llm_engine.aborted}
    for t in traces:
        want = [_step(t.problem_id, t.sample_index, pos, 3)[0] for pos in range(t.n_tokens)]
        assert t.token_ids.tolist() == want
        if t.sample_index == 1:
            assert t.finish_reason == "stopped" and t.n_tokens == 2 and f"{t.problem_id}\x1f1" in aborted
        else:
            assert t.finish_reason == "length" and t.n_tokens == 5
    assert shown == [6, 6, 3, 3, 3]  # stopped samples leave the batch


def _peak_bytes(be, n, k) -> int:
    be.llm.llm_engine.record = False
    tracemalloc.start()
    tracemalloc.reset_peak()
    for _ in be.stream(_requests(2), SamplingConfig(n=n, max_new_tokens=16, logprobs_topk=k)):
        pass  # traces are dropped as they come: only what the backend itself holds counts
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_host_memory_grows_with_the_wave_not_with_the_pool(fake_params):
    small_pool = _peak_bytes(_backend(max_in_flight=8), n=32, k=20)
    large_pool = _peak_bytes(_backend(max_in_flight=8), n=256, k=20)
    wide_wave = _peak_bytes(_backend(max_in_flight=128), n=256, k=20)
    assert large_pool < 1.3 * small_pool  # 8x the traces, the same in-flight window
    assert wide_wave > 4 * large_pool  # 16x the in-flight requests


@pytest.mark.parametrize("rank", [0.5, True, "0", -1, 2])
def test_data_parallel_rank_must_be_an_int_in_range(rank):
    with pytest.raises(ValueError, match="data_parallel_rank must be in"):
        VLLMConfig(model="m", data_parallel_size=2, data_parallel_rank=rank)


def test_a_closed_backend_never_starts_a_second_engine(monkeypatch):
    from falcon_h1r_lib.generation import vllm_backend

    starts = []
    monkeypatch.setattr(vllm_backend, "start_engine", lambda cfg: starts.append(cfg) or FakeLLM())
    monkeypatch.setattr(vllm_backend, "_shutdown", lambda llm: None)
    with VLLMBackend(VLLMConfig(model="fake"), progress=False) as backend:
        assert backend.llm is backend.llm
    with pytest.raises(RuntimeError, match="is closed: its engine was shut down"):
        backend.llm  # noqa: B018
    assert len(starts) == 1
