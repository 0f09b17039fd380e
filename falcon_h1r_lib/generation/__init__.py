"""Sampling layer: one trace format (tokens, text, raw per-token top-k log-probs, finish reason) and
backends behind one interface, `generate(requests, sampling, stop_hook=None) -> list[Trace]`.

HF transformers (`HFBackend`, CPU and GPU) runs here; vLLM (`VLLMBackend`, GPU clusters) is imported
lazily by its module, so this package imports without vllm installed.
"""

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
from falcon_h1r_lib.generation.vllm_backend import VLLMBackend, VLLMConfig, request_output_to_traces

__all__ = [
    "FINISH_REASONS", "LOGPROBS_NOTE", "SCHEMA_VERSION", "TRACE_SCHEMA", "Backend", "DecodeStep",
    "GenerationRequest", "HFBackend", "SamplingConfig", "StopHook", "Trace", "VLLMBackend", "VLLMConfig",
    "chat_request", "check_requests", "read_traces", "read_traces_metadata", "request_output_to_traces",
    "request_seed", "sample_next", "sample_seed", "traces_to_table", "write_traces",
]
