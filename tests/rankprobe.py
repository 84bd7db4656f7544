"""Runs an entry point as one rank of a multi-process launch and records what this rank did.

    python -m util_public.launcher ... tests/rankprobe.py OUT_DIR SCRIPT [SCRIPT ARGS...]

Records, in OUT_DIR/rank{RANK}.json (outside every project root): each filesystem write this
process made through Python (audit events: opening for writing, mkdir, rename/replace, remove,
rmdir, rmtree) or through the two native writers (`torch.save`, safetensors' `save_file`), and the
rows of input ids every training forward saw, the number of model forwards (any mode), and the
world size this rank joined with the one its launcher asked for. With PROBE_KILL_RANK=r and
PROBE_KILL_AT_STEP=n, rank r kills itself with SIGKILL at its n-th training step.
"""
from __future__ import annotations

import atexit
import json
import os
import runpy
import signal
import sys
from pathlib import Path

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
PATH_EVENTS = {"os.mkdir": 0, "os.rename": 1, "os.replace": 1, "os.remove": 0, "os.rmdir": 0, "shutil.rmtree": 0,
               "os.truncate": 0}
rank = int(os.environ.get("RANK", "0"))
out_dir = Path(sys.argv[1])
writes: list[list[str]] = []
rows: list[list[int]] = []
forwards = [0]


def audit(event: str, args: tuple) -> None:
    if event == "open":
        path, mode, flags = args
        writing = any(c in (mode or "") for c in "wax+") if mode else bool((flags or 0) & WRITE_FLAGS)
        if writing and isinstance(path, (str, os.PathLike)):
            writes.append([event, os.path.abspath(os.fspath(path))])
    elif event in PATH_EVENTS and isinstance(args[PATH_EVENTS[event]], (str, os.PathLike)):
        writes.append([event, os.path.abspath(os.fspath(args[PATH_EVENTS[event]]))])


def save() -> None:
    record = {"writes": writes, "rows": rows, "forwards": forwards[0], "world": os.environ.get("WORLD_SIZE"),
              "expected_world": os.environ.get("MTG_EXPECTED_WORLD_SIZE")}
    (out_dir / f"rank{rank}.json").write_text(json.dumps(record))


def record_native_writes() -> None:
    import safetensors.torch
    import torch

    def recording(name, original, at):
        def wrapper(*args, **kwargs):
            target = args[at] if len(args) > at else kwargs.get("f", kwargs.get("filename"))
            if isinstance(target, (str, os.PathLike)):
                writes.append([name, os.path.abspath(os.fspath(target))])
            return original(*args, **kwargs)
        return wrapper

    torch.save = recording("torch.save", torch.save, 1)
    safetensors.torch.save_file = recording("save_file", safetensors.torch.save_file, 1)


def record_forward_rows() -> None:
    from transformers import LlamaForCausalLM

    original = LlamaForCausalLM.forward

    def forward(self, *args, **kwargs):
        forwards[0] += 1
        if self.training and kwargs.get("input_ids") is not None:
            mask = kwargs["attention_mask"].bool()
            rows.extend(ids[m].tolist() for ids, m in zip(kwargs["input_ids"], mask))
        return original(self, *args, **kwargs)

    LlamaForCausalLM.forward = forward


def kill_at_step() -> None:
    if str(rank) != os.environ.get("PROBE_KILL_RANK"):
        return
    from transformers import Trainer

    at, calls, original = int(os.environ["PROBE_KILL_AT_STEP"]), [0], Trainer.training_step

    def training_step(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == at:
            save()
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, *args, **kwargs)

    Trainer.training_step = training_step


if __name__ == "__main__":
    out_dir.mkdir(parents=True, exist_ok=True)
    atexit.register(save)
    record_native_writes()
    record_forward_rows()
    kill_at_step()
    sys.addaudithook(audit)
    script = sys.argv[2]
    sys.argv = sys.argv[2:]
    runpy.run_path(script, run_name="__main__")
