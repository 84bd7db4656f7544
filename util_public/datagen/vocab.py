"""Object vocabularies and object assignment (SPEC §4.2).

A vocabulary is de-duplicated case-insensitively, lower-cased and sorted by (frequency descending,
then alphabetically), so the order of the source can never leak into sampling. Objects are drawn
uniformly: with replacement from the per-fact stream (seed, "objects", relation, fact_id), so fact
i's object does not depend on how many facts are made; without replacement (`objects.unique`) as
one seeded permutation (seed, "objects", relation).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from .. import catalogue, objectcase, paths, textio
from ..errors import UserError
from ..facts import norm, visible
from ..seeding import stream
from . import names
from .schema import GenConfig


@dataclass
class Vocabulary:
    words: list[str]
    source: str          # a file path or a description, for messages and the manifest


def prepare(items: Iterable[str]) -> list[str]:
    """Lower-cased, de-duplicated, sorted by (frequency descending, then alphabetically). Words are
    compared in `norm` form (case-folded, NFKC) but kept as written, lower-cased: "Gießen" stays
    "gießen" (case folding would write "giessen"), "Straße" and "STRASSE" are one word, kept in its
    most frequent spelling (ties: the first in code-point order)."""
    counts: Counter = Counter()
    spellings: dict[str, Counter] = {}
    for item in items:
        if item and item.strip():
            key = norm(item)
            counts[key] += 1
            spellings.setdefault(key, Counter())[_lowered(item)] += 1
    return [min(spellings[k], key=lambda w: (-spellings[k][w], w)) for k in sorted(counts, key=lambda w: (-counts[w], w))]


def _lowered(item: str) -> str:
    """The word as written, lower-cased: composed (NFC), invisible format characters dropped,
    whitespace runs collapsed; unlike `norm`, neither case-folded nor compatibility-mapped."""
    return " ".join(visible(item, "NFC").lower().split())


def _shown(path: Path) -> str:
    """A path for manifests: repository-relative when inside the checkout (portable)."""
    try:
        return str(Path(path).resolve().relative_to(paths.REPO_ROOT))
    except ValueError:
        return str(path)


def read_lines(path: Path, key: str) -> list[str]:
    """The non-blank lines of a UTF-8 text file (a missing file is an error naming `key`)."""
    if not path.is_file():
        raise UserError(f"{key}: {path}", "file not found")
    return [line.strip() for line in textio.read_text(path).splitlines() if line.strip()]


def synthetic(object_type: str, size: int, seed: int, relation_id: str) -> list[str]:
    """`size` invented objects of the type's kind, pairwise free of substring conflicts."""
    made = names.generate(names.kind_for_type(object_type), size, stream(seed, "objects-vocab", relation_id),
                          accept=lambda name: True, conflict_free=True)
    return prepare(made)


def build(cfg: GenConfig, relation_id: str, data_root: Path,
          llm_objects: Callable[[str, int], list[str]] | None = None) -> Vocabulary:
    """The object vocabulary of `relation_id` from `objects.vocab_source`, written as `objects.case`
    says. Case changes no choice: the words keep their order, and every comparison (duplicates,
    substring conflicts, the subject/object rule) is case-insensitive, so a title-case dataset holds
    the lower-case dataset's facts, capitalised.

    `llm_objects(relation_id, n)` is supplied by callers that hold an LLM connection.
    """
    lowered = _lowercase_vocabulary(cfg, relation_id, data_root, llm_objects)
    words = [objectcase.written(w, cfg.objects.case, "objects.case") for w in lowered.words]
    first: dict[str, str] = {}
    for before, after in zip(lowered.words, words):       # "ıstanbul" and "istanbul" both write "Istanbul"
        other = first.setdefault(norm(after), before)
        if other != before:
            raise UserError(f"relation {relation_id}: vocabulary {lowered.source}",
                            f"objects.case={cfg.objects.case} writes {other!r} and {before!r} alike ({after!r})",
                            "remove one of them from the vocabulary, or use objects.case=as_is")
    return Vocabulary(words, lowered.source)


def _lowercase_vocabulary(cfg: GenConfig, relation_id: str, data_root: Path,
                          llm_objects: Callable[[str, int], list[str]] | None) -> Vocabulary:
    source = cfg.objects.vocab_source
    if source == "catalogue":
        path = catalogue.vocab_file(relation_id, data_root)
        return Vocabulary(prepare(read_lines(path, f"catalogue vocab of relation {relation_id}")), _shown(path))
    if source == "file":
        if not cfg.objects.vocab_file:
            raise UserError("objects.vocab_file", "must be set when objects.vocab_source=file")
        path = paths.resolve(cfg.objects.vocab_file)
        return Vocabulary(prepare(read_lines(path, "objects.vocab_file")), _shown(path))
    if source == "trex_mc":
        if not cfg.objects.trex_mc_path:
            raise UserError("objects.trex_mc_path", "must be set when objects.vocab_source=trex_mc")
        from .importer import trex_mc_objects   # the importer itself uses this module

        root = paths.resolve(cfg.objects.trex_mc_path)
        return Vocabulary(prepare(trex_mc_objects(root, relation_id, cfg.import_)), f"trex_mc:{root}")
    object_type = catalogue.relation(relation_id, data_root).get("object_type") or "entity"
    if source == "synthetic":
        return Vocabulary(synthetic(object_type, cfg.objects.vocab_size, cfg.seed, relation_id),
                          f"synthetic:{names.kind_for_type(object_type)}")
    if llm_objects is None:
        raise UserError("objects.vocab_source", "llm is not available in this mode")
    return Vocabulary(prepare(llm_objects(relation_id, cfg.objects.vocab_size)), f"llm:{object_type}")


def check_size(vocab: Vocabulary, num_options: int, relation_id: str) -> None:
    """Enough entries for the gold plus `num_options - 1` distractors (before conflicts)."""
    if len(vocab.words) < num_options:
        raise UserError(f"relation {relation_id}: vocabulary {vocab.source}",
                        f"{len(vocab.words)} distinct objects, need at least num_options={num_options} "
                        f"(the gold plus {num_options - 1} distractors)",
                        "use a larger vocabulary or lower num_options")


def assign(words: list[str], fact_ids: list[int], seed: int, relation_id: str, unique: bool,
           taken: Iterable[str] = ()) -> list[str]:
    """One object per fact id, uniformly from `words` (see the module doc for the streams).

    With `unique`, objects in `taken` (an existing file's objects when appending) are excluded.
    """
    if not unique:
        return [words[int(stream(seed, "objects", relation_id, fid).integers(len(words)))] for fid in fact_ids]
    used = {norm(t) for t in taken}
    pool = [w for w in words if norm(w) not in used]
    if len(pool) < len(fact_ids):
        raise UserError(f"relation {relation_id}", f"objects.unique needs {len(fact_ids)} unused objects, "
                        f"the vocabulary has {len(pool)}", "lower num_facts or set objects.unique=false")
    order = stream(seed, "objects", relation_id).permutation(len(pool))[:len(fact_ids)]
    return [pool[int(i)] for i in order]
