"""In-process evaluation: one loaded model, several prompt types and tasks, no reloading.

    from util_public.evaluation import api
    cfg = api.config(["data.relation_id=50", "data.seen_fact_ids=0:50"])
    info = api.describe("my_run_checkpoint-100")
    model, tok = api.load(info, cfg)
    summaries = api.evaluate(model, tok, info, api.load_factsets(cfg), ["trigger-mid", "hgp-0", "test-*"],
                             ["mc", "gen"], cfg)

Each concrete (task, prompt type, relation) gets its own result directory (SPEC §3.6); an
identical earlier result is reused. The return value is the list of summary dicts: results
first (`kind: result`), then `{family}-all` summaries (`kind: family`) and multi-relation
summaries (`kind: combined`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from omegaconf import OmegaConf

from .. import distributed, modelio, paths
from ..artifacts import FactRange, ModelRecord, ResultSummary
from ..atomicio import check_writable_dir, clean_stale_temporaries, read_jsonl, write_json
from ..runtime import configure_cpu
from . import backends, metrics, plan as planning, report, results, shards
from .backends.hf import HFBackend
from .backends import protocol
from .backends.protocol import Backend
from .modelinfo import ModelInfo, describe
from .plan import FactSet, Plan, load_factsets
from .schema import EvalConfig, config

__all__ = ["config", "describe", "load", "load_factsets", "evaluate", "execute", "writing", "FactSet", "EvalConfig"]


def load(info: ModelInfo, cfg: EvalConfig):
    """The model and tokenizer of `info` (the expensive step a pipeline does once per model): an HF
    model, or with `backend=vllm` a vLLM backend whose server stops when it is closed or collected."""
    tokenizer = modelio.load_tokenizer(info.path)
    if backends.choose(cfg.backend) == "vllm":
        return backends.load("vllm", info.path, tokenizer, cfg), tokenizer
    model = modelio.load_causal_lm(info.path, cfg.model.dtype, cfg.hf.device)
    setattr(model, LOADED, (info.path, modelio.weights_sha256(model)))
    return model, tokenizer


# What `load` read into an HF model: (its directory, the sha256 of its weights as loaded).
LOADED = "_mtg_loaded"


def held(info: ModelInfo, model) -> ModelInfo:
    """`info` for the weights an HF model holds now. One changed in memory since `load` read it (a
    few training steps in a notebook), or not read by `load`, is not its files: the sha256 of its
    weights joins its identity, so no result cached for the files (or another state) is reused."""
    if isinstance(model, Backend):
        return info
    digest = modelio.weights_sha256(model)
    if getattr(model, LOADED, None) == (info.path, digest):
        return info
    return dataclasses.replace(info, weights_sha256=digest)


def as_backend(model, tokenizer, cfg: EvalConfig) -> Backend:
    """A backend object passes through; a bare HF model is wrapped in `HFBackend`."""
    import torch

    if isinstance(model, Backend):
        return model
    if not isinstance(model, torch.nn.Module):
        missing = [m for m in protocol.MEMBERS if not hasattr(model, m)]
        raise TypeError(f"{type(model).__name__} is neither a torch model nor a backend: it lacks "
                        f"{', '.join(missing)} (util_public/evaluation/backends/protocol.py)")
    return HFBackend(model, tokenizer, cfg.mc.batch_size, cfg.gen.batch_size)


def evaluate(model, tokenizer, info: ModelInfo, facts: FactSet | list[FactSet], prompt_types: list[str] | str,
             tasks: list[str], cfg: EvalConfig) -> list[dict]:
    """Evaluate a loaded model (HF model or backend) on prompt types x tasks; write and return summaries."""
    if not isinstance(cfg, EvalConfig):      # a composed Hydra/OmegaConf config
        cfg = OmegaConf.to_object(cfg)
    if cfg.runtime.num_threads:              # only when asked: a library call leaves the caller's setting
        configure_cpu(cfg.runtime.num_threads)
    backend = as_backend(model, tokenizer, cfg)
    info = held(info, model)
    factsets = [facts] if isinstance(facts, FactSet) else list(facts)
    names = [prompt_types] if isinstance(prompt_types, str) else list(prompt_types)
    versions = backend.versions()
    dtype = versions.get("dtype", cfg.model.dtype).removeprefix("torch.")
    the_plan = planning.build(cfg, info, tokenizer, factsets, names, tasks, backend.name, dtype,
                              backend.max_len)
    with writing(the_plan):
        return execute(the_plan, backend, tokenizer, info, cfg)


@contextlib.contextmanager
def writing(the_plan: Plan) -> Iterator[None]:
    """Hold every job's result-directory lock ("already running" if another process holds one),
    then clean what killed writers left beside those directories. Only the writing rank (rank 0
    of a sharded launch) does either."""
    with contextlib.ExitStack() as held:
        if distributed.is_main():
            directories = list(dict.fromkeys(job.directory for job in the_plan.jobs))
            for directory in directories:
                held.enter_context(results.writer_lock(directory))
            for parent in dict.fromkeys(d.parent for d in directories):
                clean_stale_temporaries(parent)
        yield


def pending(the_plan: Plan, cfg: EvalConfig) -> list[planning.Job]:
    """Jobs without an identical stored result (all of them under `output.overwrite`)."""
    if cfg.output.overwrite:
        return list(the_plan.jobs)
    return [j for j in the_plan.jobs if results.cached_summary(j.directory, j.config_hash) is None]


def _add_legacy_json(job: planning.Job, summary: ResultSummary) -> None:
    path = job.directory / "legacy.json"
    if not path.is_file():
        records = read_jsonl(job.directory / "records.jsonl")
        write_json(path, results.legacy_layout(job.task, records, summary.metrics))


def execute(the_plan: Plan, backend: Backend, tokenizer, info: ModelInfo, cfg: EvalConfig) -> list[dict]:
    """Run every job of a validated plan (reusing cached results) and write aggregate summaries.
    Under a launch of several ranks the pending jobs' pieces are split across them (`shards.py`);
    rank 0 writes every result and returns the summaries, the other ranks write nothing and get []."""
    main = distributed.is_main()
    if main:
        check_writable_dir(the_plan.root, paths.root_setting("results", "output.root", cfg.output.root))
    config_yaml = OmegaConf.to_yaml(OmegaConf.structured(cfg))
    versions = backend.versions()
    fresh: dict[int, ResultSummary] = {}

    def finish(job: planning.Job, records: list[dict]) -> None:
        summary = _summary(job, records, info, versions, the_plan, cfg)
        legacy = results.legacy_layout(job.task, records, summary.metrics) if cfg.output.write_legacy_json else None
        results.write_result(job.directory, records, summary.to_json(), config_yaml, legacy)
        print(report.result_line(summary, job.directory), file=sys.stderr)
        fresh[id(job)] = summary

    shards.run(pending(the_plan, cfg), backend, tokenizer, cfg, the_plan.bos, finish if main else None)
    if not main:
        return []
    done: list[Written] = []
    for job in the_plan.jobs:
        summary = fresh.get(id(job))
        if summary is None:
            summary = results.mark_used(job.directory, results.cached_summary(job.directory, job.config_hash))
            print(f"cached: {job.directory}", file=sys.stderr)
            if cfg.output.write_legacy_json:     # not in the hash: asked for later, made from the records
                _add_legacy_json(job, summary)
        done.append(Written("result", job.directory, summary))
    done += _family_summaries(the_plan, done, info)
    done += _combined_summaries(the_plan, done, info)
    return [{**w.summary.to_json(), "kind": w.kind, "directory": str(w.directory)} for w in done]


@dataclass
class Written:
    kind: str                   # result | family | combined
    directory: Path
    summary: ResultSummary


def _summary(job: planning.Job, records: list[dict], info: ModelInfo, versions: dict, the_plan: Plan,
             cfg: EvalConfig) -> ResultSummary:
    return results.new_summary(
        job.task, job.config_hash, model=ModelRecord(info.name, info.path, info.meta), **_coordinates(job, cfg),
        backend=versions, data_fingerprint=job.data_fingerprint, add_bos_train=info.add_bos_train,
        add_bos_eval=bool(the_plan.bos), metrics=metrics.summarize(job.task, records, _label(job)),
        questions_sha256=job.questions_sha256)


def _label(job: planning.Job) -> str:
    # "relation 105", as the result line says: "r105" is the name of 105's reversed relation
    return f"{job.task} {job.prompt_type}" + (f" relation {job.factset.relation_id}" if job.factset else "")


def _coordinates(job: planning.Job, cfg: EvalConfig) -> dict:
    """What a result is about: a text (ppl), or a prompt type over a slice of one relation's facts."""
    if job.text is not None:
        return {"dataset": job.text.name, "text": {"name": job.text.name, "path": str(job.text.path),
                                                   "sha256": job.text.sha256}}
    return {"prompt_type": job.prompt_type, "test_type": cfg.prompt.test_type,
            "open_content": cfg.prompt.open_content if cfg.prompt.test_type == "open" else None,
            "dataset": job.factset.dataset, "relation_id": job.factset.relation_id,
            "fact_range": FactRange(job.fact_range[0], job.fact_range[1] + 1), "seen_fact_ids": job.payload["seen"]}


