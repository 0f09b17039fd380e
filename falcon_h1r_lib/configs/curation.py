"""Notebook 02's config: teacher, filters, difficulty weights, deduplication, decontamination and the SFT/RL split."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import ClassVar

from falcon_h1r_lib.config import DOMAINS, ConfigError, StageConfig, register_stage


@register_stage
@dataclass(frozen=True)
class CurationConfig(StageConfig):
    """Notebook 02: teacher traces -> verified, weighted, decontaminated SFT mix + disjoint RL problems."""

    STAGE: ClassVar[str] = "02_data_curation"

    problems_per_domain: dict[str, int] = field(default_factory=lambda: {"math": 2000, "code": 1000, "science": 400, "other": 400})  # generated pool per domain (tiny; code has ~400 distinct problems); paper Fig. 3: 3.11M SFT samples
    eval_problems_per_domain: int = 50  # held-out problems per domain (data.splits); paper: AIME24 has 30
    rollouts_per_problem: int = 12  # k teacher rollouts per problem, also the pass-rate sample; paper §2.2: n = 12 best of {4, 8, 12}
    max_correct_per_problem: int = 12  # correct rollouts kept per problem; paper §2.2: 12
    teacher_style: str = "concise"  # programmatic teacher's trace style (tiny: data.teacher.STYLES); paper: one teacher beats several
    teacher_error_rate: float = 0.3  # chance a tiny-teacher rollout slips; paper: teachers unnamed (NOT FOUND)
    teacher_self_check_prob: float = 0.3  # chance a tiny-teacher rollout re-checks its result; paper: n/a
    teacher_error_slope: float = 0.5  # slip rate x (1 + slope*(level-3)): teachers fail more on hard levels
    teacher_format_error_rate: float = 0.05  # format defects the quality filters must catch; paper §2.1 filters
    tokenizer_vocab_size: int = 512  # tiny tokenizer trained on the curated pool; paper: 130,048 (Table 8)
    hard_max_pass_rate: float = 0.25  # pass rate <= this is "hard"; paper §2.2: "by pass rate" (cut-off not given)
    easy_min_pass_rate: float = 0.875  # pass rate >= this is "easy" (7/8); paper: cut-off not given
    hard_weight_min: float = 1.25  # weight of the easiest hard problem; paper §2.2: x1.25
    hard_weight_max: float = 1.75  # weight at pass rate 0+; paper §2.2: x1.75
    easy_weight: float = 0.5  # weight of easy problems when kept; paper §2.2: x0.5
    easy_policy: typing.Literal["downweight", "drop"] = "downweight"  # paper §2.2: "x0.5 or removed"
    min_rollouts_for_weighting: int = 4  # fewer rollouts than this: pass rate untrusted, weight 1.0 ("unrated"); paper §2.2: n = 12
    near_dup_threshold: float = 0.8  # shingle Jaccard at which two problems are near-duplicates; paper: n/a
    shingle_n: int = 3  # word n-gram size of shingles (near-dup and near-copy decontamination)
    near_dup_method: typing.Literal["pairwise", "lsh"] = "pairwise"  # exact Jaccard (tiny) or MinHash LSH (full)
    near_dup_require_same_numbers: bool = True  # template problems with other operands are not duplicates
    minhash_num_perm: int = 64  # MinHash permutations (lsh method)
    lsh_bands: int = 16  # LSH bands (num_perm / bands rows each)
    decontam_ngram_n: int = 12  # n-gram overlap (with the eval prompt's numbers) vs any eval prompt; full: 13
    decontam_boilerplate_frac: float = 0.05  # n-grams in more eval prompts than this are template text, ignored
    decontam_near_threshold: float | None = 0.6  # same numbers + Jaccard >= this = reworded copy; paper: exact match only
    domain_token_shares: dict[str, float] = field(default_factory=lambda: {"math": 0.568, "code": 0.298, "science": 0.071, "other": 0.064})  # paper Fig. 3 token shares
    max_total_tokens: int | None = None  # cap on the SFT mix; None = as much as the pool allows at the shares
    rl_fraction: float = 0.3  # share of RL-domain problems held out for RL (disjoint from SFT); paper: not given
    rl_domains: tuple[str, ...] = ("math",)  # domains that feed RL; paper §3.4: the released model used math-only RL
    sources_file: str = ""  # full profile: YAML of SFT sources under data_manifests/full/ ("" = tiny generator)
    rl_sources_file: str = ""  # full profile: YAML of RL problem sources (deduplicated, decontaminated, disjoint from SFT)
    eval_sources_file: str = ""  # full profile: YAML of evaluation benchmarks to decontaminate against
    allow_unpinned: bool = False  # full profile: permit sources whose revision is not a commit hash
    max_rows_per_source: int | None = None  # full profile: cap rows read per source (smoke runs)

    RANGES: ClassVar[dict[str, str]] = {
        **dict.fromkeys(("eval_problems_per_domain", "rollouts_per_problem", "min_rollouts_for_weighting",
                         "max_correct_per_problem", "shingle_n", "minhash_num_perm", "lsh_bands", "decontam_ngram_n",
                         "tokenizer_vocab_size"), "(0, inf)"),
        **dict.fromkeys(("teacher_error_rate", "teacher_self_check_prob", "teacher_format_error_rate",
                         "hard_max_pass_rate", "easy_min_pass_rate", "near_dup_threshold", "decontam_boilerplate_frac",
                         "rl_fraction", "decontam_near_threshold"), "[0, 1]"),
        **dict.fromkeys(("max_total_tokens", "max_rows_per_source"), "[1, inf)"),
        **dict.fromkeys(("hard_weight_min", "hard_weight_max", "easy_weight"), "(0, inf)"),  # ordered in __post_init__
        **dict.fromkeys(("problems_per_domain", "domain_token_shares"), "[0, inf)"),  # per domain
        "teacher_error_slope": "[0, inf)",  # data.teacher.Teacher refuses a negative slope
    }
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "teacher_style": ("concise", "verbose"),  # data.teacher.STYLES (not imported: it pulls in the task world)
        "rl_domains": DOMAINS,
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        bad_pool = sorted(set(self.problems_per_domain) - set(DOMAINS))
        if bad_pool:
            raise ConfigError(f"{self.STAGE}: key 'problems_per_domain': unknown domain(s) {bad_pool}")
        if not self.hard_max_pass_rate < self.easy_min_pass_rate:
            raise ConfigError(f"{self.STAGE}: key 'hard_max_pass_rate' must be < 'easy_min_pass_rate'")
        if not 0 < self.easy_weight <= 1.0 <= self.hard_weight_min <= self.hard_weight_max:
            raise ConfigError(f"{self.STAGE}: weights must satisfy 0 < easy_weight <= 1 <= hard_weight_min <= hard_weight_max")
        if self.minhash_num_perm % self.lsh_bands:
            raise ConfigError(f"{self.STAGE}: key 'lsh_bands' must divide 'minhash_num_perm'")
        bad = sorted(set(self.domain_token_shares) - set(DOMAINS))
        if bad:
            raise ConfigError(f"{self.STAGE}: key 'domain_token_shares': unknown domain(s) {bad}")
        if sum(self.domain_token_shares.values()) <= 0:
            raise ConfigError(f"{self.STAGE}: key 'domain_token_shares' must have a positive sum, "
                              f"got {self.domain_token_shares}")
