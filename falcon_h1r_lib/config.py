"""Strict, typed stage configs: the loader every notebook and entry point validates its parameters with.

A typo in a recipe fails at once with the key named (a silently ignored key is the classic recipe bug). The
six notebook configs live in ``falcon_h1r_lib.configs``, one module each; this module holds what they share:
strict coercion, the declarative range checks, the profile files and the stage registry.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from falcon_h1r_lib.errors import ConfigError
from falcon_h1r_lib.paths import PROFILES, check_profile, profiles_dir, resolve_path, stage_dir

# A profile that inherits another: its YAML holds only overrides of the parent's values. "rehearsal" is the
# full profile at CPU size (tests/test_rehearsal.py allows it to differ from full on size keys only).
PROFILE_PARENT = {"rehearsal": "full"}
DOMAINS = ("math", "code", "science", "other")  # the data domains of [P] Fig. 3 that stage configs name
# transformers.SchedulerType's values (transformers 5.17, trainer_utils.py), the `lr_scheduler_type` choices of SFT
# and RL; written out because importing transformers takes seconds (tests/test_config.py compares the two).
LR_SCHEDULER_TYPES = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                      "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
                      "warmup_stable_decay", "greedy")
DEVICE_PATTERN = r"cpu|cuda(:[0-9]+)?"  # a torch device a stage may run on: cpu, cuda or cuda:N


def is_tiny(profile: str) -> bool:
    """True for the tiny profile; the full profile and its rehearsal run the cluster code path."""
    check_profile(profile)
    return profile == "tiny"


# --------------------------------------------------------------------------------------------
# Strict dataclass loading
# --------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


_YAML12_FLOAT = re.compile(r"([-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))[eE]([-+]?)([0-9]+)")


def _float_hint(value: Any) -> str:
    """For a string like ``1e-5`` (a float to YAML 1.2 and Python, a string to PyYAML's YAML 1.1, which wants a
    dot and a signed exponent): a hint spelling it the YAML 1.1 way; "" for anything else."""
    match = _YAML12_FLOAT.fullmatch(value) if isinstance(value, str) else None
    if not match:
        return ""
    mantissa, sign, exponent = match.groups()
    spelled = f"{mantissa if '.' in mantissa else mantissa + '.0'}e{sign or '+'}{exponent}"
    return f" (YAML 1.1 reads {value} as a string: write {spelled})"


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
        hint = _float_hint(value) if float in args else ""
        raise ConfigError(f"{source}: key {key!r}: {value!r} is not a {_type_name(tp)}{hint}")
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
            raise ConfigError(f"{source}: key {key!r}: expected float, got {type(value).__name__} {value!r}"
                              f"{_float_hint(value)}")
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


# --------------------------------------------------------------------------------------------
# Declarative range checks
# --------------------------------------------------------------------------------------------

_INTERVAL = re.compile(r"([\[(])\s*([^,\s]+)\s*,\s*([^,\s\])]+)\s*([\])])")


@functools.cache
def _interval(text: str) -> tuple[float, float, bool, bool]:
    """``"[0, 1)"`` -> (0.0, 1.0, low closed, high closed). ``inf`` / ``-inf`` are bounds like any other: an open
    ``inf)`` admits every finite number and refuses inf itself (no key has a use for an infinite value)."""
    match = _INTERVAL.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not an interval like '[0, 1)' or '(0, inf)'")
    opening, low, high, closing = match.groups()
    return float(low), float(high), opening == "[", closing == "]"


def _in_interval(value: Any, text: str) -> bool:
    """Whether the number ``value`` lies in the interval ``text``; nan lies in none."""
    low, high, low_closed, high_closed = _interval(text)
    above = low <= value if low_closed else low < value
    below = value <= high if high_closed else value < high
    return above and below and not (isinstance(value, float) and math.isnan(value))


def check_system_prompt(stage: str, value: str | None) -> None:
    """Raise ConfigError when a stage's ``system_prompt`` is not a string or None, is blank (only spaces, control or
    format characters such as a zero-width space, or characters that render blank such as U+3164 or U+2800), or is
    a null spelled as text ("None", "null": YAML's ``None`` is a string): None, not "", is how a stage asks for
    Falcon's system prompt (``tokenizer.system_turn``); an empty system turn would train or sample without the
    prompt, and "None" would be the prompt."""
    import unicodedata

    if value is None:
        return
    if not isinstance(value, str):
        raise ConfigError(f"{stage}: key 'system_prompt' must be a string or null, got {type(value).__name__} {value!r}")
    visible = "".join(ch for ch in value if unicodedata.category(ch)[0] not in "CZ" and ch not in _BLANK_LOOKING)
    if not visible:
        raise ConfigError(f"{stage}: key 'system_prompt' is blank ({value!r}): give the system turn's text, or "
                          "null (None in a notebook) for Falcon's system prompt (tokenizer.FALCON_SYSTEM_PROMPT)")
    if visible in _NULL_WORDS:
        raise ConfigError(f"{stage}: key 'system_prompt' is the text {value!r}, which YAML reads as a string: write "
                          "null (None in a notebook) for Falcon's system prompt, or the system turn's text")


_NULL_WORDS = frozenset({"None", "none", "NONE", "null", "Null", "NULL", "~", "nil"})  # meant null, read as text
# Letters and symbols that render as blank space (Hangul fillers, the blank Braille pattern).
_BLANK_LOOKING = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def _annotations(cls: type) -> dict[str, Any]:
    return {k: v for klass in reversed(cls.__mro__) for k, v in vars(klass).get("__annotations__", {}).items()}


@dataclass(frozen=True)
class StageConfig:
    """Base of every stage config: strict loading, declarative range checks, a stable hash, and the run folder."""

    STAGE: ClassVar[str] = ""
    # key -> interval its value must lie in, e.g. "[0, 1)", "(0, inf)"; a list must be non-empty with every item
    # inside, a mapping non-empty with every value inside; null passes where the field may be null. A subclass's
    # tables add to its bases'. Checks across keys stay in each __post_init__.
    RANGES: ClassVar[dict[str, str]] = {"seed": f"[0, {2**32})"}  # numpy's seeds: 0 <= seed < 2**32
    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {}  # key -> allowed values (a list: non-empty, each allowed)
    PATTERNS: ClassVar[dict[str, str]] = {}  # key -> regular expression the whole string must match

    profile: str = "tiny"  # which profile these values come from
    seed: int = 0  # root seed; each component derives its own RNG from it

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Lays the class's RANGES / CHOICES / PATTERNS over its bases'. A table naming a key the class lacks, or a
        malformed interval or pattern, raises TypeError / ValueError / re.error at import, not at first use."""
        super().__init_subclass__(**kwargs)
        for table in ("RANGES", "CHOICES", "PATTERNS"):
            merged = {k: v for klass in reversed(cls.__mro__) for k, v in vars(klass).get(table, {}).items()}
            setattr(cls, table, merged)
        unknown = sorted((set(cls.RANGES) | set(cls.CHOICES) | set(cls.PATTERNS)) - set(_annotations(cls)))
        if unknown:
            raise TypeError(f"{cls.__name__}: RANGES/CHOICES/PATTERNS name unknown key(s) {unknown}")
        for text in cls.RANGES.values():
            _interval(text)
        for pattern in cls.PATTERNS.values():
            re.compile(pattern)

    def __post_init__(self) -> None:
        check_profile(self.profile)
        self._check_tables()

    def _check_tables(self) -> None:
        """Raise ConfigError naming the first key outside its RANGES interval or CHOICES, or not matching its
        PATTERNS expression."""
        nullable = {f.name for f in dataclasses.fields(self) if "None" in str(f.type)}
        rules = [*self.RANGES.items(), *self.CHOICES.items(), *self.PATTERNS.items()]
        for name, rule in rules:
            value = getattr(self, name)
            if value is None and name in nullable:
                continue
            is_list, is_map = isinstance(value, (list, tuple)), isinstance(value, dict)
            items = list(value.values()) if is_map else list(value) if is_list else [value]
            if name in self.RANGES:
                ok, wanted = bool(items) and all(_in_interval(v, rule) for v in items), f"in {rule}"
            elif name in self.CHOICES:
                ok, wanted = bool(items) and all(v in rule for v in items), f"one of {list(rule)}"
            else:
                ok, wanted = bool(re.fullmatch(rule, value)), f"a string matching {rule!r}"
            if not ok:
                what = ("a non-empty list with every item " if is_list
                        else "a non-empty mapping with every value " if is_map else "")
                null = " or null" if name in nullable else ""
                shown = list(value) if is_list else repr(value)
                raise ConfigError(f"{self.STAGE}: key {name!r} must be {what}{wanted}{null}, got {shown}")

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "<dict>") -> StageConfig:
        """Build from a mapping read from ``source`` (a file, the notebook's parameters, a recorded metrics.json).

        Raises ConfigError starting with ``source``: for a non-mapping, unknown keys, a wrong type, a value outside
        its range or choices, or values that disagree with each other (the checks of ``__post_init__``).
        """
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
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from err
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
        """The fields as plain JSON values; an int given to a float field (``temperature=1``) as the float it
        means, so equal configs record and hash equally however they were built."""
        values = dataclasses.asdict(self)
        hints = typing.get_type_hints(type(self))
        return _plain({name: _as_declared(value, hints.get(name, Any)) for name, value in values.items()})

    def config_hash(self) -> str:
        """Short sha256 of the canonical JSON: written beside every metric so runs can be matched."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def run_dir(self, create: bool = True) -> Path:
        return stage_dir(self.STAGE, self.profile, create=create)


def _as_declared(value: Any, tp: Any) -> Any:
    """``value`` with every int that ``tp`` declares a float (also inside ``dict[str, float]``,
    ``tuple[float, ...]`` and ``float | None``) turned into that float; anything else as given."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is float:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if origin in (typing.Union, types.UnionType):
        if value is None or int in args:
            return value
        if float in args:
            return _as_declared(value, float)
        arms = [a for a in args if a is not type(None)]
        return _as_declared(value, arms[0]) if len(arms) == 1 else value  # Optional[tuple[float, ...]] and kin
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return {k: _as_declared(v, args[1]) for k, v in value.items()}
    if origin in (list, tuple) and isinstance(value, (list, tuple)) and args:
        if len(args) == 2 and args[1] is Ellipsis or origin is list:
            return type(value)(_as_declared(v, args[0]) for v in value)
        if len(args) == len(value):
            return type(value)(_as_declared(v, a) for v, a in zip(value, args))
    return value


