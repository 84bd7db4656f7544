"""Which floating-point format a run computes in: one rule for training, scoring and vLLM.

- `auto`: bf16 on a GPU that supports it, fp32 elsewhere (CPU results stay exact and comparable).
- `native`: bf16 wherever the hardware has bf16 arithmetic (such a GPU, or a CPU with AMX or
  AVX512_BF16), fp32 elsewhere. A CPU without those instructions emulates bf16: on a 2-core AMD
  EPYC with AVX2 only, a Qwen2.5-0.5B training step (batch 8) took 110-140 s in bf16 against ~4 s
  in fp32 (docs/PERFORMANCE.md). Recipes meant for any CPU ask for `native`.
- `bf16` / `fp32`: as asked; bf16 on a CPU that emulates it says so once per setting.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path

CHOICES = ("auto", "native", "fp32", "bf16")
BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
# The instruction sets that decide which kernels a CPU runs, and so the rounding of its results
# (bf16 training on AMX and on AVX512_BF16 gives different tables: docs/RESULTS.md §4).
KERNEL_FLAGS = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"})
_warned: set[str] = set()


@functools.cache
def _cpuinfo_field(names: tuple[str, ...], cpuinfo: str) -> str:
    """The first processor's value of the first of `names` that Linux reports ("" if none)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    for line in text.splitlines():
        if line.split(":")[0].strip() in names:
            return line.partition(":")[2].strip()
    return ""


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags Linux reports; empty where there is no /proc/cpuinfo (no bf16 assumed)."""
    return frozenset(_cpuinfo_field(("flags", "Features"), cpuinfo).split())


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The processor's name as Linux reports it ("" where it does not)."""
    return _cpuinfo_field(("model name", "Model"), cpuinfo)


def native_bf16(device: str) -> bool:
    """Does `device` ("cpu", "cuda", "cuda:1", ...) have bf16 arithmetic in hardware?"""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.startswith("cpu") and bool(cpu_flags() & BF16_CPU_FLAGS)


def choose(setting: str, device: str, key: str) -> str:
    """"bf16" or "fp32" for `auto` and `native` on `device`; any other name is returned as given
    (its validation stays with the caller). `key` names the setting in the one-time warning."""
    if setting == "auto":
        return "bf16" if device.startswith("cuda") and native_bf16(device) else "fp32"
    if setting == "native":
        return "bf16" if native_bf16(device) else "fp32"
    if setting in ("bf16", "bfloat16") and device.startswith("cpu") and not native_bf16(device) \
            and key not in _warned:
        _warned.add(key)
        print(f"warning: {key}={setting} on a CPU without bf16 instructions (no AMX or AVX512_BF16): "
              f"bf16 is emulated and much slower than fp32 here; {key}=native chooses fp32 on such CPUs "
              "and bf16 where it is fast", file=sys.stderr)
    return setting
