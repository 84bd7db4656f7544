"""Per-task execution of one planned job: requests -> backend -> per-fact records (SPEC §3.6).

Records are built fact by fact and joined by fact_id, never by row position. Facts go to the
backend in chunks of its `facts_per_call` (what it can batch well), so a progress bar can show
where a long evaluation is.
"""
from __future__ import annotations

import sys
from typing import Iterator

from tqdm import tqdm

from . import generation, loss_probe, metrics, requests, textprobe
from .plan import Job
from .schema import EvalConfig

def _chunks(job: Job, label: str, backend) -> Iterator[list]:
    facts = job.selected
    size = max(1, int(getattr(backend, "facts_per_call", 16)))
    bar = tqdm(total=len(facts), desc=label, unit="fact", file=sys.stderr, leave=False,
               disable=not sys.stderr.isatty())
    for start in range(0, len(facts), size):
        chunk = facts[start:start + size]
        yield chunk
        bar.update(len(chunk))
    bar.close()


def _seen(job: Job, fact_id: int) -> bool | None:
    return None if job.seen is None else fact_id in job.seen


def run_mc(job: Job, backend, tokenizer, cfg: EvalConfig, bos: list[int]) -> list[dict]:
    out = []
    for chunk in _chunks(job, f"mc {job.prompt_type} r{job.factset.relation_id}", backend):
        questions, reqs = [], []
        for fact in chunk:
            options, gold = requests.mc_options(fact, cfg.mc.num_options, cfg.mc.gold_position, cfg.seed)
            questions.append((fact, options, gold, len(reqs)))
            reqs += requests.mc_requests(tokenizer, fact, job.contexts[fact.fact_id], options,
                                         cfg.prompt.separator, bos)
        scores = backend.score(reqs)
        for fact, options, gold, at in questions:
            opts = scores[at:at + len(options)]
            out.append({"fact_id": fact.fact_id, "relation_id": fact.relation_id, "subject": fact.head,
                        "object": fact.object, "prompt_type": job.prompt_type,
                        "context": job.contexts[fact.fact_id], "options": options, "gold_index": gold,
                        "option_logprobs": [r.sum_logprob for r in opts],
                        "option_n_tokens": [r.n_tokens for r in opts],
                        "option_n_chars": [r.n_chars for r in opts],
                        "option_is_greedy": [r.is_greedy for r in opts],
                        **metrics.mc_fact(opts, gold), "seen": _seen(job, fact.fact_id)})
    return out


def run_gen(job: Job, backend, tokenizer, cfg: EvalConfig, bos: list[int]) -> list[dict]:
    out = []
    for chunk in _chunks(job, f"gen {job.prompt_type} r{job.factset.relation_id}", backend):
        ids = [requests.prompt_ids(tokenizer, job.contexts[f.fact_id], bos) for f in chunk]
        responses = backend.generate(ids, cfg.gen.max_new_tokens)
        out += [generation.record(f, job.contexts[f.fact_id], resp, tokenizer, _seen(job, f.fact_id))
                for f, resp in zip(chunk, responses)]
    return out


def run_loss(job: Job, backend, tokenizer, cfg: EvalConfig, bos: list[int]) -> list[dict]:
    out = []
    case = cfg.loss_probe.object_case
    for chunk in _chunks(job, f"loss {job.prompt_type} r{job.factset.relation_id}", backend):
        probes = [loss_probe.probe_request(tokenizer, f, job.contexts[f.fact_id], cfg.prompt.separator, bos, case)
                  for f in chunk]
        per_token = backend.token_logprobs([req for req, _ in probes])
        for fact, (req, s2_start), (lps, _) in zip(chunk, probes, per_token):
            out.append(loss_probe.record(fact, job.contexts[fact.fact_id], cfg.prompt.separator, case, req,
                                         s2_start, lps, tokenizer, _seen(job, fact.fact_id)))
    return out


def run_ppl(job: Job, backend, tokenizer, cfg: EvalConfig, bos: list[int]) -> list[dict]:
    """One record for the job's text (scored in the windows the plan chose)."""
    reqs = textprobe.requests(tokenizer, job.text, bos, job.payload["window"])
    return [textprobe.record(job.text, reqs, backend.score(reqs))]


RUNNERS = {"mc": run_mc, "gen": run_gen, "loss": run_loss, "ppl": run_ppl}