def _plain(obj: Any) -> Any:
    """JSON-ready copy: tuples as lists, -0.0 as 0.0 (equal values hash equally: ``config_hash``)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and obj == 0.0:
        return 0.0
    return obj


# --------------------------------------------------------------------------------------------
# The stage registry and the profile files
# --------------------------------------------------------------------------------------------


class _StageRegistry(Mapping[str, type[StageConfig]]):
    """Stage name -> config class. The notebook configs live in ``falcon_h1r_lib.configs``, which imports this
    module; every read imports them first, so the registry is complete whoever reads it first."""

    def __init__(self) -> None:
        self._classes: dict[str, type[StageConfig]] = {}

    def add(self, cls: type[StageConfig]) -> None:
        self._classes[cls.STAGE] = cls

    def _complete(self) -> dict[str, type[StageConfig]]:
        import falcon_h1r_lib.configs  # noqa: F401  (its modules register the six notebook stages)

        return self._classes

    def __getitem__(self, stage: str) -> type[StageConfig]:
        return self._complete()[stage]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._complete()))  # pipeline order: "01_architecture", ..., "launch"

    def __len__(self) -> int:
        return len(self._complete())

    def __repr__(self) -> str:
        return f"STAGE_CONFIGS({self._complete()!r})"


# Registry: notebook stage name -> its config class (falcon_h1r_lib.launch adds "launch").
STAGE_CONFIGS = _StageRegistry()


def register_stage(cls: type[StageConfig]) -> type[StageConfig]:
    """Class decorator: make a stage config known to ``load_config`` and the runner."""
    STAGE_CONFIGS.add(cls)
    return cls


def profile_path(stage: str, profile: str) -> Path:
    check_profile(profile)
    return profiles_dir() / profile / f"{stage}.yaml"


class _DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key: Any, line: int, first_line: int) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key, self.line, self.first_line = key, line, first_line


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping raises _DuplicateKeyError (PyYAML would
    keep the last one silently: a recipe edited at the bottom of a file while the top still says the old value)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden, by design
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if isinstance(key, typing.Hashable):
                if key in first:
                    raise _DuplicateKeyError(key, line, first[key])
                first[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | os.PathLike) -> Any:
    """A YAML file's document (None for an empty file), read with PyYAML's safe loader.

    Raises ConfigError naming the file when it is missing, not valid YAML, or gives a key twice in one mapping
    (then with the line: ``<file>:<line>: duplicate key 'seed'``; PyYAML alone would keep the last silently).
    """
    path = resolve_path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        return yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except _DuplicateKeyError as err:
        raise ConfigError(f"{path}:{err.line}: duplicate key {err.key!r} (first given on line {err.first_line}); "
                          "YAML would keep only the last value: delete one") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err


def read_yaml_mapping(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML file's top-level mapping ({} for an empty file). Raises ConfigError naming the file as ``read_yaml``
    does, and when the document is not a mapping."""
    path = resolve_path(path)
    values = read_yaml(path) or {}
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
