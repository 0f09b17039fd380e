"""The rehearsal is the full profile at CPU size: its YAMLs may override size keys only, and it runs the full path.

A key outside ``SIZE_KEYS`` in ``profiles/rehearsal/`` fails here: the rehearsal must prove the full path,
not a cousin of it. Each entry says why it is a size (or a CPU necessity, or a stand-in location).
"""

from __future__ import annotations

import pytest

import falcon_h1r_lib.launch  # noqa: F401  (registers the launch config)
from falcon_h1r_lib.config import (
    PROFILE_PARENT,
    STAGE_CONFIGS,
    ConfigError,
    load_config,
    profile_overrides,
    profile_path,
)
from falcon_h1r_lib.paths import profiles_dir

SIZE_KEYS: dict[str, str] = {
    "profile": "the profile's own name",
    # where the models and data come from: local stand-ins of the Hub repos
    "base_model_name_or_path": "stand-in of tiiuae/Falcon-H1-7B-Base built from the 7B preset by the width dial",
    "model_name_or_path": "the rehearsal's own checkpoint instead of tiiuae/Falcon-H1R-7B",
    "models": "the rehearsal's own checkpoint instead of tiiuae/Falcon-H1R-7B",
    "sft_model_path": "the rehearsal's SFT output folder",
    "sources_file": "stand-in SFT sources: local dataset repos in each Hub dataset's schema, pinned",
    "rl_sources_file": "stand-in RL sources (same)",
    "eval_sources_file": "stand-in benchmarks (same)",
    "max_rows_per_source": "rows read per source",
    # counts, lengths, steps, batch sizes
    "max_problems": "problems per benchmark", "samples_per_problem": "samples per problem",
    "max_new_tokens": "tokens per trace", "max_length": "tokens per SFT sample",
    "max_completion_length": "tokens per RL rollout", "filter_max_new_tokens": "tokens per filter rollout",
    "filter_max_problems": "RL pool size", "eval_problems": "problems per benchmark",
    "eval_max_problems": "problems per benchmark", "eval_samples_per_problem": "samples per problem",
    "headroom_max_problems": "problems per headroom set", "headroom_samples": "samples per problem (pass@k up to n)",
    "budget": "K traces", "budgets": "curve budgets", "pool_size": "pool traces", "runs": "resampled runs",
    "n_init": "warm-up traces", "window": "window tokens (traces are short)", "tail_tokens": "tail tokens",
    "live_wave": "traces per wave", "num_generations": "G samples per prompt", "prompts_per_step": "prompts per step",
    "filter_rollouts": "rollouts per filter problem", "max_steps": "optimizer steps", "num_train_epochs": "epochs",
    "per_device_train_batch_size": "samples per device", "gradient_accumulation_steps": "micro-steps per step",
    "global_batch_size": "samples per optimizer step (world x per device x accumulation)",
    "save_steps": "steps between checkpoints", "logging_steps": "steps between log lines",
    "save_total_limit": "checkpoints kept on disk",
    "warmup_steps": "warm-up steps of a short run", "cache_size": "backfill groups kept",
    "eval_batch_size": "sequences decoded together", "batch_size": "sequences decoded together",
    "grade_workers": "grading threads", "num_threads": "torch CPU threads",
    "decode_batch": "sequences", "rollouts_per_problem": "teacher rollouts per problem in the stand-ins",
    # CPU necessities
    "bf16": "CPUs train in fp32", "dtype": "the CPU engine runs fp32", "device": "cpu",
    "gradient_checkpointing": "short sequences need none", "use_liger_kernel": "Liger kernels are Triton (GPU)",
    "vllm": "engine sizes (max_model_len, memory share); see VLLM_SIZE_KEYS",
    "vllm_gpu_memory_utilization": "GPU memory share (unused on CPU)", "vllm_max_model_length": "engine context",
    # launch sizes
    "launcher": "one machine: run jobs here", "sft_nodes": "nodes", "rl_nodes": "nodes",
    "processes_per_node": "ranks", "main_process_port": "a free port", "cpu": "gloo instead of NCCL",
}
VLLM_SIZE_KEYS = {"max_model_len", "gpu_memory_utilization", "tensor_parallel_size", "data_parallel_size",
                  "data_parallel_rank", "enable_prefix_caching"}


