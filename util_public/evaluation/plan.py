"""Planning: every (task, prompt type, relation) to evaluate, fully validated, before any model loads.

A `Job` holds the selected facts, their context strings, the seen slice, the config-hash payload
and the result directory. Building the plan checks every input that can be wrong (fact range,
prompt indices, key tokens, option sets, test type, BOS, gold position), so a bad input exits
with a clear error and no result directory.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from .. import catalogue, known, limits, matching, modelio, objectcase, paths, prompts, relspec
from .. import facts as factio
from ..errors import UserError, under
from ..facts import Fact, id_ranges
from ..runinfo import fingerprint, sha256_text
from . import contexts, ic_lke, metrics, modelinfo, pooling, requests, results, textprobe
from .modelinfo import ModelInfo
from .schema import FACT_TASKS, LIMITS, TASKS, EvalConfig, prompt_types


@dataclass
class FactSet:
    relation_id: str
    dataset: str            # the directory the facts came from (`{dataset}_{Language}` for translations)
    path: Path | None       # the CSV file (None for facts built in memory)
    facts: list[Fact]       # every fact of the file: IC-LKE pools draw from all of them
    sources: tuple[Path, ...] = ()      # files an in-memory set was built from (fingerprinted)
    trained_split: bool = True          # False for facts no checkpoint trained on: no seen/unseen slices
    option_relations: dict[int, list[str]] | None = None    # pooled MC: fact_id -> each distractor's relation


@dataclass
class Job:
    task: str
    prompt_type: str        # the text's name for `ppl`
    family: str             # the prompt family, for `{family}-all` summaries
    factset: FactSet | None     # None for `ppl`, which scores `text`
    selected: list[Fact]
    contexts: dict[int, str]
    seen: set[int] | None
    payload: dict
    config_hash: str
    directory: Path
    fact_range: tuple[int, int]     # first and last selected fact_id
    data_fingerprint: dict          # per-file sha256 and the combined hash
    text: textprobe.Text | None = None
    questions_sha256: str | None = None     # the contexts and facts without options: what every task asks
    null_contexts: dict[int, str] | None = None     # MC with mc.calibration: each fact's subjectless question


@dataclass
class Plan:
    jobs: list[Job]
    bos: list[int]
    root: Path
    multi_prompt: dict[tuple, list[Job]] = field(default_factory=dict)   # (task, family, relation) -> jobs


def dataset_name(cfg: EvalConfig) -> str:
    lang = cfg.data.language
    return f"{cfg.data.dataset}_{lang}" if lang and lang != "English" else cfg.data.dataset


def load_factsets(cfg: EvalConfig, tasks: list[str] | None = None) -> list[FactSet]:
    """Every relation's facts: the files under the data root (translations: `{dataset}_{Language}`),
    or with `data.dataset=known` (the locality probe) or `rehearsal` (the facts `data.rehearsal`
    trains) the catalogue's real facts; none when no task scores facts. Their options are checked
    for multiple choice only, among `tasks` (default `cfg.tasks`)."""
    tasks = cfg.tasks if tasks is None else tasks
    if not any(t in FACT_TASKS for t in tasks):
        return []
    catalogued = cfg.data.dataset in known.FOLDERS     # known or rehearsal: the catalogue's real facts
    if cfg.data.avoid_objects_of and not catalogued:
        raise UserError("data.avoid_objects_of", f"only the real facts avoid a trained dataset's objects "
                        f"(data.dataset={cfg.data.dataset})", "evaluate data.dataset=known, or leave it unset")
    num_options = cfg.mc.num_options if "mc" in tasks else None
    if cfg.mc.pool_relations and not catalogued:
        num_options = None      # pooled questions take the first stored distractors they need (pooling checks)
    sets = known_factsets(cfg, num_options) if catalogued else fact_files(cfg, num_options)
    return pooled(cfg, sets) if cfg.mc.pool_relations else sets


def fact_files(cfg: EvalConfig, num_options: int | None) -> list[FactSet]:
    root = paths.root("data", cfg.data.root)
    dataset = dataset_name(cfg)
    out = []
    for rel in relspec.separate(cfg.data.relation_id):
        facts = factio.load_relation(root, dataset, rel, num_options=num_options,
                                     substring_rule=cfg.data.substring_rule)
        out.append(FactSet(rel, dataset, factio.relation_file(root, dataset, rel), facts))
    return out


def known_factsets(cfg: EvalConfig, num_options: int | None) -> list[FactSet]:
    """The catalogue's real facts of `data.dataset` (known: the locality control) per relation,
    distractors drawn with `cfg.seed` (with `data.avoid_objects_of`, never one of that dataset's
    objects of the relation)."""
    if cfg.data.language and cfg.data.language != "English":
        raise UserError("data.language", f"{cfg.data.language}: the {cfg.data.dataset} facts are in English only",
                        f"evaluate data.dataset={cfg.data.dataset} without data.language")
    kind, trained, data_root = cfg.data.dataset, cfg.data.avoid_objects_of, paths.root("data", cfg.data.root)
    out = []
    for rel in relspec.separate(cfg.data.relation_id):
        dataset, avoid = kind, []
        sources = (known.path(rel, kind), catalogue.vocab_file(rel))
        with under(f"data.avoid_objects_of={trained}") if trained else contextlib.nullcontext():
            if trained:
                path = factio.relation_file(data_root, trained, rel)
                avoid = [f.object for f in factio.load_relation(data_root, trained, rel, num_options=None,
                                                                 substring_rule="off")]
                dataset, sources = known.untrained_dataset(trained, kind), (*sources, path)
            facts = known.facts(rel, num_options, cfg.seed, avoid, kind)
        out.append(FactSet(rel, dataset, None, facts, sources, trained_split=False))
    return out


def pooled(cfg: EvalConfig, sets: list[FactSet]) -> list[FactSet]:
    """Cross-relation MC (`mc.pool_relations`): each set's questions with options pooled from the
    other relations' vocabularies (`pooling`), under a dataset name of their own."""
    data_root = paths.root("data", cfg.data.root)
    out = []
    for fs in sets:
        others = pooling.pool_ids(cfg.mc.pool_relations, fs.relation_id, data_root)
        facts, kinds = pooling.pool_facts(fs.facts, others, cfg.mc.num_options, cfg.seed, data_root)
        sources = tuple(p for p in (fs.path, *fs.sources) if p) + tuple(pooling.vocab_files(others, data_root))
        out.append(FactSet(fs.relation_id, pooling.dataset_name(fs.dataset, others), None, facts, sources,
                           fs.trained_split, kinds))
    return out


