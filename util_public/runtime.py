"""CPU thread settings that survive contention (see PERF.md: OpenMP spin-waits collapse
2-thread runs when another process shares a core)."""
from __future__ import annotations

import os


def configure_threads(num_threads: int | None) -> int:
    """Set torch's intra-op threads: `num_threads`, or all cores when None/0."""
    import torch

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    n = num_threads or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n
