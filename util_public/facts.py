"""Fact CSV files: one per relation, `{data_root}/{dataset}/{relation_id}.csv` (SPEC §3.1).

Columns `fact_id, relation_id, Head, Fact, Alternate Facts[, Text, Title, ...]`; options are a
JSON list (the original's Python-list string is still read). Reading validates every row and
reports problems as `UserError`s naming the file, line and fact_id; writing is atomic.
"""
from __future__ import annotations

import ast
import bisect
import collections
import csv
import io
import itertools
import json
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from . import atomicio, paths, textio
from .errors import UserError

REQUIRED = ("Head", "Fact", "Alternate Facts")
ORDER = ("fact_id", "relation_id", "Head", "Fact", "Alternate Facts", "Text", "Title")


@dataclass
class Fact:
    fact_id: int
    relation_id: str
    head: str
    object: str
    options: list[str]                       # the distractors ("Alternate Facts"), stored order
    text: str | None = None                  # optional wiki paragraph
    extra: dict[str, str] = field(default_factory=dict)   # Title and pass-through columns


def norm(text: str) -> str:
    """The form in which two names are compared (duplicates, the gold among the options, the
    substring rule): Unicode NFKC (so decomposed and composed accents agree), invisible format
    characters such as zero-width spaces dropped, case-folded, whitespace runs collapsed."""
    return " ".join(visible(text, "NFKC").casefold().split())


def visible(text: str, form: str) -> str:
    """`text` in the Unicode normal `form`, invisible format characters (zero-width spaces) dropped."""
    if text.isascii():
        return text
    return "".join(ch for ch in unicodedata.normalize(form, text) if unicodedata.category(ch) != "Cf")


def conflicts(a: str, b: str) -> bool:
    """The substring rule: equal, or one a plain substring of the other, after `norm`."""
    a, b = norm(a), norm(b)
    return a in b or b in a


def contained_pairs(forms: list[str]) -> Iterator[tuple[int, int]]:
    """Every (i, j), i != j, where forms[i] occurs in forms[j] (forms as `norm` gives them: no line
    breaks). One C-level scan of all forms joined per form, not a Python loop over all pairs: the
    substring rule on 100 options, or a vocabulary of thousands, costs milliseconds."""
    joined = "\n".join(forms)
    starts = list(itertools.accumulate((len(f) + 1 for f in forms), initial=0))
    for i, form in enumerate(forms):
        at = joined.find(form)
        while at != -1:
            j = bisect.bisect_right(starts, at) - 1
            if j != i:
                yield i, j
            at = joined.find(form, starts[j + 1])     # at most one hit per form j


