"""Start the ranks of a training or evaluation script: `accelerate launch` with a config file.

    python -m util_public.launcher [--print] [--nproc-per-node N] [--nnodes M] [--node-rank R|slurm]
        [--master-addr HOST] [--port P] [--config ddp.yaml] SCRIPT [SCRIPT ARGS...]

Why a config file always: `accelerate launch --cpu --num_processes N` starts ONE process
(measured: training/README.md, "Several processes"), while a config whose distributed_type is
MULTI_GPU, FSDP or DEEPSPEED makes accelerate start the ranks through torch.distributed.run, also
on a CPU-only machine (there ddp.yaml gives DDP over gloo; fsdp/ds configs are refused by the
training, see `distributed.py`). The ranks get MTG_EXPECTED_WORLD_SIZE and check it when they
start; when a rank dies, torch.distributed stops the others and this launcher exits non-zero with
one line saying how to resume.

Defaults come from the environment: `--nproc-per-node` from NPROC, else SLURM_GPUS_ON_NODE, else
the visible CUDA devices (CUDA_VISIBLE_DEVICES, else torch), else 1; `--nnodes` from NNODES, else SLURM_NNODES, else 1; `--config`
from ACCELERATE_CONFIG, else
ds_z2.yaml on GPUs when deepspeed imports, fsdp.yaml on GPUs without it (the FSDP fallback) and
ddp.yaml without GPUs; `--port` from MASTER_PORT, else 29500 + (SLURM_JOB_ID mod 1000);
`--master-addr` from SLURMD_NODENAME (the batch script runs on node 0), else 127.0.0.1.
Several nodes inside a slurm job become ONE `srun --ntasks-per-node=1` line whose task on each
node runs this launcher again with `--node-rank slurm` (its SLURM_NODEID). `--print` prints the
command(s) instead of running them.
"""
from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .distributed import EXPECTED_WORLD, deepspeed_problem
from .errors import UserError, exit_on_user_error

CONFIG_DIR = paths.REPO_ROOT / "util_public" / "training" / "config"
SLURM_RANK = "slurm"


@dataclass(frozen=True)
class Launch:
    nproc_per_node: int
    nnodes: int
    node_rank: str          # a number, or "slurm": SLURM_NODEID of the node the command runs on
    master_addr: str
    port: int
    config: str

    @property
    def world(self) -> int:
        return self.nproc_per_node * self.nnodes


def gpus_per_node() -> int:
    """As scripts/bashlib.sh's gpu_count: slurm's allocation, else CUDA_VISIBLE_DEVICES, else torch."""
    if os.environ.get("SLURM_GPUS_ON_NODE"):
        return int(os.environ["SLURM_GPUS_ON_NODE"])
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return 0 if visible.strip() in ("", "-1") else len(visible.split(","))
    import torch

    return torch.cuda.device_count()


def env_int(*names: str) -> int | None:
    """The first of these environment variables that is set, as an integer (None: none is set)."""
    for name in names:
        value = os.environ.get(name)
        if value:
            try:
                return int(value)
            except ValueError:
                raise UserError(name, f"{value!r} is not an integer", "unset it or set a whole number") from None
    return None


def ranks(nproc: int | None = None, nnodes: int | None = None) -> tuple[int, int]:
    """(ranks per node, nodes): the given values, else the environment's (module docstring). A
    0 is refused like any count below 1 (it once read as unset, and 1 ran)."""
    if nproc is None:         # a flag wins: the environment is read only without one
        nproc = env_int("NPROC")
    if nproc is None:
        nproc = max(gpus_per_node(), 1)
    if nnodes is None:
        nnodes = env_int("NNODES", "SLURM_NNODES")
    if nnodes is None:
        nnodes = 1
    if nproc < 1 or nnodes < 1:
        raise UserError("launcher", f"--nproc-per-node {nproc} and --nnodes {nnodes} must be at least 1")
    allocated = env_int("SLURM_NNODES")
    if allocated is not None and nnodes > allocated:
        raise UserError("--nnodes", f"{nnodes} nodes, but this slurm job has {allocated} (SLURM_NNODES)",
                        "ask sbatch for the nodes (--nodes), or launch on fewer")
    return nproc, nnodes



def default_config(gpus: int) -> str:
    """ddp.yaml without GPUs; on GPUs DeepSpeed ZeRO-2 (the original's default), or FSDP where
    deepspeed does not import (absent, or installed but broken)."""
    if gpus == 0:
        return "ddp.yaml"
    problem = deepspeed_problem()
    if problem is None:
        return "ds_z2.yaml"
    print(f"launcher: deepspeed does not import ({problem}): the FSDP fallback (fsdp.yaml)", file=sys.stderr)
    return "fsdp.yaml"



def check_config_runs(path: str) -> None:
    """A config selecting DeepSpeed needs deepspeed to import: accelerate fails on every rank with
    a traceback otherwise, before the ranks' own check can say so."""
    from omegaconf import OmegaConf

    if str(OmegaConf.load(path).get("distributed_type", "")).upper() != "DEEPSPEED":
        return
    problem = deepspeed_problem()
    if problem is not None:
        raise UserError("--config", f"{Path(path).name} selects DeepSpeed, but deepspeed does not import ({problem})",
                        "pip install deepspeed, or launch with --config fsdp.yaml (the FSDP fallback)")


