"""The processes of a launch, seen from inside one of them: how many started, which one this is,
and whether the launch delivered what was asked for.

Our launch paths (`python -m util_public.launcher`, hence the pipeline and the recipes) export
`MTG_EXPECTED_WORLD_SIZE`; every entry point that may run on several ranks calls `check_started()`
before it reads or writes anything, so a launcher that starts fewer processes than asked stops the
job with an error instead of training (or evaluating) with the wrong world. Measured: `accelerate
launch --cpu --num_processes 2` starts ONE process (training/README.md, "Several processes").
"""
from __future__ import annotations

import os
import sys

from .errors import UserError

EXPECTED_WORLD = "MTG_EXPECTED_WORLD_SIZE"
LAUNCH_HINT = ("launch with `python -m util_public.launcher --nproc-per-node N SCRIPT ...` (accelerate launch "
               "with util_public/training/config/ddp.yaml), or `torchrun --nproc_per_node N SCRIPT ...`")
CPU_HINT = "on a CPU-only machine launch with util_public/training/config/ddp.yaml (DDP over gloo)"


def world() -> tuple[int, int]:
    """(world size, rank) of this process, as set by the launcher (1, 0 without one)."""
    return int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return world()[1] == 0


def check_started() -> None:
    """Refuse a world that is not the one the launch asked for; warn where accelerate's simple
    launcher was asked for several processes and started one (`accelerate launch --num_processes 2`
    with `--cpu`, or without CUDA: with CUDA it starts the ranks)."""
    size, _ = world()
    expected = os.environ.get(EXPECTED_WORLD)
    if expected and int(expected) != size:
        raise UserError("launch", f"{expected} processes were asked for, but this process runs in a world of "
                        f"{size} (WORLD_SIZE={os.environ.get('WORLD_SIZE', 'unset')})", LAUNCH_HINT)
    if size == 1 and "RANK" not in os.environ and _simple_launcher_asked_for_several():
        print("warning: launch: `accelerate launch` was asked for several processes (it set MASTER_ADDR) but "
              f"started a single one (RANK and WORLD_SIZE unset); this process runs alone. For several ranks, "
              f"{LAUNCH_HINT}", file=sys.stderr)


def join(timeout_s: int, key: str):
    """Form the process group (accelerate's PartialState: gloo on a CPU, NCCL on GPUs) and return
    the state. Each rank waits here for all the others, at most `timeout_s`, which then bounds every
    later collective too. We form it before the Trainer does because the Trainer hands its
    `ddp_timeout` to accelerate only on GPUs: on a CPU its ranks waited torch's default 30 min. A
    rank that never comes (its machine was not started, or it refused its own arguments or missed a
    file there) ends the wait with one line instead of torch's traceback."""
    import datetime

    import torch
    from accelerate import PartialState
    from torch.distributed import DistError

    try:
        return PartialState(cpu=not torch.cuda.is_available(), timeout=datetime.timedelta(seconds=timeout_s))
    except DistError as exc:
        size, rank = world()
        raise UserError("launch", f"rank {rank} of {size} waited {timeout_s:g} s for the other ranks to join the "
                        f"process group, and not all came ({_one_line(exc)})",
                        "a rank that refused says why in its own `error:` line (on several machines: in that "
                        "machine's output); start every machine with the same arguments and files; "
                        f"{key} sets how long to wait") from None


def _simple_launcher_asked_for_several() -> bool:
    """accelerate's simple launcher sets ACCELERATE_USE_CPU on every launch, and MASTER_ADDR
    (127.0.0.1 unless --main_process_ip) only for more than one process; it is the launcher of
    several processes only without CUDA or with --cpu. (A MASTER_ADDR of a cluster's environment
    names its head node, not 127.0.0.1.)"""
    if "ACCELERATE_USE_CPU" not in os.environ or os.environ.get("MASTER_ADDR") != "127.0.0.1":
        return False
    if os.environ["ACCELERATE_USE_CPU"].lower() == "true":
        return True
    import torch

    return not torch.cuda.is_available()


def deepspeed_problem() -> str | None:
    """Why `import deepspeed` fails (None: it imports)."""
    try:
        import deepspeed  # noqa: F401
    except Exception as exc:       # ImportError, or whatever a broken build raises while importing
        return _one_line(exc)
    return None


def _one_line(exc: BaseException) -> str:
    """`Type: first line of the message` (the type alone for an empty message)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def check_sharding_mode() -> None:
    """An accelerate config that selects DeepSpeed or FSDP must be able to run as asked.

    On a machine without CUDA the HF Trainer gives accelerate `cpu=True`, and accelerate 1.x then
    runs MULTI_CPU (gloo DDP): it promotes a launch to FSDP or DeepSpeed only for a GPU-type
    device, so the FSDP plugin and the DeepSpeed config would be dropped without a word (probed:
    `Trainer(fsdp=...)` under 2 CPU ranks wraps the model in DistributedDataParallel).
    """
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if deepspeed:
        problem = deepspeed_problem()
        if problem is not None:
            raise UserError("accelerate config", f"selects DeepSpeed, but deepspeed does not import ({problem})",
                            "pip install deepspeed, or launch with util_public/training/config/fsdp.yaml "
                            "(the FSDP fallback)")
    if not (deepspeed or fsdp):
        return
    import torch

    if not torch.cuda.is_available():
        mode = "DeepSpeed" if deepspeed else "FSDP"
        raise UserError("accelerate config", f"selects {mode}, which accelerate applies only on GPUs; on this "
                        "machine without CUDA every rank would silently train plain DDP instead "
                        "(training/README.md, 'Several processes')", CPU_HINT)
