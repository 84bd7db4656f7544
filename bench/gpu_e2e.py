"""The real entry points end to end on one GPU, with tokens/s through training/train.py beside the
training benchmark's figure for the same shape, in one run of under 10 minutes (a borrowed GPU's limit).

    python3 bench/gpu_e2e.py [--shape qwen2.5-1.5b] [--facts 2560] [--batch 256] [--p1-epochs 3]
    dry run on a CPU (~40 s): .venv/bin/python bench/gpu_e2e.py --device cpu --shape tiny --facts 64 --batch 16

Each step runs in its own process under a time limit, all within `--budget-s` (540 s: a borrowed
GPU may run 600); a failed step is recorded and the later ones that do not need it still run, and the
record is saved after every step, so one call always brings back what ran:
1. project: a random-weight model in `--shape` (benchmarks measure shapes, not trained values; no
   checkpoint can be fetched on the device machine), saved in bf16 with the SentencePiece-style test
   tokenizer (tests/assets/sp_tokenizer; the embedding keeps the shape's full vocabulary) and
   registered as `e2e-base` in a models.json of its own; `--facts` facts of relation 50 by
   data_generation/generate.py;
2. Phase 1 on all facts, `--batch` sequences per step, through the launcher (`accelerate launch`,
   one process, ddp.yaml), precision `auto` (bf16 on the GPU);
3. Phase 2 on the first half with the train prompt, from Phase 1's run;
4. eval.py (same launcher) on 200 unseen facts: MC over 20 options and greedy generation;
5. Phase 1 for one epoch through fsdp.yaml, the launcher's default on GPUs without DeepSpeed;
6. bench/train_throughput.py, variant `ours` at `--batch` sequences per step (its synthetic
   10-60-token examples): the bench's figure on the same machine.
Every step runs with PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True unless it is set (records made
before 2026-12-07 ran without it).
Random weights: the accuracies are near chance; the point is that every stage runs on CUDA and Phase
1's loss falls. The record (`--out`, else gpu_e2e.json), the bench's record and a log go to $OUT
(the device tool's output folder) or bench/results/gpu_e2e/.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from util_public import atomicio
from util_public.artifacts import RunManifest

REPO = common.RESULTS.parents[1]
TOKENIZER = REPO / "tests" / "assets" / "sp_tokenizer"
BASE = "e2e-base"
LIMITS_S = {"project": 90, "facts": 45, "phase1": 180, "phase2": 120, "eval": 120, "phase1_fsdp": 120, "bench": 100}


def build_project(args, work: Path) -> None:
    """Step 1 (in this process): the base checkpoint and its registry entry."""
    import torch
    from transformers import PreTrainedTokenizerFast

    device = torch.device(args.device)
    model = common.build_model(args.shape, device, torch.bfloat16, args.seed)
    model.save_pretrained(work / "base")
    del model
    if device.type == "cuda":   # the steps' processes need the GPU: this one keeps only its context
        torch.cuda.empty_cache()
    PreTrainedTokenizerFast.from_pretrained(str(args.tokenizer)).save_pretrained(work / "base")
    registry = json.loads((REPO / "models.json").read_text())
    registry[BASE] = {"path": str(work / "base"), "kind": "base"}
    (work / "models.json").write_text(json.dumps(registry, indent=2))


def launch(script: str, *overrides: str, config: str = "ddp.yaml") -> list[str]:
    return [sys.executable, "-m", "util_public.launcher", "--nproc-per-node", "1", "--config", config,
            script, *overrides]


class Steps:
    """Runs the steps into one log, each under its own limit and all within one deadline (the device
    call's); `rows` records exit and seconds, and `after_each` saves the record so far, so that a call
    cut short still brings back what ran."""

    def __init__(self, env: dict, log, deadline: float, after_each):
        self.env, self.log, self.deadline, self.after_each, self.rows = env, log, deadline, after_each, []

    def command(self, name: str, command: list[str]) -> bool:
        return self._timed(name, " ".join(command), lambda limit: self._run_group(command, limit))

    def call(self, name: str, function) -> bool:
        return self._timed(name, function.__name__, lambda limit: function() or 0)

    def _timed(self, name: str, what: str, body) -> bool:
        limit = min(LIMITS_S[name], int(self.deadline - time.perf_counter()))
        print(f"== {name} (limit {limit} s)", flush=True)
        self.log.write(f"== {name}: {what}\n")
        self.log.flush()
        started = time.perf_counter()
        try:
            rc = body(limit) if limit >= 10 else "skipped: the time budget is spent"
        except Exception as exc:   # noqa: BLE001 - the record says what failed; later steps still run
            rc = f"{type(exc).__name__}: {exc}"
        self.rows.append({"step": name, "exit": rc, "seconds": round(time.perf_counter() - started, 1)})
        print(f"   exit {rc}, {self.rows[-1]['seconds']} s", flush=True)
        self.after_each()
        return rc == 0

    def _run_group(self, command: list[str], limit_s: int) -> int | str:
        """`command` in a process group of its own; past `limit_s`, SIGTERM, which torch.distributed's
        agent passes on to the ranks it started in sessions of their own (SIGKILL would orphan them,
        holding the GPU's memory and the next step's rendezvous port), then SIGKILL what is left."""
        process = subprocess.Popen(command, cwd=REPO, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            return process.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            return "timeout"


def epochs(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [r for r in atomicio.read_jsonl(path) if r["type"] == "epoch"] if path.is_file() else []


def final_checkpoint(run_dir: Path) -> str:
    """The registry name of a complete run's final checkpoint."""
    return RunManifest.of(run_dir).final_checkpoint(str(run_dir)).registry_name


def summaries(root: Path) -> list[dict]:
    from util_public.artifacts import find_summaries

    return [{"task": s.task, "prompt": s.prompt_type, "metrics": s.metrics} for _, s in find_summaries(root)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(parser, out_help="JSON record path (default $OUT/gpu_e2e.json, else "
                                             "bench/results/gpu_e2e/gpu_e2e.json; the log and bench.json beside it)")
    parser.set_defaults(shape="qwen2.5-1.5b", device="cuda", threads=4)
    parser.add_argument("--facts", type=int, default=2560)
    parser.add_argument("--batch", type=int, default=256, help="sequences per optimizer step (one process)")
    parser.add_argument("--p1-epochs", type=int, default=3)
    parser.add_argument("--eval-facts", type=int, default=200)
    parser.add_argument("--tokenizer", type=Path, default=TOKENIZER)
    parser.add_argument("--budget-s", type=int, default=540, help="all steps together (under a 600 s limit)")
    args = parser.parse_args()
    deadline = time.perf_counter() + args.budget_s
    common.setup_device(args)
    record_path = Path(args.out or Path(os.environ.get("OUT") or common.RESULTS / "gpu_e2e") / "gpu_e2e.json")
    out = record_path.parent
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu_e2e-"))
    env = {**os.environ, "MTG_DATA_ROOT": str(work / "data"), "MTG_RUNS_ROOT": str(work / "runs"),
           "MTG_RESULTS_ROOT": str(work / "results"), "MTG_MODELS_JSON": str(work / "models.json"),
           "PYTHONUNBUFFERED": "1",
           # steps whose batch widths change from step to step fragment the allocator: the bench's `ours`
           # at 256 sequences peaked at 71 GiB of an H100's 80 on the H200
           "PYTORCH_CUDA_ALLOC_CONF": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")}
    info = common.machine(args.device)
    print(f"{common.describe(info)}\nsettings: {vars(args)}", flush=True)

    def record() -> dict:
        bench = out / "bench.json"
        return {"bench": "gpu_e2e", "machine": info, "settings": vars(args) | {"tokenizer": str(args.tokenizer)},
                "steps": steps.rows, "eval": summaries(work / "results") if (work / "results").is_dir() else [],
                "bench_rows": json.loads(bench.read_text()).get("rows", []) if bench.is_file() else [],
                **{f"{run}_epochs": epochs(work / "runs" / run) for run in ("p1", "p2", "p1_fsdp")}}

    with open(out / "gpu_e2e.log", "w") as log:
        steps = Steps(env, log, deadline, lambda: atomicio.write_json(record_path, record()))
        run_all(steps, args, work, out)
    report(record(), args.facts)
    common.write_record("gpu_e2e", record(), str(record_path))
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if all(row["exit"] == 0 for row in steps.rows) else 1)


def run_all(steps: Steps, args, work: Path, out: Path) -> None:
    common_train = ["train.precision=auto", "save.every_epoch=false", "save.full_state=none", "save.dtype=bf16",
                    f"train.num_threads={args.threads}", f"train.seed={args.seed}"]
    p1 = ["--config-name", "phase1", f"model.base={BASE}", f"data.index_end={args.facts}",
          f"train.per_device_train_batch_size={args.batch}", "train.learning_rate=1e-4", "train.warmup_steps=2",
          *common_train]
    half = args.facts // 2
    made = steps.call("project", lambda: build_project(args, work)) and steps.command("facts", [
        sys.executable, "data_generation/generate.py", "relation_ids=[50]", f"num_facts={args.facts}",
        "dataset=sync_random_o", "num_options=20", f"seed={args.seed}"])
    if made and steps.command("phase1", launch("training/train.py", *p1, f"train.epochs={args.p1_epochs}",
                                               "save.run_name=p1")):
        if steps.command("phase2", launch(
                "training/train.py", "--config-name", "phase2", "model.base_run=p1", f"data.index_end={half}",
                f"train.per_device_train_batch_size={min(args.batch, half)}", "train.learning_rate=1e-5",
                *common_train, "save.run_name=p2")):
            steps.command("eval", launch(
                "evaluation/eval.py", f"model.name={final_checkpoint(work / 'runs' / 'p2')}",
                f"data.index_begin={half}", f"data.index_end={min(half + args.eval_facts, args.facts)}",
                f"data.seen_fact_ids=0:{half}", "tasks=[mc,gen]", "mc.num_options=20",
                "prompt.type=[hgp-0,trigger-mid]", f"runtime.num_threads={args.threads}"))
    if made and args.device == "cuda":   # FSDP needs CUDA: the training refuses it on a CPU
        steps.command("phase1_fsdp", launch("training/train.py", *p1, "train.epochs=1", "save.run_name=p1_fsdp",
                                            config="fsdp.yaml"))
    steps.command("bench", [sys.executable, "bench/train_throughput.py", "--device", args.device, "--threads",
                            str(args.threads), "--shape", args.shape, "--seqs-per-step", str(args.batch),
                            "--steps", "6", "--warmup", "2", "--rounds", "1", "--variants", "ours",
                            "--out", str(out / "bench.json")])


def report(record: dict, facts: int) -> None:
    """The console summary: steps, Phase 1's throughput per epoch beside the bench's, the evaluation."""
    print(common.table(record["steps"], ["step", "exit", "seconds"]))
    for run in ("p1", "p1_fsdp"):
        for row in record[f"{run}_epochs"]:
            print(f"train.py {run}, epoch {row['epoch']}: mean loss {row['mean_loss']:.4f}, "
                  f"{row['tokens'] / facts:.1f} tokens/sequence, {row['tokens_per_s']} real tok/s")
    for row in record["bench_rows"]:
        if "error" in row:
            print(f"bench {row['variant']}: {row['error']}")
            continue
        per_sequence = row["real_tokens"] / (row["seqs_per_step"] * row["timed_steps"])
        print(f"bench {row['variant']}: {per_sequence:.1f} tokens/sequence, {row['real_tokens_per_s']} real tok/s")
    for row in record["eval"]:
        print(f"eval {row['task']} {row['prompt']}: {json.dumps(row['metrics'].get('unseen', row['metrics']))}")


if __name__ == "__main__":
    main()
