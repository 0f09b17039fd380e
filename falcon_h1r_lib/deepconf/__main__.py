"""``python -m falcon_h1r_lib.deepconf --config FILE [--model [LABEL=]PATH ...] [--out DIR] [--set KEY=VALUE ...]``

Cluster entry point of notebook 06: loads a DeepConfConfig (e.g. ``profiles/full/06_deepconf_scaling.yaml``),
finds the models (``experiment.models_to_compare``: a missing or half-written stage output names what to run),
generates trace pools and/or live DeepConf runs with the configured backend (HF or vLLM) on the
evaluation registry's benchmarks, and writes pools (Parquet), curves, Table 7 / Fig. 1 CSVs and metrics.json.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from falcon_h1r_lib.cli import model_run_parser, parse_models, parse_overrides
from falcon_h1r_lib.configs import DeepConfConfig


def main(argv: Sequence[str] | None = None) -> int:
    parser = model_run_parser("python -m falcon_h1r_lib.deepconf", __doc__.split("\n\n")[1],
                              "DeepConfConfig YAML (profiles/<profile>/06_deepconf_scaling.yaml)",
                              "the config's models", "runs/<profile>/06_deepconf_scaling")
    args = parser.parse_args(argv)
    cfg = DeepConfConfig.from_yaml(args.config, overrides=parse_overrides(args.set))
    from falcon_h1r_lib.deepconf.experiment import models_to_compare, run

    models = models_to_compare(cfg, parse_models(args.model))  # stage outputs checked before any model loads
    result = run(cfg, models=models, out_dir=args.out)
    brief = {label: {bench: {k: v for k, v in entry.get("at_budget", entry.get("live", {})).items()
                             if k in ("majority_accuracy", "deepconf_low_accuracy", "tokens_saved_percent", "accuracy", "tokens")}
                     for bench, entry in m.items()} for label, m in result["metrics"]["models"].items()}
    print(json.dumps({"out": result["out"], "summary": brief}, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
