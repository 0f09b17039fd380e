"""Training stages: the tiny base model (``pretrain``), long-CoT SFT through TRL (``sft``) and RL (``rl``).

Each stage is importable (``run(cfg)``) and launchable (``python -m falcon_h1r_lib.train.<stage> --config FILE``,
under ``accelerate launch`` on clusters). Submodules are imported on demand, so importing one stage never
pulls in another's dependencies.
"""
