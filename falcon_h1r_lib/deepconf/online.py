"""Online DeepConf ([P] §3.3, Alg. 2): warm-up, threshold s, early stop at the first low window, consensus stop.

One controller, two executions: **replay** over a pre-generated pool (the paper's protocol: a pool per
problem, many resampled runs; a pooled trace is cut where the live run would stop) and **live** through
the generation backends' per-sequence stop hook (HF or vLLM). Each sample's seed depends only on
(seed, problem id, sample index) (`generation.sample_seed`), so a pool generated without stopping holds
exactly the tokens a live run produces up to its stop point, and both give the same answers and tokens.

Decisions on the paper's ambiguities (reference deepconf.md §3.1):
1. The budget B counts every trace started, warm-up included (official code).
2. beta = V(a_hat) / sum_a V(a) with confidence-weighted votes (V of §3.2), over the kept traces.
3. s = np.percentile(warm-up lowest-group scores, 100 - eta) (numpy linear), as the official code.
4. A trace that finishes with lowest-group score < s does not vote (§4.3: the offline filter reapplied);
   a trace shorter than the window is never stopped and votes only if its mean >= s.
5. Consensus is checked before each wave of `wave` new traces. Alg. 2 is wave = 1 (before every trace):
   replayed curves always use it; live runs may start larger waves to keep an engine's batch full (then
   a run can overshoot the trace where consensus was reached by up to wave - 1 traces). With
   `consensus_tau=None` it is the budget-only variant the official code runs.
6. Fallback when no trace is kept: the lowest-group-weighted vote of every finished trace with an answer
   (warm-up included); no answer when there is none (reference §8.7).
Every generated token is counted: warm-up traces whole, stopped traces up to and including their stop token.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from falcon_h1r_lib.deepconf.confidence import (
    DEFAULT_TOPK,
    RunningGroupConfidence,
    group_confidences,
    token_confidence,
    trace_name,
)
from falcon_h1r_lib.deepconf.offline import NO_ANSWER, VoteResult, threshold_from, weighted_vote


@dataclass(frozen=True)
class OnlineSettings:
    """Parameters of one online DeepConf run (paper values in comments)."""

    budget: int  # B: traces started at most, warm-up included; paper 512
    n_init: int = 16  # N_init warm-up traces; paper 16
    keep_top_percent: float = 10.0  # eta: 10 = DeepConf-low (s = 90th pct), 90 = DeepConf-high
    window: int = 2048  # n, group window in tokens; paper 2048
    consensus_tau: float | None = 0.95  # tau; None = budget-only (official code)
    wave: int = 1  # traces started between consensus checks; Alg. 2: 1 (live runs may batch more)
    topk: int = DEFAULT_TOPK  # k of C_i; paper 20

    def __post_init__(self) -> None:
        if not isinstance(self.n_init, int) or self.n_init < 1:
            raise ValueError(f"OnlineSettings.n_init must be an int >= 1, got {self.n_init!r}")
        if not isinstance(self.budget, int) or self.budget < self.n_init:
            raise ValueError(f"OnlineSettings.budget (B={self.budget!r}) must be an int >= n_init ({self.n_init})")
        if not 0 < self.keep_top_percent <= 100:
            raise ValueError(f"OnlineSettings.keep_top_percent (eta) must be in (0, 100], got {self.keep_top_percent}")
        if self.window < 1 or self.wave < 1 or self.topk < 1:
            raise ValueError("OnlineSettings.window, wave and topk must be >= 1")
        if self.consensus_tau is not None and not 0 < self.consensus_tau <= 1:
            raise ValueError(f"OnlineSettings.consensus_tau must be in (0, 1] or None, got {self.consensus_tau}")


@dataclass
class OnlineTrace:
    """What the controller needs of one trace: its window means, length and answer group."""

    groups: np.ndarray  # (max(1, n - window + 1),) group confidences (`group_confidences`)
    n_tokens: int
    label: int  # answer group (offline.AnswerBook), NO_ANSWER when none
    sample_index: int = -1
    window: int = 0  # n the groups were computed with (0: unknown); must match the settings
    _prefix_min: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def from_conf(cls, conf, window: int, label: int, sample_index: int = -1) -> OnlineTrace:
        conf = np.asarray(conf, dtype=np.float64)
        return cls(group_confidences(conf, window), len(conf), int(label), sample_index, window)

    @property
    def lowest_group(self) -> float:
        return float(self.groups.min())

    def stop_index(self, threshold: float, window: int) -> int | None:
        """Last token of the first full window below s (= `confidence.first_window_below`), or None."""
        if self.window and self.window != window:
            raise ValueError(f"trace {self.sample_index}: groups computed with window {self.window}, "
                             f"the online settings use {window}")
        if self.n_tokens < window:
            return None
        if self._prefix_min is None:
            self._prefix_min = np.minimum.accumulate(self.groups)  # non-increasing
        j = int(np.searchsorted(-self._prefix_min, -threshold, side="right"))  # first prefix min < s
        return j + window - 1 if j < len(self.groups) else None


@dataclass(frozen=True)
class OnlineResult:
    """One online run on one problem."""

    vote: VoteResult  # over the kept traces (or the fallback set)
    tokens: int  # every generated token: warm-up + finished + stopped (up to the stop token)
    threshold: float  # s
    n_started: int  # traces started (<= B)
    n_stopped: int  # traces ended early by the window rule
    n_kept: int  # traces that voted
    consensus_stop: bool  # ended by beta >= tau before the budget
    trace_tokens: tuple[tuple[int, int, bool], ...] = ()  # (sample index, tokens, stopped) in start order

    @property
    def label(self) -> int:
        return self.vote.label


class OnlineController:
    """Algorithm 2 as a state machine: `warmup`, then `next_wave` / `add_wave` until 0, then `result`."""

    def __init__(self, settings: OnlineSettings):
        self.settings = settings
        self.threshold: float | None = None
        self.kept: list[OnlineTrace] = []
        self.finished: list[OnlineTrace] = []  # not stopped (fallback voters)
        self.tokens = 0
        self.n_started = 0
        self.n_stopped = 0
        self.consensus_stop = False
        self.trace_tokens: list[tuple[int, int, bool]] = []
        self._mass: dict[int, float] = {}

    def warmup(self, traces: Sequence[OnlineTrace]) -> float:
        """Calibrate s on N_init complete traces; keep those with an answer and lowest group >= s."""
        if self.threshold is not None:
            raise RuntimeError("OnlineController.warmup called twice")
        if len(traces) != self.settings.n_init:
            raise ValueError(f"warm-up needs n_init={self.settings.n_init} traces, got {len(traces)}")
        for t in traces:
            if t.window and t.window != self.settings.window:
                raise ValueError(f"warm-up trace {t.sample_index}: groups computed with window {t.window}, "
                                 f"the online settings use {self.settings.window}")
        self.threshold = threshold_from([t.lowest_group for t in traces], self.settings.keep_top_percent)
        for t in traces:
            self._account(t, t.n_tokens, stopped=False)
        return self.threshold

    def beta(self) -> float:
        total = sum(self._mass.values())
        return max(self._mass.values()) / total if total > 0 else 0.0

    def next_wave(self) -> int:
        """How many traces to start now (0: done, by consensus or budget)."""
        if self.threshold is None:
            raise RuntimeError("OnlineController: warm-up first")
        tau = self.settings.consensus_tau
        if self.n_started >= self.settings.budget or self.consensus_stop:
            return 0
        if tau is not None and self.kept and self.beta() >= tau:
            self.consensus_stop = True
            return 0
        return min(self.settings.wave, self.settings.budget - self.n_started)

    def add_wave(self, traces: Sequence[OnlineTrace]) -> None:
        """Account traces started in this wave, in start order: full pooled traces are cut at their stop
        point (replay); live traces already end there (their stop index is their last token)."""
        for t in traces:
            cut = t.stop_index(self.threshold, self.settings.window)
            if cut is not None and cut >= t.n_tokens:
                raise ValueError(f"trace {t.sample_index}: stop index {cut} beyond its {t.n_tokens} tokens")
            self._account(t, t.n_tokens if cut is None else cut + 1, stopped=cut is not None)

    def _account(self, t: OnlineTrace, tokens: int, stopped: bool) -> None:
        self.n_started += 1
        self.tokens += tokens
        self.trace_tokens.append((t.sample_index, tokens, stopped))
        if stopped:
            self.n_stopped += 1
            return
        self.finished.append(t)
        if t.label != NO_ANSWER and t.lowest_group >= self.threshold:
            self.kept.append(t)
            self._mass[t.label] = self._mass.get(t.label, 0.0) + t.lowest_group

    def result(self) -> OnlineResult:
        voters = self.kept
        vote = weighted_vote([t.label for t in voters], [t.lowest_group for t in voters])
        if vote.n_voters == 0:  # fallback: every finished trace with an answer
            fb = weighted_vote([t.label for t in self.finished], [t.lowest_group for t in self.finished])
            vote = dataclasses.replace(fb, fallback=True)
        return OnlineResult(vote=vote, tokens=self.tokens, threshold=float(self.threshold),
                            n_started=self.n_started, n_stopped=self.n_stopped, n_kept=len(self.kept),
                            consensus_stop=self.consensus_stop, trace_tokens=tuple(self.trace_tokens))


def replay_online(pool: Sequence[OnlineTrace], settings: OnlineSettings,
                  budgets: Sequence[int] | None = None) -> dict[int, OnlineResult]:
    """Algorithm 2 over pooled traces in start order (the first N_init are the warm-up).

    Returns {B: result} for each budget in `budgets` (default: settings.budget). With wave = 1 one pass
    serves every budget (a run with budget B is the prefix of a longer one up to B traces started).
    """
    budgets = sorted({int(b) for b in (budgets or [settings.budget])})
    if budgets[0] < settings.n_init:
        raise ValueError(f"replay_online: budgets {budgets} must be >= n_init={settings.n_init}")
    if len(pool) < budgets[-1]:
        raise ValueError(f"replay_online: the pool holds {len(pool)} traces, budget {budgets[-1]} needs as many")
    if settings.wave != 1:
        return {b: _replay(pool, dataclasses.replace(settings, budget=b), [b])[b] for b in budgets}
    return _replay(pool, dataclasses.replace(settings, budget=budgets[-1]), budgets)


def _replay(pool: Sequence[OnlineTrace], settings: OnlineSettings, checkpoints: list[int]) -> dict[int, OnlineResult]:
    ctl = OnlineController(settings)
    ctl.warmup(pool[:settings.n_init])
    out: dict[int, OnlineResult] = {}
    while True:
        while checkpoints[len(out):] and ctl.n_started >= checkpoints[len(out)]:
            out[checkpoints[len(out)]] = ctl.result()
        m = ctl.next_wave()
        if m == 0:
            break
        ctl.add_wave(pool[ctl.n_started:ctl.n_started + m])
    final = ctl.result()
    for b in checkpoints[len(out):]:
        out[b] = final  # ended by consensus before this budget
    return out


# --------------------------------------------------------------------------------------------
# Live execution through a backend's stop hook
# --------------------------------------------------------------------------------------------


class ConfidenceStopHook:
    """`generation.StopHook`: stop a sequence at the first full window whose mean C_G is below s.

    plan: problem_id -> (threshold s, first sample index, end sample index) of the wave being generated
    (`SamplingConfig.first_sample_index` = first, n = end - first); a row outside its wave is an error.
    `seconds` accumulates the time spent here (the confidence overhead).
    """

    def __init__(self, plan: Mapping[str, tuple[float, int, int]], window: int, topk: int = DEFAULT_TOPK):
        self.plan = dict(plan)
        self.window = window
        self.topk = topk
        self.state: dict[tuple[str, int], RunningGroupConfidence] = {}
        self.seconds = 0.0

    def __call__(self, step) -> list[bool]:
        start = time.perf_counter()
        conf = token_confidence(np.asarray(step.topk_logprobs, dtype=np.float32), self.topk,  # (A,)
                                trace=lambda row: f"problem {step.problem_ids[row]!r} sample {step.sample_indices[row]}")
        flags = []
        for row, (pid, i) in enumerate(zip(step.problem_ids, step.sample_indices, strict=True)):
            s, lo, hi = self.plan[pid]
            if not lo <= i < hi:
                raise ValueError(f"ConfidenceStopHook: {pid!r} sample {i} outside its planned wave [{lo}, {hi})")
            key = (pid, i)
            run = self.state.get(key)
            if run is None or run.n_tokens >= step.n_generated[row]:  # new sequence
                run = self.state[key] = RunningGroupConfidence(self.window)
            mean = run.push(conf[row])
            flags.append(mean is not None and mean < s)
        self.seconds += time.perf_counter() - start
        return flags


@dataclass
class LiveRun:
    """A live online run on several problems at once: results, the traces generated, time accounting."""

    results: dict[str, OnlineResult]
    traces: dict[str, list]  # problem_id -> generation.Trace in start order (warm-up first)
    generate_seconds: float  # wall time inside backend.generate
    hook_seconds: float  # of which in the confidence stop hook


def run_online_live(backend, requests: Sequence, sampling, settings: OnlineSettings,
                    label_of: Callable[[str, object], int]) -> LiveRun:
    """Algorithm 2 live on `requests` (one per problem), waves of all problems in lockstep.

    `label_of(problem_id, trace)` gives a trace's answer group (an `offline.AnswerBook` per problem).
    Warm-up: one generate call with n = N_init and no hook. Then each wave of `settings.wave` new samples
    per problem (indices [n_started, n_started + m), `first_sample_index`) goes through the backend with a
    `ConfidenceStopHook` that cuts every sequence at its stop point; problems whose controller is done
    (consensus or budget) drop out.
    """
    from falcon_h1r_lib.generation import GenerationRequest

    requests = list(requests)
    if not all(isinstance(r, GenerationRequest) for r in requests):
        raise TypeError("run_online_live: requests must be generation.GenerationRequest")
    ctls = {r.problem_id: OnlineController(settings) for r in requests}
    traces: dict[str, list] = {r.problem_id: [] for r in requests}
    gen_s = hook_s = 0.0

    def to_online(pid, t):
        conf = token_confidence(t.topk_logprobs, settings.topk, trace=trace_name(t))
        return OnlineTrace.from_conf(conf, settings.window, label_of(pid, t), t.sample_index)

    start = time.perf_counter()
    warm = backend.generate(requests, dataclasses.replace(sampling, n=settings.n_init, first_sample_index=0))
    gen_s += time.perf_counter() - start
    for r in requests:
        mine = [t for t in warm if t.problem_id == r.problem_id]
        traces[r.problem_id] += mine
        ctls[r.problem_id].warmup([to_online(r.problem_id, t) for t in mine])
    while True:
        waves: dict[tuple[int, int], dict[str, tuple[float, int, int]]] = {}
        for r in requests:
            m = ctls[r.problem_id].next_wave()
            if m:
                lo = ctls[r.problem_id].n_started
                waves.setdefault((lo, lo + m), {})[r.problem_id] = (ctls[r.problem_id].threshold, lo, lo + m)
        if not waves:
            break
        for (lo, hi), plan in sorted(waves.items()):  # lockstep: one group unless budgets differ
            hook = ConfidenceStopHook(plan, settings.window, settings.topk)
            wave_requests = [r for r in requests if r.problem_id in plan]
            start = time.perf_counter()
            out = backend.generate(wave_requests, dataclasses.replace(sampling, n=hi - lo, first_sample_index=lo),
                                   stop_hook=hook)
            gen_s += time.perf_counter() - start
            hook_s += hook.seconds
            for pid in plan:
                wave = sorted((t for t in out if t.problem_id == pid), key=lambda t: t.sample_index)
                if [t.sample_index for t in wave] != list(range(lo, hi)):
                    raise ValueError(f"{pid!r}: the backend returned samples {[t.sample_index for t in wave]}, "
                                     f"expected [{lo}, {hi})")
                traces[pid] += wave
                ctls[pid].add_wave([to_online(pid, t) for t in wave])
    return LiveRun({pid: c.result() for pid, c in ctls.items()}, traces, gen_s, hook_s)


__all__ = ["ConfidenceStopHook", "LiveRun", "OnlineController", "OnlineResult", "OnlineSettings",
           "OnlineTrace", "replay_online", "run_online_live"]
