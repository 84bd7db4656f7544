"""Scoring throughput: the hf backend's fast paths vs a naive full-sequence reference.

Synthetic multiple-choice questions (a 16-token context, 100 options of 1-4 tokens, or 100
single-token options) are scored by
- naive: every (context + option) row, right-padded, full-vocabulary fp32 log-softmax at every
  position (what a straightforward implementation does);
- hf: `HFBackend.score` (prefix once with its KV cache reused, LM head only where scored; one
  forward per batch of questions when every option is one token), called per chunk of
  `facts_per_call` questions as the evaluation runner does;
- vllm: reported only when vLLM imports (it runs in its own engine; not measured here otherwise).
Prints questions/s, peak memory and the largest |hf - naive| log-prob difference, then writes a
JSON record. Example: `python bench/score_throughput.py --device cpu --shape tiny`.
"""
from __future__ import annotations

import argparse
import importlib.util
import time
from types import SimpleNamespace

import common


def questions(vocab: int, n: int, options: int, prefix: int, single: bool, seed: int) -> list[list]:
    """Requests of `n` questions; option ids are distinct within a question."""
    from util_public import seeding
    from util_public.evaluation.requests import Request

    rng = seeding.stream(seed, "bench.score.single" if single else "bench.score.multi")
    out = []
    for q in range(n):
        context = tuple(int(t) for t in rng.integers(1, vocab, prefix))
        if single:
            conts = [(int(t),) for t in rng.choice(range(1, vocab), options, replace=False)]
        else:
            conts = [tuple(int(t) for t in rng.integers(1, vocab, int(rng.integers(1, 5)))) for _ in range(options)]
        out.append([Request((q, i), context, c, 3 * len(c)) for i, c in enumerate(conts)])
    return out


