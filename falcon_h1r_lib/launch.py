"""How each stage runs as a job: the one place that spells the cluster commands.

tiny runs every stage in the notebook's kernel. The full profile (and its CPU rehearsal) runs the heavy stages
as jobs, because TRL's trainers need one process per device (``accelerate launch``) and a 7B fine-tune does not
fit one GPU: ``command`` builds the exact argv of a stage, the Slurm scripts in ``profiles/slurm/`` call
``python -m falcon_h1r_lib.launch STAGE --exec`` on every node, and notebooks call ``run_stage``, which launches
the job on this node (``launcher: local``), submits the Slurm script and waits (``slurm``), or prints the
commands (``print``), then reads the stage's ``metrics.json``.

``python -m falcon_h1r_lib.launch 03_sft --profile full`` prints a stage's command; ``--exec`` runs it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from falcon_h1r_lib.config import ConfigError, StageConfig, is_tiny, load_config, profile_path, register_stage
from falcon_h1r_lib.paths import repo_root, resolve_path, stage_dir


@register_stage
@dataclass(frozen=True)
class LaunchConfig(StageConfig):
    """Where and how wide the jobs of a profile run (``profiles/<profile>/launch.yaml``)."""

    STAGE: ClassVar[str] = "launch"

    launcher: Literal["local", "slurm", "print"] = "local"  # notebooks: run jobs on this node, sbatch --wait, or print
    accelerate_config: str = "falcon_h1r_lib/profiles/accelerate/fsdp.yaml"  # FSDP2 config of SFT and RL
    sft_nodes: int = 1  # nodes of the SFT job; paper Table 1: 256 H100s = 32 nodes x 8
    rl_nodes: int = 1  # nodes of the RL job; paper: not given
    processes_per_node: int = 8  # ranks per node (one per GPU)
    main_process_port: int = 29500  # rendezvous port on the first node
    cpu: bool = False  # CPU ranks on gloo, fp32 (the rehearsal only): FSDP through the fsdp_on_cpu shim
    slurm_dir: str = "falcon_h1r_lib/profiles/slurm"  # the sbatch scripts of launcher "slurm"
    sbatch_args: tuple[str, ...] = ()  # extra sbatch options (partition, account, time)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("sft_nodes", "rl_nodes", "processes_per_node", "main_process_port"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{self.STAGE}: key {name!r} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class Job:
    """One stage's entry point: its module, extra arguments, and whether it is an ``accelerate launch`` job."""

    stage: str  # the stage config it reads (notebook stem)
    module: str
    args: tuple[str, ...] = ()
    distributed: bool = False  # accelerate launch over nodes x processes_per_node ranks
    nodes_key: str = ""  # LaunchConfig field with its node count
    slurm_script: str = ""  # profiles/slurm/<name>
    before: tuple[str, ...] = ()  # jobs its Slurm script runs first (run_stage runs them too)


JOBS: dict[str, Job] = {
    "02_data_curation": Job("02_data_curation", "falcon_h1r_lib.data", slurm_script="data.sbatch"),
    "03_sft": Job("03_sft", "falcon_h1r_lib.sft", distributed=True, nodes_key="sft_nodes",
                  slurm_script="sft.sbatch"),
    "04_rl_filter": Job("04_rl", "falcon_h1r_lib.rl", ("--filter-only",), slurm_script="rl_filter.sbatch"),
    "04_rl": Job("04_rl", "falcon_h1r_lib.rl", distributed=True, nodes_key="rl_nodes",
                 slurm_script="rl.sbatch", before=("04_rl_filter",)),
    "05_evaluation": Job("05_evaluation", "falcon_h1r_lib.evaluation", slurm_script="evaluation.sbatch"),
    "06_deepconf_scaling": Job("06_deepconf_scaling", "falcon_h1r_lib.deepconf", slurm_script="deepconf.sbatch"),
}


def job(name: str) -> Job:
    if name not in JOBS:
        raise ConfigError(f"launch: unknown job {name!r}; known: {sorted(JOBS)}")
    return JOBS[name]


def launch_config(profile: str) -> LaunchConfig:
    return load_config(LaunchConfig.STAGE, profile)  # type: ignore[return-value]


def stage_config_file(name: str, profile: str) -> str:
    """The YAML a job reads: ``profiles/<profile>/<stage>.yaml`` (a rehearsal file is laid over full's)."""
    path = profile_path(job(name).stage, profile)
    if not path.exists():
        raise ConfigError(f"{path}: no {job(name).stage} config for profile {profile!r}")
    return str(path.relative_to(repo_root()))


