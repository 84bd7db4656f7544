"""The main demo (docs/DEMO.md): generate facts, Phase 1, Phase 2, evaluate, one table + one PNG.

    python -m util_public.demo [quick|full] [dotlist overrides, e.g. model=smollm2-135m seed=0]

A variant is one recipe file (`recipes/demo.yaml`, `recipes/demo_quick.yaml`) typed by `DemoConfig`.
Everything the demo writes lives under its output folder (default `runs/demo-<variant>/`): the
facts, the training runs, a private copy of models.json as the registry (so the user's tracked
registry stays untouched), the evaluation results, `table.md`, `results.json` and `demo.png`.
Rerunning reuses finished work: training answers "already complete" and evaluation reuses its
cached result directories.

Four models are compared: the base model, Phase 1 only, Phase 1 + Phase 2, and Phase 2 only
(the train prompt trained directly on the base model, the SFT-style control). Besides the
paper's columns, `eval.probes` adds locality (real facts the model knew, general-text
perplexity) and specificity (the memorized object emitted under an unrelated prompt; optionally
cross-relation MC) columns: `demo_report` lays out the table and the figure.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from . import known, limits, objectcase, paths, prompts, relspec, runinfo, textio
from .artifacts import RunManifest
from .atomicio import write_bytes, write_json, write_text
from .demo_report import COLUMNS, PROBES, ROWS, plot, probe_columns, render_table, values
from .errors import UserError, exit_on_user_error, under
from .runinfo import sha256_text

RECIPES = paths.REPO_ROOT / "recipes"
VARIANTS = {"full": "demo.yaml", "quick": "demo_quick.yaml"}
OBJECT_SOURCES = {"catalogue": "sync_random_o", "synthetic": "sync_synthetic_o"}   # objects -> dataset name


@dataclass
class EvalSettings:
    dtype: str = "native"               # scoring dtype: bf16 where the CPU/GPU has it (1.5-2.2x faster on AMX or AVX512_BF16), else fp32
    key_prompt: str = "trigger-mid"
    train_prompt: str = "hgp-0"
    test_prompts: List[str] = field(default_factory=lambda: ["test-0", "test-1", "test-2"])
    unrelated_prompts: List[str] = field(default_factory=lambda: ["unrelated-0"])
    gen_max_new_tokens: int = 8         # enough for a city name; `prefix` needs only its start
    mc_batch_size: Optional[int] = None     # null: the evaluation's defaults; in bf16 both move scores
    gen_batch_size: Optional[int] = None    # and generations a little (16: the tables before 2026-12-07's)
    backend: str = "hf"                 # hf | vllm (a vLLM server per model: bash scripts/setup_vllm.sh)
    # Locality and specificity probes (demo_report.PROBES): known = real facts of `known_relations`
    # (MC + generation under `known_prompt`), text = perplexity of the catalogue text `text`,
    # emission = generation under the unrelated prompts (the memorized object emitted), cross =
    # MC on unseen facts with options pooled with `cross_relations`' objects, under the train
    # prompt and under theirs (`hgp-0@71`).
    probes: List[str] = field(default_factory=lambda: ["known", "text", "emission"])
    known_relations: List[str] = field(default_factory=list)   # empty: the trained ones with known facts, then 50, 71
    known_prompt: str = "hgp-0"
    known_max_facts: Optional[int] = 20     # the first N known facts of each relation (null: all; cost in docs/DEMO.md)
    text: str = "general"
    cross_relations: List[str] = field(default_factory=lambda: ["71", "105"])


@dataclass
class DemoConfig:
    variant: str = "full"
    model: str = "qwen2.5-coder-0.5b-instruct"
    relation_id: str = "50"             # or several trained jointly, "12+21+50+71+105" (table: their mean)
    num_facts: int = 100                # Phase 1 memorizes all of them
    k: int = 50                         # Phase 2 trains the train prompt on facts 0..k-1
    num_options: int = 100              # gold + distractors per fact (generated and scored)
    objects: str = "catalogue"          # catalogue: real objects of the type (real capitals); synthetic: invented names
    # as_is: objects in the vocabulary's lower case (SPEC §4.3); title: "Port of Spain" in the facts
    # trained and in every question asked, the known facts' options included (docs/RESULTS.md §1.9)
    object_case: str = "as_is"
    data_seed: int = 0
    seed: int = 42                      # training seed of both phases
    threads: int = 2
    out_dir: Optional[str] = None       # default runs/demo-<variant>
    phase1: List[str] = field(default_factory=list)     # overrides of training/conf/phase1.yaml
    phase2: List[str] = field(default_factory=list)     # overrides of training/conf/phase2.yaml
    # Appended after the recipe's own lists (the last value of a key wins), so a study changes one
    # setting from the command line: `phase2_extra=[train.learning_rate=1e-5]`.
    phase1_extra: List[str] = field(default_factory=list)
    phase2_extra: List[str] = field(default_factory=list)
    eval: EvalSettings = field(default_factory=EvalSettings)


def load_config(variant: str, overrides: list[str] | None = None) -> DemoConfig:
    """The recipe of `variant` (a name in VARIANTS or a YAML path) merged with dotlist overrides."""
    path = RECIPES / VARIANTS[variant] if variant in VARIANTS else paths.resolve(variant)
    if not path.is_file():
        raise UserError("demo", f"no recipe {variant!r} ({path})", f"use one of {sorted(VARIANTS)} or a YAML path")
    try:
        node = OmegaConf.merge(OmegaConf.structured(DemoConfig), OmegaConf.load(path),
                               OmegaConf.from_dotlist(list(overrides or [])))
        cfg: DemoConfig = OmegaConf.to_object(node)
    except OmegaConfBaseException as exc:      # a misspelt key or a wrong type: one line, not a traceback
        raise UserError(f"demo ({path}): {getattr(exc, 'full_key', None) or 'settings'}",
                        str(exc).splitlines()[0], "the settings and their types: util_public/demo.py, DemoConfig") from None
    if cfg.objects not in OBJECT_SOURCES:
        raise UserError(f"{path}: objects", f"unknown object source {cfg.objects!r}",
                        f"use one of {', '.join(OBJECT_SOURCES)}")
    objectcase.written("x", cfg.object_case, f"{path}: object_case")     # refuses an unknown case
    if not 0 < cfg.k < cfg.num_facts:
        raise UserError(str(path), f"k={cfg.k} must lie in 1..num_facts-1 ({cfg.num_facts})",
                        "unseen facts are k..num_facts-1")
    unknown = sorted(set(cfg.eval.probes) - set(PROBES))
    if unknown:
        raise UserError("eval.probes", f"unknown probes {unknown}", f"use any of {list(PROBES)}")
    limits.check(cfg, LIMITS)
    return cfg


# Checked before the first stage runs (the stages check them again, but only once they start).
LIMITS = {"num_options": ">= 2", "threads": ">= 1", "eval.known_max_facts": ">= 1",
          "seed": limits.SEED, "data_seed": limits.SEED}


def output_dir(cfg: DemoConfig) -> Path:
    return paths.resolve(cfg.out_dir or f"runs/demo-{cfg.variant}")


def use_private_roots(out: Path) -> Path:
    """Point every MTG_* root into `out`; the registry starts as a copy of the current one."""
    source = paths.root("registry")
    registry = out / "models.json"
    out.mkdir(parents=True, exist_ok=True)
    if not registry.is_file():
        write_bytes(registry, source.read_bytes())   # whole or absent, as the scripts' copy
    os.environ.update({"MTG_DATA_ROOT": str(out / "data"), "MTG_RUNS_ROOT": str(out / "runs"),
                       "MTG_RESULTS_ROOT": str(out / "results"), "MTG_MODELS_JSON": str(registry)})
    return registry


def dataset(cfg: DemoConfig) -> str:
    """The paper's dataset name for real objects, 100 options, lower case and data seed 0; invented
    objects, other option counts, title case and other data seeds get their own dataset folders (the
    subjects do not depend on the first three). The name is in every run name's digest and result
    path, so a changed data setting trains and scores anew (a rerun with another data seed reused
    the old facts)."""
    name = OBJECT_SOURCES[cfg.objects]
    name = name if cfg.num_options == 100 else f"{name}_opt{cfg.num_options}"
    name = name if cfg.object_case == "as_is" else f"{name}_{cfg.object_case}"
    return name if cfg.data_seed == 0 else f"{name}_seed{cfg.data_seed}"


def ensure_facts(cfg: DemoConfig) -> None:
    """Generate the relations' fictional facts where their file is missing or shorter than
    `num_facts` (generation is prefix-stable: a longer file keeps the shorter one's facts)."""
    from .datagen import run, schema
    from .facts import read_facts, relation_file

    files = {r: relation_file(paths.root("data"), dataset(cfg), r) for r in relations(cfg)}
    missing = [r for r, f in files.items() if not f.is_file() or len(read_facts(f, num_options=None)) < cfg.num_facts]
    if not missing:
        return
    gen = schema.load(schema.compose([f"relation_ids=[{','.join(missing)}]", f"num_facts={cfg.num_facts}",
                                      f"dataset={dataset(cfg)}", f"objects.vocab_source={cfg.objects}",
                                      f"num_options={cfg.num_options}", f"seed={cfg.data_seed}",
                                      f"objects.case={cfg.object_case}",
                                      "on_exists=overwrite"]))
    run.run(gen)


def train(config_name: str, overrides: list[str]) -> str:
    """Run (or resume, or reuse) one training stage; return its final checkpoint's registry name."""
    from .training import run

    run.train_stage(run.compose(config_name, overrides), overrides)
    gc.collect()                        # the trainer's model must be gone before the next big allocation
    return stage_manifest(overrides).final_checkpoint(run_name(overrides)).registry_name


def run_name(overrides: list[str]) -> str:
    return next(o.split("=", 1)[1] for o in overrides if o.startswith("save.run_name="))


def stage_manifest(overrides: list[str]) -> RunManifest:
    return RunManifest.of(paths.root("runs") / run_name(overrides))


def numerics_note(cfg: DemoConfig, p1_overrides: list[str]) -> str:
    """The formats that ran (they change the numbers: docs/RESULTS.md, "Across processors")."""
    from . import modelio, numerics

    scoring = numerics.choose(cfg.eval.dtype, modelio.default_device(), "eval.dtype")
    return f"{stage_manifest(p1_overrides).precision} training, {scoring} scoring"


def stage_overrides(cfg: DemoConfig) -> dict[str, list[str]]:
    """The three training stages' overrides.

    Run names carry a digest of their stage's settings: a rerun finds its finished run, while a
    changed recipe trains a new run instead of being refused as a different config for the same name.
    """
    common = [f"data.relation_id={cfg.relation_id}", f"data.dataset={dataset(cfg)}", f"train.seed={cfg.seed}",
              f"train.num_threads={cfg.threads}"]
    p1 = ["model.base=" + cfg.model, "data.index_begin=0", f"data.index_end={cfg.num_facts}", *common, *cfg.phase1,
          *cfg.phase1_extra]
    p1_name = _named("phase1", p1)
    p2 = ["data.index_begin=0", f"data.index_end={cfg.k}", *common, *cfg.phase2, *cfg.phase2_extra]
    return {"p1": [*p1, f"save.run_name={p1_name}"],
            "p1p2": [f"save.run_name={_named('phase1-phase2', [p1_name, *p2])}", "model.base_run=" + p1_name, *p2],
            "p2": [f"save.run_name={_named('phase2-only', [cfg.model, *p2])}", "model.base=" + cfg.model,
                   "model.allow_foreign_base=true", *p2]}


def _named(stage: str, settings: list[str]) -> str:
    return f"{stage}-{sha256_text(json.dumps(settings))[:10]}"


def relations(cfg: DemoConfig) -> list[str]:
    """The relation ids, parsed as the evaluation parses the same `data.relation_id`."""
    return relspec.separate(cfg.relation_id)


def has_key_tokens(info, tokenizer, relation_ids: list[str]) -> bool:
    needed = [t for r in relation_ids for t in prompts.key_tokens(r, info.key_format)]
    return all(t in tokenizer.get_added_vocab() for t in needed)


def known_relations(cfg: DemoConfig) -> list[str]:
    """The locality control's relations: `eval.known_relations`, else the trained relations that
    have known facts followed by 50 and 71 (so the trained relation and another one)."""
    if cfg.eval.known_relations:
        return [str(r) for r in cfg.eval.known_relations]
    have = set(known.available())
    return list(dict.fromkeys(r for r in [*relations(cfg), "50", "71"] if r in have))


def columns(cfg: DemoConfig) -> list:
    return [*COLUMNS, *probe_columns(cfg.eval.probes, known_relations(cfg), relations(cfg))]


def prompt_groups(cfg: DemoConfig) -> dict[str, list[str]]:
    """Which prompt types each column group averages over (demo_report.Column.group)."""
    e = cfg.eval
    return {"key": [e.key_prompt], "train": [e.train_prompt], "test": list(e.test_prompts),
            "unrelated": list(e.unrelated_prompts), "known": [e.known_prompt], "text": ["text"],
            "own": [e.train_prompt], "borrowed": [f"{e.train_prompt}@{b}" for b in e.cross_relations],
            "borrowed-key": [f"{e.key_prompt}@{b}" for b in e.cross_relations]}


def evaluations(cfg: DemoConfig, keys: set[str]) -> list[tuple[str, list[str], list[str], list[str]]]:
    """(source, config overrides, prompt types, tasks) of every evaluation of one model; `keys`:
    the relations whose key tokens it has."""
    e = cfg.eval
    base = [f"data.relation_id={cfg.relation_id}", f"data.dataset={dataset(cfg)}", f"data.seen_fact_ids=0:{cfg.k}",
            f"model.dtype={e.dtype}", f"backend={e.backend}", f"mc.num_options={cfg.num_options}",
            f"gen.max_new_tokens={e.gen_max_new_tokens}", f"mc.object_case={cfg.object_case}",
            *([f"mc.batch_size={e.mc_batch_size}"] if e.mc_batch_size else []),
            *([f"gen.batch_size={e.gen_batch_size}"] if e.gen_batch_size else [])]
    every = [*base, "data.index_begin=0", f"data.index_end={cfg.num_facts}"]
    unseen = [*base, f"data.index_begin={cfg.k}", f"data.index_end={cfg.num_facts}"]
    gen_unseen = [e.train_prompt, *(e.unrelated_prompts if "emission" in e.probes else [])]
    out = [("facts", every, [e.train_prompt], ["mc"]), ("facts", unseen, [*e.test_prompts, *e.unrelated_prompts], ["mc"]),
           ("facts", unseen, gen_unseen, ["gen"])]
    if set(relations(cfg)) <= keys:
        out.insert(0, ("facts", every, [e.key_prompt], ["mc"]))
    for r in known_relations(cfg) if "known" in e.probes else []:
        n = len(known.load(r).facts) if e.known_max_facts is None else min(e.known_max_facts, len(known.load(r).facts))
        questions = [*base, f"data.relation_id={r}", "data.dataset=known", "data.seen_fact_ids=null",
                     "data.index_begin=0", f"data.index_end={n}"]
        out.append(("known", questions, [e.known_prompt], ["mc", "gen"]))
        if r in relations(cfg):     # the same questions with no memorized object among the options
            out.append(("known-untrained", [*questions, f"data.avoid_objects_of={dataset(cfg)}"], [e.known_prompt],
                        ["mc"]))
    if "text" in e.probes:
        out.append(("text", [*base, f"ppl.text={e.text}"], [], ["ppl"]))
    for r in relations(cfg) if "cross" in e.probes else []:
        others = [b for b in e.cross_relations if b != r]
        out.append(("pooled", [*unseen, f"data.relation_id={r}", f"mc.pool_relations={'+'.join(others)}"],
                    [e.train_prompt, *(f"{e.train_prompt}@{b}" for b in others),
                     *(f"{e.key_prompt}@{b}" for b in others if b in keys)], ["mc"]))
    return out


def check_evaluations(cfg: DemoConfig) -> None:
    """Plan the base model's evaluations (its tokenizer, no weights; 1.4-3.7 s for the full demo on
    the 2-core AMD EPYC with AVX512_BF16) before any training: an evaluation setting they cannot use
    (a prompt or known-fact relation that does not exist) failed only in the Phase-1 model's
    evaluation, after all three training stages. The key prompt, whose token the base model lacks,
    is parsed only."""
    from . import modelio
    from .evaluation import api
    from .evaluation.plan import build

    with under("eval.key_prompt"):
        prompts.parse(cfg.eval.key_prompt)
    info = api.describe(cfg.model)
    tokenizer = modelio.load_tokenizer(info.path)
    for _, overrides, names, tasks in evaluations(cfg, set()):
        ecfg = api.config([*overrides, f"tasks=[{','.join(tasks)}]"])
        build(ecfg, info, tokenizer, api.load_factsets(ecfg), names, tasks, "hf", ecfg.model.dtype)


def evaluate_model(name: str, cfg: DemoConfig) -> dict[str, dict]:
    """{column: value} for one model; key accuracy None when the model has no key token."""
    from .evaluation import api
    from .runtime import configure_cpu

    configure_cpu(cfg.threads)
    info = api.describe(name)
    model, tok = api.load(info, api.config([f"model.dtype={cfg.eval.dtype}", f"backend={cfg.eval.backend}"]))
    found: dict[tuple, list[float]] = {}     # (source, relation, task, prompt type, slice, metric) -> values
    keys = {r for r in {*relations(cfg), *cfg.eval.cross_relations} if has_key_tokens(info, tok, [r])}
    for source, overrides, names, tasks in evaluations(cfg, keys):
        ecfg = api.config([*overrides, f"tasks=[{','.join(tasks)}]"])
        for s in api.evaluate(model, tok, info, api.load_factsets(ecfg), names, tasks, ecfg):
            if s["kind"] != "result":
                continue
            ptype = s["prompt_type"] if s["task"] != "ppl" else "text"
            for slice_, vals in s["metrics"].items():
                for metric, value in vals.items():
                    found.setdefault((source, s["relation_id"], s["task"], ptype, slice_, metric), []).append(value)
    del model
    gc.collect()
    groups, cols = prompt_groups(cfg), columns(cfg)
    row = values(found, groups, cols, relations(cfg))
    if len(relations(cfg)) > 1:
        row["per_relation"] = {r: values(found, groups, [c for c in cols if c.source in ("facts", "pooled")], [r])
                               for r in relations(cfg)}
    row["n_unseen"] = cfg.num_facts - cfg.k
    return row


def run_demo(cfg: DemoConfig) -> dict:
    """The whole pipeline; returns {"rows", "table", "timings_s", "paths"} and writes them under the output dir."""
    out = output_dir(cfg)
    use_private_roots(out)
    timings: dict[str, float] = {}

    def timed(label, fn, *args):
        t0 = time.time()
        value = fn(*args)
        timings[label] = round(time.time() - t0, 1)
        print(f"demo: {label} done in {timings[label]:.0f} s", file=sys.stderr)
        return value

    timed("facts", ensure_facts, cfg)
    check_evaluations(cfg)
    stages = stage_overrides(cfg)
    names = {"base": cfg.model,
             "phase 1": timed("train phase 1", train, "phase1", stages["p1"])}
    names["phase 1 + phase 2"] = timed("train phase 2", train, "phase2", stages["p1p2"])
    names["phase 2 only"] = timed("train phase 2 only", train, "phase2", stages["p2"])
    rows = {label: timed(f"evaluate {label}", evaluate_model, names[label], cfg) for label in ROWS}
    several = len(relations(cfg)) > 1
    which = f"relations {cfg.relation_id} (mean over relations)" if several else f"relation {cfg.relation_id}"
    formats = numerics_note(cfg, stages["p1"])
    title = (f"{cfg.model}: {which}, {cfg.num_facts} facts{' each' if several else ''}, k={cfg.k}, "
             f"{cfg.num_options} options, seed {cfg.seed}; {formats}")
    cols = columns(cfg)
    machine = runinfo.machine()     # the numbers depend on it (docs/RESULTS.md, "Across processors")
    table = f"{title}\nmachine: {runinfo.describe_machine(machine)}\n\n{render_table(rows, cols)}"
    per_relation = [c for c in cols if c.source in ("facts", "pooled")]
    for r in relations(cfg) if several else []:
        table += (f"\nrelation {r}\n\n"
                  f"{render_table({label: row['per_relation'][r] for label, row in rows.items()}, per_relation)}")
    write_text(out / "table.md", table)
    plot(rows, cols, title, out / "demo.png", 1 / cfg.num_options)
    result = {"config": OmegaConf.to_container(OmegaConf.structured(cfg)), "models": names, "rows": rows,
              "formats": formats, "machine": machine, "timings_s": timings,
              "table": str(out / "table.md"), "png": str(out / "demo.png")}
    write_json(out / "results.json", result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m util_public.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("args", nargs="*", metavar="[quick|full|RECIPE.yaml] [key=value ...]")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv).args
    variant = args.pop(0) if args and "=" not in args[0] else "full"
    t0 = time.time()
    result = run_demo(load_config(variant, args))
    print(textio.read_text(result["table"]))
    print(f"wrote {result['table']} and {result['png']} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    exit_on_user_error(main)
