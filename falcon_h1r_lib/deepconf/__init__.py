"""DeepConf (Fu et al. 2025, "Deep Think with Confidence"), as Falcon-H1R §5 uses it for test-time scaling.

confidence: token, group (sliding window), trace scores from raw top-k log-probs (one definition for
calibration, stopping and voting). offline: majority / confidence-weighted votes with top-eta filtering.
online: Algorithm 2 (warm-up threshold, early stop, consensus stop), replayed over pools or run live
through a backend's stop hook. vllm_stop: the EOS-forcing vLLM logits processor (vllm imported lazily).
calibration: do confidences separate correct from wrong traces (AUROC, length, online stops, causes); imported
on use (`from falcon_h1r_lib.deepconf import calibration`), as it loads scikit-learn.
experiment: the scaling experiment of notebook 06 and `python -m falcon_h1r_lib.deepconf --config FILE`.
"""

from falcon_h1r_lib.deepconf.confidence import (
    SCORE_NAMES,
    RunningGroupConfidence,
    bottom_group_confidence,
    first_window_below,
    group_confidences,
    lowest_group_confidence,
    mean_confidence,
    tail_confidence,
    token_confidence,
    trace_scores,
)
from falcon_h1r_lib.deepconf.offline import (
    NO_ANSWER,
    AnswerBook,
    OfflineMethod,
    VoteResult,
    answer_groups,
    keep_top,
    offline_methods,
    offline_vote,
    threshold_from,
    weighted_vote,
)
from falcon_h1r_lib.deepconf.online import (
    ConfidenceStopHook,
    LiveRun,
    OnlineController,
    OnlineResult,
    OnlineSettings,
    OnlineTrace,
    replay_online,
    run_online_live,
)


def run(cfg, models=None, backends=None, out_dir=None):
    """See `experiment.run`: pools and/or live runs, curves, Table 7 / Fig. 1 frames, metrics.json."""
    from falcon_h1r_lib.deepconf.experiment import run as _run

    return _run(cfg, models=models, backends=backends, out_dir=out_dir)


__all__ = [
    "NO_ANSWER", "SCORE_NAMES", "AnswerBook", "ConfidenceStopHook", "LiveRun", "OfflineMethod", "OnlineController",
    "OnlineResult", "OnlineSettings", "OnlineTrace", "RunningGroupConfidence", "VoteResult", "answer_groups",
    "bottom_group_confidence", "first_window_below", "group_confidences", "keep_top", "lowest_group_confidence",
    "mean_confidence", "offline_methods", "offline_vote", "replay_online", "run", "run_online_live",
    "tail_confidence", "threshold_from", "token_confidence", "trace_scores", "weighted_vote",
]
