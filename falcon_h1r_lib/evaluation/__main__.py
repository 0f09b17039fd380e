"""``python -m falcon_h1r_lib.evaluation --config FILE [--model [LABEL=]PATH ...] [--out DIR] [--set KEY=VALUE ...]``

Cluster entry point of notebook 05: loads an EvaluationConfig (e.g. ``profiles/full/05_evaluation.yaml``),
samples every benchmark with the configured backend (HF or vLLM), grades, and writes traces (Parquet),
grades, ``metrics.json`` and the paper-vs-ours tables.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import yaml

from falcon_h1r_lib.config import ConfigError, EvaluationConfig


def _models(specs: Sequence[str]) -> dict[str, str]:
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


def _overrides(items: Sequence[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE (VALUE is read as YAML)")
        out[key] = yaml.safe_load(value)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m falcon_h1r_lib.evaluation", description=__doc__.split("\n\n")[1])
    parser.add_argument("--config", required=True, help="EvaluationConfig YAML (profiles/<profile>/05_evaluation.yaml)")
    parser.add_argument("--model", action="append", default=[], metavar="[LABEL=]PATH",
                        help="checkpoint dir or Hub id; repeat for several (default: the config's model_name_or_path)")
    parser.add_argument("--out", default=None, help="output folder (default: runs/<profile>/05_evaluation)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    args = parser.parse_args(argv)
    cfg = EvaluationConfig.from_yaml(args.config, overrides=_overrides(args.set))
    from falcon_h1r_lib.evaluation.pipeline import run

    record = run(cfg, models=_models(args.model) or None, out_dir=args.out)
    brief = {label: {name: s.get("pass_at_1") for name, s in m["benchmarks"].items()}
             for label, m in record["metrics"]["models"].items()}
    print(json.dumps({"pass_at_1": brief, "tables": record["metrics"]["tables"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
