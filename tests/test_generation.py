"""Trace format round trip, sampling config, and the HF backend on a tiny random FalconH1 hybrid."""

import dataclasses

import numpy as np
import pytest
import torch

from falcon_h1r_lib.generation import (
    Backend,
    GenerationRequest,
    HFBackend,
    SamplingConfig,
    Trace,
    chat_request,
    read_traces,
    read_traces_metadata,
    request_seed,
    sample_next,
    sample_seed,
    write_traces,
)

K = 5


@pytest.fixture(scope="module")
def requests():
    return [GenerationRequest("p-short", "What is 2+2?"),
            GenerationRequest("p-long", "Add the fractions 1/2 and 3/4, then say the result twice."),
            GenerationRequest("p-mid", "Name a planet.")]


def backend(model, tok, **kw):
    return HFBackend(model, tok, progress=False, **{"batch_size": 64} | kw)


def sampling(**kw):
    return SamplingConfig(**{"n": 2, "temperature": 1.0, "top_p": 0.9, "max_new_tokens": 8,
                             "logprobs_topk": K, "seed": 3} | kw)


def tokens(traces):
    return [(t.problem_id, t.sample_index, t.token_ids.tolist(), t.finish_reason) for t in traces]


def assert_close(a, b):
    assert tokens(a) == tokens(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.topk_ids, y.topk_ids)
        np.testing.assert_allclose(x.topk_logprobs, y.topk_logprobs, atol=1e-5)
        np.testing.assert_allclose(x.token_logprobs, y.token_logprobs, atol=1e-5)


# ---------------------------------------------------------------- trace format

def _trace(rng, n, k, pid="p", reason="length"):
    return Trace(problem_id=pid, sample_index=int(rng.integers(0, 9)), seed=2**62 + 5, prompt="q: ü?",
                 completion="a" * n, token_ids=rng.integers(0, 2**31 - 1, n),
                 token_logprobs=-rng.random(n, dtype=np.float32) * 30,
                 topk_ids=rng.integers(0, 130048, (n, k)), topk_logprobs=rng.standard_normal((n, k)).astype(np.float32),
                 finish_reason=reason, n_prompt_tokens=17)


def test_traces_round_trip_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    traces = [_trace(rng, 7, 20), _trace(rng, 0, 20, pid="empty", reason="eos"), _trace(rng, 3, 1, reason="stopped"),
              Trace("no-topk", 0, 0, "", "", [], [], [], [], "eos")]
    traces[0].topk_logprobs[0, :4] = [np.float32(-0.0), np.float32(np.nextafter(np.float32(0), 1)),
                                      np.float32(-np.inf), np.float32(-1e-38)]
    path = write_traces(traces, tmp_path / "t.parquet", metadata={"model": "tiny", "k": 20})
    assert path.read_bytes()[:4] == b"PAR1"  # Parquet, not pickle
    back = read_traces(path)
    assert back == traces
    for a, b in zip(back, traces, strict=True):
        assert a.topk_logprobs.dtype == np.float32 and a.token_ids.dtype == np.int32
        assert a.topk_logprobs.tobytes() == b.topk_logprobs.tobytes()
        assert a.n_tokens == b.n_tokens and a.topk == b.topk
    assert back[1].n_tokens == 0 and back[1].completion == "" and back[1].topk_logprobs.shape == (0, 20)
    meta = read_traces_metadata(path)
    assert meta["model"] == "tiny" and meta["schema_version"] == "1" and meta["logprobs"].startswith("raw")


def test_trace_equality_is_bitwise_and_validation_names_problem():
    rng = np.random.default_rng(1)
    a = _trace(rng, 4, 3)
    b = Trace(**{f: getattr(a, f) for f in ("problem_id", "sample_index", "seed", "prompt", "completion",
                                            "finish_reason", "n_prompt_tokens")},
              token_ids=a.token_ids.copy(), token_logprobs=a.token_logprobs.copy(),
              topk_ids=a.topk_ids.copy(), topk_logprobs=a.topk_logprobs.copy())
    assert a == b
    b.topk_logprobs[0, 0] = np.nextafter(b.topk_logprobs[0, 0], np.float32(0))
    assert a != b
    with pytest.raises(ValueError, match="finish_reason"):
        Trace("x", 0, 0, "", "", [], [], [], [], "done")
    with pytest.raises(ValueError, match="'bad'.*token_logprobs"):
        Trace("bad", 0, 0, "", "", [1, 2], [0.0], [[1], [2]], [[0.0], [0.0]], "eos")


