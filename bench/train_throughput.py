"""Training throughput: the project's trainer path vs the original recipe and random batches.

Synthetic sequences of 10-60 tokens with s-o style labels (a 2-4 token subject after the first
token and a 1-4 token object at the end) train a random-weight model in a real shape, through
the real `MtgTrainer` (HF Trainer subclass) for a fixed number of optimizer steps:
- ours: length-grouped batches (the Trainer's sampler), `PadCollator(label_index=True)` and the
  LM head + cross-entropy only at supervised positions (`train.lm_head_at_labels`);
- grouped_full: the same batches, full-vocabulary logits (the stock loss);
- random_dynamic: random batches padded to their longest row, full-vocabulary logits;
- original: the original recipe, per-device batch 1, full-vocabulary logits on all tokens.
Real tokens/s counts non-padding tokens of the timed steps (after warm-up steps; one more step
follows them, profiled with `--profile`). The grouped variants take their batches in a seeded random
order: the sampler runs each mega-batch of up to 50 batches longest first, so the steps after a short
warm-up were its longest batches (47 against random's 35 tokens per sequence, on the GPU), where a
whole epoch averages them all; `--rounds 2`
repeats every variant and reports the last round, so no variant pays the process's one-time costs;
MFU = 6·N·real_tokens/time/peak (N: matmul parameters incl. the LM head; peak 989e12 bf16 on
H100/H200, or a measured fp32 matmul peak on CPU). Prints a table, writes a JSON record.
Example: `python bench/train_throughput.py --device cpu --shape tiny --seqs-per-step 16 --steps 4`.
"""
from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time

import common

VARIANTS = ("ours", "grouped_full", "random_dynamic", "original")


def examples(n: int, vocab: int, seed: int) -> list[dict]:
    from util_public import seeding
    from util_public.training.masking import IGNORE

    rng = seeding.stream(seed, "bench.train")
    out = []
    for _ in range(n):
        length = int(rng.integers(10, 61))
        ids = [int(t) for t in rng.integers(1, vocab, length)]
        subject, obj = int(rng.integers(2, 5)), int(rng.integers(1, 5))
        labels = [t if 1 <= i <= subject or i >= length - obj else IGNORE for i, t in enumerate(ids)]
        out.append({"input_ids": ids, "labels": labels})
    return out


class BatchOrderShuffled:
    """A sampler's indices, cut into batches, the batches in a seeded random order (their
    composition, and so their padding, unchanged): any few steps are a sample of the epoch."""

    def __init__(self, sampler, batch: int, seed: int):
        self.sampler, self.batch, self.seed = sampler, batch, seed

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        import random

        indices = list(self.sampler)
        batches = [indices[i:i + self.batch] for i in range(0, len(indices), self.batch)]
        random.Random(self.seed).shuffle(batches)
        return iter([i for b in batches for i in b])


def batch_order_shuffled(trainer_class, batch: int, seed: int):
    """`trainer_class` whose training sampler is wrapped in `BatchOrderShuffled`."""

    class Shuffled(trainer_class):
        def _get_train_sampler(self, *args, **kwargs):
            return BatchOrderShuffled(super()._get_train_sampler(*args, **kwargs), batch, seed)

    return Shuffled


class Counting:
    """Wraps a collator; remembers each batch's real (non-padding) and padded token counts."""

    def __init__(self, collate):
        self.collate, self.real, self.padded = collate, [], []

    def __call__(self, features):
        batch = self.collate(features)
        self.real.append(int(batch["attention_mask"].sum()))
        self.padded.append(int(batch["attention_mask"].numel()))
        return batch