def select(factset: FactSet, begin: int, end: int | None) -> list[Fact]:
    """Facts with begin <= fact_id < end; a range reaching outside the data is an error."""
    if not factset.facts:
        raise UserError(f"relation {factset.relation_id}", f"{factset.path} holds no facts")
    return factio.select(factset.facts, begin, end, f"relation {factset.relation_id}: data.index_begin/index_end")


def expand(names: list[str], cat, language: str | None, relation_id: str, data_root: Path | None = None) -> list[str]:
    """Concrete prompt types: wildcards become every index of their catalogue family."""
    out = []
    for name in names:
        ptype = prompts.parse(name)
        if ptype.wildcard and cat is None and not ptype.borrow:
            raise UserError(f"prompt type {name!r}", f"relation {relation_id} has no prompt catalogue")
        out += prompts.expand(name, cat, language, data_root)
    if not out:     # else the run would do nothing and report every result as cached
        raise UserError("prompt.type", f"{names} selects no prompt for relation {relation_id}",
                        "name a prompt type (e.g. hgp-0), or a wildcard whose family the catalogue fills")
    return list(dict.fromkeys(out))     # `[test-*, test-0]` evaluates test-0 once


def _hash_payload(cfg: EvalConfig, task: str, prompt_type: str, factset: FactSet, fact_range: tuple[int, int],
                  seen: set[int] | None, info: ModelInfo, scored: str, backend: str, dtype: str,
                  bos: list[int], spacing: str) -> dict:
    """Everything that changes this result's numbers (SPEC §3.6), nothing that does not. The data
    enter as what is scored (`_scored_sha256`), not as the input files' hashes: a paraphrase added
    to the catalogue, or a comment, leaves every stored result of the other prompts valid."""
    p = cfg.prompt
    payload = {
        "task": task, "prompt_type": prompt_type, "relation_id": factset.relation_id, "dataset": factset.dataset,
        "fact_range": list(fact_range), "seen": sorted(seen) if seen is not None else None,
        "prompt": {"test_type": p.test_type, "open_content": p.open_content if p.test_type == "open" else None,
                   "separator": p.separator, "chat_template": p.chat_template, "bos_ids": bos,
                   "combine_spacing": spacing, "language": cfg.data.language},
        "backend": backend, "dtype": dtype, "seed": cfg.seed, "model": info.identity, "data": scored,
    }
    if task == "mc":
        payload["mc"] = {"num_options": cfg.mc.num_options, "gold_position": cfg.mc.gold_position,
                         "pool_relations": cfg.mc.pool_relations}
        if cfg.mc.calibration != "none":
            payload["mc"]["calibration"] = {"mode": cfg.mc.calibration, "null_subject": cfg.mc.null_subject}
        if cfg.mc.object_case != "as_is":    # a changed rule recomputes those results once
            payload["mc"]["object_case"] = cfg.mc.object_case
            payload["mc"]["title_rule"] = objectcase.TITLE_RULE
        if cfg.mc.pool_relations:     # pooled records carry per-metric fields: a new metric recomputes them
            payload["mc"]["metrics"] = sorted(metrics.MC_METRICS)
    if task == "gen":    # the matchers' names and version: a new or changed matcher recomputes stored results once
        payload["gen"] = {"max_new_tokens": cfg.gen.max_new_tokens, "metrics": sorted(metrics.GEN_METRICS),
                          "matching": matching.VERSION}
    if task == "loss":
        payload["loss_probe"] = dataclasses.asdict(cfg.loss_probe)
        if cfg.loss_probe.object_case == "title":    # a changed rule recomputes those results once
            payload["loss_probe"]["title_rule"] = objectcase.TITLE_RULE
    if prompts.parse(prompt_type).family == "ic-lke" or (p.test_type == "open" and p.open_content == "ic-lke"):
        payload["ic_lke"] = dataclasses.asdict(cfg.ic_lke)
    return payload


