"""HF vs vLLM parity (SPEC §6.5): same token ids in, per-option log-probs and predictions agree.

GPU-gated: skipped unless CUDA and vLLM are both present. vLLM runs in a child process, one
engine per process, as the backend requires.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO
from evalkit import fictional_facts, write_dataset

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("vllm") is None, reason="needs CUDA and vLLM")]


def _eval(backend: str, results: str, data: str) -> list[dict]:
    env = {**os.environ, "MTG_RESULTS_ROOT": results, "MTG_DATA_ROOT": data}
    proc = subprocess.run([sys.executable, str(REPO / "evaluation/eval.py"), "model.name=smollm2-135m",
                           f"backend={backend}", "model.dtype=fp32", "data.dataset=toy", "prompt.type=hgp-0"],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [path] = list(Path(results).rglob("records.jsonl"))
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_hf_and_vllm_agree(tmp_path):
    write_dataset(tmp_path / "data", "toy", fictional_facts(20, seed=4))
    hf = _eval("hf", str(tmp_path / "hf"), str(tmp_path / "data"))
    vl = _eval("vllm", str(tmp_path / "vllm"), str(tmp_path / "data"))
    agree = 0
    for a, b in zip(hf, vl):
        assert a["fact_id"] == b["fact_id"]
        for la, lb, n in zip(a["option_logprobs"], b["option_logprobs"], a["option_n_tokens"]):
            assert abs(la - lb) <= 1e-3 * n
        agree += a["pred_index"] == b["pred_index"]
    assert agree >= 0.99 * len(hf)