def rehearsal_stages() -> list[str]:
    return sorted(p.stem for p in (profiles_dir() / "rehearsal").glob("*.yaml"))


def test_rehearsal_inherits_full():
    assert PROFILE_PARENT["rehearsal"] == "full"
    assert {"02_data_curation", "03_sft", "04_rl", "05_evaluation", "06_deepconf_scaling", "launch"} <= set(
        rehearsal_stages())


@pytest.mark.parametrize("stage", rehearsal_stages())
def test_rehearsal_overrides_size_keys_only(stage):
    own = profile_overrides(stage, "rehearsal")
    assert own.get("profile") == "rehearsal", f"{profile_path(stage, 'rehearsal')}: first key must be profile: rehearsal"
    outside = sorted(set(own) - set(SIZE_KEYS))
    assert not outside, f"{profile_path(stage, 'rehearsal')}: keys outside the size whitelist: {outside}"
    if "vllm" in own:
        assert set(own["vllm"]) <= VLLM_SIZE_KEYS, sorted(set(own["vllm"]) - VLLM_SIZE_KEYS)
    full = load_config(stage, "full").to_dict()
    rehearsal = load_config(stage, "rehearsal").to_dict()
    differing = sorted(k for k in full if full[k] != rehearsal[k])
    assert set(differing) <= set(SIZE_KEYS), differing


def test_unknown_rehearsal_key_is_refused(tmp_path, monkeypatch):
    import falcon_h1r_lib.config as config

    (tmp_path / "full").mkdir()
    (tmp_path / "rehearsal").mkdir()
    (tmp_path / "full" / "04_rl.yaml").write_text("profile: full\nmax_steps: 1000\n")
    (tmp_path / "rehearsal" / "04_rl.yaml").write_text("profile: rehearsal\nmax_stepz: 2\n")
    monkeypatch.setattr(config, "profiles_dir", lambda: tmp_path)
    with pytest.raises(ConfigError, match="max_stepz"):
        load_config("04_rl", "rehearsal")


def test_rehearsal_file_given_as_config_lays_over_full():
    from falcon_h1r_lib.configs import RLStageConfig

    cfg = RLStageConfig.from_yaml(profile_path("04_rl", "rehearsal"))
    assert cfg == load_config("04_rl", "rehearsal")
    assert cfg.epsilon_high == load_config("04_rl", "full").epsilon_high


def test_every_stage_has_a_full_config():
    for stage in STAGE_CONFIGS:
        assert profile_path(stage, "full").exists() or stage == "01_architecture", stage


# --------------------------------------------------------------------------------------------
# The launchers: one place builds each stage's command; notebooks of non-tiny profiles launch jobs
# --------------------------------------------------------------------------------------------


def test_full_sft_is_an_accelerate_job_over_the_cluster():
    from falcon_h1r_lib import launch

    lc = launch.launch_config("full")
    argv = launch.command("03_sft", "falcon_h1r_lib/profiles/full/03_sft.yaml", lc, machine_rank=3,
                          main_process_ip="node01")
    assert argv[1:3] == ["-m", "accelerate.commands.launch"]
    assert argv[argv.index("--num_processes") + 1] == str(lc.sft_nodes * lc.processes_per_node) == "256"
    assert argv[argv.index("--machine_rank") + 1] == "3" and "--cpu" not in argv
    assert argv[-4:] == ["-m", "falcon_h1r_lib.sft", "--config", "falcon_h1r_lib/profiles/full/03_sft.yaml"]
    rehearsal = launch.command("04_rl", "x.yaml", launch.launch_config("rehearsal"))
    assert rehearsal[rehearsal.index("--num_processes") + 1] == "2" and "--cpu" not in rehearsal
    assert rehearsal[rehearsal.index("--mixed_precision") + 1] == "no"
    env = launch.job_env("rehearsal", {})
    assert env["FALCON_H1R_FSDP_ON_CPU"] == "1" and str(launch.FSDP_ON_CPU) in env["PYTHONPATH"]
    assert "FALCON_H1R_FSDP_ON_CPU" not in launch.job_env("full", {})
    # same accelerate config file as the cluster
    assert rehearsal[rehearsal.index("--config_file") + 1] == lc.accelerate_config


