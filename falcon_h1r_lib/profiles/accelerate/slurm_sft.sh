#!/bin/bash
# Multi-node full-profile SFT (paper Table 1: 256 H100s = 32 nodes x 8) with accelerate + FSDP.
#   sbatch --nodes=32 falcon_h1r_lib/profiles/accelerate/slurm_sft.sh
# Each node runs one `accelerate launch` that starts 8 ranks; rank 0's node is the rendezvous host.
# The per-device batch and accumulation in profiles/full/03_sft.yaml assume 128 data-parallel ranks
# (256 GPUs with context parallelism 2); adjust them so that per-device x accumulation x ranks = 512.
#SBATCH --job-name=falcon-h1r-sft
#SBATCH --nodes=32
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=96
#SBATCH --exclusive
#SBATCH --output=runs/full/slurm-%x-%j.out
set -euo pipefail

CONFIG=${CONFIG:-falcon_h1r_lib/profiles/full/03_sft.yaml}
ACCEL=${ACCEL:-falcon_h1r_lib/profiles/accelerate/fsdp.yaml}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
MAIN_HOST=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
MAIN_PORT=${MAIN_PORT:-29500}
export HF_HUB_ENABLE_HF_TRANSFER=${HF_HUB_ENABLE_HF_TRANSFER:-1}
export NCCL_ASYNC_ERROR_HANDLING=1

# A restarted job resumes from the last checkpoint in runs/full/03_sft/checkpoints (train.sft does it).
srun --kill-on-bad-exit=1 bash -c "accelerate launch \
  --config_file $ACCEL \
  --num_machines $SLURM_NNODES \
  --num_processes $((SLURM_NNODES * GPUS_PER_NODE)) \
  --machine_rank \$SLURM_NODEID \
  --main_process_ip $MAIN_HOST \
  --main_process_port $MAIN_PORT \
  --rdzv_backend c10d \
  -m falcon_h1r_lib.train.sft --config $CONFIG"
