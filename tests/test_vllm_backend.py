"""vLLM backend: output -> Trace conversion and the stop-hook engine loop on hand-built fakes shaped like
vLLM 0.33's `RequestOutput` / `CompletionOutput` / `Logprob` (run everywhere); the real engine under the
`vllm` marker (skipped where vllm or a GPU is missing)."""

import importlib.util
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
class CompletionOutput:  # vllm.outputs.CompletionOutput
    index: int
    text: str
    token_ids: list
    cumulative_logprob: float | None
    logprobs: list | None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:  # vllm.outputs.RequestOutput (the fields we read)
    request_id: str
    prompt: str
    prompt_token_ids: list
    outputs: list
    finished: bool = True


REQ = GenerationRequest("q7", "<|im_start|>user\nhi<|im_end|>\n")
EOS = 3


def _completions():
    first = CompletionOutput(
        index=0, text="ab", token_ids=[5, 7, EOS], cumulative_logprob=None, finish_reason="stop",
        logprobs=[
            {5: Logprob(-0.125, 1), 9: Logprob(-2.5, 2)},  # sampled token in the top-2: 2 entries
            {7: Logprob(-3.0, 5), 4: Logprob(-1.0, 2), 6: Logprob(-0.5, 1)},  # sampled outside: k + 1
            {EOS: Logprob(-0.25, 1), 8: Logprob(-1.75, 2)},
        ])
    second = CompletionOutput(index=1, text="x", token_ids=[6], cumulative_logprob=None, finish_reason="length",
                              logprobs=[{6: Logprob(-0.75, 2), 1: Logprob(-0.5, 1)}])
    return [second, first]  # out of order on purpose


def test_request_output_to_traces_exact():
    out = RequestOutput("r", REQ.prompt, [1, 2, 3, 4], _completions())
    traces = vb.request_output_to_traces(out, REQ, SamplingConfig(n=2, logprobs_topk=2, seed=9), [EOS])
    a, b = traces
    assert (a.sample_index, b.sample_index) == (0, 1) and a.seed == b.seed == 9
    assert a.token_ids.tolist() == [5, 7, EOS] and a.finish_reason == "eos" and a.completion == "ab"
    assert a.token_logprobs.tolist() == [-0.125, -3.0, -0.25]
    assert a.topk_ids.tolist() == [[5, 9], [6, 4], [EOS, 8]]
    assert a.topk_logprobs.tolist() == [[-0.125, -2.5], [-0.5, -1.0], [-0.25, -1.75]]
    assert b.finish_reason == "length" and b.topk_ids.tolist() == [[1, 6]] and b.n_prompt_tokens == 4
    assert a.topk_logprobs.dtype == np.float32 and a.topk_ids.dtype == np.int32


def test_finish_reasons_and_errors():
    def one(**kw):
        c = CompletionOutput(0, "", [], None, [], **kw)
        return vb.completion_to_trace(c, REQ, 0, 2, 1, [EOS])

    assert one(finish_reason="stop").finish_reason == "eos"  # eos: stop_reason None
    assert one(finish_reason="stop", stop_reason=11).finish_reason == "eos"  # a stop token id
    assert one(finish_reason="stop", stop_reason="</answer>").finish_reason == "stopped"  # a stop string
    assert one(finish_reason="abort").finish_reason == "stopped"
    empty = one(finish_reason="length")
    assert empty.n_tokens == 0 and empty.topk_logprobs.shape == (0, 2)
    with pytest.raises(ValueError, match="finish_reason None"):
        one()
    bad = CompletionOutput(0, "", [5], None, [{9: Logprob(-1.0, 1), 8: Logprob(-2.0, 2)}], "length")
    with pytest.raises(ValueError, match="'q7' sample 0 position 0: sampled token 5 missing"):
        vb.completion_to_trace(bad, REQ, 0, 2, 1)
    with pytest.raises(ValueError, match="no logprobs"):
        vb.completion_to_trace(CompletionOutput(0, "", [5], None, None, "length"), REQ, 0, 2, 1)
    with pytest.raises(ValueError, match="expected n=3"):
        vb.request_output_to_traces(RequestOutput("r", "", [1], _completions()), REQ, SamplingConfig(n=3), [])
    with pytest.raises(ValueError, match="not finished"):
        vb.request_output_to_traces(RequestOutput("r", "", [1], [], finished=False), REQ, SamplingConfig(), [])


