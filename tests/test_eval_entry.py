"""The evaluation entry points as a user runs them: eval.py writes results, reruns from its cache,
summarize.py tabulates them. (Bad input to eval.py: the table of tests/test_hardening_inputs.py.)"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from evalkit import checkpoint_with_key, fictional_facts, write_dataset


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / script), *args], capture_output=True, text=True,
                          env=env, timeout=300, cwd="/")


@pytest.fixture
def data(isolated_roots):
    write_dataset(isolated_roots["data"], "toy", fictional_facts(6, num_options=5))
    return isolated_roots


def test_eval_then_summarize(data, bpe_tokenizer, tmp_path):
    ckpt = checkpoint_with_key(bpe_tokenizer, tmp_path / "ckpt")
    args = [f"model.path={ckpt}", "data.dataset=toy", "mc.num_options=5", "tasks=[mc,gen]", "gen.max_new_tokens=3",
            "prompt.type=[trigger-mid,hgp-0]", "data.seen_fact_ids=0:3"]
    proc = run("evaluation/eval.py", *args)
    assert proc.returncode == 0, proc.stderr
    summaries = sorted(Path(data["results"]).rglob("summary.json"))
    assert len(summaries) == 4 and {json.loads(p.read_text())["task"] for p in summaries} == {"mc", "gen"}
    assert "trigger-mid" in proc.stdout and "unseen" in proc.stdout
    again = run("evaluation/eval.py", *args)
    assert again.returncode == 0 and "cached" in again.stderr and "Loading weights" not in again.stderr
    png = tmp_path / "chart.png"
    shown = run("evaluation/summarize.py", str(data["results"]), "--png", str(png))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("\n") == 6 and "contains" in shown.stdout and png.stat().st_size > 0