def naive_scores(model, device, batch: list, rows_per_forward: int) -> list[float]:
    """Sum of log p(continuation) per request from full rows and a full-vocabulary log-softmax."""
    import torch

    values = []
    for start in range(0, len(batch), rows_per_forward):
        chunk = batch[start:start + rows_per_forward]
        width = max(len(r.context) + len(r.continuation) for r in chunk)
        ids = torch.zeros((len(chunk), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        target = torch.full_like(ids, -100)
        for b, r in enumerate(chunk):
            row = r.context + r.continuation
            ids[b, :len(row)] = torch.tensor(row)
            mask[b, :len(row)] = 1
            target[b, len(r.context) - 1:len(row) - 1] = torch.tensor(r.continuation)
        ids, mask, target = ids.to(device), mask.to(device), target.to(device)
        with torch.inference_mode():
            logprobs = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
            picked = logprobs.gather(-1, target.clamp(min=0)[..., None])[..., 0]
            values += (picked * (target >= 0)).double().sum(-1).cpu().tolist()
    return values


def run_path(name: str, model, device, qs: list[list], args) -> tuple[dict, list[float]]:
    from util_public.evaluation.backends.hf import HFBackend

    tokenizer = SimpleNamespace(pad_token_id=0, eos_token_id=0)
    if name == "hf":
        backend = HFBackend(model, tokenizer, batch_size=args.batch_size, tokens_per_forward=args.tokens_per_forward)
        per_call = backend.facts_per_call

        def score(chunk):
            return [r.sum_logprob for r in backend.score([r for q in chunk for r in q])]
    else:
        per_call = max(1, args.naive_rows // args.options)

        def score(chunk):
            return naive_scores(model, device, [r for q in chunk for r in q], args.naive_rows)
    score(qs[:per_call])     # warm-up with a full call: kernels, allocator, GEMM shapes of a full batch
    common.sync(device)
    values = []
    with common.PeakMemory(device) as mem:
        started = time.perf_counter()
        for start in range(0, len(qs), per_call):
            values += score(qs[start:start + per_call])
        common.sync(device)
        elapsed = time.perf_counter() - started
    if args.profile and name == "hf":
        with common.Profile(device) as prof:
            score(qs[:per_call])
        print(f"profile of one hf call ({min(per_call, len(qs))} questions):\n{prof.table()}", flush=True)
    return {"path": name, "questions": len(qs), "seconds": round(elapsed, 3),
            "questions_per_s": round(len(qs) / elapsed, 2), "questions_per_call": per_call, **mem.record()}, values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(parser)
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--single-questions", type=int, default=None, help="questions of the single-token "
                        "set (default: --questions; use >= the backend's batch to fill a forward)")
    parser.add_argument("--naive-questions", type=int, default=None, help="default: --questions")
    parser.add_argument("--options", type=int, default=100)
    parser.add_argument("--prefix", type=int, default=16)
    parser.add_argument("--sets", default="multi,single")
    parser.add_argument("--dtype", default=None, help="default bfloat16 on cuda, float32 on cpu")
    parser.add_argument("--batch-size", type=int, default=None, help="hf questions per forward (backend default)")
    parser.add_argument("--tokens-per-forward", type=int, default=None, help="hf tree-row tokens per forward "
                        "(backend default)")
    parser.add_argument("--naive-rows", type=int, default=None, help="naive rows per forward "
                        "(default: 5 questions on cuda, 1 on cpu)")
    parser.add_argument("--profile", action="store_true", help="profile one hf call per set (torch.profiler op table)")
    args = parser.parse_args()
    import torch

    device = common.setup_device(args)
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    args.naive_rows = args.naive_rows or args.options * (5 if device.type == "cuda" else 1)
    model = common.build_model(args.shape, device, dtype, args.seed).eval()
    vocab = model.config.vocab_size
    settings = {k: v for k, v in vars(args).items() if k != "out"} | {"dtype": str(dtype)}
    info = common.machine(device)
    print(common.describe(info))
    print(f"settings: {settings}")
    rows = []
    for kind in [s for s in args.sets.split(",") if s]:
        n = (args.single_questions or args.questions) if kind == "single" else args.questions
        qs = questions(vocab, n, args.options, args.prefix, kind == "single", args.seed)
        nq = min(n, args.naive_questions or n)
        naive, naive_values = run_path("naive", model, device, qs[:nq], args)
        fast, fast_values = run_path("hf", model, device, qs, args)
        diff = max(abs(a - b) for a, b in zip(naive_values, fast_values))
        # The compared memory: GPU total peak (weights included), CPU resident-set rise.
        key = "peak_gib" if device.type == "cuda" else "peak_rise_gib"
        for row in (naive, fast):
            row.update(set=kind, speedup=round(row["questions_per_s"] / naive["questions_per_s"], 2),
                       memory_ratio=round(row[key] / naive[key], 3) if naive[key] else None,
                       rise_ratio=round(row["peak_rise_gib"] / naive["peak_rise_gib"], 3)
                       if naive["peak_rise_gib"] else None)
        fast["max_abs_diff_vs_naive"] = round(diff, 6)
        rows += [naive, fast]
        print(f"  {kind}: naive {naive['questions_per_s']} q/s, hf {fast['questions_per_s']} q/s "
              f"({fast['speedup']}x), peak {naive['peak_gib']} -> {fast['peak_gib']} GiB", flush=True)
    vllm = "installed (not measured by this script)" if importlib.util.find_spec("vllm") else "not installed"
    print(common.table(rows, ["set", "path", "questions", "seconds", "questions_per_s", "speedup", "peak_gib",
                              "peak_rise_gib", "memory_ratio", "rise_ratio", "max_abs_diff_vs_naive"]))
    print(f"vllm: {vllm}")
    common.write_record("score_throughput", {"bench": "score_throughput", "shape": args.shape, "machine": info,
                                             "settings": settings, "rows": rows, "vllm": vllm}, args.out)


if __name__ == "__main__":
    main()