def command(name: str, config_file: str, launch: LaunchConfig, *, num_machines: int | None = None,
            machine_rank: int = 0, main_process_ip: str = "127.0.0.1", extra: Sequence[str] = ()) -> list[str]:
    """The argv of job ``name`` on one node: ``python -m MODULE --config FILE`` or, for SFT and RL,
    ``accelerate launch`` of it over ``num_machines x processes_per_node`` ranks (this node is ``machine_rank``)."""
    j = job(name)
    entry = ["-m", j.module, "--config", config_file, *j.args, *extra]
    if not j.distributed:
        return [sys.executable, *entry]
    nodes = num_machines or getattr(launch, j.nodes_key)
    argv = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", launch.accelerate_config,
            "--num_machines", str(nodes), "--num_processes", str(nodes * launch.processes_per_node),
            "--machine_rank", str(machine_rank), "--main_process_ip", main_process_ip,
            "--main_process_port", str(launch.main_process_port)]
    if launch.cpu:  # not `--cpu`: accelerate's CPU launcher has no FSDP (see fsdp_on_cpu/sitecustomize.py)
        argv += ["--mixed_precision", "no"]
    return [*argv, *entry]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (the OS picks it: bind to port 0), for ``main_process_port`` of a
    single-node run. Another process may take it before the launcher binds it; on one machine that is rare."""
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


FSDP_ON_CPU = Path(__file__).resolve().parent / "fsdp_on_cpu"  # sitecustomize.py: FSDP2 over gloo on CPU ranks


def preflight(name: str, config_file: str, world_size: int) -> dict[str, Any]:
    """Check a distributed job's batch arithmetic before any node starts: SFT ranks x per-device x accumulation =
    ``global_batch_size`` ([P] Table 1: 512), RL ranks x 1 completion x accumulation = prompts x G ([P] Table 2).
    Raises ConfigError naming the numbers; returns the checked plan."""
    j = job(name)
    if not j.distributed:
        return {}
    from falcon_h1r_lib.config import STAGE_CONFIGS

    cfg = STAGE_CONFIGS[j.stage].from_yaml(config_file)
    try:
        if j.stage == "03_sft":
            from falcon_h1r_lib.sft.base import check_global_batch

            return {"global_batch": check_global_batch(cfg, world_size)}
        from falcon_h1r_lib.rl.stage import batch_plan

        return batch_plan(cfg, world_size)
    except ValueError as err:
        raise ConfigError(f"{config_file}: {err}") from err


def job_env(profile: str, base: dict[str, str] | None = None, launch: LaunchConfig | None = None) -> dict[str, str]:
    """Environment of a job: offline only on tiny (the full profile reaches the Hub), repo root pinned; a
    ``cpu: true`` launch (``launch``, else the profile's ``launch.yaml``; tiny has none) puts the FSDP-on-CPU shim
    on PYTHONPATH (it acts only without CUDA)."""
    env = dict(os.environ if base is None else base)
    env.setdefault("FALCON_H1R_ROOT", str(repo_root()))
    if is_tiny(profile):
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("HF_DATASETS_OFFLINE", "1")
    if launch is None and not is_tiny(profile):
        launch = launch_config(profile)
    if launch is not None and launch.cpu:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(FSDP_ON_CPU), env.get("PYTHONPATH", "")) if p)
        env["FALCON_H1R_FSDP_ON_CPU"] = "1"
    return env


def write_job_config(cfg: StageConfig) -> str:
    """The notebook's validated parameters as the job's YAML (``runs/<profile>/<stage>/job_config.yaml``)."""
    path = stage_dir(cfg.STAGE, cfg.profile) / "job_config.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return str(path)


def execute(argv: Sequence[str], log: Path, profile: str, env: dict[str, str] | None = None) -> None:
    """Run ``argv`` from the repo root to the end, its output streamed to the terminal and appended to ``log``, in
    ``env`` (default: ``job_env(profile)``); raises naming the log on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh:
        fh.write(f"\n$ {shlex.join(argv)}\n")
        fh.flush()
        proc = subprocess.Popen(list(argv), cwd=repo_root(), env=job_env(profile) if env is None else env,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            fh.write(line)
            sys.stdout.write(line)
        rc = proc.wait()
    if rc:
        raise RuntimeError(f"job failed with exit status {rc}: {shlex.join(argv)} (log: {log})")


def run_stage(cfg: StageConfig, name: str | None = None) -> dict[str, Any]:
    """Run job ``name`` (default: the config's stage) for a notebook and return the stage's metrics.

    Non-tiny profiles run it as a job with ``cfg`` written to ``job_config.yaml``; tiny callers run stages in
    process and do not come here. Raises RuntimeError when the job fails (the log is named) or, with
    ``launcher: print``, when the printed commands have not been run yet."""
    from falcon_h1r_lib.metrics import read_metrics

    name = name or cfg.STAGE
    if is_tiny(cfg.profile):
        raise ValueError("run_stage: the tiny profile runs stages in the notebook's kernel")
    launch = launch_config(cfg.profile)
    config_file = write_job_config(cfg)
    log = stage_dir(cfg.STAGE, cfg.profile) / "job.log"
    j = job(name)
    if launch.launcher == "local":
        if j.distributed and getattr(launch, j.nodes_key) > 1:
            raise ConfigError(f"launch: {name} needs {getattr(launch, j.nodes_key)} nodes; a notebook launches "
                              "one-node jobs only: set launcher: slurm in profiles/<profile>/launch.yaml")
        for step in (*j.before, name):
            execute(command(step, config_file, launch), log, cfg.profile)
    elif launch.launcher == "slurm":
        output = stage_dir(cfg.STAGE, cfg.profile) / "slurm-%x-%j.out"  # the job's own log, beside its outputs
        for step in (*j.before, name):
            script = resolve_path(launch.slurm_dir) / job(step).slurm_script
            execute(["sbatch", "--wait", f"--output={output}", *launch.sbatch_args,
                     f"--export=ALL,PROFILE={cfg.profile},CONFIG={config_file}", str(script)], log, cfg.profile)
    else:
        steps = "\n".join(shlex.join(command(step, config_file, launch)) for step in (*j.before, name))
        print(f"# run on the cluster (each distributed command on every node, with its --machine_rank), then "
              f"re-run this cell:\n{steps}")
        record = _finished_record(cfg, read_metrics)
        if record is None:
            raise RuntimeError(f"{cfg.STAGE}: launcher 'print': run the command above, then re-run this cell")
        return record["metrics"]
    record = _finished_record(cfg, read_metrics)
    if record is None:
        raise RuntimeError(f"{cfg.STAGE}: the job ended but wrote no metrics.json for this config (log: {log})")
    return record["metrics"]


def _finished_record(cfg: StageConfig, read_metrics) -> dict[str, Any] | None:
    try:
        record = read_metrics(cfg.STAGE, cfg.profile)
    except ConfigError:
        return None
    return record if record.get("config_hash") == cfg.config_hash() else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m falcon_h1r_lib.launch", description=__doc__.splitlines()[0])
    parser.add_argument("job", choices=sorted(JOBS))
    parser.add_argument("--profile", default="full", choices=("full", "rehearsal"),
                        help="tiny runs its stages in the notebooks")
    parser.add_argument("--config", help="stage YAML (default: profiles/<profile>/<stage>.yaml)")
    parser.add_argument("--nodes", type=int, help="nodes of a distributed job (default: launch.yaml's)")
    parser.add_argument("--machine-rank", type=int, default=0)
    parser.add_argument("--main-process-ip", default="127.0.0.1")
    parser.add_argument("--exec", action="store_true", help="run the command (default: print it)")
    parser.epilog = "Arguments after `--` are passed on to the stage (e.g. -- --set benchmarks=[AIME24])."
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    a = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    try:
        launch = launch_config(a.profile)
        config_file = a.config or stage_config_file(a.job, a.profile)
        from falcon_h1r_lib.config import read_yaml_mapping

        declared = read_yaml_mapping(config_file).get("profile")  # names the file when it is missing
        if declared != a.profile:
            raise ConfigError(f"{config_file}: declares profile {declared!r}, but --profile is {a.profile!r}")
        j = job(a.job)
        nodes = a.nodes if a.nodes is not None else (getattr(launch, j.nodes_key) if j.distributed else 1)
        if nodes < 1 or not 0 <= a.machine_rank < nodes:
            raise ConfigError(f"--nodes {nodes} / --machine-rank {a.machine_rank}: need nodes >= 1 and "
                              "0 <= machine rank < nodes")
        preflight(a.job, config_file, nodes * launch.processes_per_node)
        argv_ = command(a.job, config_file, launch, num_machines=nodes, machine_rank=a.machine_rank,
                        main_process_ip=a.main_process_ip, extra=extra)
    except ConfigError as err:
        print(f"launch: {err}", file=sys.stderr)
        return 2
    if not a.exec:
        print(shlex.join(argv_))
        return 0
    start = time.perf_counter()
    rc = subprocess.call(argv_, cwd=repo_root(), env=job_env(a.profile))
    print(f"launch: {a.job} ({a.profile}) exit {rc} after {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["JOBS", "Job", "LaunchConfig", "command", "free_port", "job_env", "launch_config", "run_stage", "stage_config_file",
           "write_job_config", "FSDP_ON_CPU", "preflight"]
