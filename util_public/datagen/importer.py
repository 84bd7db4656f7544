"""`mode: import` (SPEC §4.6): public T-Rex-Fiction and T-REx-MC layouts from a local path.

Source files are never modified. Rows become facts with `fact_id` = source row order (blank rows
skipped); option lists are read as JSON or as the original's Python-list strings and written as
JSON; the Hub export's column names (`Subject`, `Object`, `Multiple Choices`, `Relation_ID`) are
mapped, and a gold object inside `Multiple Choices` is removed. Every row is validated by the
rules of §3.1 with errors naming the source file, line and fact_id; with `import.repair` the
options of a failing fact are re-drawn by §4.3 from the vocabulary of the imported file instead.

T-Rex-Fiction prompt lists (`prompt_template/{rel}/{train,test}.csv`, column `question`) are merged
over the shipped catalogue into `{data_root}/prompt_template/{rel}.yaml`; T-REx-MC's relation-name
JSON is merged into a data-root copy of the relation catalogue. Paths inside the source are
configurable patterns (`{dataset}`, `{relation_id}`, `{split}`; glob wildcards allowed).
"""
from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from .. import catalogue, paths, textio
from ..errors import UserError
from ..facts import Fact, check_fact, norm, parse_options, relation_file, strip_cells, warn_stripped
from . import vocab
from .distractors import DistractorPool, draw_distractors
from .outputs import Output, append, check_file_absent, existing_facts, next_fact_id
from .schema import GenConfig, ImportCfg

REQUIRED = ("Head", "Fact", "Alternate Facts")
_HUB_COLUMNS = {"Subject": "Head", "Object": "Fact", "Multiple Choices": "Alternate Facts"}
_DROPPED = {"Relation_ID", "fact_id", "relation_id"}     # ids are re-assigned on import
_GLOB = re.compile(r"[*?\[]")


# -- locating and reading source files ---------------------------------------------------------------
def locate(root: Path, pattern: str, key: str, **values: str) -> Path | None:
    """The one file matching `pattern` under `root`, None if none; several matches are an error."""
    relative = pattern
    for name, value in values.items():
        relative = relative.replace("{" + name + "}", value)
    if not _GLOB.search(relative):
        path = root / relative
        return path if path.is_file() else None
    matches = sorted(p for p in root.glob(relative) if p.is_file())
    if len(matches) > 1:
        raise UserError(f"{key}: {relative}", f"matches {len(matches)} files under {root}: "
                        f"{[str(m) for m in matches[:5]]}", "make the pattern specific")
    return matches[0] if matches else None