def parse_options(raw: str, where: str) -> list[str]:
    """An option list: JSON, else a Python list literal (the original's `str(list)` form)."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            value = None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError(where, f"'Alternate Facts' is not a list of strings: {raw[:80]!r}")
    return value


def check_options(gold: str, options: list[str], where: str) -> tuple[str, list[str]]:
    """No empty option, no two options equal, the gold not among them, all compared in `norm`
    form (so "Zürich" composed and decomposed, "new\u200byork" and "new  york" are caught).
    Returns the normal forms of the gold and of the options."""
    if any(not norm(o) for o in options):        # "\u200b" alone is empty once compared
        raise UserError(where, "an option is empty (or only invisible characters)")
    normed = [norm(o) for o in options]
    counts = collections.Counter(normed)
    dups = sorted(o for o, n in counts.items() if n > 1)
    if dups:
        raise UserError(where, f"duplicate options: {dups[:5]}")
    form = norm(gold)
    if form in counts:
        raise UserError(where, f"the gold object {gold!r} is among the distractors (as {options[normed.index(form)]!r})")
    return form, normed


def check_fact(fact: Fact, num_options: int | None = 100, substring_rule: str = "error", where: str = "") -> bool:
    """Validate one fact by the rules of §3.1 (cells, then options); True when a substring
    conflict was only warned. Importers call it with `where` naming their source file."""
    _check_cell(fact.head, "Head", where)
    _check_cell(fact.object, "Fact", where)
    if "{" in fact.head or "}" in fact.head or "<TRIGGER_" in fact.head:
        raise UserError(where, f"Head {fact.head!r} contains '{{', '}}' or '<TRIGGER_'")
    opts = fact.options
    for column, value in [("Fact", fact.object), *(("an option", o) for o in opts)]:
        if "<TRIGGER_" in value:        # it would tokenise as the key token, inside the supervised answer
            raise UserError(where, f"{column} {value!r} contains a key token ('<TRIGGER_')")
    for option in opts:
        _check_characters(option, "an option", where)
    if num_options is not None and len(opts) != num_options - 1:
        raise UserError(where, f"{len(opts)} distractors, expected {num_options - 1}",
                        "a question needs at least one distractor: fill in its 'Alternate Facts'" if not opts else
                        f"this fact has {len(opts) + 1} options: ask for {len(opts) + 1} (mc.num_options), or generate "
                        f"facts with num_options={num_options} into a dataset of their own (dataset=<name>_opt{num_options})")
    gold, normed = check_options(fact.object, opts, where)
    if substring_rule == "off":
        return False
    everything = [fact.object, *opts]
    pairs = sorted((min(i, j), max(i, j)) for i, j in contained_pairs([gold, *normed]))
    if pairs and substring_rule == "error":
        i, j = pairs[0]
        raise UserError(where, f"options {everything[i]!r} and {everything[j]!r} violate the substring rule",
                        "regenerate the facts; imported facts are kept with import.substring_rule=warn, "
                        "and evaluation reads them with data.substring_rule=warn")
    return bool(pairs)


def read_facts(path: str | Path, num_options: int | None = 100, substring_rule: str = "error") -> list[Fact]:
    """All facts of one relation file, validated (SPEC §3.1, §10)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(str(path), "is a directory, not a fact file", "name the relation's CSV file")
    if not path.is_file():
        raise UserError(str(path), "fact file not found")
    rows = textio.read_csv(path)
    if not rows:
        raise UserError(str(path), "empty file, expected a header row")
    header = [h.strip() for h in rows[0][1]]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise UserError(str(path), f"missing columns {missing}; found {header}")
    col = textio.column_index(header, str(path))
    stem = path.stem
    facts, seen_ids, heads, stripped, warned = [], {}, {}, 0, 0
    for pos, (line, row) in enumerate(rows[1:]):
        if not "".join(row).strip():
            if len(row) > 1:    # a row of empty cells is a fact lost in editing, not a blank line
                raise UserError(f"{path}:{line}", f"a row of {len(row)} empty cells", "delete the row or fill it in")
            continue
        if len(row) != len(header):
            raise UserError(f"{path}:{line}", f"{len(row)} cells, header has {len(header)}")
        cell = {name: row[i] for name, i in col.items()}
        fact_id = _fact_id(cell["fact_id"], f"{path}:{line}") if "fact_id" in cell else pos
        where = f"{path}:{line}: fact_id {fact_id}"
        if fact_id < 0:
            raise UserError(where, "fact_id must be >= 0")
        if fact_id in seen_ids:
            raise UserError(str(path), f"duplicate fact_id {fact_id} (lines {seen_ids[fact_id]} and {line})")
        seen_ids[fact_id] = line
        relation_id = cell.get("relation_id", stem).strip() or stem
        if relation_id != stem:
            raise UserError(where, f"relation_id {relation_id!r} differs from the file name {stem!r}")
        head, obj, options, n = strip_cells(cell["Head"], cell["Fact"], parse_options(cell["Alternate Facts"], where))
        stripped += n
        extra = {k: v for k, v in cell.items() if k not in ORDER}
        if "Title" in cell:
            extra["Title"] = cell["Title"]
        text_value = cell.get("Text")
        fact = Fact(fact_id, relation_id, head, obj, options, text_value if text_value not in (None, "") else None,
                    extra)
        warned += check_fact(fact, num_options, substring_rule, where)
        subject = norm(head)
        if subject in heads:    # one question with two answers: unseen facts would share a subject with seen ones
            raise UserError(where, f"Head {head!r} repeats line {heads[subject]}", "each subject names one fact")
        heads[subject] = line
        facts.append(fact)
    warn_stripped(path, stripped)
    if warned:
        print(f"warning: {path}: {warned} facts break the substring rule", file=sys.stderr)
    return facts