def test_read_rejects_non_trace_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1]}), tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="x.parquet.*not a trace file"):
        read_traces(tmp_path / "x.parquet")


# ---------------------------------------------------------------- sampling config and seeds

def test_sampling_config_is_strict():
    assert SamplingConfig().temperature == 0.6 and SamplingConfig().top_p == 0.95  # paper §4
    with pytest.raises(ValueError, match="top_p"):
        SamplingConfig(top_p=0)
    with pytest.raises(ValueError, match="logprobs_topk"):
        SamplingConfig(logprobs_topk=21)
    with pytest.raises(ValueError, match="min_new_tokens"):
        SamplingConfig(max_new_tokens=4, min_new_tokens=5)
    with pytest.raises(ValueError, match=r"cfg.yaml.*\['temp'\]"):
        SamplingConfig.from_dict({"temp": 0.6}, source="cfg.yaml")
    cfg = SamplingConfig.from_dict({"n": 4, "stop_token_ids": [3]})
    assert cfg.stop_token_ids == (3,) and SamplingConfig.from_dict(cfg.to_dict()) == cfg


def test_sample_seeds_are_stable_and_distinct():
    assert request_seed(0, "a") == request_seed(0, "a") < 2**62
    assert sample_seed(0, "a", 3) == request_seed(0, "a") + 3  # vLLM's child-seed rule
    seeds = {sample_seed(s, p, i) for s in (0, 1) for p in ("a", "b", "ab") for i in range(4)}
    assert len(seeds) == 24


def test_sample_next_greedy_top_p_and_inverse_cdf():
    logits = torch.log(torch.tensor([[0.1, 0.5, 0.15, 0.25]]))
    assert sample_next(logits, 0.0, 1.0, None).item() == 1
    u = torch.linspace(0, 1, 10001)[:-1]  # a uniform grid: frequencies equal the probabilities
    draws = sample_next(logits.expand(len(u), -1), 1.0, 1.0, u)
    freq = torch.bincount(draws, minlength=4).float() / len(u)
    torch.testing.assert_close(freq, torch.tensor([0.1, 0.5, 0.15, 0.25]), atol=2e-4, rtol=0)
    nucleus = sample_next(logits.expand(len(u), -1), 1.0, 0.7, u)  # 0.5 + 0.25 >= 0.7: tokens {1, 3}
    freq = torch.bincount(nucleus, minlength=4).float() / len(u)
    torch.testing.assert_close(freq, torch.tensor([0, 2 / 3, 0, 1 / 3]), atol=2e-4, rtol=0)
    assert set(sample_next(logits.expand(len(u), -1), 1.0, 0.3, u).tolist()) == {1}


# ---------------------------------------------------------------- HF backend

def test_backend_protocol_and_order(model, tok, requests):
    be = backend(model, tok)
    assert isinstance(be, Backend)
    traces = be.generate(requests, sampling(n=3))
    assert [(t.problem_id, t.sample_index) for t in traces] == [(r.problem_id, i) for r in requests for i in range(3)]
    for t in traces:
        assert t.finish_reason == "length" and t.n_tokens == 8 and t.topk_logprobs.shape == (8, K)
        assert t.n_prompt_tokens == len(tok(t.prompt, add_special_tokens=False)["input_ids"])
        assert t.completion == tok.decode(t.token_ids.tolist(), skip_special_tokens=True)
        assert np.all(np.diff(t.topk_logprobs, axis=1) <= 0)  # sorted, decreasing
    with pytest.raises(ValueError, match="duplicate problem_id 'p-short'"):
        be.generate([requests[0], requests[0]], sampling())


