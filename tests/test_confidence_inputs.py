"""DeepConf's one entry point for log-probs refuses what is not a log-prob, naming the trace (issue 13)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from falcon_h1r_lib.deepconf.confidence import VLLM_LOGPROB_FLOOR, confidences_of, token_confidence
from falcon_h1r_lib.deepconf.experiment import score_pool
from falcon_h1r_lib.deepconf.online import ConfidenceStopHook


def topk(n: int = 12, k: int = 20, seed: int = 0) -> np.ndarray:
    """(n, k) raw log-probs sorted by decreasing value, as a Trace stores them."""
    return -np.sort(np.random.default_rng(seed).gamma(2.0, 1.0, (n, k)), axis=1).astype(np.float32)


def trace(lp: np.ndarray, pid: str = "aime-3", sample: int = 5) -> SimpleNamespace:
    return SimpleNamespace(problem_id=pid, sample_index=sample, topk_logprobs=lp, n_tokens=len(lp))


@pytest.mark.parametrize("bad", [float("-inf"), VLLM_LOGPROB_FLOOR, -1e5, float("nan"), float("inf")])
def test_non_log_probs_raise_naming_trace_token_and_rank(bad):
    lp = topk()
    lp[7, 19] = bad
    with pytest.raises(ValueError, match=r"problem 'aime-3' sample 5: top-20 log-prob at token 7, rank 19"):
        token_confidence(lp, 20, trace="problem 'aime-3' sample 5")
    with pytest.raises(ValueError, match="an unnamed trace"):
        token_confidence(lp, 20)


def test_finite_values_above_the_floor_and_unused_columns_pass():
    lp = topk()
    lp[3, -1] = VLLM_LOGPROB_FLOOR + 0.5  # tiny but finite: a real (if extreme) log-prob
    assert np.isfinite(token_confidence(lp, 20)).all()
    lp = topk(k=25)
    lp[:, 20:] = float("-inf")  # beyond the k columns C_i reads
    np.testing.assert_array_equal(token_confidence(lp, 20), token_confidence(lp[:, :20], 20))


def test_every_deepconf_path_names_the_trace():
    bad = topk()
    bad[2, 0] = float("-inf")
    with pytest.raises(ValueError, match=r"problem 'p9' sample 4"):
        confidences_of([trace(topk(), "p9", 3), trace(bad, "p9", 4)], 20)
    with pytest.raises(ValueError, match=r"problem 'p9' sample 4"):
        score_pool("p9", [trace(bad, "p9", 4)], ["1"], [True], "math", window=4, tail=4)
    hook = ConfidenceStopHook({"p9": (1.0, 0, 8)}, window=4, topk=20)
    step = SimpleNamespace(problem_ids=["p9", "p9"], sample_indices=[3, 4], n_generated=[1, 1],
                           topk_logprobs=np.stack([topk(1)[0], bad[2]]))
    with pytest.raises(ValueError, match=r"problem 'p9' sample 4: top-20 log-prob at its current token, rank 0"):
        hook(step)  # a batch of decode steps: row 1 is sample 4
