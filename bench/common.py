"""Shared pieces of the benchmarks: model shapes, random-weight models, machine facts, JSON records.

Benchmarks build models from configs in the real shapes with random weights: throughput depends
on shapes, not on trained values, and no checkpoint has to be downloaded.
"""
from __future__ import annotations

import os
import platform
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import util_public  # noqa: E402,F401  (sets OMP_WAIT_POLICY before torch loads)
from util_public import atomicio, runinfo, runtime  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
H100_BF16_PEAK = 989e12      # dense bf16 FLOP/s of an H100/H200 (NVIDIA's datasheet)

# Architectural fields of the published configs; everything else keeps the config class defaults.
SHAPES = {
    "tiny": dict(model_type="llama", hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, vocab_size=4096, tie_word_embeddings=True),
    "smollm2-135m": dict(model_type="llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                         tie_word_embeddings=True, rope_theta=100000.0),
    "qwen2.5-0.5b": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                         tie_word_embeddings=True, rope_theta=1000000.0),
    "qwen2.5-1.5b": dict(model_type="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
                         tie_word_embeddings=True, rope_theta=1000000.0),
    "llama-3.1-8b": dict(model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                         tie_word_embeddings=False, rope_theta=500000.0),
}


def add_common_args(parser, random_model: bool = True,
                    out_help: str = "JSON record path (default bench/results/<name>-<time>.json)") -> None:
    """--device, --threads, --out, and for a script that builds a random-weight model --shape, --seed."""
    if random_model:
        parser.add_argument("--shape", default="tiny", choices=sorted(SHAPES))
        parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="CPU intra-op threads (1 under contention)")
    parser.add_argument("--out", default=None, help=out_help)


def setup_device(args):
    import torch

    from util_public.runtime import configure_cpu

    configure_cpu(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda: no CUDA device visible")
    return torch.device(args.device)


def build_model(shape: str, device, dtype, seed: int):
    """A random-weight causal LM in `shape`, created directly on `device` in `dtype`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = dict(SHAPES[shape])
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    config.pad_token_id = 0
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model


def matmul_params(model) -> int:
    """N of 6·N·tokens: weights of every Linear, the LM head included even when tied (its matmul
    runs either way); embedding lookups excluded."""
    import torch

    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def machine(device) -> dict:
    """runinfo.machine() (processor, kernel-picking instruction sets, threads, GPUs) plus what only
    a benchmark's speed depends on: allocator and OpenMP settings, GPU memory."""
    import torch

    info = {**runinfo.machine(), "platform": platform.platform(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            # None of these set: freed memory was kept (`runtime.keep_freed_memory`); set: glibc's own.
            "malloc_env": {k: os.environ[k] for k in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_",
                                                      "GLIBC_TUNABLES") if k in os.environ},
            "versions": runinfo.package_versions(),
            "git": runinfo.git_info()}
    if str(device).startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1)}
    return info


def describe(info: dict) -> str:
    """The lines a benchmark prints about where it ran."""
    return (f"machine: {runinfo.describe_machine(info)}\n"
            f"versions: torch {info['versions'].get('torch')}, transformers {info['versions'].get('transformers')}")


def sync(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


class PeakMemory:
    """Peak memory of a block. CUDA: `max_memory_allocated` (total, weights included) and its rise
    over the start. CPU: resident set size sampled every 2 ms in a thread (rise over the start),
    after returning the memory the allocator kept to the system: `configure_cpu` keeps freed memory
    for reuse, so a block after a warm-up call showed no rise at all."""

    def __init__(self, device):
        self.cuda = str(device).startswith("cuda")
        self.start = self.peak = 0
        self._stop = threading.Event()

    def __enter__(self):
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            runtime.release_freed_memory()
            self.start = self.peak = _rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss())

    def record(self) -> dict:
        kind = "cuda_max_allocated" if self.cuda else "rss_sampled"
        return {"memory_kind": kind, "peak_gib": round(self.peak / 2**30, 3),
                "peak_rise_gib": round((self.peak - self.start) / 2**30, 3)}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def write_record(name: str, record: dict, out: str | None) -> Path:
    """Atomically write the JSON record under bench/results/ (or `out`) and say where."""
    path = Path(out) if out else RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    atomicio.write_json(path, record)
    print(f"record: {path}")
    return path


def table(rows: list[dict], columns: list[str]) -> str:
    """A plain fixed-width table of `rows` (dicts) for the console."""
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


class Profile:
    """`torch.profiler` around a block; `table()` lists the ops taking the most self time on the
    device (CUDA) or the CPU: where a step's time goes, without a trace viewer."""

    def __init__(self, device, enabled: bool = True):
        self.cuda, self.enabled, self.prof = str(device).startswith("cuda"), enabled, None

    def start(self) -> None:
        from torch.profiler import ProfilerActivity, profile

        if self.enabled:
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
            self.prof = profile(activities=activities)
            self.prof.__enter__()

    def stop(self) -> None:
        if self.prof is not None:
            sync("cuda" if self.cuda else "cpu")
            self.prof.__exit__(None, None, None)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def table(self, rows: int = 15) -> str:
        if self.prof is None:
            return ""
        key = "self_device_time_total" if self.cuda else "self_cpu_time_total"
        return self.prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=60)