def _scored_sha256(ctxs: dict[int, str], selected: list[Fact], options: bool) -> str:
    """One hash of the questions as scored: each fact's context, and the facts themselves (object,
    every column, and with `options` the distractors: multiple choice scores them, generation and
    the loss probe do not) in order."""
    facts = selected if options else [dataclasses.replace(f, options=[]) for f in selected]
    return sha256_text("\n".join(f"{fid}\t{ctx!r}" for fid, ctx in ctxs.items()) + "\n"
                       + factio.facts_to_csv(facts))


def _data_fingerprint(factset: FactSet, cats: list, data_root: Path, pool_path: Path | None) -> dict:
    """sha256 of every input file (facts, prompt catalogues including borrowed ones, relation
    catalogue, IC-LKE pool) + one combined."""
    files = catalogue.relations_files(data_root) + [c.path for c in cats if c] + list(factset.sources)
    if factset.path is not None:
        files.append(factset.path)
    if pool_path is not None:
        files.append(pool_path)
    fp = fingerprint(files)
    if factset.path is None:   # in-memory facts: their content is the data
        fp["combined"] = sha256_text(fp["combined"] + factio.facts_to_csv(factset.facts))
    return fp


def check_config(cfg: EvalConfig, tasks: list[str], backend: str) -> None:
    """Settings that are wrong whatever the data: checked first, before facts or models load."""
    if not tasks:
        raise UserError("tasks", "no task given", f"use a list of {', '.join(TASKS)}")
    for t in tasks:
        if t not in TASKS:
            raise UserError("tasks", f"unknown task {t!r}", f"use {', '.join(TASKS)}")
    limits.check(cfg, LIMITS)
    if backend == "hf":
        modelio.check_device(cfg.hf.device, "hf.device")
    if cfg.mc.pool_relations and list(tasks) != ["mc"]:
        raise UserError("mc.pool_relations", f"pooled options are for multiple choice only, tasks={list(tasks)}",
                        "evaluate tasks=[mc] with mc.pool_relations, and other tasks in another call")
    if "loss" in tasks and backend == "vllm":     # a backend of your own runs it with its token_logprobs
        raise UserError("backend", "the per-token loss probe does not run on vllm", "use backend=hf")
    contexts.check_test_type(contexts.ContextSpec("", None, test_type=cfg.prompt.test_type,
                                                  open_content=cfg.prompt.open_content))
    if "loss" in tasks:
        objectcase.written("x", cfg.loss_probe.object_case, "loss_probe.object_case")
    if "mc" in tasks:
        requests.gold_index(Fact(0, "", "s", "o", []), cfg.mc.num_options, cfg.mc.gold_position, cfg.seed)
        contexts.check_calibration(cfg.mc.calibration, cfg.mc.null_subject, cfg.prompt.test_type)
        objectcase.written("x", cfg.mc.object_case, "mc.object_case")
    for name in prompt_types(cfg):
        prompts.parse(name)