def test_notebooks_launch_heavy_stages_as_jobs_outside_tiny():
    """Before: notebook 03 called sft.run(cfg) in its kernel on every profile (TRL refuses several visible GPUs,
    a 7B fine-tune does not fit one) and every notebook forced HF_HUB_OFFLINE=1, so the full profile failed at its
    first download."""
    import nbformat

    from falcon_h1r_lib.paths import notebooks_dir

    for path in sorted(notebooks_dir().glob("0*.ipynb")):
        code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        for line in code.splitlines():
            if 'environ.setdefault("HF_HUB_OFFLINE"' in line:
                assert line.startswith("    "), f"{path.name}: HF_HUB_OFFLINE set outside `if profile == \"tiny\"`"
    for name, call in (("03_sft", "sft.run(cfg)"), ("04_rl", "rl.run(cfg)")):
        code = "\n".join(c.source for c in nbformat.read(notebooks_dir() / f"{name}.ipynb", as_version=4).cells)
        assert f'{call} if profile == "tiny" else launch.run_stage(cfg)' in code, name


def test_run_stage_launches_filter_then_training_and_reads_metrics(monkeypatch, tmp_path):
    from falcon_h1r_lib import launch
    from falcon_h1r_lib.metrics import write_metrics

    monkeypatch.setenv("FALCON_H1R_RUNS", str(tmp_path))
    cfg = load_config("04_rl", "rehearsal")
    ran = []

    def fake_execute(argv, log, profile):
        ran.append(argv)
        if "--filter-only" not in argv:
            write_metrics(cfg, {"global_steps": 2}, wall_time_s=1.0)

    monkeypatch.setattr(launch, "execute", fake_execute)
    metrics = launch.run_stage(cfg)
    assert metrics["global_steps"] == 2
    assert "--filter-only" in ran[0] and "accelerate.commands.launch" in ran[1]
    job_config = ran[1][ran[1].index("--config") + 1]
    assert load_config("04_rl", "rehearsal") == type(cfg).from_yaml(job_config)


def test_job_environment_is_offline_only_on_tiny(monkeypatch):
    from falcon_h1r_lib import launch

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert "HF_HUB_OFFLINE" not in launch.job_env("full")
    assert launch.job_env("tiny")["HF_HUB_OFFLINE"] == "1"


def test_make_reproduce_full_installs_the_gpu_stack_and_stays_online():
    """Before: `make reproduce PROFILE=full` installed the CPU torch and exported HF_HUB_OFFLINE=1."""
    import subprocess

    from falcon_h1r_lib.paths import repo_root

    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("HF_")}
    dry = subprocess.run(["make", "-n", "-B", "reproduce", "PROFILE=full"], cwd=repo_root(), env=env,
                         capture_output=True, text=True, check=True).stdout
    assert ".[gpu,dev]" in dry and ".[cpu" not in dry and ".venv-gpu/bin/python" in dry
    probe = ["--eval", 'show-offline: ; @echo "[$$HF_HUB_OFFLINE]"', "show-offline"]
    for profile, want in (("full", "[]"), ("tiny", "[1]"), ("rehearsal", "[1]")):
        got = subprocess.run(["make", "-s", f"PROFILE={profile}", *probe], cwd=repo_root(), env=env,
                             capture_output=True, text=True, check=True).stdout.strip()
        assert got == want, (profile, got)


