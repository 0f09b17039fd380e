"""``python -m falcon_h1r_lib.evaluation --config FILE [--model [LABEL=]PATH ...] [--out DIR] [--set KEY=VALUE ...]``

Cluster entry point of notebook 05: loads an EvaluationConfig (e.g. ``profiles/full/05_evaluation.yaml``),
finds the models (``evaluation.models_to_compare``: a missing or half-written stage output names what to run),
samples every benchmark with the configured backend (HF or vLLM), grades, and writes traces (Parquet),
grades, ``metrics.json`` and the paper-vs-ours tables.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from falcon_h1r_lib.cli import model_run_parser, parse_models, parse_overrides
from falcon_h1r_lib.configs import EvaluationConfig


def main(argv: Sequence[str] | None = None) -> int:
    parser = model_run_parser("python -m falcon_h1r_lib.evaluation", __doc__.split("\n\n")[1],
                              "EvaluationConfig YAML (profiles/<profile>/05_evaluation.yaml)",
                              "the config's model_name_or_path", "runs/<profile>/05_evaluation")
    args = parser.parse_args(argv)
    cfg = EvaluationConfig.from_yaml(args.config, overrides=parse_overrides(args.set))
    from falcon_h1r_lib.evaluation import models_to_compare
    from falcon_h1r_lib.evaluation.pipeline import run

    models = models_to_compare(cfg, parse_models(args.model))  # stage outputs checked before any model loads
    record = run(cfg, models=models, out_dir=args.out)
    brief = {label: {name: s.get("pass_at_1") for name, s in m["benchmarks"].items()}
             for label, m in record["metrics"]["models"].items()}
    print(json.dumps({"pass_at_1": brief, "tables": record["metrics"]["tables"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
