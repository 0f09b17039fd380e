"""SSD kernels: chunked and step parity with the sequential recurrence, with transformers' torch path,
edge cases, shape errors, the mamba-ssm dispatch and the FalconH1 patch."""

import importlib
import inspect
import sys

import pytest
import torch
import torch.nn.functional as F

from falcon_h1r_lib.kernels import (
    falcon_h1_chunk_scan,
    falcon_h1_patched,
    patch_falcon_h1,
    segsum,
    ssd_chunked,
    ssd_chunked_auto,
    ssd_sequential,
    ssd_step,
    unpatch_falcon_h1,
)
from falcon_h1r_lib.kernels.bench import benchmark, format_table

HF = importlib.import_module("transformers.models.falcon_h1.modeling_falcon_h1")

# max |y - ref| / max |ref| allowed, by input dtype. Low-precision inputs: both scans compute in float32
# from the same rounded inputs, so the gap is the final rounding of y to that dtype.
TOL = {torch.float64: 1e-10, torch.float32: 1e-4, torch.bfloat16: 1e-2, torch.float16: 2e-3}


def make(
    b=2, l=20, h=4, p=3, g=1, n=5, seed=0, dtype=torch.float32, dt_shift=-2.0, with_d=True, with_init=True
):
    gen = torch.Generator().manual_seed(seed)
    out = {
        "x": torch.randn(b, l, h, p, generator=gen),
        "dt": F.softplus(torch.randn(b, l, h, generator=gen) + dt_shift),
        "A": -(torch.rand(h, generator=gen) * 4 + 0.5),
        "B": torch.randn(b, l, g, n, generator=gen),
        "C": torch.randn(b, l, g, n, generator=gen),
        "D": torch.randn(h, generator=gen) if with_d else None,
        "initial_state": torch.randn(b, h, p, n, generator=gen) if with_init else None,
    }
    return {k: (v.to(dtype) if v is not None and k != "initial_state" else v) for k, v in out.items()}


