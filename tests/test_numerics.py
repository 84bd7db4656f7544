"""One precision rule (util_public/numerics.py) for training, scoring and vLLM: `native` is bf16
only where the hardware computes bf16, and an explicit bf16 on a CPU that emulates it warns."""
from __future__ import annotations

import pytest
import torch

from util_public import modelio, numerics, vllm_server
from util_public.errors import UserError
from util_public.training import hfargs

X86_BF16 = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n"
X86_AMX = "flags\t\t: fpu avx2 amx_tile amx_bf16\n"
X86_AVX2 = "flags\t\t: fpu sse avx avx2 fma\n"
ARM = "Features\t: fp asimd bf16 i8mm\n"        # ARM's bf16 is not one we take as fast


@pytest.mark.parametrize("text, expected", [
    (X86_BF16, {"fpu", "sse", "avx2", "avx512f", "avx512_bf16"}),
    (X86_AMX, {"fpu", "avx2", "amx_tile", "amx_bf16"}),
    (X86_AVX2, {"fpu", "sse", "avx", "avx2", "fma"}),
    (ARM, {"fp", "asimd", "bf16", "i8mm"}),
    ("processor\t: 0\n", set()),
    (None, set()),                                  # no /proc/cpuinfo (macOS, Windows)
])
def test_cpu_flags_parse_linux_cpuinfo(tmp_path, text, expected):
    path = tmp_path / "cpuinfo"
    if text is not None:
        path.write_text(text)
    assert numerics.cpu_flags(str(path)) == frozenset(expected)


@pytest.fixture
def cpu_with(monkeypatch):
    """Pretend this CPU has the flags of one of the cpuinfo texts above; forget earlier warnings."""
    def pretend(text: str, tmp: str):
        import pathlib
        path = pathlib.Path(tmp) / "cpuinfo"
        path.write_text(text)
        flags = numerics.cpu_flags(str(path))
        monkeypatch.setattr(numerics, "cpu_flags", lambda: flags)
        monkeypatch.setattr(numerics, "_warned", set())
    return pretend


@pytest.mark.parametrize("setting, cpu, device, expected", [
    ("native", X86_BF16, "cpu", "bf16"),
    ("native", X86_AMX, "cpu", "bf16"),
    ("native", X86_AVX2, "cpu", "fp32"),
    ("native", ARM, "cpu", "fp32"),
    ("native", X86_BF16, "mps", "fp32"),
    ("auto", X86_BF16, "cpu", "fp32"),              # auto keeps CPU runs exact whatever the CPU
    ("auto", X86_AVX2, "cpu", "fp32"),
    ("bf16", X86_AVX2, "cpu", "bf16"),              # asked for: done (with a warning, below)
    ("fp32", X86_BF16, "cpu", "fp32"),
    ("fp16", X86_BF16, "cpu", "fp16"),              # other names pass through to their caller
])
def test_choose_resolves_auto_and_native_by_hardware(cpu_with, tmp_path, setting, cpu, device, expected):
    cpu_with(cpu, tmp_path)
    assert numerics.choose(setting, device, "train.precision") == expected


