"""CPU-rehearsal shim (never active on GPU nodes): lets ``accelerate launch`` with the shipped FSDP config run FSDP2 on CPU ranks over gloo.

accelerate 1.15 turns FSDP on only for accelerator ranks (``AcceleratorState`` skips it for ``MULTI_CPU``), and
``--cpu`` bypasses the FSDP launcher. With ``FALCON_H1R_FSDP_ON_CPU=1`` on a machine without CUDA, every rank started
by torchrun reports itself as a GPU rank on the ``cpu`` device with the gloo backend; everything else (FSDP plugin,
``fully_shard``, sharded checkpoints, the state-dict gather) is accelerate's and torch's own code.
"""

import os
import sys

if os.environ.get("FALCON_H1R_FSDP_ON_CPU") == "1" and "LOCAL_RANK" in os.environ:
    import torch

    if not torch.cuda.is_available():
        from accelerate.state import PartialState
        from accelerate.utils import DistributedType

        os.environ.setdefault("ACCELERATE_TORCH_DEVICE", "cpu")  # PartialState.set_device keeps it

        def _prepare_backend(self, cpu=False, sagemaker_dp=False, backend=None):
            return "gloo", DistributedType.MULTI_GPU

        PartialState._prepare_backend = _prepare_backend
        print(f"FSDP on CPU: ranks run FSDP2 over gloo (rank {os.environ.get('RANK')})", file=sys.stderr)