def _pool(cfg: EvalConfig, factset: FactSet, data_root: Path) -> tuple[list[Fact], Path | None]:
    source = cfg.ic_lke.example_source
    with under(f"ic_lke.example_source={source}"):
        pool = ic_lke.load_pool(source, factset.facts, data_root, factset.relation_id)
    if source == "same":
        return pool, None
    return pool, paths.resolve(source) if source.endswith(".csv") else factio.relation_file(
        data_root, source, factset.relation_id)


def build(cfg: EvalConfig, info: ModelInfo, tokenizer, factsets: list[FactSet], names: list[str] | None,
          tasks: list[str] | None, backend: str, dtype: str, max_len: int | None = None) -> Plan:
    """Validate every input and lay out every job; nothing is written and no model is loaded."""
    tasks = list(dict.fromkeys(tasks if tasks is not None else cfg.tasks))    # `[mc,mc]` runs mc once
    check_config(cfg, tasks, backend)
    bos = requests.bos_prefix(tokenizer, cfg.prompt.add_bos)
    data_root = paths.root("data", cfg.data.root)
    root = paths.root("results", cfg.output.root)
    spacing = cfg.prompt.combine_spacing or info.combine_spacing
    plan = Plan([], bos, root)
    fact_tasks = [t for t in tasks if t in FACT_TASKS]
    for factset in factsets if fact_tasks else []:
        selected = select(factset, cfg.data.index_begin, cfg.data.index_end)
        fact_range = (cfg.data.index_begin, cfg.data.index_end - 1 if cfg.data.index_end is not None
                      else max(f.fact_id for f in factset.facts))
        rel = factset.relation_id
        cat = _catalogue(rel, data_root)
        concrete = expand(names or prompt_types(cfg), cat, cfg.data.language, rel, data_root)
        seen = modelinfo.seen_fact_ids(cfg.data.seen_fact_ids, info, rel, cfg.data.dataset,
                                       [f.fact_id for f in selected]) if factset.trained_split else None
        _check_seen_within_data(cfg.data.seen_fact_ids, seen, factset)
        spec = contexts.ContextSpec(rel, cat, cfg.data.language, cfg.prompt.separator, cfg.prompt.test_type,
                                    cfg.prompt.open_content, cfg.prompt.chat_template, spacing, info.key_format,
                                    data_root)
        uses_ic = any(prompts.parse(n).family == "ic-lke" for n in concrete)
        pool, pool_path = _pool(cfg, factset, data_root) if uses_ic else (None, None)
        data_fp = _data_fingerprint(factset, [cat, *_borrowed_catalogues(concrete, data_root)], data_root, pool_path)
        if "mc" in tasks:
            for fact in selected:
                requests.mc_options(fact, cfg.mc.num_options, cfg.mc.gold_position, cfg.seed)
        for name in concrete:
            _check_key_tokens(name, cfg, info, tokenizer, rel)
            if factset.option_relations is not None:
                pooling.check_asked(name, rel, pooling.pool_ids(cfg.mc.pool_relations, rel, data_root))
            ctxs = contexts.build(name, selected, spec, tokenizer=tokenizer, pool=pool, ic_cfg=cfg.ic_lke)
            _check_lengths(ctxs, tokenizer, bos, max_len, cfg, tasks)
            questions = _scored_sha256(ctxs, selected, options=False)
            nulls = (contexts.subjectless(name, selected, spec, cfg.mc.null_subject, tokenizer)
                     if "mc" in tasks and cfg.mc.calibration != "none" else None)
            for task in fact_tasks:
                scored = _scored_sha256(ctxs, selected, options=True) if task == "mc" else questions
                payload = _hash_payload(cfg, task, name, factset, fact_range, seen, info, scored, backend, dtype,
                                        bos, spacing)
                full = results.config_hash(payload)
                directory = results.result_dir(root, task, name, info.name, factset.dataset, rel,
                                               cfg.prompt.test_type, cfg.prompt.open_content,
                                               results.slice_name(*fact_range), full)
                job = Job(task, name, prompts.parse(name).group, factset, selected, ctxs, seen, payload, full,
                          directory, fact_range, data_fp, questions_sha256=questions,
                          null_contexts=nulls if task == "mc" else None)
                plan.jobs.append(job)
    if "ppl" in tasks:
        plan.jobs.append(_text_job(cfg, info, tokenizer, bos, backend, dtype, max_len, root))
    for job in (j for j in plan.jobs if j.factset is not None):
        plan.multi_prompt.setdefault((job.task, job.family, job.factset.relation_id), []).append(job)
    plan.multi_prompt = {k: v for k, v in plan.multi_prompt.items() if len(v) > 1}
    return plan


