"""DeepConf's EOS-forcing vLLM logits processor: its logic (`ConfidenceStopCore`) driven by hand-made
`BatchUpdate`s, bit-exact against the offline stop rule, through preemption and re-adds; the processor class
as vLLM loads it (by name, in a spawned engine). The processor inside a running engine: test_vllm_engine.py."""

import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from falcon_h1r_lib.deepconf import first_window_below, group_confidences, token_confidence
from falcon_h1r_lib.deepconf.vllm_stop import (
    PROCESSOR_FQCN,
    ConfidenceStopCore,
    VLLMLogitsStopBackend,
    deepconf_extra_args,
    parse_extra_args,
)

V, EOS = 24, 3


class Params:
    """Stands in for vllm.SamplingParams: weak-referenceable, carries extra_args."""

    def __init__(self, extra_args):
        self.extra_args = extra_args


def update(added=(), removed=(), moved=()):
    return SimpleNamespace(added=list(added), removed=list(removed), moved=list(moved))


def drive(core, rows: dict, logits_per_row, steps: int) -> dict:
    """Run `steps` decode steps; rows: batch index -> output list; returns batch index -> forced step."""
    forced = {}
    for step in range(steps):
        active = sorted(r for r in rows if r not in forced)
        if not active:
            break
        batch = torch.stack([logits_per_row(r, len(rows[r])) for r in range(max(rows) + 1)])
        out = core.apply(batch.clone())
        for r in active:
            if torch.isinf(out[r]).sum() == V - 1 and out[r].argmax() == EOS:
                forced[r] = step
            rows[r].append(int(out[r].argmax()))
    return forced


def random_trace(seed: int, n: int = 40) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.normal(0, 3, (n, V)).astype(np.float32))


def offline_stop(logits: torch.Tensor, window: int, s: float, k: int = 5) -> int | None:
    conf = token_confidence(torch.log_softmax(logits, -1).topk(k, -1).values.numpy(), k)
    return first_window_below(conf, window, s)


def stop_in_engine(logits, s: float, window: int, topk: int):
    """Where the processor's core forces EOS in one uninterrupted request over `logits` (None: never)."""
    core = ConfidenceStopCore()
    out: list = []
    core.update_state(update(added=[(0, Params(deepconf_extra_args(s, window, EOS, topk=topk)), None, out)]))
    return drive(core, {0: out}, lambda r, pos: logits[pos], len(logits)).get(0)


def test_stop_index_equals_the_offline_rule_bit_for_bit():
    for seed in range(12):
        logits = random_trace(seed)
        conf = token_confidence(torch.log_softmax(logits, -1).topk(5, -1).values.numpy(), 5)
        for q in (0.05, 0.3, 0.7):
            s = float(np.quantile(group_confidences(conf, 4), q))
            assert stop_in_engine(logits, s, 4, 5) == offline_stop(logits, 4, s)


def test_rows_without_deepconf_are_untouched_and_moves_follow_rows():
    logits = random_trace(1)
    core = ConfidenceStopCore()
    params = Params(deepconf_extra_args(1e9, 2, EOS, topk=5))  # always below s once the window is full
    out: list = []
    core.update_state(update(added=[(0, Params(None), None, []), (1, params, None, out)]))
    first = core.apply(torch.stack([logits[0], logits[0]]).clone())
    assert torch.equal(first[0], logits[0]) and torch.equal(first[1], logits[0])  # window not yet full
    out.append(7)
    core.update_state(update(moved=[(1, 0, SimpleNamespace(name="SWAP"))]))
    assert 0 in core.rows and 1 not in core.rows
    second = core.apply(torch.stack([logits[1], logits[1]]).clone())
    assert torch.equal(second[1], logits[1]) and second[0].argmax() == EOS  # the DeepConf row moved to 0


def test_a_re_added_request_resumes_its_window():
    """The issue's case: every C_i is 3.91 (well above s = 3.0); vLLM removes the request (preemption or a
    skipped step) and re-adds it with the output so far. The old processor restarted a zeroed window while
    counting from the output position, so the window mean collapsed and EOS was forced at once."""
    k = 20
    logits = torch.full((V,), -1e9)
    logits[:k] = torch.linspace(0, -0.2, k)  # top-20 log-probs average about -3.09 -> C_i ~ 3.09 > s
    c = float(token_confidence(torch.log_softmax(logits, -1).topk(k).values[None].numpy(), k)[0])
    s = c - 0.09
    assert c > s
    core = ConfidenceStopCore()
    params = Params(deepconf_extra_args(s, 8, EOS, topk=k))
    out: list = []
    core.update_state(update(added=[(0, params, None, out)]))
    assert drive(core, {0: out}, lambda r, pos: logits, 5) == {}
    core.update_state(update(removed=[0]))  # preempted
    assert not core.rows
    core.update_state(update(added=[(2, params, None, out)]))  # resumed at another row, same output list
    assert drive(core, {0: [], 1: [], 2: out}, lambda r, pos: logits, 20) == {}  # never stopped
    assert len(out) == 25


