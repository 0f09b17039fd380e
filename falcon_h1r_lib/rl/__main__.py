"""``python -m falcon_h1r_lib.rl --config FILE [--force] [--filter-only]``: the RL stage as a job (under ``accelerate
launch`` on clusters; ``--filter-only`` once, in one process, first), the same code the notebook calls in process."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from falcon_h1r_lib import rl
    from falcon_h1r_lib.configs import RLStageConfig
    from falcon_h1r_lib.rl.stage import prepare_data, run

    parser = argparse.ArgumentParser(prog="python -m falcon_h1r_lib.rl", description=rl.__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="YAML of RLStageConfig fields (profiles/*/04_rl.yaml)")
    parser.add_argument("--force", action="store_true", help="train again from the SFT model (its checkpoints removed), even when metrics.json matches the config")
    parser.add_argument("--filter-only", action="store_true",
                        help="only sample the SFT model for the Fig. 9 filter (one process), then exit")
    a = parser.parse_args(argv)
    cfg = RLStageConfig.from_yaml(a.config)
    if a.filter_only:
        _, report = prepare_data(cfg, cfg.run_dir())
        print(json.dumps({k: report[k] for k in ("funnel", "pass_rate_histogram_after", "n_train")}, indent=2))
        return 0
    metrics = run(cfg, force=a.force)
    print(json.dumps({k: metrics[k] for k in ("global_steps", "backfill") if k in metrics}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
