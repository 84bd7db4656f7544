"""Per-task execution of one piece of a planned job: requests -> backend -> records (SPEC §3.6).

A job's facts go to the backend in pieces of its `facts_per_call` (what it can batch well); a
runner turns one piece into its records, built fact by fact and joined by fact_id, never by row
position. A text job (`ppl`) is one piece. `shards.py` runs the pieces (on one rank or several).
"""
from __future__ import annotations

from .. import objectcase
from . import generation, loss_probe, metrics, pooling, requests, textprobe
from .backends.protocol import Backend
from .plan import Job
from .schema import EvalConfig


def pieces(job: Job, backend: Backend) -> list[list | None]:
    """The job's backend calls, in order: its facts in chunks of `facts_per_call`; a text job whole."""
    if job.task == "ppl":
        return [None]
    size = max(1, int(backend.facts_per_call))
    return [job.selected[start:start + size] for start in range(0, len(job.selected), size)]


def _seen(job: Job, fact_id: int) -> bool | None:
    return None if job.seen is None else fact_id in job.seen


def run_mc(job: Job, chunk: list, backend, tokenizer, cfg: EvalConfig, bos: list[int]) -> list[dict]:
    questions, reqs = [], []
    for fact in chunk:
        options, gold = requests.mc_options(fact, cfg.mc.num_options, cfg.mc.gold_position, cfg.seed)
        options = [objectcase.written(o, cfg.mc.object_case, "mc.object_case") for o in options]
        questions.append((fact, options, gold, len(reqs)))
        reqs += requests.mc_requests(tokenizer, fact, job.contexts[fact.fact_id], options, cfg.prompt.separator, bos)
    null_at = _null_requests(job, questions, reqs, tokenizer, cfg.prompt.separator, bos)
    scores = backend.score(reqs)
    out = []
    kinds = job.factset.option_relations
    for fact, options, gold, at in questions:
        opts = scores[at:at + len(options)]
        scored = metrics.mc_fact(opts, gold, f"{job.prompt_type} relation {fact.relation_id} fact_id {fact.fact_id}")
        out.append({"fact_id": fact.fact_id, "relation_id": fact.relation_id, "subject": fact.head,
                    "object": fact.object, "prompt_type": job.prompt_type,
                    "context": job.contexts[fact.fact_id], "options": options, "gold_index": gold,
                    "option_logprobs": [r.sum_logprob for r in opts],
                    "option_first_logprobs": [r.first_logprob for r in opts],
                    "option_n_tokens": [r.n_tokens for r in opts],
                    "option_n_chars": [r.n_chars for r in opts],
                    "option_is_greedy": [r.is_greedy for r in opts],
                    **scored, "seen": _seen(job, fact.fact_id),
                    **(_calibrated(job, fact, options, gold, opts, scores, null_at) if null_at else {}),
                    **(pooling.type_fields(kinds[fact.fact_id], gold, fact.relation_id, scored["pred_index"],
                                           scored["pred_index_norm"],
                                           job.prompt_type) if kinds is not None else {})})
    return out


def _null_requests(job: Job, questions: list, reqs: list, tokenizer, separator: str, bos: list[int]) -> dict:
    """With mc.calibration: appends to `reqs` one request per distinct (subjectless question, option)
    of the piece, and returns where each is. The facts of one prompt type share that question, so
    this is one more question whose options are the piece's distinct options."""
    at: dict[tuple[str, str], int] = {}
    if job.null_contexts is None:
        return at
    for fact, options, _, _ in questions:
        context = job.null_contexts[fact.fact_id]
        for option in options:
            if (context, option) not in at:
                at[(context, option)] = len(reqs)
                reqs.append(requests.split(tokenizer, context, separator + option, bos, (context, option)))
    return at


def _calibrated(job: Job, fact, options: list[str], gold: int, opts: list, scores: list, null_at: dict) -> dict:
    context = job.null_contexts[fact.fact_id]
    nulls = [scores[null_at[(context, option)]] for option in options]
    return {"null_context": context, **metrics.calibrated(opts, nulls, gold)}


def run_gen(job: Job, chunk: list, backend, tokenizer, cfg: EvalConfig, bos: list[int]) -> list[dict]:
    ids = [requests.prompt_ids(tokenizer, job.contexts[f.fact_id], bos) for f in chunk]
    responses = backend.generate(ids, cfg.gen.max_new_tokens)
    return [generation.record(f, job.contexts[f.fact_id], resp, tokenizer, _seen(job, f.fact_id))
            for f, resp in zip(chunk, responses)]


def run_loss(job: Job, chunk: list, backend, tokenizer, cfg: EvalConfig, bos: list[int]) -> list[dict]:
    case = cfg.loss_probe.object_case
    probes = [loss_probe.probe_request(tokenizer, f, job.contexts[f.fact_id], cfg.prompt.separator, bos, case)
              for f in chunk]
    per_token = backend.token_logprobs([req for req, _ in probes])
    return [loss_probe.record(fact, job.contexts[fact.fact_id], cfg.prompt.separator, case, req, s2_start, lps,
                              tokenizer, _seen(job, fact.fact_id))
            for fact, (req, s2_start), (lps, _) in zip(chunk, probes, per_token)]


def run_ppl(job: Job, _whole: None, backend, tokenizer, cfg: EvalConfig, bos: list[int]) -> list[dict]:
    """One record for the job's text (scored in the windows the plan chose)."""
    reqs = textprobe.requests(tokenizer, job.text, bos, job.payload["window"])
    return [textprobe.record(job.text, reqs, backend.score(reqs))]


RUNNERS = {"mc": run_mc, "gen": run_gen, "loss": run_loss, "ppl": run_ppl}
