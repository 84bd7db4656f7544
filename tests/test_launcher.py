"""The launcher's commands (no process is started): configs, ports, machines, srun, errors."""
from __future__ import annotations

import shlex
import sys

import pytest
from conftest import REPO

from util_public import launcher
from util_public.recipes import execute

CONFIGS = REPO / "util_public" / "training" / "config"
SLURM = ("SLURM_JOB_ID", "SLURM_NNODES", "SLURM_NODEID", "SLURM_GPUS_ON_NODE", "SLURMD_NODENAME", "MASTER_PORT",
         "ACCELERATE_CONFIG", "NPROC", "NNODES")


@pytest.fixture(autouse=True)
def no_cluster(monkeypatch):
    for name in SLURM:
        monkeypatch.delenv(name, raising=False)


def printed(monkeypatch, capsys, env: dict, *args: str) -> list[list[str]]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert launcher.main(["--print", *args, "train.py", "a=1"]) == 0
    return [shlex.split(line.removeprefix("# node 0: ").removeprefix("# node 1: "))
            for line in capsys.readouterr().out.splitlines()]


def accelerate(config: str, world: int, port: int, machines: tuple | None = None) -> list[str]:
    cmd = [f"MTG_EXPECTED_WORLD_SIZE={world}", sys.executable, "-m", "accelerate.commands.launch",
           "--config_file", str(CONFIGS / config), "--num_processes", str(world)]
    if machines:
        count, rank, addr = machines
        cmd += ["--num_machines", str(count), "--machine_rank", str(rank), "--main_process_ip", addr]
    return cmd + ["--main_process_port", str(port), "train.py", "a=1"]


CASES = [   # (environment, launcher flags, expected command lines)
    ({}, ["--nproc-per-node", "2", "--config", "ddp.yaml"], [accelerate("ddp.yaml", 2, 29500)]),
    ({"NPROC": "2", "CUDA_VISIBLE_DEVICES": ""}, [], [accelerate("ddp.yaml", 2, 29500)]),
    ({"SLURM_JOB_ID": "123456", "SLURM_GPUS_ON_NODE": "4", "ACCELERATE_CONFIG": "ds_z3.yaml"}, [],
     [accelerate("ds_z3.yaml", 4, 29956)]),
    ({"SLURM_JOB_ID": "123456", "MASTER_PORT": "30001"}, ["--nproc-per-node", "2", "--config", "ddp.yaml"],
     [accelerate("ddp.yaml", 2, 30001)]),
    ({}, ["--nproc-per-node", "1", "--nnodes", "2", "--node-rank", "1", "--master-addr", "10.0.0.1", "--port", "29600",
          "--config", "ddp.yaml"], [accelerate("ddp.yaml", 2, 29600, (2, 1, "10.0.0.1"))]),
    ({"SLURM_JOB_ID": "7", "SLURM_NNODES": "2", "SLURM_NODEID": "0", "SLURM_GPUS_ON_NODE": "4",
      "SLURMD_NODENAME": "gpu-a01", "ACCELERATE_CONFIG": "fsdp.yaml"}, [],
     [["srun", "--nodes=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1", sys.executable, "-m", "util_public.launcher",
       "--nproc-per-node", "4", "--nnodes", "2", "--node-rank", "slurm", "--master-addr", "gpu-a01", "--port", "29507",
       "--config", str(CONFIGS / "fsdp.yaml"), "train.py", "a=1"],
      accelerate("fsdp.yaml", 8, 29507, (2, 0, "gpu-a01")), accelerate("fsdp.yaml", 8, 29507, (2, 1, "gpu-a01"))]),
    ({"SLURM_JOB_ID": "7", "SLURM_NODEID": "1"}, ["--nproc-per-node", "4", "--nnodes", "2", "--node-rank", "slurm",
                                                  "--master-addr", "gpu-a01", "--port", "29507", "--config", "fsdp.yaml"],
     [accelerate("fsdp.yaml", 8, 29507, (2, 1, "gpu-a01"))]),
]


@pytest.mark.parametrize("env,flags,expected", CASES, ids=["flags", "nproc-env", "slurm-1-node", "master-port",
                                                            "second-machine", "slurm-2-nodes", "srun-task"])
def test_launch_commands(env, flags, expected, monkeypatch, capsys):
    assert printed(monkeypatch, capsys, env, *flags) == expected


def test_a_config_given_as_a_relative_path_reaches_every_node(monkeypatch, capsys, tmp_path):
    """`--config ./my.yaml` went into the srun line as `my.yaml`, a bare name each node then refused."""
    (tmp_path / "my.yaml").write_text((CONFIGS / "ddp.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    srun, *_ = printed(monkeypatch, capsys, {"SLURM_JOB_ID": "7", "SLURM_NNODES": "2", "SLURM_NODEID": "0",
                                             "SLURM_GPUS_ON_NODE": "2", "SLURMD_NODENAME": "n0"}, "--config", "./my.yaml")
    config = srun[srun.index("--config") + 1]
    assert config == str(tmp_path / "my.yaml") and launcher.config_path(config) == config


