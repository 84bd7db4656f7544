"""CPU settings for training and scoring processes.

Threads: OpenMP spin-waits collapse 2-thread runs when another process shares a core (docs/PERFORMANCE.md);
`OMP_WAIT_POLICY=PASSIVE` must be in the environment before torch loads OpenMP, so the package
`util_public/__init__.py` sets it; here only the thread count is chosen.

Allocator: every training step frees and re-allocates the same large buffers (fp32 gradients,
the bf16 weight copies autocast makes, activations). glibc serves blocks above its mmap threshold
(at most 32 MiB by default) with fresh mmaps and trims freed heap tops, so each step faults in
gigabytes of newly zeroed pages: on 2 cores a Qwen2.5-0.5B step spent ~3 of its ~4.8 s in the
kernel. Raising both thresholds keeps freed memory in the process for the next step (2.4 s,
no system time). The price is fragmentation: blocks freed but not reusable for a later size stay
resident, so the peak RSS can be higher (the demo's Phase 1: 12.3 instead of 10.5 GB).
`MALLOC_TRIM_THRESHOLD_=131072` (glibc's default) in the environment turns this off.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_KEEP = 2**31 - 1       # the largest value mallopt accepts (an int)


def configure_cpu(num_threads: int | None) -> int:
    """Keep freed memory for reuse and set torch's intra-op threads (`num_threads`, or when None/0
    the cores shared among this machine's ranks, LOCAL_WORLD_SIZE); returns the thread count."""
    import torch

    keep_freed_memory()
    n = num_threads or max(1, usable_cores() // int(os.environ.get("LOCAL_WORLD_SIZE") or 1))
    torch.set_num_threads(n)
    return n


def usable_cores() -> int:
    """The cores this process may run on (taskset, cgroup cpusets, a slurm binding), which may be
    fewer than the machine's `os.cpu_count()`."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):   # not Linux
        return os.cpu_count() or 1


def keep_freed_memory() -> bool:
    """Raise glibc's trim and mmap thresholds; False where libc is not glibc or the user set
    either threshold in the environment (their setting wins)."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if any(name in tunables for name in ("trim_threshold", "mmap_threshold")) or any(
            name in os.environ for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")):
        return False
    mallopt = _glibc("mallopt")
    return bool(mallopt and mallopt(_M_TRIM_THRESHOLD, _KEEP) and mallopt(_M_MMAP_THRESHOLD, _KEEP))


def release_freed_memory() -> bool:
    """Return the memory glibc keeps for reuse to the system (`malloc_trim`), so that a resident-set
    measurement that follows starts from what is in use; False where libc is not glibc."""
    trim = _glibc("malloc_trim")
    if trim is None:
        return False
    trim(0)
    return True


def _glibc(function: str):
    """A function of the C library, or None (no libc found, or one without it, as on macOS)."""
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c")), function)
    except (OSError, AttributeError, TypeError):
        return None