def read_table(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (first line number, cells) of every non-blank row of a CSV file. A source
    without rows is refused: it would import an empty fact file or prompt list, and with
    `on_exists=overwrite` replace a good one."""
    records = textio.read_csv(path)
    if not records:
        raise UserError(str(path), "empty file, expected a header row")
    header = [h.strip() for h in records[0][1]]
    rows = [(line, cells) for line, cells in records[1:] if any(c.strip() for c in cells)]
    if not rows:
        raise UserError(str(path), "no rows below the header", "import a complete export of the source")
    return header, rows


def source_facts(path: Path, relation_id: str) -> list[tuple[int, Fact]]:
    """(line, fact) for every row of a public-layout fact file; options parsed, cells stripped."""
    return read_source(path, relation_id)[0]


def read_source(path: Path, relation_id: str) -> tuple[list[tuple[int, Fact]], int]:
    """`source_facts`, and how many Head, Fact and option cells had surrounding whitespace."""
    header, rows = read_table(path)
    mapped = [_HUB_COLUMNS.get(h, h) for h in header]
    missing = [c for c in REQUIRED if c not in mapped]
    if missing:
        raise UserError(str(path), f"missing columns {missing}; found {header}")
    col = textio.column_index(header, str(path), [None if h in _DROPPED or h.startswith("Unnamed:") else h
                                                  for h in mapped])
    hub_choices = "Multiple Choices" in header
    out, stripped = [], 0
    for fact_id, (line, cells) in enumerate(rows):
        where = f"{path}:{line}: fact_id {fact_id}"
        if len(cells) != len(header):
            raise UserError(where, f"{len(cells)} cells, header has {len(header)}")
        cell = {name: cells[i] for name, i in col.items()}
        head, obj, options, n = strip_cells(cell.pop("Head"), cell.pop("Fact"),
                                            parse_options(cell.pop("Alternate Facts"), where))
        stripped += n
        if hub_choices:
            options = [o for o in options if norm(o) != norm(obj)]
        text = cell.pop("Text", "") or None
        out.append((line, Fact(fact_id, relation_id, head, obj, options, text, cell)))
    return out, stripped


# -- validation and repair ----------------------------------------------------------------------------
def validated(path: Path, relation_id: str, cfg: GenConfig) -> tuple[list[Fact], dict]:
    """The facts of one source file, checked (or repaired) by §3.1, and notes for the manifest."""
    imp, (rows, stripped) = cfg.import_, read_source(path, relation_id)
    warn_stripped(path, stripped)
    first_line: dict[str, int] = {}
    for line, fact in rows:      # in the source's own terms (the output file's append check came first)
        if first_line.setdefault(norm(fact.head), line) != line:
            raise UserError(f"{path}:{line}: fact_id {fact.fact_id}",
                            f"Head {fact.head!r} repeats line {first_line[norm(fact.head)]}",
                            "each subject names one fact of a relation")
    pool = None
    repaired, warned = [], 0
    for line, fact in rows:
        where = f"{path}:{line}: fact_id {fact.fact_id}"
        if not imp.repair:
            warned += check_fact(fact, cfg.num_options, imp.substring_rule, where)
            continue
        check_fact(Fact(fact.fact_id, relation_id, fact.head, fact.object, []), None, "off", where)
        try:
            check_fact(fact, cfg.num_options, "error", where)
        except UserError:
            if pool is None:
                pool = DistractorPool(vocab.prepare(w for _, f in rows for w in [f.object, *f.options]))
            fact.options = draw_distractors(pool, fact.object, cfg.num_options - 1, cfg.seed, relation_id,
                                            fact.fact_id)
            repaired.append(fact.fact_id)
    if warned:
        print(f"warning: {path}: {warned} facts break the substring rule", file=sys.stderr)
    notes = {"source": str(path), "format": imp.format, "substring_warnings": warned,
             "stripped_cells": stripped, "repaired_fact_ids": repaired}
    return [f for _, f in rows], notes


def check_aligned(english: Path, translated: Path, relation_id: str) -> None:
    """A translation keeps the English file's facts, row for row (SPEC §3.1: the same fact_ids): the
    same number of rows, and where subjects are kept (fictional names usually are) each in the same
    row. Rows in another order, or one dropped, would silently pair a fact_id with another fact."""
    heads = [f.head for _, f in source_facts(english, relation_id)]
    theirs = [f.head for _, f in source_facts(translated, relation_id)]
    if len(theirs) != len(heads):
        raise UserError(str(translated), f"{len(theirs)} facts, the English {english} has {len(heads)}",
                        "a translation keeps every fact, in the English order")
    shared = set(heads) & set(theirs)
    moved = [i for i, (a, b) in enumerate(zip(heads, theirs)) if a != b and (a in shared or b in shared)]
    if moved:
        i = moved[0]
        raise UserError(f"{translated}: fact_id {i}", f"subject {theirs[i]!r} where the English file has "
                        f"{heads[i]!r} ({len(moved)} rows differ)", "a translation keeps the English row order")


def _fact_output(cfg: GenConfig, data_root: Path, dataset: str, relation_id: str, source: Path) -> Output:
    facts, notes = validated(source, relation_id, cfg)
    target = relation_file(data_root, dataset, relation_id)
    existing = existing_facts(target, cfg.on_exists, cfg.num_options, substring_rule="off")
    offset = next_fact_id(existing)
    for f in facts:
        f.fact_id += offset
    return Output.facts(target, append(existing, facts, str(target)), notes)


# -- prompt templates ---------------------------------------------------------------------------------
def _template_list(path: Path) -> list[str]:
    header, rows = read_table(path)
    if "question" not in header:
        raise UserError(str(path), f"missing column 'question'; found {header}")
    col = textio.column_index(header, str(path))["question"]
    out = []
    for line, cells in rows:
        template = cells[col].strip() if col < len(cells) else ""
        out.append(catalogue.validate_template(template, f"{path}:{line}"))
    return out


def _split_pair(root: Path, pattern: str, key: str, relation_id: str) -> tuple[list[str], list[str], list[Path]] | None:
    found = {s: locate(root, pattern, key, relation_id=relation_id, split=s) for s in ("train", "test")}
    if not any(found.values()):
        return None
    missing = [s for s, p in found.items() if p is None]
    if missing:
        raise UserError(f"{key}: {pattern}", f"relation {relation_id}: found "
                        f"{[str(p) for p in found.values() if p]} but no {missing[0]} file under {root}")
    return _template_list(found["train"]), _template_list(found["test"]), list(found.values())


def prompt_output(cfg: GenConfig, root: Path, data_root: Path, relation_id: str) -> Output | None:
    """The merged prompt catalogue of one relation, validated in a staging copy; None if the
    source has no prompt lists for it (the shipped catalogue then stays in use)."""
    imp = cfg.import_
    lists = _split_pair(root, imp.prompts_pattern, "import.prompts_pattern", relation_id)
    if lists is None:
        print(f"warning: import: no prompt lists for relation {relation_id} under {root}; "
              "the shipped prompt catalogue stays in use", file=sys.stderr)
        return None
    train, test, sources = lists
    shipped = catalogue.SHIPPED / "prompts" / f"{relation_id}.yaml"
    merged = (textio.read_yaml(shipped) if shipped.is_file()
              else {"schema": "mtg.prompts/1", "relation_id": relation_id})
    merged.update({"relation_id": relation_id, "source": "t-rex-fiction", "train": train, "test": test})
    negation = _split_pair(root, imp.negation_pattern, "import.negation_pattern", relation_id)
    if negation is not None:
        merged["negation"] = {"train": negation[0], "test": negation[1]}
        sources += negation[2]
    text = yaml.safe_dump(merged, sort_keys=False, allow_unicode=True, width=1000)
    _validate_catalogue(relation_id, text, sources)
    target = data_root / "prompt_template" / f"{relation_id}.yaml"
    check_file_absent(target, cfg.on_exists)
    return Output(target, text)


def _validate_catalogue(relation_id: str, text: str, sources: list[Path]) -> None:
    """Load the merged catalogue through `catalogue.prompts` from a throw-away data root."""
    staging = Path(tempfile.mkdtemp(prefix="mtg-import-"))
    try:
        (staging / "prompt_template").mkdir()
        (staging / "prompt_template" / f"{relation_id}.yaml").write_text(text, encoding="utf-8")
        catalogue.prompts(relation_id, staging)
    except UserError as err:
        raise UserError(", ".join(str(s) for s in sources), err.problem, err.hint) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# -- T-REx-MC -----------------------------------------------------------------------------------------
def _trex_mc_files(root: Path, relation_id: str, imp: ImportCfg) -> list[tuple[str, Path]]:
    found = [(s, locate(root, imp.trex_mc_pattern, "import.trex_mc_pattern", relation_id=relation_id, split=s))
             for s in imp.splits]
    found = [(s, p) for s, p in found if p is not None]
    if not found:
        raise UserError(f"relation {relation_id}", f"no T-REx-MC file matches {imp.trex_mc_pattern!r} "
                        f"under {root} (splits {imp.splits})")
    return found


def trex_mc_objects(root: Path, relation_id: str, imp: ImportCfg) -> list[str]:
    """Every `Fact` and every alternate of the relation's T-REx-MC files (with repeats: the
    vocabulary is sorted by frequency)."""
    return [w for _, path in _trex_mc_files(root, relation_id, imp)
            for _, f in source_facts(path, relation_id) for w in [f.object, *f.options]]


def trex_mc_heads(root: Path, relation_id: str, imp: ImportCfg) -> list[str]:
    return [f.head for _, path in _trex_mc_files(root, relation_id, imp) for _, f in source_facts(path, relation_id)]


def _relations_outputs(cfg: GenConfig, names_file: Path, data_root: Path) -> list[Output]:
    """The data root's relations.yaml with the T-REx-MC id -> [pid, name] table merged in: an id the
    catalogue lacks gets an entry, a known one records what the import calls it. The file's other
    entries stay and no vocabulary is copied (the import replaced the file with the shipped table
    and overwrote the data root's own vocabularies). An existing file that would change needs
    `on_exists=overwrite`."""
    table = textio.read_json(names_file, dict, "expected an object mapping relation ids to [pid, name]")
    target = data_root / "relations.yaml"
    known = catalogue.relations(data_root)       # the merged table; checks the existing file
    current = textio.read_yaml(target, dict) if target.is_file() else {"schema": "mtg.relations/1"}
    own = {str(rid): entry for rid, entry in (current.get("relations") or {}).items()}
    for raw_id, value in table.items():
        match = re.fullmatch(r"R?(\d+)", str(raw_id))
        if not match or not (isinstance(value, list) and len(value) >= 2 and all(isinstance(v, str) for v in value[:2])):
            raise UserError(f"{names_file}: key {raw_id!r}", f"expected '<id>': [pid, name], got {value!r}")
        rid, (pid, name) = match.group(1), value[:2]
        if rid not in known or known[rid].get("source") == "trex_mc":    # new, or an earlier import's
            own[rid] = {"pid": pid, "name": name, "subject_type": "entity", "object_type": "entity",
                        "subject_kind": "entity", "example_heads": [], "vocab": None,
                        "verified": False, "source": "trex_mc"}
            continue
        entry = {**known[rid], "imported": {"pid": pid, "name": name}}
        if entry.get("pid") is None:             # e.g. id 7: the import tells what it is
            entry.update({"pid": pid, "name": name})
        own[rid] = entry
    text = yaml.safe_dump({**current, "relations": own}, sort_keys=False, allow_unicode=True, width=1000)
    if target.is_file() and textio.read_text(target) != text:
        check_file_absent(target, cfg.on_exists)
    return [Output(target, text)]


# -- the mode -----------------------------------------------------------------------------------------
def run_import(cfg: GenConfig, data_root: Path) -> list[Output]:
    """All outputs of `mode: import`, fully validated; nothing is written here."""
    imp = cfg.import_
    if not imp.path:
        raise UserError("import.path", "must be set for mode=import (a local copy of the public data)")
    root = paths.resolve(imp.path)
    if not root.is_dir():
        raise UserError(f"import.path: {root}", "directory not found")
    outputs: list[Output] = []
    if imp.format == "t_rex_fiction":
        for dataset in imp.datasets:
            english = {}
            for language in [None, *imp.languages]:
                folder = f"{dataset}_{language}" if language else dataset
                for rel in cfg.relation_ids:
                    source = locate(root, imp.facts_pattern, "import.facts_pattern", dataset=folder, relation_id=rel)
                    if source is None:
                        raise UserError(f"relation {rel}", f"no file for dataset {folder!r} matching "
                                        f"{imp.facts_pattern!r} under {root}")
                    if language is None:
                        english[rel] = source
                    else:
                        check_aligned(english[rel], source, rel)
                    outputs.append(_fact_output(cfg, data_root, folder, rel, source))
        outputs += [o for rel in cfg.relation_ids if (o := prompt_output(cfg, root, data_root, rel))]
        return outputs
    for rel in cfg.relation_ids:
        for split, source in _trex_mc_files(root, rel, imp):
            outputs.append(_fact_output(cfg, data_root, f"{imp.trex_mc_dataset}_{split}", rel, source))
    names_file = locate(root, imp.trex_mc_names, "import.trex_mc_names")
    if names_file is not None:
        outputs += _relations_outputs(cfg, names_file, data_root)
    return outputs