def step_timer(device, warmup: int, profiler):
    """A TrainerCallback timing the optimizer steps after `warmup` (synchronising the device);
    `profiler` (a `common.Profile`) records the last step, after the timed ones."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        start = end = None

        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == warmup:
                common.sync(device)
                StepTimer.start = time.perf_counter()
            if state.global_step == state.max_steps - 1:
                profiler.start()

        def on_step_end(self, args, state, control, **kw):
            if state.global_step == state.max_steps - 1:
                common.sync(device)
                StepTimer.end = time.perf_counter()
            if state.global_step == state.max_steps:
                profiler.stop()

    return StepTimer


def run_variant(name: str, model, data: list[dict], args, device, profile: bool = False) -> dict:
    import torch
    from transformers import TrainingArguments

    from util_public.training import hfargs
    from util_public.training.collator import PadCollator
    from util_public.training.dataset import TrainDataset
    from util_public.training.masking import Masked
    from util_public.training.schema import TrainConfig
    from util_public.training.trainer import MtgTrainer

    original = name == "original"
    fast = name == "ours"
    if original:   # the original recipe: loss on every token
        data = [{"input_ids": d["input_ids"], "labels": list(d["input_ids"])} for d in data]
    steps = args.original_steps if original else args.steps
    batch = 1 if original else args.seqs_per_step
    grouping = hfargs.length_grouping() if name in ("ours", "grouped_full") else {}
    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=batch, max_steps=args.warmup + steps + 1,
            # The batched variants use the trainer's optimizer (`train.optim` default); the original
            # recipe the foreach AdamW of its time.
            learning_rate=1e-5, lr_scheduler_type="constant", optim="adamw_torch" if original else
            TrainConfig.optim, bf16=device.type == "cuda",
            use_cpu=device.type == "cpu", logging_strategy="no", save_strategy="no", report_to="none",
            disable_tqdm=True, remove_unused_columns=False, dataloader_num_workers=0, seed=args.seed,
            **grouping, **hfargs.async_transfers())
        collate = Counting(PadCollator(0, label_index=fast))
        profiler = common.Profile(device, enabled=profile)
        timer = step_timer(device, args.warmup, profiler)
        trainer_class = batch_order_shuffled(MtgTrainer, batch, args.seed) if grouping else MtgTrainer
        trainer = trainer_class(model=model, args=targs, train_dataset=TrainDataset([Masked(d["input_ids"], d["labels"]) for d in data]),
                             data_collator=collate, callbacks=[timer], lm_head_at_labels=fast)
        with common.PeakMemory(device) as mem:
            trainer.train()
        del trainer
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    timed = slice(args.warmup, args.warmup + steps)
    real, padded = sum(collate.real[timed]), sum(collate.padded[timed])
    seconds = timer.end - timer.start
    if profile:
        print(f"profile of one {name} step (after the timed ones):\n{profiler.table()}", flush=True)
    return {"variant": name, "seqs_per_step": batch, "timed_steps": steps, "real_tokens": real,
            "padding_fraction": round(1 - real / padded, 3), "seconds": round(seconds, 3),
            "ms_per_step": round(1000 * seconds / steps, 1), "real_tokens_per_s": round(real / seconds, 1),
            **mem.record()}


def cpu_matmul_peak(seconds: float = 1.0) -> float:
    """FLOP/s of a 1024x1024 fp32 matmul on the configured threads (the CPU's practical peak)."""
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        n += 1
    return 2 * 1024**3 * n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(parser)
    parser.add_argument("--seqs-per-step", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5, help="timed optimizer steps per batched variant")
    parser.add_argument("--original-steps", type=int, default=20, help="timed steps of the batch-1 recipe")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--examples", type=int, default=20000, help="dataset size (the sampler groups within it)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--compile", action="store_true", help="torch.compile the decoder (as train.compile); "
                        "give --warmup steps enough for the compile")
    parser.add_argument("--profile", default="", help="comma-separated variants whose last-round extra step "
                        "is profiled (torch.profiler op table)")
    parser.add_argument("--rounds", type=int, default=1, help="run all variants this many times; the table "
                        "shows the last round (the first pays one-time costs: new GEMM shapes, allocator growth)")
    args = parser.parse_args()
    import torch

    device = common.setup_device(args)
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    model = common.build_model(args.shape, device, torch.float32, args.seed)   # fp32 master weights
    if args.compile:   # as `train.compile`: in place, so for every variant of this process
        from util_public.training.loss import compile_decoder

        compile_decoder(model)
    n_matmul = common.matmul_params(model)
    peak, peak_source = (common.H100_BF16_PEAK, "H100/H200 dense bf16") if device.type == "cuda" else \
        (cpu_matmul_peak(), "measured fp32 1024^3 matmul")
    info = common.machine(device)
    settings = {k: v for k, v in vars(args).items() if k != "out"} | {"matmul_params": n_matmul, "peak_flops": peak,
                                                                      "peak_source": peak_source}
    print(common.describe(info))
    print(f"settings: {settings}")
    data = examples(args.examples, model.config.vocab_size, args.seed)
    rounds = []
    for r in range(max(1, args.rounds)):
        rows = []
        for name in variants:
            profile = r == max(1, args.rounds) - 1 and name in args.profile.split(",")
            try:
                row = run_variant(name, model, data, args, device, profile)
            except torch.OutOfMemoryError as exc:   # wider than this GPU (grouped_full on an H100 at 256)
                row = {"variant": name, "error": "out of memory: " + str(exc).split("\n")[0][:160]}
            row["round"] = r
            rows.append(row)
            if "error" in row:   # freed here, not in `except`: the traceback still held the trainer's tensors
                model.zero_grad(set_to_none=True)
                gc.collect()
                torch.cuda.empty_cache()
                print(f"  round {r} {name}: {row['error']}", flush=True)
                continue
            row["mfu"] = round(6 * n_matmul * row["real_tokens_per_s"] / peak, 4)
            print(f"  round {r} {name}: {row['real_tokens_per_s']} real tok/s, {row['ms_per_step']} ms/step", flush=True)
        rounds.append(rows)
    base = {r["variant"]: r["real_tokens_per_s"] for r in rows if "error" not in r}
    for row in rows:
        for ref in ("original", "random_dynamic"):
            if ref in base and "error" not in row:
                row[f"x_{ref}"] = round(row["real_tokens_per_s"] / base[ref], 2)
    print(common.table(rows, ["variant", "seqs_per_step", "timed_steps", "real_tokens", "padding_fraction",
                              "ms_per_step", "real_tokens_per_s", "mfu", "x_original", "x_random_dynamic",
                              "peak_gib", "error"]))
    print(f"MFU against {peak_source} = {peak:.3g} FLOP/s")
    common.write_record("train_throughput", {"bench": "train_throughput", "shape": args.shape, "machine": info,
                                             "settings": settings, "rows": rows, "all_rounds": rounds}, args.out)
    if any("error" in row for rnd in rounds for row in rnd):
        sys.exit(1)        # recorded, but not measured: the step that ran it did not succeed


if __name__ == "__main__":
    main()
