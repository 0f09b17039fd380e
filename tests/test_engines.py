"""One inference engine alive at a time: a 7B vLLM engine takes most of a GPU, so a second one started before the
first is closed runs the device out of memory (issue 12: SFT's base-vs-SFT evaluation, RL's filter)."""

from __future__ import annotations

import pytest

from falcon_h1r_lib.config import load_config


class EngineCounter:
    def __init__(self):
        self.alive, self.peak, self.started = 0, 0, []

    def make(self, *args, **kwargs):
        self.alive += 1
        self.peak = max(self.peak, self.alive)
        self.started.append(args)
        return object(), object()

    def close(self, backend):
        self.alive -= 1


def test_sft_evaluation_closes_each_engine_before_the_next(monkeypatch, tmp_path):
    import falcon_h1r_lib.evaluation.pipeline as pipeline
    import falcon_h1r_lib.generation as generation
    import falcon_h1r_lib.metrics as metrics
    from falcon_h1r_lib.evaluation import benchmarks
    from falcon_h1r_lib.sft import report

    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    counter = EngineCounter()
    monkeypatch.setattr(pipeline, "make_backend", counter.make)
    monkeypatch.setattr(generation, "close_backend", counter.close)

    class Bench:
        domain = "math"

    monkeypatch.setattr(benchmarks, "get_benchmark", lambda name, profile: Bench())
    monkeypatch.setattr(pipeline, "evaluate_benchmark", lambda *a, **k: {
        "pass_at_1": 0.5, "pass_at_1_ci": [0.4, 0.6], "n_problems": 2, "samples_per_problem": 1, "n_samples": 2})
    monkeypatch.setattr(metrics, "read_metrics", lambda stage, profile: {"metrics": {}, "wall_time_s": 0.0, "reads": []})
    monkeypatch.setattr(metrics, "write_metrics", lambda *a, **k: None)
    cfg = load_config("03_sft", "rehearsal")
    out = report.evaluate_base_and_sft(cfg, models={"base": "b", "sft": "s"})
    assert counter.peak == 1 and counter.alive == 0 and len(counter.started) == 2
    assert set(out["sft_accuracy"]) == {"math"}


def test_rl_filter_engine_is_closed_before_training_loads_the_policy(monkeypatch, tmp_path):
    """With vLLM rollouts the filter's engine is closed before the policy (and TRL's own engine) load."""
    from falcon_h1r_lib import rl
    from falcon_h1r_lib.rl import resume, stage

    events = []
    monkeypatch.setattr(stage, "prepare_data", lambda cfg, out, *a, **k: events.append("filter closed") or ([], {}))

    def load_policy(cfg):
        events.append("policy")
        raise RuntimeError("stop here")

    monkeypatch.setattr(stage, "load_policy", load_policy)
    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    cfg = load_config("04_rl", "rehearsal")
    assert cfg.use_vllm
    monkeypatch.setattr(resume, "run_fingerprint", lambda cfg: "x")
    with pytest.raises(RuntimeError, match="stop here"):
        rl.run(cfg, force=True)
    assert events == ["filter closed", "policy"]