def test_greedy_matches_model_generate_and_logprobs_are_raw(model, tok, requests):
    traces = backend(model, tok).generate(requests, sampling(n=1, temperature=0.0, max_new_tokens=6))
    for req, t in zip(requests, traces, strict=True):
        ids = torch.tensor([tok(req.prompt, add_special_tokens=False)["input_ids"]])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=6,
                             min_new_tokens=6, return_dict_in_generate=True, output_logits=True,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        assert out.sequences[0, ids.shape[1]:].tolist() == t.token_ids.tolist()
        raw = torch.log_softmax(torch.stack(out.logits, 1)[0].float(), -1)  # (6, V)
        np.testing.assert_allclose(t.topk_logprobs, raw.topk(K).values.numpy(), atol=1e-5)


def test_logprobs_ignore_temperature_and_top_p(model, tok, requests):
    """Stored log-probs are log_softmax of the unscaled logits of a full forward over the sampled text."""
    traces = backend(model, tok).generate(requests[:2], sampling(temperature=2.5, top_p=0.5, max_new_tokens=6))
    for t in traces:
        prompt = tok(t.prompt, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt + t.token_ids.tolist()])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, len(prompt) - 1:-1].float()  # (n, V)
        raw = torch.log_softmax(logits, -1)
        np.testing.assert_allclose(t.topk_logprobs, raw.topk(K).values.numpy(), atol=1e-5)
        np.testing.assert_allclose(t.token_logprobs, raw.gather(1, ids[0, len(prompt):, None])[:, 0].numpy(),
                                   atol=1e-5)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_same_results_with_and_without_cache(model, tok, requests, temperature):
    cfg = sampling(temperature=temperature)
    assert_close(backend(model, tok).generate(requests, cfg),
                 backend(model, tok, use_cache=False).generate(requests, cfg))


def test_reproducible_and_batch_invariant(model, tok, requests):
    cfg = sampling(n=2)
    full = backend(model, tok).generate(requests, cfg)
    assert full == backend(model, tok).generate(requests, cfg)  # same seed: bit-identical traces
    assert tokens(full) != tokens(backend(model, tok).generate(requests, sampling(n=2, seed=4)))
    alone = backend(model, tok).generate([requests[0]], cfg)  # no padding, other batch
    assert_close(alone, [t for t in full if t.problem_id == requests[0].problem_id])
    assert_close(backend(model, tok, batch_size=1).generate(requests, cfg), full)  # every batch size
    assert tokens(full[:1]) != tokens(full[1:2])  # samples of one prompt differ


def test_eos_ragged_batch_and_dropping(model, tok, requests):
    stop = tuple(range(4, 90))  # ~30% of a near-uniform vocabulary: sequences end at various lengths
    cfg = sampling(n=4, max_new_tokens=12, stop_token_ids=stop)
    dropped = backend(model, tok).generate(requests, cfg)
    kept = backend(model, tok, drop_finished=False).generate(requests, cfg)
    assert_close(dropped, kept)
    assert len({t.n_tokens for t in dropped}) > 2
    for t in dropped:
        assert (t.finish_reason == "eos") == (t.n_tokens > 0 and t.token_ids[-1] in stop)
        assert not set(t.token_ids[:-1].tolist()) & set(stop)
    assert {t.finish_reason for t in dropped} == {"eos", "length"}
    forced = backend(model, tok).generate(requests, sampling(n=4, max_new_tokens=12, min_new_tokens=12,
                                                             stop_token_ids=stop))
    assert all(t.n_tokens == 12 and t.finish_reason == "length" for t in forced)


def test_stop_hook_ends_sequences_early(model, tok, requests):
    seen = []

    def hook(step):
        assert step.topk_logprobs.shape == (len(step), K) and len(set(step.n_generated)) == 1
        for row in range(len(step)):
            hist = step.history(row)
            assert hist.shape == (step.n_generated[row], K)
            torch.testing.assert_close(hist[-1], step.topk_logprobs[row])
        seen.append((list(step.problem_ids), list(step.sample_indices), step.n_generated[0]))
        return [i == 1 and n >= 3 for i, n in zip(step.sample_indices, step.n_generated, strict=True)]

    cfg = sampling(n=2, max_new_tokens=7)
    traces = backend(model, tok).generate(requests, cfg, stop_hook=hook)
    plain = backend(model, tok).generate(requests, cfg)
    for t, p in zip(traces, plain, strict=True):
        if t.sample_index == 1:
            assert t.finish_reason == "stopped" and t.n_tokens == 3
            assert t.token_ids.tolist() == p.token_ids[:3].tolist()  # the same stream up to the stop
        else:
            assert t.finish_reason == "length" and t.token_ids.tolist() == p.token_ids.tolist()
    assert [s for s in seen if s[2] == 4][0][1] == [0, 0, 0]  # stopped rows are no longer shown
    with pytest.raises(ValueError, match="stop_hook returned 1 flags"):
        backend(model, tok).generate(requests, cfg, stop_hook=lambda step: [True])