def rel_err(y, ref):
    return ((y.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


def seq(inp):
    return ssd_sequential(
        inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], D=inp["D"], initial_state=inp["initial_state"]
    )


def chunked(inp, Q, **over):
    kw = {**inp, **over}
    return ssd_chunked(
        kw["x"], kw["dt"], kw["A"], kw["B"], kw["C"], Q, D=kw["D"], initial_state=kw["initial_state"]
    )


# ------------------------------------------------------------------------------------- parity


@pytest.mark.parametrize("l,Q", [(1, 1), (9, 1), (20, 7), (32, 8), (37, 16), (5, 64), (64, 64)])
@pytest.mark.parametrize("g", [1, 2])
@pytest.mark.parametrize("extras", [(False, False), (True, True), (True, False), (False, True)])
def test_chunked_matches_sequential_fp32(l, Q, g, extras):
    inp = make(l=l, g=g, with_d=extras[0], with_init=extras[1], seed=l * 31 + Q + g)
    y_ref, s_ref = seq(inp)
    y, s = chunked(inp, Q)
    assert y.shape == inp["x"].shape and y.dtype == torch.float32
    assert s.shape == (2, 4, 3, 5) and s.dtype == torch.float32
    assert rel_err(y, y_ref) <= TOL[torch.float32]
    assert rel_err(s, s_ref) <= TOL[torch.float32]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("l,Q", [(23, 8), (40, 64)])
def test_chunked_matches_sequential_other_dtypes(dtype, l, Q):
    inp = make(l=l, g=2, dtype=dtype, seed=l)
    y_ref, s_ref = seq(inp)
    y, s = chunked(inp, Q)
    assert y.dtype == dtype and y_ref.dtype == dtype
    assert s.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert rel_err(y, y_ref) <= TOL[dtype]
    assert rel_err(s, s_ref) <= max(TOL[dtype], 1e-10 if dtype == torch.float64 else 1e-4)


def test_chunked_low_precision_inputs_against_fp64_truth():
    """bf16 inputs are scanned in float32: the only error vs a float64 scan of the same values is y's rounding."""
    inp = make(l=50, g=2, dtype=torch.bfloat16, seed=3)
    truth, _ = seq({k: (v.double() if v is not None else None) for k, v in inp.items()})
    y, _ = chunked(inp, 16)
    assert rel_err(y, truth) <= TOL[torch.bfloat16]


def test_chunked_large_decays_long_chunks():
    """Δ ~ softplus(N(0,1)) with |A| up to 4.5 drives cumulative log-decays to hundreds inside a 256-chunk."""
    inp = make(b=1, l=300, h=4, p=8, n=16, g=2, dt_shift=0.0, seed=5)
    y_ref, s_ref = seq(inp)
    for Q in (256, 300, 512):
        y, s = chunked(inp, Q)
        assert rel_err(y, y_ref) <= TOL[torch.float32]
        assert rel_err(s, s_ref) <= TOL[torch.float32]


def test_padding_keeps_final_state():
    """The final state is the state after the last real token, not after the padded tail."""
    inp = make(l=13, seed=11)
    _, s_ref = seq(inp)
    for Q in (4, 5, 13, 64):
        _, s = chunked(inp, Q)
        assert rel_err(s, s_ref) <= 1e-5
    # and a genuinely different state one token earlier, so the check can fail
    short = {k: (v[:, :12] if k in ("x", "dt", "B", "C") else v) for k, v in inp.items()}
    _, s_short = chunked(short, 4)
    assert rel_err(s_short, s_ref) > 1e-3


def test_step_matches_sequential():
    inp = make(l=15, g=2, seed=7)
    y_ref, s_ref = seq(inp)
    state = inp["initial_state"].clone()
    ys = []
    for t in range(15):
        before = state.clone()
        y_t, state_next = ssd_step(
            state, inp["x"][:, t], inp["dt"][:, t], inp["A"], inp["B"][:, t], inp["C"][:, t], D=inp["D"]
        )
        assert torch.equal(state, before)  # the input state is not modified in place
        assert y_t.shape == (2, 4, 3) and state_next.dtype == torch.float32
        ys.append(y_t)
        state = state_next
    assert rel_err(torch.stack(ys, 1), y_ref) <= 1e-6
    assert rel_err(state, s_ref) <= 1e-6


def test_step_continues_a_chunked_prefill():
    """Prefill with the chunked scan, then decode with steps: what a generation cache does."""
    inp = make(l=30, g=2, seed=8)
    y_ref, s_ref = seq(inp)
    pre = {k: (v[:, :25] if k in ("x", "dt", "B", "C") else v) for k, v in inp.items()}
    y_pre, state = chunked(pre, 8)
    ys = [y_pre]
    for t in range(25, 30):
        y_t, state = ssd_step(
            state, inp["x"][:, t], inp["dt"][:, t], inp["A"], inp["B"][:, t], inp["C"][:, t], D=inp["D"]
        )
        ys.append(y_t[:, None])
    assert rel_err(torch.cat(ys, 1), y_ref) <= 1e-5
    assert rel_err(state, s_ref) <= 1e-5


@pytest.mark.parametrize("split,Q", [(10, 4), (17, 8), (1, 3)])
def test_chaining_two_chunked_calls(split, Q):
    inp = make(l=33, g=2, seed=split)
    y_all, s_all = chunked(inp, Q)
    first = {k: (v[:, :split] if k in ("x", "dt", "B", "C") else v) for k, v in inp.items()}
    second = {k: (v[:, split:] if k in ("x", "dt", "B", "C") else v) for k, v in inp.items()}
    y1, s1 = chunked(first, Q)
    y2, s2 = chunked(second, Q, initial_state=s1)
    assert rel_err(torch.cat([y1, y2], 1), y_all) <= 1e-5
    assert rel_err(s2, s_all) <= 1e-5


def test_gradients_match_sequential():
    inp = make(b=1, l=19, g=2, dtype=torch.float64, seed=9)
    names = ("x", "dt", "A", "B", "C", "D", "initial_state")
    grads = []
    for run in (seq, lambda i: chunked(i, 6)):
        leaves = {k: inp[k].detach().double().clone().requires_grad_(True) for k in names}
        y, s = run(leaves)
        (y.square().sum() + s.sin().sum()).backward()
        grads.append({k: leaves[k].grad for k in names})
    for k in names:
        assert rel_err(grads[1][k], grads[0][k]) <= 1e-9, k


def test_segsum_is_exp_ready_decay():
    a = torch.tensor([-1.0, -2.0, -0.5])
    out = segsum(a)
    assert torch.allclose(
        out, torch.tensor([[0.0, -torch.inf, -torch.inf], [-2.0, 0.0, -torch.inf], [-2.5, -0.5, 0.0]])
    )
    assert torch.equal(torch.exp(out).triu(1), torch.zeros(3, 3))


# ------------------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("with_init", [False, True])
def test_zero_length(with_init):
    inp = make(l=0, with_init=with_init)
    for y, s in (seq(inp), chunked(inp, 4)):
        assert y.shape == (2, 0, 4, 3) and y.dtype == torch.float32
        expected = inp["initial_state"] if with_init else torch.zeros(2, 4, 3, 5)
        assert torch.equal(s, expected)
    if with_init:  # a copy: the caller's state is not aliased
        _, s = chunked(inp, 4)
        assert s.data_ptr() != inp["initial_state"].data_ptr()


def _bad(**changes):
    inp = make(l=6, h=4, g=2)
    inp.update(changes)
    return inp


@pytest.mark.parametrize(
    "inp,Q,name",
    [
        (_bad(x=torch.randn(2, 6, 4)), 4, "`x`"),
        (_bad(dt=torch.rand(2, 5, 4)), 4, "`dt`"),
        (_bad(A=-torch.rand(3)), 4, "`A`"),
        (_bad(B=torch.randn(2, 7, 2, 5)), 4, "`B`"),
        (_bad(C=torch.randn(2, 6, 2, 4)), 4, "`C`"),
        (_bad(B=torch.randn(2, 6, 3, 5), C=torch.randn(2, 6, 3, 5)), 4, "h=4"),
        (_bad(D=torch.randn(4, 3)), 4, "`D`"),
        (_bad(initial_state=torch.randn(2, 4, 3, 6)), 4, "`initial_state`"),
        (_bad(), 0, "`chunk_size`"),
        (_bad(), -3, "`chunk_size`"),
        (_bad(), 2.5, "`chunk_size`"),
    ],
)
def test_bad_shapes_raise_naming_the_argument(inp, Q, name):
    with pytest.raises(ValueError, match=name.replace("(", r"\(")):
        chunked(inp, Q)
    if name != "`chunk_size`":
        with pytest.raises(ValueError, match=name):
            seq(inp)


def test_bad_shape_message_has_expected_and_got():
    inp = _bad(dt=torch.rand(2, 5, 4))
    with pytest.raises(ValueError, match=r"expected shape \(b, l, h\) = \(2, 6, 4\), got \(2, 5, 4\)"):
        chunked(inp, 4)


@pytest.mark.parametrize(
    "field,value",
    [
        ("state", torch.zeros(2, 4, 3, 6)),
        ("dt", torch.rand(2, 3)),
        ("C", torch.randn(2, 1, 5)),
        ("x", torch.randn(2, 4)),
    ],
)
def test_step_bad_shapes(field, value):
    args = {
        "state": torch.zeros(2, 4, 3, 5),
        "x": torch.randn(2, 4, 3),
        "dt": torch.rand(2, 4),
        "A": -torch.rand(4),
        "B": torch.randn(2, 2, 5),
        "C": torch.randn(2, 2, 5),
    }
    args[field] = value
    with pytest.raises(ValueError, match=f"`{field}`"):
        ssd_step(**args)


# ------------------------------------------------------------------------------------- transformers


def test_matches_transformers_torch_path():
    hf_scan = inspect.unwrap(HF.mamba2_chunk_scan)  # the torch reference, without kernel dispatch
    for l, Q, g, init in [(45, 16, 2, True), (64, 32, 1, False), (7, 64, 4, True)]:
        inp = make(l=l, h=8, p=4, g=g, n=6, seed=l, with_init=init)
        y_hf, s_hf = hf_scan(
            inp["x"],
            inp["dt"],
            inp["A"],
            inp["B"],
            inp["C"],
            Q,
            D=inp["D"],
            initial_states=inp["initial_state"],
            return_final_states=True,
        )
        y, s = chunked(inp, Q)
        assert rel_err(y, y_hf) <= TOL[torch.float32]
        assert rel_err(s, s_hf) <= TOL[torch.float32]


def test_drop_in_matches_transformers_with_dt_preprocessing():
    """falcon_h1_chunk_scan takes the raw Δ and bias, like transformers' function, and returns float32."""
    hf_scan = inspect.unwrap(HF.mamba2_chunk_scan)
    inp = make(l=27, h=4, g=2, dtype=torch.bfloat16, seed=4)
    raw_dt = torch.randn(2, 27, 4, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    bias = torch.rand(4).to(torch.bfloat16)
    kw = {
        "D": inp["D"],
        "dt_bias": bias,
        "dt_softplus": True,
        "dt_limit": (0.01, 2.0),
        "return_final_states": True,
    }
    y_hf, s_hf = hf_scan(inp["x"], raw_dt, inp["A"].float(), inp["B"], inp["C"], 8, **kw)
    y, s = falcon_h1_chunk_scan(inp["x"], raw_dt, inp["A"].float(), inp["B"], inp["C"], 8, **kw)
    assert y.dtype == y_hf.dtype == torch.float32
    assert rel_err(y, y_hf) <= 1e-5 and rel_err(s, s_hf) <= 1e-5
    with pytest.raises(ValueError, match="seq_idx"):
        falcon_h1_chunk_scan(
            inp["x"],
            raw_dt,
            inp["A"].float(),
            inp["B"],
            inp["C"],
            8,
            seq_idx=torch.zeros(2, 27, dtype=torch.int32),
        )


def _tiny_falcon_h1(seed=0):
    from transformers import FalconH1Config, FalconH1ForCausalLM

    config = FalconH1Config(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        mamba_d_ssm=32,
        mamba_n_heads=4,
        mamba_d_head=8,
        mamba_n_groups=2,
        mamba_d_state=8,
        mamba_chunk_size=8,
        mamba_rms_norm=True,
        max_position_embeddings=128,
    )
    torch.manual_seed(seed)  # transformers' initialisers draw from the global generator; test-local only
    return FalconH1ForCausalLM(config)


def test_patched_falcon_h1_logits_and_grads_identical():
    if importlib.util.find_spec("mamba_ssm") is not None:
        pytest.skip("mamba_ssm installed: transformers uses its fused kernel and the patch stands aside")
    model = _tiny_falcon_h1()
    ids = torch.randint(0, 64, (2, 21), generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        ref = model(input_ids=ids).logits
    model.train()
    model.zero_grad()
    model(input_ids=ids, labels=ids).loss.backward()
    ref_grads = [p.grad.clone() for p in model.parameters()]

    original = HF.mamba2_chunk_scan
    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return falcon_h1_chunk_scan(*args, **kwargs)

    with falcon_h1_patched() as patched:
        assert patched and HF.mamba2_chunk_scan is falcon_h1_chunk_scan
        HF.mamba2_chunk_scan = counting  # count that the mixer really goes through the rebound name
        model.eval()
        with torch.no_grad():
            got = model(input_ids=ids).logits
        HF.mamba2_chunk_scan = falcon_h1_chunk_scan
        model.train()
        model.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
    assert HF.mamba2_chunk_scan is original
    assert len(calls) == 2  # one per layer
    assert (got - ref).abs().max().item() <= 1e-5
    for g_ref, g in zip(ref_grads, grads):
        assert (g - g_ref).abs().max().item() <= 1e-5 * max(1.0, g_ref.abs().max().item())


def test_patched_falcon_h1_generation_with_cache_identical():
    if importlib.util.find_spec("mamba_ssm") is not None:
        pytest.skip("mamba_ssm installed")
    model = _tiny_falcon_h1(seed=1).eval()
    ids = torch.randint(0, 64, (1, 13), generator=torch.Generator().manual_seed(2))
    kw = {
        "max_new_tokens": 6,
        "do_sample": False,
        "return_dict_in_generate": True,
        "output_logits": True,
        "pad_token_id": 0,
    }
    ref = model.generate(ids, **kw)
    assert patch_falcon_h1()
    try:
        got = model.generate(ids, **kw)
    finally:
        unpatch_falcon_h1()
    assert HF.mamba2_chunk_scan is not falcon_h1_chunk_scan
    assert torch.equal(got.sequences, ref.sequences)
    assert max((a - b).abs().max().item() for a, b in zip(got.logits, ref.logits)) <= 1e-5


# ------------------------------------------------------------------------------------- dispatch, bench


def test_auto_backend_on_cpu_is_ours_and_never_imports_mamba_ssm():
    inp = make(l=11, g=2)
    args = (inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], 4)
    kw = {"D": inp["D"], "initial_state": inp["initial_state"]}
    y_ref, s_ref = ssd_chunked(*args, **kw)
    for backend in ("auto", "torch"):
        y, s = ssd_chunked_auto(*args, **kw, backend=backend)
        assert torch.equal(y, y_ref) and torch.equal(s, s_ref)
    assert "mamba_ssm" not in sys.modules
    with pytest.raises(RuntimeError, match="not on CUDA"):
        ssd_chunked_auto(*args, **kw, backend="mamba_ssm")
    with pytest.raises(ValueError, match="`backend`"):
        ssd_chunked_auto(*args, **kw, backend="triton")
    with pytest.raises(ValueError, match="`chunk_size`"):
        ssd_chunked_auto(*args[:-1], 0, **kw)


@pytest.mark.gpu
def test_mamba_ssm_backend_matches_ours_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from falcon_h1r_lib.kernels.dispatch import mamba_ssm_chunk_scan

    if mamba_ssm_chunk_scan() is None:
        pytest.skip("needs mamba_ssm")
    for dtype in (torch.float32, torch.bfloat16):
        inp = make(b=2, l=300, h=8, p=64, g=2, n=64, seed=1, dtype=dtype)
        cuda = {k: (v.cuda() if v is not None else None) for k, v in inp.items()}
        args = (cuda["x"], cuda["dt"], cuda["A"].float(), cuda["B"], cuda["C"], 64)
        kw = {"D": cuda["D"].float(), "initial_state": cuda["initial_state"]}
        y_ref, s_ref = ssd_chunked_auto(*args, **kw, backend="torch")
        y, s = ssd_chunked_auto(*args, **kw, backend="mamba_ssm")
        assert y.dtype == dtype and s.dtype == torch.float32
        assert rel_err(y, y_ref) <= TOL[dtype]
        assert rel_err(s, s_ref) <= max(TOL[dtype], 1e-4)


def test_benchmark_rows_and_table():
    rows = benchmark(
        lengths=(24,),
        batch=1,
        heads=4,
        head_dim=8,
        state=8,
        chunk_sizes=(8, 16),
        repeats=1,
        sequential_cap=16,
    )
    assert [r["chunk_size"] for r in rows] == [8, 16]
    for r in rows:
        assert r["sequential_repeats"] == 1  # length 24 is above the cap: timed once
        assert r["chunked_s"] > 0 and r["transformers_s"] > 0
        assert r["chunked_rel_err"] <= 1e-4 and r["transformers_rel_err"] <= 1e-4
        assert r["chunked_vs_transformers"] == pytest.approx(r["transformers_s"] / r["chunked_s"])
    assert "x hf" in format_table(rows)


def test_transformers_cpu_fallback_notices_are_dropped_only_without_cuda(monkeypatch, caplog):
    """Notebooks printed four "`causal_conv1d_fn` is falling back to its reference PyTorch implementation" notices per
    model load on CPU, where no fused kernel can exist (and the chunk-scan one is wrong once ours is patched in)."""
    import logging

    import torch

    from falcon_h1r_lib import kernels
    from falcon_h1r_lib.kernels.dispatch import HUB_KERNELS_LOGGER

    kernels.quiet_cpu_fallback_notices()
    kernels.quiet_cpu_fallback_notices()  # idempotent
    logger = logging.getLogger(HUB_KERNELS_LOGGER)
    assert sum(type(f).__name__ == "CPUFallbackNotices" for f in logger.filters) == 1
    notice = "`causal_conv1d_fn` is falling back to its reference PyTorch implementation because ..."
    with caplog.at_level(logging.WARNING, logger=HUB_KERNELS_LOGGER):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        logger.warning(notice)
        logger.warning("a kernel failed to load")  # anything else still speaks
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        logger.warning(notice)  # a GPU without the fused kernels is slow: say so
    assert [r.getMessage() for r in caplog.records] == ["a kernel failed to load", notice]