def _family_summaries(the_plan: Plan, done: list[Written], info: ModelInfo) -> list[Written]:
    """`{family}-all`: per-prompt values with their mean and standard deviation, per slice."""
    by_dir = {w.directory: w.summary for w in done}
    out = []
    for (task, family, rel), jobs in the_plan.multi_prompt.items():
        members = [by_dir[j.directory] for j in jobs]
        full = results.config_hash({"family": family, "members": [j.config_hash for j in jobs]})
        first = jobs[0]
        directory = results.result_dir(the_plan.root, task, f"{family}-all", info.name, first.factset.dataset, rel,
                                       members[0].test_type, members[0].open_content,
                                       results.slice_name(*first.fact_range), full)
        summary = results.new_summary(task, full, family=family, relation_id=rel, dataset=first.factset.dataset,
                                      model=ModelRecord(info.name), prompt_type=f"{family}-all",
                                      test_type=members[0].test_type, **_aggregate(task, members, "prompt_type"))
        results.write_summary_only(directory, summary)
        out.append(Written("family", directory, summary))
    return out


def _combined_summaries(the_plan: Plan, done: list[Written], info: ModelInfo) -> list[Written]:
    """Several relations: per (task, prompt type) the macro (over relations) and micro (over facts) means."""
    groups: dict[tuple, list[ResultSummary]] = {}
    for w in done:
        if w.kind == "result":
            groups.setdefault((w.summary.task, w.summary.prompt_type), []).append(w.summary)
    out = []
    for (task, ptype), members in groups.items():
        if len({m.relation_id for m in members}) < 2:
            continue
        rels = "+".join(m.relation_id for m in members)
        full = results.config_hash({"relations": rels, "members": [m.config_hash for m in members]})
        first = members[0]
        slice_ = results.slice_name(first.fact_range.begin, first.fact_range.end - 1)
        directory = results.result_dir(the_plan.root, task, ptype, info.name, first.dataset, rels,
                                       first.test_type, first.open_content, slice_, full)
        summary = results.new_summary(task, full, relation_id=rels, dataset=first.dataset,
                                      model=ModelRecord(info.name), prompt_type=ptype, test_type=first.test_type,
                                      **_aggregate(task, members, "relation_id", across_relations=True))
        results.write_summary_only(directory, summary)
        out.append(Written("combined", directory, summary))
    return out