def test_chat_request_uses_falcon_template(tok):
    req = chat_request("q1", "What is 1+1?", tok)
    assert req.prompt.startswith("<|im_start|>system\nYou are Falcon")
    assert req.prompt.endswith("<|im_start|>assistant\n")


def test_first_sample_index_continues_the_same_pool(model, tok):
    """A later wave of a pool (samples [lo, hi)) draws exactly the tokens those samples have in the whole pool."""
    reqs = [chat_request("q0", "2+3?", tok, "Think."), chat_request("q1", "7*6?", tok, "Think.")]
    sampling = SamplingConfig(n=5, temperature=1.0, max_new_tokens=12, seed=4, logprobs_topk=3)
    backend = HFBackend(model, tok, batch_size=4, progress=False)
    whole = backend.generate(reqs, sampling)
    wave = backend.generate(reqs, dataclasses.replace(sampling, n=2, first_sample_index=3))
    assert [(t.problem_id, t.sample_index) for t in wave] == [("q0", 3), ("q0", 4), ("q1", 3), ("q1", 4)]
    tail = [t for t in whole if t.sample_index >= 3]
    assert [t.token_ids.tolist() for t in wave] == [t.token_ids.tolist() for t in tail]  # own seeded streams
    for a, b in zip(wave, tail, strict=True):  # other batch-mates and padding: float32 rounding only
        np.testing.assert_allclose(a.topk_logprobs, b.topk_logprobs, atol=1e-5)
    streamed = list(backend.stream(reqs, sampling))
    assert sorted(streamed, key=lambda t: (t.problem_id, t.sample_index)) == whole
    with pytest.raises(ValueError, match="first_sample_index must be an int >= 0"):
        SamplingConfig(first_sample_index=-1)


def test_backend_factory_specs():
    from falcon_h1r_lib.generation import BackendSpec, VLLMBackend, make_backend, vllm_config

    with pytest.raises(ValueError, match="backend must be one of"):
        BackendSpec(model="m", backend="sglang")
    with pytest.raises(ValueError, match=r"vllm settings \['tensor_parallel_size'\] given for the hf backend"):
        BackendSpec(model="m", vllm={"tensor_parallel_size": 2})
    spec = BackendSpec(model="tiiuae/Falcon-H1R-7B", backend="vllm", revision="abc", dtype="bfloat16", seed=3,
                       vllm={"tensor_parallel_size": 4, "max_model_len": 67584})
    cfg = vllm_config(spec)
    assert (cfg.model, cfg.tokenizer, cfg.revision, cfg.tokenizer_revision) == ("tiiuae/Falcon-H1R-7B",) * 2 + ("abc",) * 2
    assert cfg.tensor_parallel_size == 4 and cfg.seed == 3 and cfg.dtype == "bfloat16"
    for own in ("model", "dtype", "seed"):
        with pytest.raises(ValueError, match=rf"BackendSpec.vllm repeats \['{own}'\]: set them on the spec"):
            BackendSpec(model="m", backend="vllm", vllm={own: "x"})
    with pytest.raises(ValueError, match=r"vllm settings of 'm': unknown VLLMConfig key\(s\) \['tp'\]"):
        vllm_config(BackendSpec(model="m", backend="vllm", vllm={"tp": 2}))
    backend, tok = make_backend(spec, tokenizer=object())  # lazy: no engine starts until the first generate
    assert isinstance(backend, VLLMBackend) and backend._llm is None
    with pytest.raises(ValueError, match="loaded HF model cannot serve the vllm backend"):
        make_backend(spec, model=object())
