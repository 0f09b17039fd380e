"""``python -m falcon_h1r_lib.generation.vllm_bench {fig8,workloads} ...``: runs `cli.main` (see the package
docstring). The guard matters: vLLM spawns its engine process, which must not rerun the benchmark."""

import sys

from falcon_h1r_lib.generation.vllm_bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
