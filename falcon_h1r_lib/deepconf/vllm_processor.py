"""The DeepConf stop as a vLLM V1 logits processor class, importable by name in vLLM's spawned engine.

vLLM loads it from `vllm_stop.PROCESSOR_FQCN` (`LLM(logits_processors=[...])`): the engine core runs in
another process, so the class must live at module level (a class built inside a function cannot be
pickled: "Can't pickle local object"). This module imports vllm; the logic is `vllm_stop.ConfidenceStopCore`.
"""

from __future__ import annotations

import torch
from vllm.v1.sample.logits_processor import LogitsProcessor

from falcon_h1r_lib.deepconf.vllm_stop import ConfidenceStopCore


class DeepConfStopLogitsProcessor(ConfidenceStopCore, LogitsProcessor):
    """DeepConf online early stop ([P] Alg. 2) as a vLLM V1 batch-level logits processor."""

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        ConfidenceStopCore.__init__(self, device)


__all__ = ["DeepConfStopLogitsProcessor"]