def _aggregate(task: str, members: list[ResultSummary], key: str, across_relations: bool = False) -> dict:
    """per_member: {member: metrics}; metrics: slice -> metric -> {values, mean, sd[, micro]}. `n`
    counts facts: the prompts of a family ask about the same facts (n of one of them), relations
    about different ones (their sum, and an n-weighted micro mean beside the macro one). Counts
    (`n_ties`, `n_boundary_merges`) keep each member's value and their total, which in a family
    counts question x prompt pairs (up to n x prompts)."""
    per_member = {getattr(m, key): m.metrics for m in members}
    agg: dict = {}
    for slice_ in {s for m in members for s in m.metrics}:
        counts = [m.metrics.get(slice_, {}).get("n", 0) for m in members]
        agg[slice_] = {"n": sum(counts) if across_relations else max(counts)}
        for metric in metrics.TASK_METRICS[task]:
            values = [m.metric(slice_, metric) for m in members]
            if metric.startswith("n_"):     # counts add up; a mean of counts says little
                agg[slice_][metric] = {"values": values, "total": sum(v or 0 for v in values)}
                continue
            entry = {"values": values, **metrics.mean_sd(values)}
            if across_relations:
                pairs = [(m.metrics[slice_]["n"], m.metrics[slice_][metric]) for m in members
                         if slice_ in m.metrics and m.metrics[slice_].get(metric) is not None]
                total = sum(n for n, _ in pairs)
                entry["micro"] = sum(n * v for n, v in pairs) / total if total else None
            agg[slice_][metric] = entry
    return {"per_member": per_member, "metrics": agg}
