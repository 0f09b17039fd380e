"""``python -m falcon_h1r_lib.sft --config FILE [--profile P] [--evaluate]``: the SFT stage as a job (also under
``accelerate launch``), the same code the notebook calls in process."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from falcon_h1r_lib import sft
    from falcon_h1r_lib.config import load_config
    from falcon_h1r_lib.configs import SFTStageConfig
    from falcon_h1r_lib.sft.stage import run

    parser = argparse.ArgumentParser(prog="python -m falcon_h1r_lib.sft", description=sft.__doc__.split("\n")[0])
    parser.add_argument("--config", help="stage YAML (default: falcon_h1r_lib/profiles/<profile>/03_sft.yaml)")
    parser.add_argument("--profile", default="tiny", choices=("tiny", "full", "rehearsal"))
    parser.add_argument("--evaluate", action="store_true", help="also evaluate base and SFT models afterwards")
    args = parser.parse_args(argv)
    cfg = (SFTStageConfig.from_yaml(args.config) if args.config else load_config("03_sft", args.profile))
    metrics = run(cfg)
    if args.evaluate:
        from falcon_h1r_lib.sft.report import evaluate_base_and_sft

        metrics.update(evaluate_base_and_sft(cfg))
    print(json.dumps({k: metrics[k] for k in ("wall_time_s", "base_accuracy", "sft_accuracy") if k in metrics}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