@pytest.mark.parametrize("gpus,deepspeed,config", [(0, True, "ddp.yaml"), (2, True, "ds_z2.yaml"),
                                                   (2, False, "fsdp.yaml")])
def test_default_config_follows_the_device_and_falls_back_to_fsdp(gpus, deepspeed, config, monkeypatch, capsys):
    monkeypatch.setattr(launcher, "deepspeed_problem", lambda: None if deepspeed else "ImportError: broken build")
    assert launcher.default_config(gpus) == config
    fallback = "launcher: deepspeed does not import (ImportError: broken build): the FSDP fallback (fsdp.yaml)"
    assert (fallback in capsys.readouterr().err) == (config == "fsdp.yaml")


@pytest.mark.parametrize("env,flags,message", [
    ({}, ["--config", "zero9.yaml", "--nproc-per-node", "2"], "error: --config: zero9.yaml: no such accelerate config"),
    ({}, ["--node-rank", "slurm", "--nproc-per-node", "2", "--config", "ddp.yaml"],
     "error: --node-rank: slurm: SLURM_NODEID is not set"),
    ({"NPROC": "-1"}, ["--config", "ddp.yaml"], "must be at least 1"),
    ({"NPROC": "abc"}, ["--config", "ddp.yaml"], "error: NPROC: 'abc' is not an integer"),     # were ValueErrors
    ({"NNODES": "2x"}, ["--config", "ddp.yaml", "--nproc-per-node", "2"], "error: NNODES: '2x' is not an integer"),
    ({"MASTER_PORT": "p"}, ["--config", "ddp.yaml", "--nproc-per-node", "2"], "error: MASTER_PORT: 'p' is not an"),
    # a 0 read as unset (1 ran), ports out of range reached accelerate's OverflowError, and more nodes
    # than slurm allocated were planned
    ({"NPROC": "0"}, ["--config", "ddp.yaml"], "--nproc-per-node 0 and --nnodes 1 must be at least 1"),
    ({}, ["--config", "ddp.yaml", "--nproc-per-node", "0"], "--nproc-per-node 0 and --nnodes 1 must be at least 1"),
    ({}, ["--config", "ddp.yaml", "--nnodes", "0"], "must be at least 1"),
    ({}, ["--config", "ddp.yaml", "--port", "0"], "error: --port: 0 is not a TCP port (1..65535)"),
    ({"MASTER_PORT": "99999"}, ["--config", "ddp.yaml"], "error: --port: 99999 is not a TCP port"),
    ({"SLURM_JOB_ID": "7", "SLURM_NNODES": "2"}, ["--config", "ddp.yaml", "--nnodes", "3"],
     "error: --nnodes: 3 nodes, but this slurm job has 2 (SLURM_NNODES)"),
])
def test_launcher_errors_exit_2(env, flags, message, monkeypatch, capsys):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as done:
        launcher.main(["--print", *flags, "train.py"])
    assert done.value.code == 2 and message in capsys.readouterr().err


def test_a_flag_wins_over_a_bad_environment_value(monkeypatch, capsys):
    monkeypatch.setenv("NPROC", "abc")
    monkeypatch.setenv("MASTER_PORT", "p")
    assert printed(monkeypatch, capsys, {}, "--nproc-per-node", "2", "--port", "29601", "--config", "ddp.yaml") == [
        accelerate("ddp.yaml", 2, 29601)]


def test_a_deepspeed_config_without_deepspeed_stops_before_any_rank_starts(monkeypatch, capsys):
    """accelerate failed with an ImportError traceback on every rank, then the launcher said
    "rerun": no rank had started. `--print` still shows the plan (it may run where deepspeed is)."""
    monkeypatch.setattr(launcher.subprocess, "Popen", lambda *a, **kw: pytest.fail("a rank was started"))
    with pytest.raises(SystemExit) as done:
        launcher.main(["--config", "ds_z2.yaml", "--nproc-per-node", "2", "train.py"])
    assert done.value.code == 2 and capsys.readouterr().err.startswith(
        "error: --config: ds_z2.yaml selects DeepSpeed, but deepspeed does not import (ModuleNotFoundError")
    assert launcher.main(["--print", "--config", "ds_z2.yaml", "--nproc-per-node", "2", "train.py"]) == 0


def test_recipe_stages_use_the_launcher_from_two_ranks(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert execute.launch_command("phase1", ["a=1"]) is None
    monkeypatch.setenv("NPROC", "2")
    assert execute.launch_command("phase1", ["a=1"]) == [
        sys.executable, "-m", "util_public.launcher", "--nproc-per-node", "2", "--nnodes", "1",
        str(REPO / "training" / "train.py"), "--config-name", "phase1", "a=1"]
