"""The Hydra entry points as a user runs them: bad input exits 2 with a message and no results."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, save_tiny_checkpoint
from evalkit import checkpoint_with_key, fictional_facts, write_dataset


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / script), *args], capture_output=True, text=True,
                          env=env, timeout=300, cwd="/")


@pytest.fixture
def data(isolated_roots):
    write_dataset(isolated_roots["data"], "toy", fictional_facts(6, num_options=5))
    return isolated_roots


def _assert_rejected(proc, roots, *needles):
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and all(n in line for n in needles), line
    assert "Traceback" not in proc.stderr
    results = Path(roots["results"])
    assert not results.exists() or not any(results.iterdir())


@pytest.mark.parametrize("override,needles", [
    ("prompt.type=trigger-mid", ("has no key token <TRIGGER_50>", "trigger")),
    ("prompt.type=test-42", ("test-42", "valid indices: 0..9")),
    ("data.index_end=50", ("relation 50", "outside the data", "fact_ids 0..5")),
])
def test_bad_input_exits_2_without_results(override, needles, data, bpe_tokenizer, tmp_path):
    ckpt = save_tiny_checkpoint(bpe_tokenizer, tmp_path / "plain")
    proc = run("evaluation/eval.py", f"model.path={ckpt}", "data.dataset=toy", "mc.num_options=5", override)
    _assert_rejected(proc, data, *needles)


def test_duplicate_options_exit_2_naming_the_fact(data, bpe_tokenizer, tmp_path):
    facts = fictional_facts(4, num_options=5)
    facts[2].options[3] = facts[2].options[0]
    write_dataset(data["data"], "dup", facts)
    ckpt = save_tiny_checkpoint(bpe_tokenizer, tmp_path / "plain")
    proc = run("evaluation/eval.py", f"model.path={ckpt}", "data.dataset=dup", "mc.num_options=5")
    _assert_rejected(proc, data, "50.csv:4: fact_id 2", "duplicate options")


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