def _text_job(cfg: EvalConfig, info: ModelInfo, tokenizer, bos: list[int], backend: str, dtype: str,
              max_len: int | None, root: Path) -> Job:
    """The general-text probe: one job per model (it does not depend on facts or prompt types)."""
    text = textprobe.load(cfg.ppl.text)
    windows = textprobe.requests(tokenizer, text, bos, max_len)
    payload = {"task": "ppl", "text": text.name, "text_sha256": text.sha256, "bos_ids": bos, "backend": backend,
               "dtype": dtype, "model": info.identity, "window": max_len if len(windows) > 1 else None}
    full = results.config_hash(payload)
    directory = results.text_result_dir(root, "ppl", text.name, info.name, full)
    return Job("ppl", text.name, "text", None, [], {}, None, payload, full, directory, (0, 0),
               fingerprint([text.path]), text)


def _catalogue(relation_id: str, data_root: Path):
    """The relation's prompt catalogue; relations without one still allow built-in prompt types."""
    try:
        return catalogue.prompts(relation_id, data_root)
    except UserError:
        if catalogue.prompts_file(relation_id, data_root).is_file():
            raise                   # a broken catalogue is an error, not a missing one
        return None


def _borrowed_catalogues(names: list[str], data_root: Path) -> list:
    """The catalogues `X@B` prompt types read (trigger types read none)."""
    borrowed = {p.borrow: p for p in map(prompts.parse, names) if p.borrow and not p.family.startswith("trigger-")}
    return [prompts.borrowed_catalogue(borrowed[b], data_root) for b in sorted(borrowed)]


def _check_key_tokens(name: str, cfg: EvalConfig, info: ModelInfo, tokenizer, relation_id: str) -> None:
    """Trigger prompts (the context's, or the open content's) need their relation's key token(s);
    `trigger-mid@B` needs B's."""
    opened = str(cfg.prompt.open_content) if cfg.prompt.test_type == "open" else ""
    for used in (name, opened):
        if used and prompts.parse(used).family.startswith("trigger-"):
            modelinfo.require_key_tokens(info, tokenizer, prompts.relation_of(used, relation_id))


def _check_seen_within_data(setting, seen: set[int] | None, factset) -> None:
    """An explicit seen range names facts of the data (`0:500` on 100 facts was taken as given)."""
    if seen is None or str(setting).strip() == "auto":
        return
    lacking = sorted(seen - {f.fact_id for f in factset.facts})
    if lacking:
        raise UserError(f"data.seen_fact_ids={setting}", f"names fact_ids relation {factset.relation_id} lacks "
                        f"({id_ranges(lacking)})", "the seen facts are the ones Phase 2 trained, within the data")


def _check_lengths(ctxs: dict[int, str], tokenizer, bos: list[int], max_len: int | None, cfg: EvalConfig,
                   tasks: list[str]) -> None:
    """Contexts that cannot fit the model (plus one answer token, or the generation budget)."""
    if not max_len:
        return
    extra = max(1, cfg.gen.max_new_tokens if "gen" in tasks else 1)
    # Every context is counted: the longest in characters need not be the longest in tokens (CJK).
    n, longest = max((len(requests.prompt_ids(tokenizer, text, bos)), fid) for fid, text in ctxs.items())
    if n + extra > max_len:
        fixes = [f"lower gen.max_new_tokens ({extra})"] if extra > 1 else []      # the setting at fault, first
        fixes += ["shorten the prompt (e.g. fewer ic_lke.example_num)", "raise the limit"]
        raise UserError(f"fact_id {longest}", f"the context has {n} tokens; with {extra} more it exceeds the "
                        f"limit of {max_len}", ", or ".join(fixes))