def test_config_and_sharding():
    cfg = VLLMConfig(model="tiiuae/Falcon-H1R-7B", tensor_parallel_size=4, data_parallel_size=2,
                     data_parallel_rank=1, engine_kwargs={"swap_space": 4})
    kw = cfg.llm_kwargs()
    assert kw["tensor_parallel_size"] == 4 and kw["logprobs_mode"] == "raw_logprobs" and kw["swap_space"] == 4
    assert "data_parallel_size" not in kw  # one process per replica: vLLM refuses in-process DP
    with pytest.raises(ValueError, match="data_parallel_rank"):
        VLLMConfig(model="m", data_parallel_size=2, data_parallel_rank=2)
    with pytest.raises(ValueError, match=r"unknown VLLMConfig key\(s\) \['tp'\]"):
        VLLMConfig.from_dict({"model": "m", "tp": 2})
    reqs = [GenerationRequest(f"p{i}", "x") for i in range(5)]
    assert [r.problem_id for r in vb.shard_requests(reqs, 1, 2)] == ["p1", "p3"]


# ---------------------------------------------------------------- a fake engine for both generate paths

V, K = 50, 3


def _step_logprobs(rid: str, pos: int) -> tuple[int, dict]:
    """Deterministic fake decoding: sampled token and a top-K logprob dict (plus the sampled token)."""
    gen = torch.Generator().manual_seed(zlib.crc32(f"{rid}/{pos}".encode()))
    lp = torch.log_softmax(torch.randn(V, generator=gen), -1)
    token = int(torch.randint(4, V, (1,), generator=gen))
    order = lp.argsort(descending=True).tolist()
    entries = {t: Logprob(float(lp[t]), order.index(t) + 1) for t in order[:K] + [token]}
    return token, entries


@dataclass
class FakeEngine:
    requests: dict = field(default_factory=dict)
    aborted: list = field(default_factory=list)

    def add_request(self, rid, prompt, params):
        self.requests[rid] = {"params": params, "pos": 0}

    def has_unfinished_requests(self):
        return bool(self.requests)

    def abort_request(self, rids):
        self.aborted += rids
        for rid in rids:
            self.requests.pop(rid, None)

    def step(self):
        outs = []
        for rid, st in list(self.requests.items()):
            token, entries = _step_logprobs(rid, st["pos"])
            st["pos"] += 1
            finished = st["pos"] == st["params"].max_tokens
            c = CompletionOutput(0, "", [token], None, [entries], "length" if finished else None)
            outs.append(RequestOutput(rid, "", [], [c], finished))
            if finished:
                del self.requests[rid]
        return outs


class FakeLLM:
    def __init__(self):
        self.llm_engine = FakeEngine()
        self.calls = []

    def get_tokenizer(self):
        return SimpleNamespace(eos_token_id=EOS, decode=lambda ids, skip_special_tokens: " ".join(map(str, ids)))

    def generate(self, prompts, params, use_tqdm):
        self.calls.append((prompts, params))
        outs = []
        for prompt, p in zip(prompts, params, strict=True):
            comps = []
            for i in range(p.n):
                rid = f"{p.seed + i}"
                ids, lps = [], []
                for pos in range(p.max_tokens):
                    token, entries = _step_logprobs(rid, pos)
                    ids.append(token)
                    lps.append(entries)
                comps.append(CompletionOutput(i, "txt", ids, None, lps, "length"))
            outs.append(RequestOutput("r", prompt["prompt"], prompt["prompt_token_ids"], comps))
        return outs


@pytest.fixture
def fake_params(monkeypatch):
    def params(sampling, problem_id, stop_ids=(), n=None, seed=None, delta=False):
        return SimpleNamespace(n=sampling.n if n is None else n, max_tokens=sampling.max_new_tokens,
                               seed=request_seed(sampling.seed, problem_id) if seed is None else seed,
                               logprobs=sampling.logprobs_topk, delta=delta)
    monkeypatch.setattr(vb, "sampling_params", params)


def _requests():
    return [GenerationRequest(f"p{i}", f"prompt {i}", (1, 2, 3 + i)) for i in range(3)]


