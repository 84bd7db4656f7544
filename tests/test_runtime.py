"""CPU runtime settings: freed memory stays in the process (the per-step page-fault fix)."""
from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from util_public import runtime

# Allocates and frees 256 MiB (above glibc's largest default mmap threshold, 32 MiB) and prints how
# much of it the process still holds afterwards, in MiB.
_PROBE = """
import sys
from util_public import runtime
if sys.argv[1] in ("keep", "release"):
    assert runtime.keep_freed_memory()
def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
before = rss_mib()
block = bytearray(256 * 2**20)      # zero-filled: every page is touched
del block
if sys.argv[1] == "release":
    assert runtime.release_freed_memory()
print(round(rss_mib() - before))
"""

glibc_linux = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                 reason="glibc's mallopt thresholds")


def _retained_mib(mode: str) -> int:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": "."}     # no MALLOC_* variables from the caller
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, env=env,
                         cwd=Path(__file__).resolve().parents[1], check=True)
    return int(out.stdout.split()[-1])


@glibc_linux
def test_freed_blocks_stay_in_the_process_only_when_asked():
    assert _retained_mib("default") < 16          # glibc unmaps a freed 256 MiB block at once
    assert _retained_mib("keep") >= 250           # kept for the next step's allocation
    assert _retained_mib("release") < 16          # given back: the benchmarks' RSS measurements start clean


def test_user_thresholds_win(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert runtime.keep_freed_memory() is False
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1:glibc.malloc.trim_threshold=131072")
    assert runtime.keep_freed_memory() is False


@glibc_linux
def test_other_malloc_settings_do_not_disable_it(monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert runtime.keep_freed_memory() is True


def test_configure_cpu_sets_the_thread_count(monkeypatch):
    """conftest already runs torch on 1 thread: only counts other than 1 show that it sets them."""
    import torch

    before = torch.get_num_threads()
    assert before == 1
    monkeypatch.setattr(runtime, "usable_cores", lambda: 6)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    try:
        assert runtime.configure_cpu(2) == 2 and torch.get_num_threads() == 2
        assert runtime.configure_cpu(None) == 6 and torch.get_num_threads() == 6       # every core
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")        # three ranks on this machine share its cores
        assert runtime.configure_cpu(None) == 2 and torch.get_num_threads() == 2
        assert runtime.configure_cpu(0) == 2
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")        # more ranks than cores: still one thread each
        assert runtime.configure_cpu(None) == 1 and torch.get_num_threads() == 1
        assert runtime.configure_cpu(3) == 3 and torch.get_num_threads() == 3          # an explicit count wins
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(platform.system() != "Linux", reason="taskset and sched_getaffinity are Linux's")
def test_the_usable_cores_follow_the_affinity():
    """`taskset -c 0` left one core, and configure_cpu still counted the machine's two."""
    code = "from util_public.runtime import usable_cores; print(usable_cores())"
    done = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"
