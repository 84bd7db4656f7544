"""vLLM vs hf on the same evaluation job: speed, memory, and parity of every record.

One real MC (+ greedy generation) job, `api.evaluate` over the same facts, prompt types and token
ids, once per backend, in fp32 by default:
- hf: the model in this process (`--device cpu|cuda`); peak memory = this process's sampled RSS
  (CPU) or `max_memory_allocated` (GPU);
- vllm: a server this script starts (`util_public/vllm_server.py`); start time reported apart;
  peak memory = the RSS of the server's process group, sampled (CPU), or the rise of nvidia-smi's
  memory.used over the start (GPU: hf's cache emptied first; vLLM preallocates `vllm.gpu_memory_utilization`
  of the GPU, so this figure reflects that setting more than the job).
Parity per prompt type, from the records: max |Δ| of per-option log-probs (and per scored token),
argmax agreement, max |Δ gold_prob| and |Δ prob_mass|, the rate of identical greedy generations.

    python bench/vllm_vs_hf.py --model smollm2-135m --data-root DIR --facts 100 --prompts hgp-0,test-0
    python bench/vllm_vs_hf.py --model RUN_checkpoint-21 --prompts trigger-mid,hgp-0 --device cuda --dtype bf16
Facts come from `--data-root/--dataset` (generate them with data_generation/gen_script.sh).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import common

from util_public import modelio
from util_public.evaluation import api
from util_public.evaluation.backends.hf import HFBackend
from util_public.evaluation.backends.vllm import VllmBackend


def gpu_used() -> int:
    """Bytes in use on all GPUs, by nvidia-smi (every process's, vLLM's preallocation included)."""
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, check=True).stdout.split()
    return sum(int(mib) for mib in out) * 2**20


class GroupMemory:
    """Peak resident memory of a process group (CPU), or the rise of GPU memory in use over
    `gpu_baseline` (what was used before the server started: this process's CUDA context), sampled."""

    def __init__(self, pgid: int, cuda: bool, gpu_baseline: int = 0):
        self.pgid, self.cuda, self.gpu_baseline, self.peak = pgid, cuda, gpu_baseline, 0
        self._stop = threading.Event()

    def _now(self) -> int:
        if self.cuda:
            return gpu_used() - self.gpu_baseline
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == self.pgid:      # field 5 of stat: the process group
                    total += int((stat.parent / "statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            except (OSError, IndexError, ValueError):
                continue
        return total

    def _sample(self):
        while not self._stop.wait(0.25 if not self.cuda else 1.0):
            self.peak = max(self.peak, self._now())

    def __enter__(self):
        self.peak = self._now()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_job(backend, tok, info, cfg, prompts: list[str], gen_tokens: int) -> dict:
    """Seconds per task and the records, per prompt type."""
    out = {"seconds": {}, "records": {}}
    tasks = ["mc"] + (["gen"] if gen_tokens else [])
    for task in tasks:
        t0 = time.perf_counter()
        summaries = api.evaluate(backend, tok, info, api.load_factsets(cfg), prompts, [task], cfg)
        common.sync("cuda" if backend.versions().get("device", "").startswith("cuda") else "cpu")
        out["seconds"][task] = time.perf_counter() - t0
        for s in summaries:
            if s["kind"] == "result":
                rows = (Path(s["directory"]) / "records.jsonl").read_text().splitlines()
                out["records"][(task, s["prompt_type"])] = [json.loads(line) for line in rows]
    return out


def parity(hf: dict, vl: dict, prompt: str) -> dict:
    a_mc, b_mc = hf["records"][("mc", prompt)], vl["records"][("mc", prompt)]
    diffs, per_token, relative, agree, gold, n_opts, worst = [], [], [], 0, [], 0, None
    for a, b in zip(a_mc, b_mc):
        assert a["fact_id"] == b["fact_id"] and a["options"] == b["options"]
        for i, (x, y, n) in enumerate(zip(a["option_logprobs"], b["option_logprobs"], a["option_n_tokens"])):
            diffs.append(abs(x - y))
            per_token.append(abs(x - y) / n)
            relative.append(abs(x - y) / max(1.0, abs(x)))
            if worst is None or abs(x - y) > worst["abs_d"]:
                worst = {"fact_id": a["fact_id"], "option": a["options"][i], "n_tokens": n, "hf": x, "vllm": y,
                         "abs_d": abs(x - y)}
        n_opts += len(a["option_logprobs"])
        agree += a["pred_index"] == b["pred_index"]
        gold.append(abs(a["gold_prob"] - b["gold_prob"]))
    mass = lambda rs: sum(r["gold_prob"] for r in rs) / len(rs)  # noqa: E731 - the prob_mass metric
    row = {"prompt": prompt, "facts": len(a_mc), "options": n_opts, "max_abs_dlogprob": max(diffs),
           "mean_abs_dlogprob": sum(diffs) / len(diffs), "max_abs_dlogprob_per_token": max(per_token),
           "max_rel_dlogprob": max(relative), "options_above_1e-3": sum(d > 1e-3 for d in diffs),
           "argmax_agreement": agree / len(a_mc), "max_abs_dgold_prob": max(gold),
           "abs_dprob_mass": abs(mass(a_mc) - mass(b_mc))}
    row["worst_option"] = worst
    if ("gen", prompt) in hf["records"]:
        a_gen, b_gen = hf["records"][("gen", prompt)], vl["records"][("gen", prompt)]
        row["identical_generations"] = sum(a["response_token_ids"] == b["response_token_ids"]
                                           for a, b in zip(a_gen, b_gen)) / len(a_gen)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(parser, random_model=False)   # it evaluates a real checkpoint
    parser.add_argument("--model", default="smollm2-135m", help="a registry name or a checkpoint folder")
    parser.add_argument("--data-root", default=None, help="default: MTG_DATA_ROOT or data/")
    parser.add_argument("--dataset", default="sync_random_o")
    parser.add_argument("--relation", default="50")
    parser.add_argument("--facts", type=int, default=100)
    parser.add_argument("--options", type=int, default=100)
    parser.add_argument("--prompts", default="hgp-0")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--gen-tokens", type=int, default=8, help="greedy tokens per fact (0: no generation)")
    parser.add_argument("--max-model-len", type=int, default=512)
    args = parser.parse_args()
    device = common.setup_device(args)
    prompts = [p for p in args.prompts.split(",") if p]
    work = tempfile.mkdtemp(prefix="vllm_vs_hf-")
    base = [f"model.dtype={args.dtype}", f"data.dataset={args.dataset}", f"data.relation_id={args.relation}",
            f"data.index_end={args.facts}", f"mc.num_options={args.options}", f"gen.max_new_tokens={args.gen_tokens}",
            "data.seen_fact_ids=null", "output.overwrite=true", f"vllm.max_model_len={args.max_model_len}",
            f"runtime.num_threads={args.threads}", f"hf.device={args.device}"]
    base += [f"data.root={args.data_root}"] if args.data_root else []
    info = api.describe(None, args.model)     # a registry name, or a folder named by its last part
    tok = modelio.load_tokenizer(info.path)
    machine = common.machine(device)
    print(common.describe(machine) + f"\nsettings: {vars(args)}")
    try:
        hf, vl, speed, version = measure(args, base, work, info, tok, device, prompts)
    finally:
        shutil.rmtree(work, ignore_errors=True)      # the two result trees: compared, then dropped
    rows = [parity(hf, vl, p) for p in prompts]
    print(common.table(speed, ["backend", "start_s", "mc_s", "mc_questions_per_s", "gen_s", "gen_facts_per_s",
                               "peak_gib"]))
    columns = [k for k in rows[0] if k != "worst_option"]
    print(common.table([{k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
                       columns))
    for r in rows:
        print(f"{r['prompt']}: largest difference {r['worst_option']}")
    common.write_record("vllm_vs_hf", {"bench": "vllm_vs_hf", "model": info.name, "path": info.path,
                                       "settings": vars(args), "machine": machine, "vllm": version,
                                       "speed": speed, "parity": rows}, args.out)


def measure(args, base: list[str], work: str, info, tok, device, prompts: list[str]):
    """The job on hf, then on vllm: both jobs (records, seconds), the speed rows, vLLM's versions."""
    cfg = api.config([*base, "backend=hf", f"output.root={work}/hf"])
    t0 = time.perf_counter()
    model = modelio.load_causal_lm(info.path, args.dtype, args.device)
    hf_load = time.perf_counter() - t0
    with common.PeakMemory(device) as hf_mem:
        hf = run_job(HFBackend(model, tok, cfg.mc.batch_size, cfg.gen.batch_size), tok, info, cfg, prompts,
                     args.gen_tokens)
    del model
    gc.collect()
    cuda = args.device == "cuda"
    if cuda:    # hf's cached blocks: vLLM asks for a share of the whole GPU and refuses to start without it free
        import torch

        torch.cuda.empty_cache()
    gpu_baseline = gpu_used() if cuda else 0

    cfg = api.config([*base, "backend=vllm", f"output.root={work}/vllm"])
    t0 = time.perf_counter()
    backend = VllmBackend(info.path, tok, cfg)
    vllm_start = time.perf_counter() - t0
    try:
        with GroupMemory(backend.server.proc.pid, cuda, gpu_baseline) as vllm_mem:
            vl = run_job(backend, tok, info, cfg, prompts, args.gen_tokens)
        version = backend.versions()
    finally:
        backend.close()

    questions = args.facts * len(prompts)
    speed = [{"backend": "hf", "start_s": round(hf_load, 1), **_rates(hf, questions),
              "peak_gib": hf_mem.record()["peak_gib"]},
             {"backend": "vllm", "start_s": round(vllm_start, 1), **_rates(vl, questions),
              "peak_gib": round(vllm_mem.peak / 2**30, 3)}]
    return hf, vl, speed, version


def _rates(job: dict, questions: int) -> dict:
    s = job["seconds"]
    out = {"mc_s": round(s["mc"], 1), "mc_questions_per_s": round(questions / s["mc"], 2)}
    if "gen" in s:
        out.update(gen_s=round(s["gen"], 1), gen_facts_per_s=round(questions / s["gen"], 2))
    return out


if __name__ == "__main__":
    main()