def test_plain_path_seeds_and_order(fake_params):
    llm = FakeLLM()
    be = VLLMBackend(VLLMConfig(model="fake"), llm=llm, progress=False)
    traces = be.generate(_requests(), SamplingConfig(n=2, max_new_tokens=4, logprobs_topk=K, seed=5))
    assert [(t.problem_id, t.sample_index) for t in traces] == [(f"p{i}", s) for i in range(3) for s in range(2)]
    prompts, params = llm.calls[0]
    assert prompts[2] == {"prompt_token_ids": [1, 2, 5], "prompt": "prompt 2"}
    assert params[1].seed == request_seed(5, "p1") and params[1].logprobs == K
    assert all(t.n_tokens == 4 and t.finish_reason == "length" and t.n_prompt_tokens == 3 for t in traces)


def test_hook_path_aborts_and_truncates(fake_params):
    llm = FakeLLM()
    be = VLLMBackend(VLLMConfig(model="fake"), llm=llm, progress=False)
    shown = []

    def hook(step):
        shown.append(len(step))
        for row in range(len(step)):
            assert step.history(row).shape == (step.n_generated[row], K)
            torch.testing.assert_close(step.history(row)[-1], step.topk_logprobs[row])
        return [i == 1 and n == 2 for i, n in zip(step.sample_indices, step.n_generated, strict=True)]

    cfg = SamplingConfig(n=2, max_new_tokens=5, logprobs_topk=K, seed=5)
    traces = be.generate(_requests(), cfg, stop_hook=hook)
    assert [(t.problem_id, t.sample_index) for t in traces] == [(f"p{i}", s) for i in range(3) for s in range(2)]
    for t in traces:
        rid = f"{t.problem_id}\x1f{t.sample_index}"
        want = [_step_logprobs(rid, pos)[0] for pos in range(t.n_tokens)]
        assert t.token_ids.tolist() == want
        if t.sample_index == 1:
            assert t.finish_reason == "stopped" and t.n_tokens == 2 and rid in llm.llm_engine.aborted
        else:
            assert t.finish_reason == "length" and t.n_tokens == 5
        assert t.completion == " ".join(map(str, want))
    assert shown == [6, 6, 3, 3, 3]  # stopped samples leave the batch
    # each sample is its own n=1 request seeded sample_seed(seed, problem, i): same seeds as the HF backend
    assert sample_seed(5, "p0", 1) == request_seed(5, "p0") + 1


# ---------------------------------------------------------------- the real engine (GPU machines)

HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.mark.vllm
@pytest.mark.gpu
@pytest.mark.skipif(not HAS_VLLM or not torch.cuda.is_available(), reason="needs vllm and a CUDA device")
def test_real_vllm_matches_hf_greedy(tmp_path):
    from falcon_h1r_lib.generation import HFBackend
    from falcon_h1r_lib.models import build_model, falcon_h1_config
    from falcon_h1r_lib.tokenizer import build_tokenizer, save_tokenizer

    tok = build_tokenizer(vocab_size=512)
    model = build_model(falcon_h1_config("tiny", vocab_size=len(tok)), seed=0, device="cuda")
    model.save_pretrained(tmp_path)
    save_tokenizer(tok, tmp_path)
    reqs = [GenerationRequest(f"p{i}", f"What is {i} + {i}?") for i in range(4)]
    cfg = SamplingConfig(n=2, temperature=0.0, max_new_tokens=16, logprobs_topk=20)
    be = VLLMBackend(VLLMConfig(model=str(tmp_path), dtype="float32", enforce_eager=True,
                                gpu_memory_utilization=0.3, max_model_len=1024), progress=False)
    ours = be.generate(reqs, cfg)
    ref = HFBackend(model, tok, progress=False).generate(reqs, cfg)
    for a, b in zip(ours, ref, strict=True):
        assert a.token_ids.tolist() == b.token_ids.tolist()
        np.testing.assert_allclose(a.topk_logprobs, b.topk_logprobs, atol=2e-3)  # raw in both
    stopped = be.generate(reqs, SamplingConfig(n=2, temperature=1.0, max_new_tokens=16, logprobs_topk=20),
                          stop_hook=lambda step: [n >= 4 for n in step.n_generated])
    assert all(t.finish_reason in ("stopped", "eos") and t.n_tokens <= 4 for t in stopped)
