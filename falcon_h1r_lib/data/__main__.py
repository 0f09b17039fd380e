"""The data stage's command line.

``python -m falcon_h1r_lib.data --config falcon_h1r_lib/profiles/full/02_data_curation.yaml``: run curation.
``python -m falcon_h1r_lib.data pin --sources FILE [FILE ...] [--check]``: pin each source's current commit
(Hub or ``mirror:``) into FILE's ``revision:`` lines; ``--check`` only lists unpinned sources (exit 1 if any).
``python -m falcon_h1r_lib.data standins --root runs/rehearsal/hub``: write the local Hub stand-ins.
"""

from __future__ import annotations

import argparse
import json
import sys

from falcon_h1r_lib.config import ConfigError
from falcon_h1r_lib.configs import CurationConfig


def pin_main(argv: list[str]) -> int:
    from falcon_h1r_lib.data.pinning import pin_sources_file, unpinned_sources

    parser = argparse.ArgumentParser(prog="python -m falcon_h1r_lib.data pin",
                                     description="Write each source's current commit into its sources file.")
    parser.add_argument("--sources", nargs="+", required=True, help="sources YAML files (data_manifests/full/*.yaml)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 listing unpinned sources")
    parser.add_argument("--update", action="store_true",
                        help="also move already pinned sources to their default branch's current commit")
    args = parser.parse_args(argv)
    try:
        if args.check:
            missing = {f: unpinned_sources(f) for f in args.sources}
            for f, names in missing.items():
                for name in names:
                    print(f"{f}: source {name!r} is not pinned", file=sys.stderr)
            return 1 if any(missing.values()) else 0
        for f in args.sources:
            for name, change in pin_sources_file(f, update=args.update).items():
                print(f"{f}: {name}: {change['old']} -> {change['new']}")
    except ConfigError as err:
        print(f"data pin: {err}", file=sys.stderr)
        return 2
    return 0


def standins_main(argv: list[str]) -> int:
    from falcon_h1r_lib.data.standins import main as standins

    return standins(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["pin"]:
        return pin_main(argv[1:])
    if argv[:1] == ["standins"]:
        return standins_main(argv[1:])
    from falcon_h1r_lib.data.build import run

    parser = argparse.ArgumentParser(description="Run the data-curation stage (notebook 02) from a profile YAML; "
                                     "subcommands: pin, standins (see the module docstring).")
    parser.add_argument("--config", required=True, help="a 02_data_curation.yaml (tiny, full or rehearsal profile)")
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
