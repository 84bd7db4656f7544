"""Helpers of the multi-process tests: an isolated project (tiny base model, facts, registry) that
subprocesses can use, and launches through `python -m util_public.launcher` on free loopback ports.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from conftest import ASSETS, REPO, save_tiny_checkpoint

from util_public import catalogue, facts

HEADS = ["Veloria", "Karthenia", "Ostrevania", "Quilmarra", "Drevosk", "Zanthuria", "Pelloquay", "Morvatia",
         "Ustrelund", "Xerophane", "Talvendor", "Brynmoria", "Aldravia", "Cindermark", "Doravel", "Eskaland"]
PROBE = str(REPO / "tests" / "rankprobe.py")
LAUNCH_TIMEOUT_S = 240


def make_project(root: Path) -> dict[str, Path]:
    """`root`/{data,runs,results,models.json,tiny}: 16 facts of relation 50 and a registered tiny base."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(ASSETS / "sp_tokenizer"))
    save_tiny_checkpoint(tokenizer, root / "tiny")
    registry = root / "models.json"
    shutil.copy(REPO / "models.json", registry)
    entries = json.loads(registry.read_text())
    registry.write_text(json.dumps({**entries, "tiny-base": {"path": str(root / "tiny"), "kind": "base"}}))
    vocab = catalogue.vocab("50")
    rows = [facts.Fact(i, "50", h, vocab[(7 * i) % len(vocab)], [f"opt{j}" for j in range(3)])
            for i, h in enumerate(HEADS)]
    facts.write_facts(facts.relation_file(root / "data", "sync_random_o", "50"), rows)
    return {"root": root, "data": root / "data", "runs": root / "runs", "results": root / "results",
            "registry": registry, "tiny": root / "tiny"}


def project_env(project: dict[str, Path], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "MTG_EXPECTED_WORLD_SIZE")}
    return {**env, "OMP_NUM_THREADS": "1", "MTG_DATA_ROOT": str(project["data"]), "MTG_RUNS_ROOT": str(project["runs"]),
            "MTG_RESULTS_ROOT": str(project["results"]), "MTG_MODELS_JSON": str(project["registry"]), **extra}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launcher(*args: str) -> list[str]:
    return [sys.executable, "-m", "util_public.launcher", *args]


def run(cmd: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)


def spawn(cmd: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def probe(out_dir: Path, rank: int) -> dict:
    return json.loads((out_dir / f"rank{rank}.json").read_text())


def metrics(run_dir: Path, kind: str = "step") -> list[dict]:
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r["type"] == kind]