def config_path(name: str) -> str:
    """A bare file name is one of ours (util_public/training/config/); a path is taken as it is, made
    absolute (`./my.yaml` became `my.yaml`, which each srun task then read as a bare name)."""
    path = Path(name).resolve() if "/" in name else CONFIG_DIR / name
    if not path.is_file():
        raise UserError("--config", f"{name}: no such accelerate config",
                        f"one of {sorted(p.name for p in CONFIG_DIR.glob('*.yaml'))}, or a path")
    return str(path)


def default_port() -> int:
    port = env_int("MASTER_PORT")
    if port is not None:
        return port
    job = os.environ.get("SLURM_JOB_ID", "")
    return 29500 + (int(job) % 1000 if job.isdigit() else 0)


def check_port(port: int) -> int:
    if not 1 <= port <= 65535:
        raise UserError("--port", f"{port} is not a TCP port (1..65535)", "set --port or MASTER_PORT to a free port")
    return port


def node_rank(launch: Launch) -> int:
    if launch.node_rank != SLURM_RANK:
        return int(launch.node_rank)
    if "SLURM_NODEID" not in os.environ:
        raise UserError("--node-rank", "slurm: SLURM_NODEID is not set (not inside an srun task)",
                        "give the node rank as a number")
    return int(os.environ["SLURM_NODEID"])


def accelerate_command(launch: Launch, rank: int, script: list[str]) -> list[str]:
    """The `accelerate launch` line of one node (`script`: the script and its arguments)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", launch.config,
           "--num_processes", str(launch.world)]
    if launch.nnodes > 1:
        cmd += ["--num_machines", str(launch.nnodes), "--machine_rank", str(rank),
                "--main_process_ip", launch.master_addr]
    return cmd + ["--main_process_port", str(launch.port), *script]


def srun_command(launch: Launch, script: list[str]) -> list[str]:
    """One task per node; each runs this launcher with its own SLURM_NODEID as the node rank."""
    return ["srun", f"--nodes={launch.nnodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1",
            sys.executable, "-m", "util_public.launcher", "--nproc-per-node", str(launch.nproc_per_node),
            "--nnodes", str(launch.nnodes), "--node-rank", SLURM_RANK, "--master-addr", launch.master_addr,
            "--port", str(launch.port), "--config", launch.config, *script]


def uses_srun(launch: Launch, explicit_rank: bool) -> bool:
    return launch.nnodes > 1 and not explicit_rank and bool(os.environ.get("SLURM_JOB_ID"))


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m util_public.launcher", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--print", action="store_true", help="print the command(s) instead of running them")
    parser.add_argument("--nproc-per-node", type=int, help="processes on each node")
    parser.add_argument("--nnodes", type=int, help="nodes (machines)")
    parser.add_argument("--node-rank", help="this node's rank, or 'slurm' (SLURM_NODEID)")
    parser.add_argument("--master-addr", help="host of node 0")
    parser.add_argument("--port", type=int, help="rendezvous port on node 0")
    parser.add_argument("--config", help="accelerate config: a file of util_public/training/config/ or a path")
    parser.add_argument("script", help="the script (training/train.py, evaluation/eval.py, ...)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the script's arguments")
    opts = parser.parse_args(argv)
    return opts, [opts.script, *opts.args]


def resolve(opts: argparse.Namespace) -> Launch:
    nproc, nnodes = ranks(opts.nproc_per_node, opts.nnodes)
    config = opts.config or os.environ.get("ACCELERATE_CONFIG") or default_config(gpus_per_node())
    addr = opts.master_addr or os.environ.get("SLURMD_NODENAME") or "127.0.0.1"
    return Launch(nproc, nnodes, opts.node_rank or os.environ.get("SLURM_NODEID", "0"), addr,
                  check_port(default_port() if opts.port is None else opts.port), config_path(config))


def main(argv: list[str] | None = None) -> int:
    opts, script = parse(sys.argv[1:] if argv is None else argv)
    launch = exit_on_user_error(lambda: resolve(opts))
    srun = uses_srun(launch, opts.node_rank is not None)
    command = srun_command(launch, script) if srun else \
        accelerate_command(launch, exit_on_user_error(lambda: node_rank(launch)), script)
    if opts.print:     # what runs: an accelerate line runs with the world size its ranks check
        world = f"{EXPECTED_WORLD}={launch.world} "
        print(shlex.join(command) if srun else world + shlex.join(command))
        for rank in range(launch.nnodes) if srun else []:
            print(f"# node {rank}: {world}{shlex.join(accelerate_command(launch, rank, script))}")
        return 0
    exit_on_user_error(lambda: check_config_runs(launch.config))    # where it runs (a plan may be made elsewhere)
    return run(command, {**os.environ, EXPECTED_WORLD: str(launch.world)}, script[0])


def run(cmd: list[str], env: dict, script: str) -> int:
    """Run the launch; SIGTERM (scancel, a time limit) is passed on, Ctrl-C reaches the ranks directly.
    A failure ends with one line saying what to do (torch.distributed's 'Root Cause' block above
    it names the rank that failed first)."""
    proc = subprocess.Popen(cmd, env=env)
    signal.signal(signal.SIGTERM, lambda sig, _frame: proc.send_signal(sig))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    code = proc.wait()
    if code != 0:
        print(f"error: launch: {script} stopped on at least one rank (exit code {code}; the 'Root Cause' "
              "above names the first rank that failed, an `error:` line what it refused); after a killed "
              "or crashed rank rerun the same command, after a refusal fix what it names: training resumes "
              "from the newest complete checkpoint, evaluation reuses finished results", file=sys.stderr)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    raise SystemExit(main())