def test_native_on_a_machine_without_a_gpu_is_fp32_for_cuda(cpu_with, tmp_path, monkeypatch):
    cpu_with(X86_BF16, tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert numerics.choose("native", "cuda", "model.dtype") == "fp32"
    assert numerics.choose("auto", "cuda:0", "model.dtype") == "fp32"


@pytest.mark.parametrize("cpu, warns", [(X86_AVX2, True), (ARM, True), (X86_BF16, False), (X86_AMX, False)])
def test_bf16_on_a_cpu_that_emulates_it_warns_once_per_setting(cpu_with, tmp_path, capsys, cpu, warns):
    cpu_with(cpu, tmp_path)
    for _ in range(3):
        numerics.choose("bf16", "cpu", "train.precision")
    numerics.choose("bfloat16", "cpu", "model.dtype")
    numerics.choose("native", "cpu", "model.dtype")
    err = capsys.readouterr().err
    if warns:
        assert err.count("warning:") == 2
        assert "train.precision=bf16 on a CPU without bf16 instructions" in err
        assert "model.dtype=bfloat16" in err and "train.precision=native chooses fp32" in err
    else:
        assert err == ""


@pytest.mark.parametrize("cpu, dtype", [(X86_BF16, torch.bfloat16), (X86_AMX, torch.bfloat16),
                                        (X86_AVX2, torch.float32)])
def test_every_consumer_follows_the_one_rule(cpu_with, tmp_path, monkeypatch, cpu, dtype):
    cpu_with(cpu, tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert modelio.torch_dtype("native", "cpu") is dtype                      # backend=hf, represent.py
    assert hfargs.use_bf16("native") is (dtype is torch.bfloat16)             # training
    assert vllm_server.engine_dtype("native", cpu=True) == str(dtype).removeprefix("torch.")
    assert vllm_server.engine_dtype("native", cpu=False) == "bfloat16"
    assert modelio.torch_dtype("auto", "cpu") is torch.float32
    assert hfargs.use_bf16("auto") is False and vllm_server.engine_dtype("auto", cpu=True) == "float32"


@pytest.mark.parametrize("dtype,recorded", [("auto", None), ("native", None), ("fp32", "float32"),
                                            ("bf16", "bfloat16")])
def test_an_external_vllm_server_s_format_is_named_not_guessed(dtype, recorded):
    from util_public.evaluation import backends
    from util_public.evaluation.schema import config

    cfg = config(["backend=vllm", "vllm.base_url=http://127.0.0.1:9/v1", f"model.dtype={dtype}"])
    if recorded is None:       # the result hash would say "auto" whatever --dtype the server runs
        with pytest.raises(UserError, match="server's --dtype"):
            backends.resolved_dtype("vllm", cfg)
    else:
        assert backends.resolved_dtype("vllm", cfg) == recorded


def test_unknown_dtype_names_the_choices():
    with pytest.raises(UserError, match="use auto, native, fp32, bf16 or fp16"):
        modelio.torch_dtype("fp8", "cpu")
    with pytest.raises(UserError, match="'fp8' is not one of .*native"):
        vllm_server.engine_dtype("fp8", cpu=True)


XEON = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile amx_bf16\n"
EPYC = "processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu sse avx avx2 fma\n"
ARM_MODEL = "processor\t: 0\nFeatures\t: fp asimd bf16\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n"


@pytest.mark.parametrize("text, model, isa", [
    (XEON, "Intel(R) Xeon(R) Processor", ["amx_bf16", "amx_tile", "avx2", "avx512_bf16", "avx512f"]),
    (EPYC, "AMD EPYC 9B14", ["avx2"]),
    (ARM_MODEL, "Raspberry Pi 5 Model B Rev 1.0", []),     # ARM's flags decide no x86 kernel
    ("processor\t: 0\n", "", []),
    (None, "", []),                                         # no /proc/cpuinfo
])
def test_machine_names_the_processor_and_the_instruction_sets_that_pick_kernels(tmp_path, monkeypatch,
                                                                                text, model, isa):
    from util_public import runinfo

    path = tmp_path / "cpuinfo"
    if text is not None:
        path.write_text(text)
    assert numerics.cpu_model(str(path)) == model
    model_of, flags_of = numerics.cpu_model, numerics.cpu_flags
    monkeypatch.setattr(numerics, "cpu_model", lambda: model_of(str(path)))
    monkeypatch.setattr(numerics, "cpu_flags", lambda: flags_of(str(path)))
    info = runinfo.machine()
    assert info["isa"] == isa and info["torch_threads"] == torch.get_num_threads() and info["gpus"] == []
    assert info["processor"] == (model or runinfo.platform.processor() or None)
    line = runinfo.describe_machine(info)
    assert line.startswith(info["processor"] or info["arch"])
    assert (f"({', '.join(isa)})" in line) == bool(isa) \
        and line.endswith(f", {torch.get_num_threads()} thread" + "s" * (torch.get_num_threads() != 1))


def test_a_gpu_machine_is_described_by_its_gpus():
    from util_public import runinfo

    info = {"processor": "AMD EPYC 9B14", "isa": ["avx2"], "torch_threads": 8, "gpus": ["NVIDIA H100", "NVIDIA H100"]}
    assert runinfo.describe_machine(info) == "AMD EPYC 9B14 (avx2), 8 threads, GPUs: NVIDIA H100, NVIDIA H100"
    assert runinfo.describe_machine({"arch": "aarch64", "isa": [], "torch_threads": 1}) == "aarch64, 1 thread"
    assert runinfo.describe_machine({}) == "unknown processor"
