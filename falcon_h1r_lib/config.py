"""Strict, typed stage configs and repo-rooted paths.

Every notebook validates its parameters into one dataclass here, so a typo in a recipe fails at
once with the key named (a silently ignored key is the classic recipe bug), and every path is
resolved from the repository root, never from the working directory (nbval starts kernels in
``notebooks/``; papermill users start anywhere).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

PROFILES = ("tiny", "full", "rehearsal")
# A profile that inherits another: its YAML holds only overrides of the parent's values. "rehearsal" is the
# full profile at CPU size (tests/test_rehearsal.py allows it to differ from full on size keys only).
PROFILE_PARENT = {"rehearsal": "full"}


def is_tiny(profile: str) -> bool:
    """True for the tiny profile; the full profile and its rehearsal run the cluster code path."""
    _check_profile(profile)
    return profile == "tiny"


class ConfigError(ValueError):
    """A config value or key is wrong; the message names the key and where it came from."""


# --------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------


def repo_root() -> Path:
    """The repository root: ``$FALCON_H1R_ROOT`` if set, else the folder above this package.

    The package is installed editable (``pip install -e .``), so ``__file__`` sits in the checkout.
    """
    env = os.environ.get("FALCON_H1R_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").exists():
        return here
    for parent in [Path.cwd(), *Path.cwd().parents]:  # non-editable install: look around the cwd
        if (parent / "pyproject.toml").exists() and (parent / "falcon_h1r_lib").is_dir():
            return parent
    raise ConfigError(
        "cannot locate the repository root: set FALCON_H1R_ROOT to the checkout that holds pyproject.toml"
    )


def package_dir() -> Path:
    return Path(__file__).resolve().parent


def profiles_dir() -> Path:
    return package_dir() / "profiles"


def runs_root() -> Path:
    """Where every run writes: ``$FALCON_H1R_RUNS`` if set (a cluster's shared filesystem), else ``runs/``."""
    env = os.environ.get("FALCON_H1R_RUNS")
    return Path(env).expanduser().resolve() if env else repo_root() / "runs"


def runs_dir(profile: str = "tiny") -> Path:
    """``<runs root>/<profile>/``: every artefact (ignored by git)."""
    _check_profile(profile)
    return runs_root() / profile


def stage_dir(stage: str, profile: str = "tiny", create: bool = True) -> Path:
    """``runs/<profile>/<stage>/``, where one stage writes its artefacts and ``metrics.json``."""
    path = runs_dir(profile) / stage
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def figures_dir(create: bool = True) -> Path:
    path = repo_root() / "figures"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def manifests_dir() -> Path:
    return repo_root() / "data_manifests"


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


def resolve_path(path: str | os.PathLike) -> Path:
    """Absolute paths pass through; ``runs/...`` is taken from the runs root (``runs_root``); other relative
    paths from the repo root."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    if p.parts and p.parts[0] == "runs":
        return runs_root().joinpath(*p.parts[1:])
    return repo_root() / p


def repo_relative(path: str | os.PathLike) -> str:
    """``path`` relative to the repo root when inside it (records and fingerprints that survive moving the
    checkout), else as given."""
    p = resolve_path(path)
    return str(p.relative_to(repo_root())) if p.is_relative_to(repo_root()) else str(path)


def _check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ConfigError(f"profile: unknown profile {profile!r}; known: {', '.join(PROFILES)}")


# --------------------------------------------------------------------------------------------
# Strict dataclass loading
# --------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (lists become tuples for tuple fields)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arm in args:
            try:
                return _coerce(value, arm, key, source)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{source}: key {key!r}: {value!r} is not a {_type_name(tp)}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{source}: key {key!r}: expected null, got {value!r}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{source}: key {key!r}: {value!r} is not one of {list(args)}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: key {key!r}: expected a list, got {type(value).__name__} {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value))
        if origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"{source}: key {key!r}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(args, value)))
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: key {key!r}: expected a mapping, got {type(value).__name__}")
        kt, vt = args if args else (Any, Any)
        return {
            _coerce(k, kt, f"{key}.{k}", source): _coerce(v, vt, f"{key}.{k}", source) for k, v in value.items()
        }
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: key {key!r}: expected float, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: key {key!r}: expected int, got {type(value).__name__} {value!r}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise ConfigError(f"{source}: key {key!r}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: key {key!r}: expected a mapping for {tp.__name__}")
        return tp.from_dict(value, source=f"{source}:{key}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{source}: key {key!r}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


@dataclass(frozen=True)
class StageConfig:
    """Base of every stage config: strict loading, a stable hash, and the run folder."""

    STAGE: ClassVar[str] = ""

    profile: str = "tiny"  # which profile these values come from
    seed: int = 0  # root seed; each component derives its own RNG from it

    def __post_init__(self) -> None:
        _check_profile(self.profile)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "<dict>") -> StageConfig:
        """Build from a mapping; unknown keys and wrong types raise ConfigError naming the key."""
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: expected a mapping of {cls.__name__} fields, got {type(values).__name__}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {unknown} for {cls.__name__}; known keys: {sorted(fields)}"
            )
        kwargs = {k: _coerce(v, hints[k], k, source) for k, v in values.items()}
        try:
            return cls(**kwargs)
        except ConfigError:
            raise
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{source}: {cls.__name__}: {err}") from err

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> StageConfig:
        """Values of a YAML file; a file that declares an inheriting profile (``profile: rehearsal``) holds only
        overrides and is laid over the parent profile's file of this stage."""
        path = resolve_path(path)
        values = read_yaml_mapping(path)
        source = str(path)
        if "profile" not in values and "profile" not in (overrides or {}):
            cls.from_dict({**values, **(overrides or {}), "profile": "tiny"}, source=source)  # a bad key is named first
            raise ConfigError(f"{path}: key 'profile' missing: say which profile these values belong to "
                              f"({', '.join(PROFILES)}); without it the stage would run as tiny")
        if values.get("profile") in PROFILE_PARENT and cls.STAGE in STAGE_CONFIGS:
            base, base_source = profile_values(cls.STAGE, PROFILE_PARENT[values["profile"]])
            values, source = {**base, **values}, f"{base_source} + {path}"
        values = {**values, **(overrides or {})}
        return cls.from_dict(values, source=source)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def config_hash(self) -> str:
        """Short sha256 of the canonical JSON: written beside every metric so runs can be matched."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def run_dir(self, create: bool = True) -> Path:
        return stage_dir(self.STAGE, self.profile, create=create)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# --------------------------------------------------------------------------------------------
# One config per notebook
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchitectureConfig(StageConfig):
    """Notebook 01: the hybrid's parameter and memory accounting and its measured speed."""

    STAGE: ClassVar[str] = "01_architecture"

    tiny_width: int = 128  # the one size dial of the tiny hybrid (hidden size); 7B: 3072
    vocab_size: int = 512  # tiny tokenizer vocabulary; 7B: 130,048
    analytic_context_lens: tuple[int, ...] = (4096, 16384, 32768, 65536, 131072, 262144)  # Fig. 8 regime
    kv_dtype: str = "bfloat16"  # dtype of the KV cache in the analytic comparison (paper serves bf16)
    decode_context_lens: tuple[int, ...] = (256, 1024, 2048, 4096)  # measured decode, tiny models
    decode_batch: int = 4  # sequences decoded together in the measured comparison
    decode_new_tokens: int = 32  # decode steps timed per context length
    decode_repeats: int = 3  # interleaved repeats per model and length (median kept)
    bench_lengths: tuple[int, ...] = (256, 1024, 4096)  # SSD kernel benchmark lengths
    device: str = "cpu"  # "cuda" on the full profile
    model_name_or_path: str = ""  # full profile: a local path or hub id whose config is checked vs Table 8
    fig8_batches: tuple[int, ...] = (16, 64)  # vLLM Fig. 8: sequences decoded together; paper 2-128
    fig8_output_lens: tuple[int, ...] = (256,)  # vLLM Fig. 8: generated tokens per sequence; paper 16K-32K
    fig8_prompt_len: int = 512  # vLLM Fig. 8: prompt tokens; paper 512 (and 8K)
    fig8_repeats: int = 1  # engine rounds per model, order flipped each round (median kept)
    fig8_threads: int = 1  # OpenMP threads of the vLLM CPU worker (0: vLLM's auto binding); GPU: unused

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("tiny_width", "vocab_size", "decode_batch", "decode_new_tokens", "decode_repeats",
                     "fig8_prompt_len", "fig8_repeats"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{self.STAGE}: key {name!r} must be positive, got {getattr(self, name)}")
        for name in ("fig8_batches", "fig8_output_lens"):
            if not getattr(self, name) or min(getattr(self, name)) <= 0:
                raise ConfigError(f"{self.STAGE}: key {name!r} must be a non-empty list of positive ints, "
                                  f"got {list(getattr(self, name))}")
        if self.fig8_threads < 0:
            raise ConfigError(f"{self.STAGE}: key 'fig8_threads' must be >= 0, got {self.fig8_threads}")
        if self.kv_dtype not in ("float32", "bfloat16", "float16", "float8_e4m3fn"):
            raise ConfigError(f"{self.STAGE}: key 'kv_dtype': unknown dtype {self.kv_dtype!r}")


# Registry: notebook stage name -> its config class. Later stages register here too.
STAGE_CONFIGS: dict[str, type[StageConfig]] = {
    ArchitectureConfig.STAGE: ArchitectureConfig,
}


def register_stage(cls: type[StageConfig]) -> type[StageConfig]:
    """Class decorator: make a stage config known to ``load_config`` and the runner."""
    STAGE_CONFIGS[cls.STAGE] = cls
    return cls


def profile_path(stage: str, profile: str) -> Path:
    _check_profile(profile)
    return profiles_dir() / profile / f"{stage}.yaml"


def read_yaml_mapping(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML file's top-level mapping ({} for an empty file); ConfigError names the file otherwise."""
    path = resolve_path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(values).__name__}")
    return values


def profile_overrides(stage: str, profile: str) -> dict[str, Any]:
    """The keys ``profiles/<profile>/<stage>.yaml`` sets over its parent profile ({} without a parent)."""
    if profile not in PROFILE_PARENT:
        return {}
    path = profile_path(stage, profile)
    return read_yaml_mapping(path) if path.exists() else {}


def profile_values(stage: str, profile: str) -> tuple[dict[str, Any], str]:
    """(the YAML values of ``stage`` in ``profile``, where they came from); an inheriting profile's file is
    laid over its parent's."""
    if profile in PROFILE_PARENT:
        parent = PROFILE_PARENT[profile]
        values, source = profile_values(stage, parent)
        own = profile_overrides(stage, profile)
        unknown = sorted(set(own) - {f.name for f in dataclasses.fields(STAGE_CONFIGS[stage])})
        if unknown:
            raise ConfigError(f"{profile_path(stage, profile)}: unknown key(s) {unknown} for {STAGE_CONFIGS[stage].__name__}")
        return {**values, **own}, f"{source} + {profile_path(stage, profile)}"
    path = profile_path(stage, profile)
    return (read_yaml_mapping(path), str(path)) if path.exists() else ({}, f"<{stage} defaults>")


def load_config(stage: str, profile: str = "tiny", overrides: dict[str, Any] | None = None) -> StageConfig:
    """The config of ``stage`` from ``profiles/<profile>/<stage>.yaml`` (laid over its parent profile's, for
    the rehearsal) plus overrides, validated."""
    if stage not in STAGE_CONFIGS:
        raise ConfigError(f"stage: unknown stage {stage!r}; known: {sorted(STAGE_CONFIGS)}")
    cls = STAGE_CONFIGS[stage]
    values, source = profile_values(stage, profile)
    return cls.from_dict({**values, "profile": profile, **(overrides or {})}, source=source)


def config_from_parameters(cls: type[StageConfig], namespace: dict[str, Any]) -> StageConfig:
    """Build a stage config from a notebook's parameter variables (the names of its fields)."""
    names = [f.name for f in dataclasses.fields(cls)]
    missing = [n for n in names if n not in namespace]
    if missing:
        raise ConfigError(f"{cls.STAGE} notebook: parameters cell lacks {missing}")
    return cls.from_dict({n: namespace[n] for n in names}, source=f"{cls.STAGE} notebook parameters")


@register_stage
@dataclass(frozen=True)
class CurationConfig(StageConfig):
    """Notebook 02: teacher traces -> verified, weighted, decontaminated SFT mix + disjoint RL problems."""

    STAGE: ClassVar[str] = "02_data_curation"

    problems_per_domain: dict[str, int] = field(default_factory=lambda: {"math": 2000, "code": 1000, "science": 400, "other": 400})  # generated pool per domain (tiny; code has ~400 distinct problems); paper Fig. 3: 3.11M SFT samples
    eval_problems_per_domain: int = 50  # held-out problems per domain (data.splits); paper: AIME24 has 30
    rollouts_per_problem: int = 12  # k teacher rollouts per problem, also the pass-rate sample; paper §2.2: n = 12 best of {4, 8, 12}
    max_correct_per_problem: int = 12  # correct rollouts kept per problem; paper §2.2: 12
    teacher_style: str = "concise"  # programmatic teacher's trace style (tiny); paper: one teacher beats several
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

    def __post_init__(self) -> None:
        super().__post_init__()
        bad_pool = {d: n for d, n in self.problems_per_domain.items() if d not in ("math", "code", "science", "other") or n < 0}
        if bad_pool:
            raise ConfigError(f"{self.STAGE}: key 'problems_per_domain': unknown domain or negative size {bad_pool}")
        for name in ("eval_problems_per_domain", "rollouts_per_problem", "min_rollouts_for_weighting",
                     "max_correct_per_problem", "shingle_n", "minhash_num_perm", "lsh_bands", "decontam_ngram_n",
                     "tokenizer_vocab_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{self.STAGE}: key {name!r} must be positive, got {getattr(self, name)}")
        for name in ("teacher_error_rate", "teacher_self_check_prob", "teacher_format_error_rate",
                     "hard_max_pass_rate", "easy_min_pass_rate",
                     "near_dup_threshold", "decontam_boilerplate_frac", "rl_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{self.STAGE}: key {name!r} must be in [0, 1], got {getattr(self, name)}")
        if not self.hard_max_pass_rate < self.easy_min_pass_rate:
            raise ConfigError(f"{self.STAGE}: key 'hard_max_pass_rate' must be < 'easy_min_pass_rate'")
        if not 0 < self.easy_weight <= 1.0 <= self.hard_weight_min <= self.hard_weight_max:
            raise ConfigError(f"{self.STAGE}: weights must satisfy 0 < easy_weight <= 1 <= hard_weight_min <= hard_weight_max")
        if self.minhash_num_perm % self.lsh_bands:
            raise ConfigError(f"{self.STAGE}: key 'lsh_bands' must divide 'minhash_num_perm'")
        domains = ("math", "code", "science", "other")
        bad = sorted(set(self.domain_token_shares) - set(domains)) + sorted(set(self.rl_domains) - set(domains))
        if bad:
            raise ConfigError(f"{self.STAGE}: keys 'domain_token_shares'/'rl_domains': unknown domain(s) {bad}")
        if any(v < 0 for v in self.domain_token_shares.values()) or sum(self.domain_token_shares.values()) <= 0:
            raise ConfigError(f"{self.STAGE}: key 'domain_token_shares' must be non-negative with a positive sum")


@register_stage
@dataclass(frozen=True)
class EvaluationConfig(StageConfig):
    """Notebook 05: sample checkpoints on the benchmarks, grade with the reward verifiers, score ([P] §4)."""

    STAGE: ClassVar[str] = "05_evaluation"

    benchmarks: tuple[str, ...] = ("tiny-math", "tiny-code", "tiny-science", "tiny-other")  # evaluation registry names; paper: Tables 4-6
    max_problems: int | None = 32  # first n problems per benchmark, None = all; paper: all (AIME 30, GPQA-D 198)
    samples_per_problem: int | None = None  # None = the benchmark's (tiny 4); paper Table 9: 16 AIME/HMMT/AMO, 5 GPQA-D, 3 LCB/MMLU-Pro, 1 MATH500/IFBench
    max_new_tokens: int | None = None  # None = the benchmark's (tiny 192); paper Table 9: 65,536 or 32,768
    temperature: float = 0.6  # sampling temperature; paper §4.1: 0.6
    top_p: float = 0.95  # nucleus mass; paper §4.1: 0.95
    system_prompt: str = "Think inside <think> </think>, then answer."  # system turn (= tokenizer.TINY_SYSTEM_PROMPT); paper §4.1: the Falcon system prompt (full profile)
    prompt_template: str = "{prompt}"  # user turn built around the problem text; paper: not given
    logprobs_topk: int = 20  # top-k raw log-probs kept per token, for DeepConf reuse; [P] App. G.3: 20
    pass_ks: tuple[int, ...] = (1, 4)  # pass@k reported where k <= samples per problem; paper: pass@1
    bootstrap_resamples: int = 1000  # problem resamples of the bootstrap CI; paper: no CI given
    ci_level: float = 0.95  # CI coverage
    backend: typing.Literal["hf", "vllm"] = "hf"  # sampler: transformers (CPU/GPU) or vLLM; paper: vLLM
    model_name_or_path: str = ""  # checkpoint dir or Hub id; "" = given by the notebook or --model
    model_revision: str | None = None  # Hub revision of the model (pin it for full runs)
    tokenizer_name_or_path: str = ""  # "" = the model's own
    batch_size: int = 64  # HF backend: sequences decoded together
    device: str = "cpu"  # HF backend device ("cuda" on GPUs)
    dtype: str = "float32"  # model weights dtype; paper serves bfloat16
    vllm: dict[str, Any] = field(default_factory=dict)  # VLLMConfig fields (tensor/data parallel, max_model_len, ...)
    eval_sources_file: str = "data_manifests/full/eval_benchmarks.yaml"  # full: dataset ids and revisions
    allow_unpinned: bool = False  # full: permit benchmark sources whose revision is not a commit hash
    local_files: dict[str, str] = field(default_factory=dict)  # full: source name -> offline mirror file
    grade_workers: int = 2  # threads verifying code samples in the sandbox
    reuse_traces: bool = True  # skip sampling when traces of the same model, problems and sampling exist

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.benchmarks:
            raise ConfigError(f"{self.STAGE}: key 'benchmarks' must name at least one benchmark")
        for name in ("max_problems", "samples_per_problem", "max_new_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{self.STAGE}: key {name!r} must be >= 1 or null, got {value}")
        for name in ("logprobs_topk", "bootstrap_resamples", "batch_size", "grade_workers"):
            if getattr(self, name) < (0 if name == "logprobs_topk" else 1):
                raise ConfigError(f"{self.STAGE}: key {name!r} is out of range: {getattr(self, name)}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ConfigError(f"{self.STAGE}: keys 'temperature' >= 0 and 'top_p' in (0, 1] required")
        if not 0 < self.ci_level < 1:
            raise ConfigError(f"{self.STAGE}: key 'ci_level' must be in (0, 1), got {self.ci_level}")
        if not self.pass_ks or any(k < 1 for k in self.pass_ks):
            raise ConfigError(f"{self.STAGE}: key 'pass_ks' must list ks >= 1, got {self.pass_ks}")
        if "{prompt}" not in self.prompt_template:
            raise ConfigError(f"{self.STAGE}: key 'prompt_template' must contain '{{prompt}}'")


@register_stage
@dataclass(frozen=True)
class SFTStageConfig(StageConfig):
    """Notebook 03: the base model (tiny: pretrained here) and long-CoT SFT through TRL ([P] §2.3, Table 1)."""

    STAGE: ClassVar[str] = "03_sft"

    base_model_name_or_path: str = ""  # "" = pretrain the tiny hybrid here; paper Table 1: Falcon-H1-7B-Base
    base_model_revision: str | None = None  # Hub revision of the base model (pin it for full runs)
    tokenizer_name_or_path: str = ""  # "" = notebook 02's tiny tokenizer (tiny) / the base model's own (full)
    check_base_config: bool = True  # full: the base config must match the 7B preset on Table 8's fields
    system_prompt: typing.Literal["tiny", "falcon"] = "tiny"  # system turn: TINY_SYSTEM_PROMPT or the Falcon one ([P] §3.4)
    model_width: int = 128  # tiny hybrid's one dial (hidden size); 7B: 3072
    rope_theta: float = 10000.0  # tiny RoPE base: 1e4 resolves positions in 100-token chats; 7B preset: 1e11
    pretrain_docs_per_domain: dict[str, int] = field(default_factory=lambda: {"math": 6000, "code": 1500, "science": 600, "other": 600})  # tiny base corpus: problems with plain answers; paper: Falcon-H1 pretraining
    pretrain_block_size: int = 128  # tokens per pretraining sequence (documents packed, <|endoftext|>-separated)
    pretrain_max_steps: int = 120  # optimizer steps of tiny pretraining (~30 s on 2 cores)
    pretrain_batch_size: int = 32  # sequences per pretraining step
    pretrain_learning_rate: float = 2e-3  # peak lr of tiny pretraining (cosine, 5% warm-up)
    learning_rate: float = 1.5e-3  # SFT peak lr (tiny, batch 8, no muP); paper Table 1: 1024e-6 with muP
    lr_scheduler_type: str = "linear"  # paper Table 1: linear
    warmup_ratio: float = 0.04  # share of steps warming up; paper Table 1: 4%
    num_train_epochs: float = 3.0  # paper Table 1: 3 (tiny: ~2,500 steps at batch 8)
    max_steps: int = -1  # cap on optimizer steps (-1 = the epochs decide)
    per_device_train_batch_size: int = 8  # sequences per rank and micro-step (tiny: more updates per CPU second)
    gradient_accumulation_steps: int = 1  # global batch = per-device x accumulation x ranks; paper Table 1: 512
    global_batch_size: int = 8  # sequences per optimizer step, asserted = ranks x per-device x accumulation; paper Table 1: 512
    max_length: int = 256  # tokens per SFT sequence (longer ones right-trimmed); paper Table 1: 36K (48K extended)
    weight_decay: float = 0.01  # AdamW; paper Table 1: 0.01
    adam_beta1: float = 0.9  # paper: AdamW defaults
    adam_beta2: float = 0.999  # paper: AdamW defaults
    max_grad_norm: float = 1.0  # paper Table 1: 1.0
    bf16: bool = False  # paper Table 1: bfloat16 (GPU); CPU trains in fp32
    gradient_checkpointing: bool = False  # on for 36K contexts on GPUs; off for tiny speed
    use_liger_kernel: bool = False  # paper App. A: Liger kernels (fused RoPE, RMSNorm, CE); GPU only
    assistant_only_loss: bool = True  # loss on the last assistant turn only ([P] §2.1), via {% generation %}
    difficulty_weighting: bool = True  # per-sample weights from curation ([P] §2.2: hard x1.25-1.75, easy x0.5)
    average_tokens_across_devices: bool = True  # balanced data-parallel token normalization ([P] §2.3, Fig. 4)
    packing: bool = False  # paper: not stated; CPU: no padding-free packing without mamba-ssm
    group_by_length: bool = False  # length-grouped batches (seeded per epoch): 27% fewer padded tokens, but tiny math fell 13% -> 5%
    logging_steps: int = 25  # optimizer steps between loss-log lines
    save_steps: int = 250  # optimizer steps between checkpoints (resume points)
    save_total_limit: int = 2  # checkpoints kept
    eval_problems: dict[str, int] = field(default_factory=lambda: {"tiny-math": 48, "tiny-code": 16, "tiny-science": 16, "tiny-other": 16})  # base-vs-SFT evaluation: benchmark -> problems
    eval_samples_per_problem: int | None = 4  # pass@1 averaged over n samples (None = the benchmark's); paper Table 9: 16 for AIME
    eval_batch_size: int = 64  # sequences decoded together
    report_to: typing.Literal["none", "trackio", "wandb"] = "none"  # experiment tracker of the Trainer's logs (one switch)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("model_width", "pretrain_block_size", "pretrain_max_steps", "pretrain_batch_size",
                     "per_device_train_batch_size", "gradient_accumulation_steps", "global_batch_size", "max_length",
                     "logging_steps", "save_steps", "save_total_limit", "eval_batch_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{self.STAGE}: key {name!r} must be positive, got {getattr(self, name)}")
        for name in ("learning_rate", "pretrain_learning_rate", "num_train_epochs"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{self.STAGE}: key {name!r} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"{self.STAGE}: key 'warmup_ratio' must be in [0, 1), got {self.warmup_ratio}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ConfigError(f"{self.STAGE}: key 'max_steps' must be -1 or positive, got {self.max_steps}")
        bad = sorted(k for k, v in {**self.pretrain_docs_per_domain}.items()
                     if k not in ("math", "code", "science", "other") or v < 0)
        if bad:
            raise ConfigError(f"{self.STAGE}: key 'pretrain_docs_per_domain': unknown domain or negative count {bad}")
        if self.eval_samples_per_problem is not None and self.eval_samples_per_problem < 1:
            raise ConfigError(f"{self.STAGE}: key 'eval_samples_per_problem' must be >= 1 or null")
        if any(v < 1 for v in self.eval_problems.values()):
            raise ConfigError(f"{self.STAGE}: key 'eval_problems': counts must be >= 1, got {self.eval_problems}")


@register_stage
@dataclass(frozen=True)
class RLStageConfig(StageConfig):
    """Notebook 04: GRPO-style RLVR from the SFT checkpoint on TRL ([P] §3, Table 2, Figs. 5, 6, 9)."""

    STAGE: ClassVar[str] = "04_rl"

    sft_model_path: str = "runs/tiny/03_sft/sft"  # the SFT checkpoint RL starts from (model + tokenizer)
    system_prompt: typing.Literal["tiny", "falcon"] = "tiny"  # system turn, as in SFT and evaluation ([P] §3.4: Falcon's)
    domains: tuple[str, ...] = ("math",)  # RL domains; [P] §3.4 / Table 3: the released model is math-only
    extra_problems_per_domain: int = 1500  # generated training-seed problems added to notebook 02's rl_problems
    extra_problems_seed: int = 4_000  # training seed of those extra problems (< eval seed range)
    pool_max_difficulty: int | None = 3  # pool problems up to this generator level (None = all): tiny SFT solves ~1% of 4-5
    filter_max_problems: int | None = None  # RL pool size sent to the Fig. 9 filter (None = all)
    filter_rollouts: int = 8  # k SFT-model rollouts per problem; [P] Fig. 9: 8
    filter_temperature: float = 0.6  # [P] Fig. 9: 0.6
    filter_top_p: float = 0.95  # [P] Fig. 9: 0.95
    filter_max_new_tokens: int = 128  # [P] Fig. 9: 32K
    keep_fraction_all_truncated: float = 0.1  # 0/k correct, all truncated: share kept; [P] Fig. 9: "a small random subset"
    keep_fraction_minority: float = 0.1  # 0/k correct, majority f < k/2: share kept; [P] Fig. 9: "a small random subset"
    num_generations: int = 8  # G rollouts per prompt; [P] Table 2: 16 (G 4 -> 16 helps, 32 no better)
    prompts_per_step: int = 8  # prompts per optimizer step (= per rollout batch); [P] Table 2: 128
    max_steps: int = 40  # optimizer steps; paper: not given (Fig. 6 curves)
    temperature: float = 0.85  # rollout temperature; [P] Table 2: 0.85
    top_p: float = 1.0  # rollout nucleus; paper: not given (1.0 = plain temperature sampling)
    max_completion_length: int = 128  # tokens per rollout; [P] Table 2: 48K
    learning_rate: float = 1e-4  # AdamW lr (tiny: ~1/10 of the tiny SFT lr, fp32); [P] Table 2: 2e-6
    warmup_steps: int = 10  # linear warm-up steps; [P] Table 2: 10
    lr_scheduler_type: str = "constant_with_warmup"  # after warm-up; paper: not given
    weight_decay: float = 0.0  # paper: not given
    max_grad_norm: float = 1.0  # paper: not given (verl default 1.0)
    epsilon: float = 0.2  # lower clip eps-; [P] Table 2: 0.2
    epsilon_high: float = 0.28  # upper clip eps+ (clip-higher, DAPO); [P] Table 2: 0.28
    beta: float = 0.0  # KL coefficient (0: no reference model is loaded); [P] Table 2: 0
    entropy_coef: float = 0.0  # entropy bonus; [P] Table 2: 0
    loss_type: str = "dapo"  # aggregation: token-level over the global batch (DAPO); paper: not stated, see rl.py
    scale_rewards: str = "group"  # advantage (R - mean) / std over the G rollouts; [P] §3.2: group-normalised
    mask_truncated_completions: bool = False  # paper: truncated answers simply score 0 (no mask mentioned)
    format_weight: float = 1.0  # penalty for output not in <think> ... </think> answer form; [P] §3.2: size not given
    aux_ce_coef: float = 0.1  # ASSUMPTION: weight of the SFT loss on positive samples; [P] §3.1: coefficient not given
    backfill: bool = True  # drop zero-advantage groups and refill the batch; [P] §3.1: Backfill
    cache_size: int = 16  # surplus valid groups kept over all ranks (each caches cache_size / ranks, on the CPU); [P] §3.1: "fixed size", value not given
    cache_max_age: int = 2  # optimizer steps a cached group may wait (staleness bound); paper: not given
    max_rounds: int = 3  # generation calls per step at most (first + refills); paper: not given
    gradient_accumulation_steps: int = 1  # micro-steps per optimizer step; [P] Table 2: PPO mini-batch = batch (1 update per rollout batch)
    use_vllm: bool = False  # vLLM rollouts (full); tiny: transformers generate
    vllm_mode: typing.Literal["colocate", "server"] = "colocate"  # vLLM beside the trainer or a separate `trl vllm-serve`
    vllm_gpu_memory_utilization: float = 0.3  # colocate: share of GPU memory for vLLM
    vllm_tensor_parallel_size: int = 1  # colocate: tensor parallel degree of vLLM
    vllm_max_model_length: int | None = None  # colocate: vLLM context per sequence, prompt + completion tokens (None: the model's, 262,144 for Falcon-H1R)
    vllm_server_host: str = "0.0.0.0"  # server mode: host of `trl vllm-serve`
    vllm_server_port: int = 8000  # server mode: its port
    tis_cap: float = 2.0  # truncated importance sampling cap (vLLM path only); [P] §3.1: 2
    tis_mode: str = "token_truncate"  # TIS of Yao et al. 2025: per-token ratio, truncated at the cap
    bf16: bool = False  # paper: bf16 on GPUs; CPU trains in fp32
    gradient_checkpointing: bool = False  # on for 48K rollouts on GPUs; off for tiny speed
    logging_steps: int = 1  # optimizer steps between metric-log lines
    report_to: typing.Literal["none", "trackio", "wandb"] = "none"  # live metrics logger (TrainingArguments.report_to); train_log.jsonl is always written
    save_steps: int = 20  # optimizer steps between checkpoints (resume points)
    save_total_limit: int = 2  # checkpoints kept
    resume: bool = True  # continue from the last checkpoint under runs/<profile>/04_rl/checkpoints
    num_threads: int = 1  # torch CPU threads (0 = torch's default); tiny: 1, as a 2-thread decode on a shared 2-core box runs ~10x slower
    eval_benchmarks: tuple[str, ...] = ("tiny-math",)  # SFT-vs-RL benchmarks (evaluation registry); paper: Table 3 columns
    eval_max_problems: int = 50  # problems per benchmark; paper: all
    eval_samples_per_problem: int = 16  # pass@1 averaged over n samples; paper Table 9: 16 for AIME

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("filter_rollouts", "filter_max_new_tokens", "num_generations", "prompts_per_step", "max_steps",
                     "max_completion_length", "max_rounds", "gradient_accumulation_steps", "logging_steps",
                     "save_steps", "save_total_limit", "eval_max_problems", "eval_samples_per_problem",
                     "vllm_tensor_parallel_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{self.STAGE}: key {name!r} must be positive, got {getattr(self, name)}")
        for name in ("extra_problems_per_domain", "warmup_steps", "cache_size", "cache_max_age", "num_threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{self.STAGE}: key {name!r} must be >= 0, got {getattr(self, name)}")
        if self.num_generations < 2:
            raise ConfigError(f"{self.STAGE}: key 'num_generations' must be >= 2 (group-normalised advantages)")
        if not 0 <= self.extra_problems_seed < 1_000_000_000:
            raise ConfigError(f"{self.STAGE}: key 'extra_problems_seed' must be a training seed in [0, 1e9)")
        if self.pool_max_difficulty is not None and not 1 <= self.pool_max_difficulty <= 5:
            raise ConfigError(f"{self.STAGE}: key 'pool_max_difficulty' must be a level in 1..5 or null")
        if self.filter_max_problems is not None and self.filter_max_problems < 1:
            raise ConfigError(f"{self.STAGE}: key 'filter_max_problems' must be >= 1 or null")
        if self.vllm_max_model_length is not None and self.vllm_max_model_length <= self.max_completion_length:
            raise ConfigError(f"{self.STAGE}: key 'vllm_max_model_length' must exceed max_completion_length "
                              f"({self.max_completion_length}) by the prompt, got {self.vllm_max_model_length}")
        for name in ("keep_fraction_all_truncated", "keep_fraction_minority", "epsilon", "filter_top_p", "top_p",
                     "vllm_gpu_memory_utilization"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{self.STAGE}: key {name!r} must be in [0, 1], got {getattr(self, name)}")
        for name in ("learning_rate", "temperature", "filter_temperature", "tis_cap"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{self.STAGE}: key {name!r} must be > 0, got {getattr(self, name)}")
        for name in ("epsilon_high", "beta", "entropy_coef", "format_weight", "aux_ce_coef", "weight_decay"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{self.STAGE}: key {name!r} must be >= 0, got {getattr(self, name)}")
        bad = sorted(set(self.domains) - {"math", "code", "science", "other"})
        if not self.domains or bad:
            raise ConfigError(f"{self.STAGE}: key 'domains' must list known domains, got {list(self.domains)}")
        if self.loss_type not in ("grpo", "dr_grpo", "dapo", "bnpo"):
            raise ConfigError(f"{self.STAGE}: key 'loss_type' must be grpo, dr_grpo, dapo or bnpo (the clipped "
                              f"surrogate of [P] §3.2), got {self.loss_type!r}")
        if self.scale_rewards not in ("group", "batch", "none"):
            raise ConfigError(f"{self.STAGE}: key 'scale_rewards' must be group, batch or none")
        if self.tis_mode not in ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask"):
            raise ConfigError(f"{self.STAGE}: key 'tis_mode': unknown TRL importance-sampling mode {self.tis_mode!r}")


@register_stage
@dataclass(frozen=True)
class DeepConfConfig(StageConfig):
    """Notebook 06: DeepConf test-time scaling ([P] §5, Table 7, Fig. 1; Fu et al. 2025 Alg. 1-2)."""

    STAGE: ClassVar[str] = "06_deepconf_scaling"

    models: dict[str, str] = field(default_factory=lambda: {"sft": "runs/tiny/03_sft/sft", "rl": "runs/tiny/04_rl/rl"})  # label -> checkpoint dir or Hub id; paper: Falcon-H1R-7B
    model_revision: str | None = None  # Hub revision of the models (pin it for full runs)
    benchmarks: tuple[str, ...] = ("tiny-math",)  # evaluation registry names; paper Table 7: AIME24, AIME25, GPQA-Diamond, AMO-Bench
    max_problems: int | None = 16  # first n problems per benchmark, None = all; paper: all (AIME 30)
    budget: int = 32  # K, traces per problem at most (warm-up included); paper: 512
    budgets: tuple[int, ...] = (1, 2, 4, 8, 16, 32)  # budgets of the scaling curves (<= budget); paper: 1..512
    pool_size: int = 48  # traces pre-generated per problem, resampled into working sets; paper: 4,096
    runs: int = 64  # R resampled runs averaged per point; paper: 64
    n_init: int = 8  # N_init warm-up traces of online DeepConf; paper: 16
    window: int = 16  # n, sliding-window group size in tokens; paper: 2,048
    tail_tokens: int = 16  # tokens of the tail confidence; paper: 2,048
    bottom_percent: float = 10.0  # q of the bottom-q% group confidence; paper: 10
    keep_top_percent: float = 10  # eta, share of traces kept: 10 = DeepConf-low (s = 90th percentile); paper: 10
    keep_top_percent_high: float = 90  # eta of DeepConf-high (s = 10th percentile); paper: 90
    consensus_tau: float = 0.95  # tau, consensus stop at beta >= tau; paper: 0.95
    live_wave: int = 1  # live runs: traces started per problem between consensus checks (Alg. 2: 1; replay always 1)
    topk: int = 20  # k of the token confidence C_i; paper App. G.3: 20
    temperature: float = 0.6  # paper §4.1 / Falcon-H1R recommended: 0.6
    top_p: float = 0.95  # paper: 0.95
    max_new_tokens: int = 128  # per trace (tiny math traces: median 44, max ~200 tokens); paper: 64K (Falcon-H1R)
    system_prompt: str | None = "Think inside <think> </think>, then answer."  # tokenizer.TINY_SYSTEM_PROMPT; None = the Falcon prompt (full)
    mode: typing.Literal["replay", "live", "both"] = "replay"  # replay over pools (paper protocol) and/or live runs with early stopping (Falcon-H1R)
    backend: typing.Literal["hf", "vllm"] = "hf"  # sampler; paper: vLLM
    vllm_stop: typing.Literal["abort", "logits_processor"] = "abort"  # how vLLM stops a trace (engine-step abort or EOS-forcing processor)
    vllm: dict[str, Any] = field(default_factory=dict)  # VLLMConfig fields (tensor/data parallel, max_model_len, ...)
    batch_size: int = 64  # HF backend: sequences decoded together
    device: str = "cpu"  # HF backend device
    dtype: str = "float32"  # weights dtype; paper serves bfloat16
    ci_level: float = 0.95  # bootstrap CI coverage (problems resampled)
    bootstrap_resamples: int = 1000  # bootstrap resamples
    eval_sources_file: str = "data_manifests/full/eval_benchmarks.yaml"  # full: dataset ids and revisions
    allow_unpinned: bool = False  # full: permit unpinned benchmark sources
    local_files: dict[str, str] = field(default_factory=dict)  # full: source name -> offline mirror file
    reuse_pools: bool = True  # read stored pools of the same model, problems and sampling instead of sampling

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.models or not self.benchmarks:
            raise ConfigError(f"{self.STAGE}: keys 'models' and 'benchmarks' must not be empty")
        for name in ("budget", "pool_size", "runs", "n_init", "window", "tail_tokens", "live_wave", "topk",
                     "max_new_tokens", "batch_size", "bootstrap_resamples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{self.STAGE}: key {name!r} must be >= 1, got {getattr(self, name)}")
        if self.max_problems is not None and self.max_problems < 1:
            raise ConfigError(f"{self.STAGE}: key 'max_problems' must be >= 1 or null")
        if self.n_init > self.budget:
            raise ConfigError(f"{self.STAGE}: key 'n_init' ({self.n_init}) must be <= 'budget' ({self.budget})")
        if self.mode != "live" and self.pool_size < self.budget:
            raise ConfigError(f"{self.STAGE}: key 'pool_size' ({self.pool_size}) must be >= 'budget' ({self.budget})")
        if not self.budgets or any(b < 1 or b > self.budget for b in self.budgets):
            raise ConfigError(f"{self.STAGE}: key 'budgets' must lie in [1, budget={self.budget}], got {self.budgets}")
        for name in ("keep_top_percent", "keep_top_percent_high", "bottom_percent"):
            if not 0 < getattr(self, name) <= 100:
                raise ConfigError(f"{self.STAGE}: key {name!r} must be in (0, 100], got {getattr(self, name)}")
        if not 0 < self.consensus_tau <= 1 or not 0 < self.ci_level < 1:
            raise ConfigError(f"{self.STAGE}: keys 'consensus_tau' in (0, 1] and 'ci_level' in (0, 1) required")
        if self.topk > 20:
            raise ConfigError(f"{self.STAGE}: key 'topk' must be <= 20 (vLLM max_logprobs), got {self.topk}")