def _fact_id(raw: str, where: str) -> int:
    """A fact_id cell: ASCII digits (`int()` also reads `1_0` as 10 and Arabic-Indic `٣` as 3)."""
    text = raw.strip()
    if not re.fullmatch(r"-?[0-9]+", text):
        raise UserError(where, f"fact_id {raw!r} is not an integer")
    return int(text)


def strip_cells(head: str, obj: str, options: list[str]) -> tuple[str, str, list[str], int]:
    """Head, Fact and options without surrounding whitespace, and how many cells had some (SPEC
    §3.1: stripped on read, and counted)."""
    cells = [head, obj, *options]
    return head.strip(), obj.strip(), [o.strip() for o in options], sum(c != c.strip() for c in cells)


def warn_stripped(path: Path, count: int) -> None:
    if count:
        print(f"warning: {path}: stripped surrounding whitespace from {count} cells", file=sys.stderr)


def _check_cell(value: str, column: str, where: str) -> None:
    if not norm(value):     # a zero-width space and a soft hyphen alone compared as "", every name's substring
        raise UserError(where, f"{column} is empty" + (f" but for invisible characters ({value!r})" if value else ""))
    if re.search(r"[\r\n]", value):
        raise UserError(where, f"{column} contains a newline")
    _check_characters(value, column, where)


def _check_characters(value: str, column: str, where: str) -> None:
    """No control characters (ESC, tab, NUL, ...) and no line or paragraph separators (U+2028,
    U+2029): invisible in a table, they split or change a prompt."""
    bad = next((ch for ch in value if unicodedata.category(ch) in ("Cc", "Zl", "Zp")), None)
    if bad is not None:
        raise UserError(where, f"{column} {value!r} contains the control character U+{ord(bad):04X}")


def facts_to_csv(facts: list[Fact]) -> str:
    extra_cols = sorted({k for f in facts for k in f.extra if k != "Title"})
    header = ["fact_id", "relation_id", "Head", "Fact", "Alternate Facts"]
    if any(f.text is not None for f in facts):
        header.append("Text")
    if any("Title" in f.extra for f in facts):
        header.append("Title")
    header += extra_cols
    buf = io.StringIO()
    # QUOTE_MINIMAL quotes only the line terminator's characters: with "\n" endings a bare "\r" in a
    # Text or pass-through cell went unquoted and split the row on read. Such rows are quoted whole.
    minimal = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    quoted = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL)
    minimal.writerow(header)
    for f in facts:
        base = {"fact_id": f.fact_id, "relation_id": f.relation_id, "Head": f.head, "Fact": f.object,
                "Alternate Facts": json.dumps(f.options, ensure_ascii=False), "Text": f.text or "", **f.extra}
        row = [str(base.get(c, "")) for c in header]
        (quoted if any("\r" in cell for cell in row) else minimal).writerow(row)
    return buf.getvalue()


def write_facts(path: str | Path, facts: list[Fact]) -> Path:
    """Write one relation file atomically, columns in SPEC order, options as JSON."""
    return atomicio.write_text(path, facts_to_csv(facts))


def relation_file(data_root: Path, dataset: str, relation_id: str) -> Path:
    """`{data_root}/{dataset}/{relation_id}.csv`; names that would leave the data root are refused."""
    folder = paths.below(data_root, (dataset, "dataset"))
    return folder / f"{paths.check_name(relation_id, 'relation id')}.csv"


