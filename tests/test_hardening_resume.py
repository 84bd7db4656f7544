"""SIGKILL a real `training/train.py` run mid-epoch, rerun the same command, and reach the same
final loss and weights as an uninterrupted run (tiny model, CPU, one thread, fp32)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import torch
from conftest import save_tiny_checkpoint
from hardening_kit import REPO
from safetensors.torch import load_file

from util_public import catalogue, facts
from util_public.registry import Registry
from util_public.training import run

TRAIN = REPO / "training" / "train.py"
COMMON = ["model.base=tiny-base", "data.index_end=8", "train.epochs=3", "train.per_device_train_batch_size=2",
          "train.warmup_steps=2", "train.learning_rate=1e-3", "train.num_threads=1"]
STEPS_PER_EPOCH, KILL_AT = 4, 6           # step 6 of 12 lies inside epoch 2

# Runs train.py as __main__, appending the global step at each training step it runs to
# STEPS_FILE, and SIGKILLing the process when the Trainer starts step KILL_AT (0: never).
_KILL_MID_EPOCH = """
import os, runpy, signal, sys
kill_at, steps_file, script, *args = sys.argv[1:]
sys.path.insert(0, os.path.dirname(os.path.dirname(script)))
import util_public
from util_public.training.trainer import MtgTrainer
real = MtgTrainer.training_step
def training_step(self, *a, **k):
    if self.state.global_step + 1 == int(kill_at):
        os.kill(os.getpid(), signal.SIGKILL)
    with open(steps_file, "a") as f:
        f.write(f"{self.state.global_step}\\n")
    return real(self, *a, **k)
MtgTrainer.training_step = training_step
sys.argv = [script, *args]
runpy.run_path(script, run_name="__main__")
"""


def _train_process(*args: str, steps_file, kill_at: int = 0) -> subprocess.CompletedProcess:
    argv = [str(TRAIN), "--config-name", "phase1", *args]
    cmd = [sys.executable, "-c", _KILL_MID_EPOCH, str(kill_at), str(steps_file), *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd="/",
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_sigkill_mid_epoch_then_rerun_equals_an_uninterrupted_run(isolated_roots, sp_tokenizer, tmp_path):
    save_tiny_checkpoint(sp_tokenizer, tmp_path / "tiny")
    registry = Registry()
    registry.register({"tiny-base": {"path": str(tmp_path / "tiny"), "kind": "base"}})
    vocab = catalogue.vocab("50")
    rows = [facts.Fact(i, "50", f"Velor{c}ia", vocab[(5 * i) % len(vocab)], ["opt0", "opt1"])
            for i, c in enumerate("abcdefgh")]
    facts.write_facts(facts.relation_file(isolated_roots["data"], "sync_random_o", "50"), rows)
    killed_dir, straight_dir = isolated_roots["runs"] / "K", isolated_roots["runs"] / "S"

    first, rerun = tmp_path / "steps-killed", tmp_path / "steps-rerun"
    proc = _train_process(*COMMON, "save.run_name=K", steps_file=first, kill_at=KILL_AT)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    manifest = json.loads((killed_dir / "manifest.json").read_text())
    assert manifest["status"] == "running" and not (killed_dir / "DONE").exists()
    assert sorted(p.name for p in killed_dir.glob("checkpoint-*")) == [f"checkpoint-{STEPS_PER_EPOCH}"]
    logged = [r["step"] for r in _metrics(killed_dir) if r["type"] == "step"]
    assert logged == list(range(1, KILL_AT))                  # it died inside epoch 2
    registered = [n for n in registry.raw() if n.startswith("K_")]
    assert registered == [f"K_checkpoint-{STEPS_PER_EPOCH}"]  # only the complete checkpoint

    assert first.read_text().split() == [str(s) for s in range(KILL_AT - 1)]
    proc = _train_process(*COMMON, "save.run_name=K", steps_file=rerun)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the rerun resumed: only the steps after the epoch-1 checkpoint ran, not a seeded retrain from 0
    assert rerun.read_text().split() == [str(s) for s in range(STEPS_PER_EPOCH, 3 * STEPS_PER_EPOCH)]
    assert run.train_stage(run.compose("phase1", [*COMMON, "save.run_name=S"]), []) == 0

    manifest = json.loads((killed_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and (killed_dir / "DONE").is_file()
    assert manifest["invocations"][-1]["resumed_from"] == f"checkpoint-{STEPS_PER_EPOCH}"
    assert not (killed_dir / "checkpoints.tmp").exists()
    final = 3 * STEPS_PER_EPOCH
    resumed = load_file(str(killed_dir / f"checkpoint-{final}" / "model.safetensors"))
    straight = load_file(str(straight_dir / f"checkpoint-{final}" / "model.safetensors"))
    assert set(resumed) == set(straight)
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], atol=1e-6, rtol=0)

    def last(run_dir, kind, key):
        return [r[key] for r in _metrics(run_dir) if r["type"] == kind][-1]

    assert last(killed_dir, "step", "step") == last(straight_dir, "step", "step") == final
    # metrics.jsonl describes the final weights' trajectory: the killed invocation's step 5 is not kept
    for kind in ("step", "epoch"):
        assert [r["step"] for r in _metrics(killed_dir) if r["type"] == kind] == \
               [r["step"] for r in _metrics(straight_dir) if r["type"] == kind]
    assert abs(last(killed_dir, "step", "loss") - last(straight_dir, "step", "loss")) < 1e-5
    assert abs(last(killed_dir, "epoch", "mean_loss") - last(straight_dir, "epoch", "mean_loss")) < 1e-5
    names = set(registry.raw())
    assert {f"K_checkpoint-{s}" for s in (4, 8, 12)} <= names and {f"S_checkpoint-{s}" for s in (4, 8, 12)} <= names
