"""Benchmark registry: what to sample, how often and how long, and whether we can grade it locally.

tiny: one held-out set per domain from the task generators (``data.splits``), levels 1-5 mixed and
reported per level. They are the sets curation decontaminated training against, so a tiny benchmark may
take at most the curation profile's ``eval_problems_per_domain`` problems (a prefix of the same list).
full: the paper's benchmarks (Tables 4-6) with the responses per query and maximum response length of
its evaluation-settings table (Table 9 here), read from ``data_manifests/paper_results.yaml``, and the
dataset ids / revisions of ``data_manifests/full/eval_benchmarks.yaml`` read through ``data.sources``.
Sampling for all: temperature 0.6, top-p 0.95 ([P] §4.1); the system turn is the run's
``EvaluationConfig.system_prompt`` (its tiny counterpart of the Falcon system prompt, or None for the Falcon one).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from falcon_h1r_lib.config import ConfigError, is_tiny, load_config
from falcon_h1r_lib.paper_results import paper_table

if TYPE_CHECKING:
    from falcon_h1r_lib.generation import SamplingConfig

EVAL_TEMPERATURE = 0.6  # [P] §4.1
EVAL_TOP_P = 0.95  # [P] §4.1
SETTINGS_TABLE = "table9_evaluation_settings"
EVAL_SOURCES_FILE = "data_manifests/full/eval_benchmarks.yaml"
TINY_SAMPLES_PER_PROBLEM = 4  # paper: 16 for AIME-like math, 5 GPQA-D, 3 LCB (Table 9)
TINY_MAX_NEW_TOKENS = 192  # teacher traces are <= ~300 characters; paper: 32K / 64K tokens (Table 9)


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: its problems' origin, the sampling protocol, and where its paper number lives."""

    name: str  # registry key (the paper's column name for full benchmarks)
    profile: str  # "tiny" | "full" (the rehearsal evaluates on the full registry)
    domain: str  # math | code | science | other: which verifier grades it
    samples_per_problem: int  # n responses per query, pass@1 averaged over them ([P] Table 9)
    max_new_tokens: int  # maximum response length ([P] Table 9)
    paper_table: str  # the results table it belongs to: table4_math | table5_code | table6_general
    paper_column: str | None = None  # its column there; None for a tiny stand-in
    source: str | None = None  # full: source name in data_manifests/full/eval_benchmarks.yaml
    temperature: float = EVAL_TEMPERATURE
    top_p: float = EVAL_TOP_P
    gradable: bool = True  # can falcon_h1r_lib.rewards grade it here
    why_not_gradable: str = ""
    note: str = ""  # protocol differences from the paper worth printing beside the number

    def __post_init__(self) -> None:
        is_tiny(self.profile)  # a known profile (ConfigError otherwise); every non-tiny one is the full path
        if self.samples_per_problem < 1 or self.max_new_tokens < 1:
            raise ValueError(f"benchmark {self.name!r}: samples_per_problem and max_new_tokens must be >= 1")
        if self.gradable == bool(self.why_not_gradable):
            raise ValueError(f"benchmark {self.name!r}: give why_not_gradable exactly when gradable is False")

    def load_problems(
        self,
        limit: int | None = None,
        *,
        sources_file: str = EVAL_SOURCES_FILE,
        allow_unpinned: bool = False,
        local_files: str | Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """The problems, in a fixed order (first ``limit`` when given). Full: from the Hub at the pinned
        revision, or from ``local_files`` (an offline mirror shaped like the source)."""
        if limit is not None and limit < 1:
            raise ValueError(f"benchmark {self.name!r}: limit must be >= 1 or None, got {limit}")
        if is_tiny(self.profile):
            from falcon_h1r_lib.data import splits

            cap = tiny_eval_size()
            n = cap if limit is None else limit
            if n > cap:
                raise ConfigError(
                    f"benchmark {self.name!r}: {n} problems asked, but curation decontaminated training against "
                    f"only the first {cap} (02_data_curation eval_problems_per_domain)"
                )
            return splits.tiny_eval_problems(self.domain, n)
        from falcon_h1r_lib.data.sources import load_source, load_source_specs

        specs = {s.name: s for s in load_source_specs(sources_file)}
        if self.source not in specs:
            raise ConfigError(f"{sources_file}: no source {self.source!r} for benchmark {self.name!r}")
        rows, _ = load_source(specs[self.source], "full", allow_unpinned, local_files, limit)
        return rows

    def sampling(self, seed: int = 0, logprobs_topk: int = 20, **overrides: Any) -> SamplingConfig:
        """The generation settings of this benchmark; ``overrides`` (n, max_new_tokens, ...) win."""
        from falcon_h1r_lib.generation import SamplingConfig

        values = {"n": self.samples_per_problem, "max_new_tokens": self.max_new_tokens,
                  "temperature": self.temperature, "top_p": self.top_p, "seed": seed,
                  "logprobs_topk": logprobs_topk}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return SamplingConfig.from_dict(values, source=f"benchmark {self.name}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, eq=False)
class ProblemSet(Benchmark):
    """A benchmark over a given list of problems, outside the registry: e.g. a sample of the problems RL trained
    on (notebook 04's headroom check), sampled, stored and graded by the same ``pipeline.evaluate_benchmark`` as
    a registered set. ``problems`` are dicts as the task generators and ``data.sources`` give them (id, domain,
    prompt, answer or tests, ...), all of ``domain``, ids unique. The traces key covers every rendered prompt, so
    another list re-samples. ValueError names an empty list, a foreign domain or a repeated id."""

    problems: tuple[Mapping[str, Any], ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.problems:
            raise ValueError(f"problem set {self.name!r}: no problems")
        foreign = [p.get("id") for p in self.problems if p.get("domain") != self.domain]
        if foreign:
            raise ValueError(f"problem set {self.name!r}: problems {foreign[:3]} are not of domain {self.domain!r}")
        ids = [str(p.get("id")) for p in self.problems]
        if len(set(ids)) != len(ids):
            raise ValueError(f"problem set {self.name!r}: repeated problem ids, e.g. "
                             f"{sorted({i for i in ids if ids.count(i) > 1})[:3]}")

    def load_problems(self, limit: int | None = None, **_sources: Any) -> list[dict[str, Any]]:
        """The problems in their given order (the first ``limit`` when given); the source options of
        ``Benchmark.load_problems`` do not apply (the list is already loaded)."""
        if limit is not None and limit < 1:
            raise ValueError(f"problem set {self.name!r}: limit must be >= 1 or None, got {limit}")
        return [dict(p) for p in self.problems[:limit]]


def tiny_eval_size() -> int:
    """How many held-out problems per domain curation decontaminated against (tiny profile).

    Read from the config notebook 02 recorded when it has run (it may have run with other parameters than
    its YAML); before that, nothing was trained on generated data yet and the tiny YAML is the plan.
    """
    from falcon_h1r_lib import stages

    if stages.output_path("02_data_curation", "metrics", "tiny").exists():
        return int(stages.recorded_config("02_data_curation", "tiny").eval_problems_per_domain)
    return int(load_config("02_data_curation", "tiny").eval_problems_per_domain)


@lru_cache(maxsize=1)
def _settings() -> dict[str, tuple[int, int]]:
    """Table 9: benchmark -> (responses per query, max response length)."""
    df = paper_table(SETTINGS_TABLE)
    return {name: (int(r["responses_per_query"]), int(r["max_response_length"])) for name, r in df.iterrows()}


def _full(name: str, domain: str, table: str, source: str, **kw: Any) -> Benchmark:
    n, max_len = _settings()[name]
    return Benchmark(name=name, profile="full", domain=domain, samples_per_problem=n, max_new_tokens=max_len,
                     paper_table=table, paper_column=name, source=source, **kw)


_TINY_STANDS_FOR = {"math": "the math benchmarks", "code": "LiveCodeBench", "science": "GPQA-Diamond / MMLU-Pro",
                    "other": "IFBench"}


def _tiny(domain: str, table: str) -> Benchmark:
    from falcon_h1r_lib.data.splits import TINY_EVAL_BENCHMARKS

    return Benchmark(name=TINY_EVAL_BENCHMARKS[domain], profile="tiny", domain=domain,
                     samples_per_problem=TINY_SAMPLES_PER_PROBLEM, max_new_tokens=TINY_MAX_NEW_TOKENS,
                     paper_table=table, note=f"tiny task-world stand-in for {_TINY_STANDS_FOR[domain]}: "
                                             "not comparable in value")


def _registry() -> dict[str, dict[str, Benchmark]]:
    tiny = [_tiny("math", "table4_math"), _tiny("code", "table5_code"),
            _tiny("science", "table6_general"), _tiny("other", "table6_general")]
    full = [
        _full("AIME24", "math", "table4_math", "aime24"),
        _full("AIME25", "math", "table4_math", "aime25"),
        _full("HMMT25", "math", "table4_math", "hmmt25"),
        _full("AMO-Bench", "math", "table4_math", "amo-bench",
              note="all 50 problems as in Table 4; some answers are not parser-verifiable (Table 7 keeps 39)"),
        _full("MATH500", "math", "table4_math", "math500"),
        _full("GPQA-Diamond", "science", "table6_general", "gpqa-diamond",
              note="letter read from the last \\boxed{} or 'Answer: X'; [P] used Artificial Analysis regexes"),
        _full("LCB-v6", "code", "table5_code", "livecodebench-v6",
              note="public stdin/stdout tests only (private tests are pickled, not loaded): an upper bound on "
                   "the paper's protocol; functional (call-based) problems get no verdict"),
        _full("MMLU-Pro", "science", "table6_general", "mmlu-pro", gradable=False,
              why_not_gradable="up to 10 options (A-J); rewards.science reads choices A-D only"),
        _full("IFBench", "other", "table6_general", "ifbench", gradable=False,
              why_not_gradable="IFBench's 58 constraint checkers are not in rewards.instructions"),
    ]
    return {"tiny": {b.name: b for b in tiny}, "full": {b.name: b for b in full}}


BENCHMARKS: Mapping[str, Mapping[str, Benchmark]] = _registry()


def registry_of(profile: str) -> str:
    """The registry a profile evaluates on: "tiny", or "full" for the full profile and its rehearsal."""
    return "tiny" if is_tiny(profile) else "full"


def get_benchmark(name: str, profile: str = "tiny") -> Benchmark:
    """A registered benchmark by name, e.g. ``get_benchmark("AIME25", "full")`` (the rehearsal: full's)."""
    profile = registry_of(profile)
    try:
        return BENCHMARKS[profile][name]
    except KeyError:
        raise ConfigError(f"benchmark {name!r} is not in the {profile} registry; known: "
                          f"{sorted(BENCHMARKS[profile])}") from None


def benchmark_names(profile: str = "tiny", gradable_only: bool = False) -> list[str]:
    return [n for n, b in BENCHMARKS[registry_of(profile)].items() if b.gradable or not gradable_only]


__all__ = ["BENCHMARKS", "EVAL_SOURCES_FILE", "EVAL_TEMPERATURE", "EVAL_TOP_P", "Benchmark", "ProblemSet",
           "benchmark_names", "get_benchmark", "tiny_eval_size"]