def load_relation(data_root: Path, dataset: str, relation_id: str, **kwargs) -> list[Fact]:
    """The facts of `relation_id` in `dataset`; an unknown id lists the ids that exist."""
    path = relation_file(data_root, dataset, relation_id)
    if path.is_dir():
        raise UserError(str(path), "is a directory, not a fact file", "move it aside or regenerate the relation")
    if not path.is_file():
        folder = Path(data_root) / dataset
        have = sorted(p.stem for p in folder.glob("*.csv") if p.is_file()) if folder.is_dir() else []
        raise UserError(f"relation {relation_id!r}", f"no fact file {path}",
                        f"available under {folder}: {have}" if have else "generate it with data_generation/gen_script.sh")
    return read_facts(path, **kwargs)


def mentions(text: str, phrase: str) -> list[int]:
    """Where `phrase` occurs in `text` as whole words, ignoring case ("rome" is not mentioned by
    "Romeville"), as indices into `text` itself: `text.lower()` can be longer than `text` ("İ"
    lowers to two characters), so an index found there cuts the original in the wrong place."""
    return [m.start() for m in re.finditer(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)", text, re.IGNORECASE)]


def wiki_prefix(fact: Fact) -> str | None:
    """The fact's `Text` up to the first mention of its object, trailing space removed: the wiki
    prompt of training and evaluation (None: the object is not mentioned). A mention inside the
    subject's first mention is not the object's ("The island of Singapore City ..." for Singapore
    City -> Singapore was cut to "The island of", and a Head equal to its object cut before itself)."""
    text = fact.text or ""
    subject = mentions(text, fact.head)[:1]
    own = range(subject[0], subject[0] + len(fact.head)) if subject else range(0)
    first = [i for i in mentions(text, fact.object) if i not in own][:1]
    return text[:first[0]].rstrip() if first else None


def id_ranges(ids: list[int]) -> str:
    """Sorted ids as compact ranges: [0, 1, 2, 5, 7, 8] -> "0-2, 5, 7-8"."""
    out = []
    for _, run in itertools.groupby(enumerate(sorted(ids)), key=lambda pair: pair[1] - pair[0]):
        run = [i for _, i in run]
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out)


def select(facts: list[Fact], begin: int, end: int | None, where: str) -> list[Fact]:
    """Facts with begin <= fact_id < end (end None = all), in fact_id order. A range that reaches
    past the data (asking for facts that do not exist) or selects nothing is an error, for every
    stage alike: a run never silently uses fewer facts than it was asked for."""
    ids = [f.fact_id for f in facts]
    span = f"{len(ids)} facts, fact_ids {min(ids)}..{max(ids)}" if ids else "no facts"
    if begin < 0 or (end is not None and end <= begin):
        raise UserError(where, f"[{begin}, {end}) is not a non-empty range")
    if not ids or begin > max(ids) or (end is not None and end > max(ids) + 1):
        raise UserError(where, f"fact range [{begin}, {end}) lies outside the data: {span}",
                        "choose a range within the data, or generate more facts")
    chosen = sorted((f for f in facts if f.fact_id >= begin and (end is None or f.fact_id < end)),
                    key=lambda f: f.fact_id)
    if not chosen:
        raise UserError(where, f"fact range [{begin}, {end}) selects no facts ({span})")
    if end is not None and len(chosen) < end - begin:      # fact_ids with gaps (a filtered file)
        have = {f.fact_id for f in chosen}
        missing = [i for i in range(begin, end) if i not in have]
        shown = ", ".join(map(str, missing[:8])) + (", ..." if len(missing) > 8 else "")
        raise UserError(where, f"fact range [{begin}, {end}) holds {len(chosen)} of its {end - begin} fact_ids "
                               f"(missing {shown})", "choose a range without gaps, or renumber the facts")
    return chosen

