"""What a run records about its world: package versions, the machine, git state, input fingerprints."""
from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Iterable

from . import numerics, paths
from .paths import REPO_ROOT

_PACKAGES = ("torch", "transformers", "tokenizers", "accelerate", "datasets", "hydra-core",
             "pandas", "numpy", "safetensors", "deepspeed", "vllm", "openai")


def package_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    try:
        import torch

        versions["cuda"] = torch.version.cuda
    except Exception:  # noqa: BLE001 - versions are informational
        versions["cuda"] = None
    return versions


def machine() -> dict:
    """The hardware a number was computed on. Scores and trained weights depend on it (bf16
    rounds differently on AMX, AVX512_BF16 and AVX2 CPUs; thread counts change reduction
    order), so every run invocation and every result records it beside the versions."""
    info = {"arch": platform.machine(), "processor": numerics.cpu_model() or platform.processor() or None,
            "isa": sorted(numerics.cpu_flags() & numerics.KERNEL_FLAGS), "logical_cpus": os.cpu_count()}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - informational, like the versions
        info["torch_threads"], info["gpus"] = None, []
    return info


def describe_machine(info: dict) -> str:
    """One line for a table: "Intel(R) Xeon(R) Processor (amx_bf16, ..., avx512f), 2 threads[, GPUs: ...]"."""
    line = info.get("processor") or info.get("arch") or "unknown processor"
    line += f" ({', '.join(info['isa'])})" if info.get("isa") else ""
    threads = info.get("torch_threads")
    line += f", {threads} thread{'s' * (threads != 1)}" if threads else ""
    return line + (f", GPUs: {', '.join(info['gpus'])}" if info.get("gpus") else "")


def git_info(registry: str | None = None) -> dict | str:
    """Commit and dirty flag of the checkout, or "unknown" outside git. The model registry
    (`registry`, else MTG_MODELS_JSON, else the tracked models.json) is left out of the dirty flag:
    every registered checkpoint changes it, and it says nothing about the code."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                              check=True, timeout=20).stdout.strip()
    try:
        return {"commit": git("rev-parse", "HEAD"),
                "dirty": bool(git("status", "--porcelain", "--", ".", *_exclude(paths.root("registry", registry))))}
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _exclude(path: Path) -> list[str]:
    """A git pathspec leaving `path` out; none for a path outside the checkout (git refuses those)."""
    try:
        inside = Path(os.path.realpath(path)).relative_to(Path(os.path.realpath(REPO_ROOT)))
    except ValueError:
        return []
    return [f":(exclude){inside}"]


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# The JSON separators a hash was first computed with. Runs are resumed and results reused by
# hash, and result directories are named by it, so each stage keeps the form it started with.
COMPACT = (",", ":")       # training's run config hash
SPACED = (", ", ": ")      # evaluation's result hash (json.dumps' default)


def config_hash(payload: dict, separators: tuple[str, str] = COMPACT) -> str:
    """sha256 of the canonical JSON (sorted keys, UTF-8 text) of everything that affects an output."""
    return sha256_text(json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=separators))


def fingerprint(paths: Iterable[str | Path]) -> dict:
    """sha256 of every input file plus one combined hash over (name, hash) pairs.

    Names are relative to the repository when possible so moving the data root keeps the hash
    of identical content identical only when the layout is the same; the combined hash uses
    file names without directories for that reason.
    """
    files = {file_key(p): sha256_file(p) for p in sorted({Path(p).resolve() for p in paths})}
    return {"files": files, "combined": combined(files)}


def file_key(path: str | Path) -> str:
    """A file's name in a fingerprint: repository-relative when inside the checkout."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(REPO_ROOT))
    except ValueError:
        return str(p)


def combined(files: dict[str, str]) -> str:
    """The combined hash of {file key: sha256} pairs (by file name, not directory)."""
    digest = hashlib.sha256()
    for key in sorted(files, key=lambda k: (Path(k).name, files[k])):
        digest.update(f"{Path(key).name}\0{files[key]}\n".encode())
    return digest.hexdigest()