def test_re_added_request_stops_exactly_where_an_uninterrupted_one_does():
    for seed in range(8):
        logits = random_trace(seed)
        conf = token_confidence(torch.log_softmax(logits, -1).topk(5, -1).values.numpy(), 5)
        s = float(np.quantile(group_confidences(conf, 6), 0.3))
        expected = offline_stop(logits, 6, s)
        core = ConfidenceStopCore()
        params = Params(deepconf_extra_args(s, 6, EOS, topk=5))
        out: list = []
        core.update_state(update(added=[(0, params, None, out)]))
        cut = 7
        first = drive(core, {0: out}, lambda r, pos, logits=logits: logits[pos], cut)
        if first:
            assert first[0] == expected
            continue
        core.update_state(update(removed=[0]))
        # the resumed prefill may show the same position more than once (partial chunks): idempotent
        core.apply(torch.randn(1, V, generator=torch.Generator().manual_seed(seed)))
        core.update_state(update(added=[(0, params, None, out)]))
        rest = drive(core, {0: out}, lambda r, pos, logits=logits: logits[pos], len(logits) - cut)
        assert (cut + rest[0] if rest else None) == expected


def test_a_lost_state_can_only_delay_the_stop():
    logits = random_trace(3)
    conf = token_confidence(torch.log_softmax(logits, -1).topk(5, -1).values.numpy(), 5)
    s = float(np.quantile(group_confidences(conf, 4), 0.5))
    expected = offline_stop(logits, 4, s)
    out = [0] * 10  # the request arrives with 10 outputs this processor never saw
    core = ConfidenceStopCore()
    core.update_state(update(added=[(0, SimpleNamespace(extra_args=deepconf_extra_args(s, 4, EOS, 5)), None, out)]))
    forced = drive(core, {0: out}, lambda r, pos, logits=logits: logits[pos], len(logits) - 10)
    if forced:  # only windows lying wholly after position 10 can stop it
        stop = 10 + forced[0]
        assert stop >= 13 and (expected is None or stop >= expected)


def test_shared_params_get_their_own_windows():
    """Unseeded n > 1 children can share one SamplingParams object in a single process."""
    logits = random_trace(4)
    params = Params(deepconf_extra_args(-1.0, 3, EOS, topk=5))  # s below every C_i: never stops
    a, b = [], []
    core = ConfidenceStopCore()
    core.update_state(update(added=[(0, params, None, a), (1, params, None, b)]))
    assert core.rows[0][0] is not core.rows[1][0]
    assert drive(core, {0: a, 1: b}, lambda r, pos, logits=logits: logits[pos], 10) == {}


def test_extra_args_are_validated_whole():
    assert parse_extra_args(None) is None and parse_extra_args({"other": 1}) is None
    assert parse_extra_args(deepconf_extra_args(2.5, 16, EOS, 20)) == (2.5, 16, 20, EOS)
    with pytest.raises(ValueError, match="needs all of"):
        ConfidenceStopCore.validate_params(Params({"deepconf_window": 4}))
    with pytest.raises(ValueError, match="window=0"):
        ConfidenceStopCore.validate_params(Params({"deepconf_threshold": 1.0, "deepconf_window": 0,
                                                   "deepconf_topk": 20, "deepconf_eos_token_id": 2}))
    with pytest.raises(ValueError, match="out of range"):
        deepconf_extra_args(1.0, 0, EOS)


def test_processor_class_loads_by_name_and_pickles():
    """vLLM spawns its engine: the class must be importable by name (a local class failed with
    "Can't pickle local object 'logits_processor_class.<locals>.DeepConfStopLogitsProcessor'")."""
    from vllm.v1.sample.logits_processor import LogitsProcessor, _load_logitsprocs_by_fqcns

    (cls,) = _load_logitsprocs_by_fqcns([PROCESSOR_FQCN])
    assert issubclass(cls, LogitsProcessor) and pickle.loads(pickle.dumps(cls)) is cls
    proc = cls(None, torch.device("cpu"), False)
    assert proc.is_argmax_invariant() is False
    from vllm import SamplingParams

    cls.validate_params(SamplingParams(extra_args=deepconf_extra_args(1.0, 4, EOS)))
    with pytest.raises(ValueError, match="needs all of"):
        cls.validate_params(SamplingParams(extra_args={"deepconf_window": 4}))


def test_processor_window_means_are_bit_identical_to_offline():
    """Same float64 additions in the same order: the in-engine means equal `group_confidences` exactly, so
    a window sitting on the threshold stops in the engine exactly when it does offline."""
    logits = random_trace(9, n=30)
    conf = token_confidence(torch.log_softmax(logits, -1).topk(20, -1).values.numpy(), 20)
    groups = group_confidences(conf, 5)
    for j in (0, 7, 25):  # s equal to a window mean: that window is not below s, the next lower one is
        s = float(groups[j])
        assert stop_in_engine(logits, s, 5, 20) == first_window_below(conf, 5, s)


def test_processor_route_refuses_min_new_tokens():
    from falcon_h1r_lib.deepconf.online import ConfidenceStopHook
    from falcon_h1r_lib.generation import SamplingConfig

    class Backend:
        def stop_ids(self, sampling):
            return [3]

        def generate(self, *a, **k):
            raise AssertionError("must refuse before generating")

    hook = ConfidenceStopHook({"p": (1.0, 0, 4)}, window=4, topk=2)
    with pytest.raises(ValueError, match=r"min_new_tokens=8 cannot be combined with early stopping"):
        VLLMLogitsStopBackend(Backend()).generate([], SamplingConfig(n=4, min_new_tokens=8), hook)