def test_slurm_scripts_run_the_launch_commands(tmp_path):
    """Each sbatch script, run under a one-node srun/scontrol stand-in with a Python that prints its argv,
    asks `falcon_h1r_lib.launch` for its stage with the node's rank and the rendezvous host."""
    import os
    import subprocess

    from falcon_h1r_lib.paths import repo_root
    from falcon_h1r_lib.rehearsal import slurm_shim

    fake_py = tmp_path / "py"
    fake_py.write_text('#!/bin/bash\necho "ARGV $*"\n')
    fake_py.chmod(0o755)
    env = {**os.environ, **slurm_shim(tmp_path / "bin"), "PY": str(fake_py), "PROFILE": "full",
           "FALCON_H1R_RUNS": str(tmp_path / "runs")}
    expected = {"data.sbatch": ["02_data_curation"], "sft.sbatch": ["03_sft"], "rl_filter.sbatch": ["04_rl_filter"], "rl.sbatch": ["04_rl"],
                "evaluation.sbatch": ["05_evaluation"], "deepconf.sbatch": ["06_deepconf_scaling"]}
    for script, jobs in expected.items():
        out = subprocess.run(["bash", f"falcon_h1r_lib/profiles/slurm/{script}"], cwd=repo_root(), env=env,
                             capture_output=True, text=True, check=True).stdout
        calls = [line.split()[1:] for line in out.splitlines() if line.startswith("ARGV")]
        assert [c[2] for c in calls] == jobs, (script, calls)
        for call in calls:
            assert call[:2] == ["-m", "falcon_h1r_lib.launch"] and "--exec" in call
            assert call[call.index("--profile") + 1] == "full"
            if call[2] in ("03_sft", "04_rl"):
                assert call[call.index("--machine-rank") + 1] == "0"
                assert call[call.index("--main-process-ip") + 1] == "127.0.0.1"


# --------------------------------------------------------------------------------------------
# The rehearsal end to end (make test-rehearsal): every stage hands its files to the next
# --------------------------------------------------------------------------------------------


@pytest.mark.rehearsal
def test_rehearsal_end_to_end():
    import json

    from transformers import AutoModelForCausalLM

    from falcon_h1r_lib import rehearsal
    from falcon_h1r_lib.metrics import read_metrics
    from falcon_h1r_lib.paths import runs_dir

    seconds = rehearsal.run()
    assert set(seconds) >= {"02_data_curation", "03_sft", "04_rl", "05_evaluation", "06_deepconf_scaling"}
    out = runs_dir("rehearsal")
    data = read_metrics("02_data_curation", "rehearsal")["metrics"]
    assert data["rows"]["sft"] > 0 and data["rows"]["rl_problems"] > 0
    sft_dir = out / "03_sft" / "sft"
    assert list(sft_dir.glob("*.safetensors")), "the FSDP job saved no full weights"
    AutoModelForCausalLM.from_pretrained(str(sft_dir))
    sft = read_metrics("03_sft", "rehearsal")["metrics"]
    assert sft["sft"]["global_batch"] == load_config("03_sft", "rehearsal").global_batch_size
    rl = read_metrics("04_rl", "rehearsal")
    assert rl["reads"] == ["runs/rehearsal/03_sft/sft"] and rl["metrics"]["global_steps"] >= 1
    assert list((out / "04_rl" / "rl").glob("*.safetensors"))
    ev = read_metrics("05_evaluation", "rehearsal")["metrics"]
    benches = ev["models"]["model"]["benchmarks"]
    assert set(benches) == set(load_config("05_evaluation", "full").benchmarks)
    dc = json.loads((out / "06_deepconf_scaling" / "metrics.json").read_text())
    assert dc["metrics"]["models"]


def test_launch_refuses_bad_sizes_before_any_node_starts(capsys):
    """Batch arithmetic, node ranks and the config's profile are checked by the launcher, not after a 7B load."""
    from falcon_h1r_lib import launch

    assert launch.main(["04_rl", "--profile", "full", "--nodes", "4"]) == 2  # 2 completions per device
    assert "1 completion per device" in capsys.readouterr().err
    assert launch.main(["03_sft", "--profile", "full", "--nodes", "4"]) == 2
    assert "= 64, but global_batch_size is 512" in capsys.readouterr().err
    assert launch.main(["03_sft", "--profile", "full", "--nodes", "2", "--machine-rank", "2"]) == 2
    assert launch.main(["04_rl", "--profile", "rehearsal", "--config", "falcon_h1r_lib/profiles/full/04_rl.yaml"]) == 2
    assert "declares profile 'full'" in capsys.readouterr().err
    assert launch.main(["03_sft", "--profile", "full"]) == 0 and "--num_processes 256" in capsys.readouterr().out


def test_a_yaml_without_profile_is_refused(tmp_path):
    from falcon_h1r_lib.configs import RLStageConfig

    path = tmp_path / "04_rl.yaml"
    path.write_text("max_steps: 2\n")
    with pytest.raises(ConfigError, match="key 'profile' missing"):
        RLStageConfig.from_yaml(path)
