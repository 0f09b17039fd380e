"""The command line shared by the model-running entry points (``python -m falcon_h1r_lib.evaluation`` and
``python -m falcon_h1r_lib.deepconf``): ``--config FILE [--model [LABEL=]PATH ...] [--out DIR] [--set KEY=VALUE ...]``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import yaml

from falcon_h1r_lib.config import ConfigError


def model_run_parser(prog: str, description: str, config_help: str, models_default: str, out_default: str
                     ) -> argparse.ArgumentParser:
    """A parser with the four shared options; ``models_default`` / ``out_default`` say what omitting them means."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", required=True, help=config_help)
    parser.add_argument("--model", action="append", default=[], metavar="[LABEL=]PATH",
                        help=f"checkpoint dir or Hub id; repeat for several (default: {models_default})")
    parser.add_argument("--out", default=None, help=f"output folder (default: {out_default})")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (VALUE is read as YAML)")
    return parser


def parse_models(specs: Sequence[str]) -> dict[str, str]:
    """``[LABEL=]PATH`` -> {label: path}; the label defaults to the path's last component."""
    out: dict[str, str] = {}
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep:
            path, label = spec, spec.rstrip("/").rsplit("/", 1)[-1] or "model"
        if label in out:
            raise ConfigError(f"--model: label {label!r} given twice; use LABEL=PATH")
        out[label] = path
    return out


def parse_overrides(items: Sequence[str]) -> dict:
    """``KEY=VALUE`` items -> {key: YAML-parsed value}. Raises ConfigError naming the item for a missing ``=`` or
    key, a key set twice, or a VALUE that is not valid YAML."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE (VALUE is read as YAML)")
        if key in out:
            raise ConfigError(f"--set {item!r}: key {key!r} is set twice")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {item!r}: VALUE is not valid YAML ({err})") from None
    return out


__all__ = ["model_run_parser", "parse_models", "parse_overrides"]
