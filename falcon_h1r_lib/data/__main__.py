"""``python -m falcon_h1r_lib.data --config falcon_h1r_lib/profiles/full/02_data_curation.yaml``."""

from __future__ import annotations

import argparse
import json
import sys

from falcon_h1r_lib.config import ConfigError, CurationConfig
from falcon_h1r_lib.data.build import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the data-curation stage (notebook 02) from a profile YAML.")
    parser.add_argument("--config", required=True, help="a 02_data_curation.yaml (tiny or full profile)")
    parser.add_argument("--force", action="store_true", help="rebuild even if outputs match the config")
    args = parser.parse_args(argv)
    try:
        cfg = CurationConfig.from_yaml(args.config)
    except ConfigError as err:
        print(f"data: {err}", file=sys.stderr)
        return 2
    metrics = run(cfg, force=args.force)
    print(json.dumps({"rows": metrics["rows"], "funnel": metrics["funnel"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
