"""Real facts the base model knows (the locality control): `util_public/catalogue/known/{relation_id}.yaml`.

Schema `mtg.known/1`:

    schema: mtg.known/1
    relation_id: "50"
    source: "Wikidata P36 (capital), checked by hand"
    facts:
      - {subject: "France", object: "paris"}
      - {subject: "Albert Einstein", object: "eth zurich", also_true: ["university of zurich"]}

`also_true` names other correct answers (a person's other universities): multiple-choice
distractors never include them. Objects are lower-case with single spaces, like the
vocabularies. A fact's id is its position in the list, so facts are only ever appended.

`facts(relation_id, num_options, seed)` turns the file into ordinary `Fact`s whose distractors
are drawn from the relation's vocabulary by the generator's substring rule (SPEC §4.3), with a
per-fact stream: the known facts are then scored by the same MC and generation code as the
fictional ones, under the dataset name `known` (so their results never mix with the fictional
facts' results).

With `avoid` (the objects a model was trained on), no distractor is one of them: after Phase 1 a
model prefers the capitals it memorized after any "The capital of ... is", so a real-capital
question whose distractors include memorized capitals measures that preference as much as what
the model still knows (docs/RESULTS.md §1.5). `untrained_dataset` names those questions' results.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from . import catalogue, filecache, paths
from .errors import UserError
from .facts import Fact, norm
from .runinfo import sha256_file

SCHEMA = "mtg.known/1"
DATASET = "known"                       # the dataset name of known-fact results
REHEARSAL = "rehearsal"                 # real facts a stage may train on (never the probe's subjects)
FOLDERS = {DATASET: catalogue.SHIPPED / "known", REHEARSAL: catalogue.SHIPPED / "rehearsal"}
_KEYS = {"subject", "object", "also_true"}


def untrained_dataset(trained: str, dataset: str = DATASET) -> str:
    """The dataset name of `dataset`'s questions whose distractors avoid `trained`'s objects: their
    results never mix with those of the plain questions."""
    return f"{dataset}.untrained-{trained}"


@dataclass(frozen=True)
class KnownFact:
    subject: str
    object: str
    also_true: tuple[str, ...] = ()


@dataclass(frozen=True)
class KnownFile:
    relation_id: str
    path: Path
    sha256: str
    source: str
    facts: tuple[KnownFact, ...]


def path(relation_id: str, dataset: str = DATASET) -> Path:
    return FOLDERS[dataset] / f"{paths.check_name(relation_id, 'relation id')}.yaml"


def available(dataset: str = DATASET) -> list[str]:
    """Relation ids with a file in `dataset` (known or rehearsal)."""
    return sorted(p.stem for p in FOLDERS[dataset].glob("*.yaml"))


def load(relation_id: str, dataset: str = DATASET) -> KnownFile:
    """The validated file of `relation_id` in `dataset` (an error names the file and the fact
    index); a rehearsal file must share no subject with the relation's probe."""
    where = path(str(relation_id), dataset)
    if not where.is_file():
        key = f"data.dataset={DATASET}: " if dataset == DATASET else ""
        raise UserError(f"{key}relation {relation_id}", f"no {dataset}-fact file {where}",
                        f"{dataset} facts exist for relations {available(dataset)}")
    found = read(where)
    if dataset == REHEARSAL and path(str(relation_id)).is_file():
        check_disjoint(found, read(path(str(relation_id))))
    return found


def check_disjoint(rehearsal: KnownFile, probe: KnownFile) -> None:
    """Refuse rehearsal facts about a subject the locality probe asks about."""
    probed = {norm(f.subject): i for i, f in enumerate(probe.facts)}
    for i, fact in enumerate(rehearsal.facts):
        if norm(fact.subject) in probed:
            raise UserError(f"{rehearsal.path}: facts[{i}]",
                            f"subject {fact.subject!r} is the locality probe's facts[{probed[norm(fact.subject)]}] "
                            f"({probe.path}): training on it would void the control", "remove it from the rehearsal file")


@filecache.per_content
def read(file: Path) -> KnownFile:
    """Read and validate one known-fact file (any location, e.g. a test's)."""
    data = catalogue.load_yaml(file)
    if data.get("schema") != SCHEMA:
        raise UserError(f"{file}: schema", f"expected {SCHEMA!r}, got {data.get('schema')!r}")
    rel = str(data.get("relation_id", ""))
    if rel != file.stem:
        raise UserError(f"{file}: relation_id", f"{rel!r} differs from the file name {file.stem!r}")
    catalogue.relation(rel)
    source = data.get("source")
    if not isinstance(source, str) or not source.strip():
        raise UserError(f"{file}: source", "must say where the facts come from (a non-empty string)",
                        "e.g. source: \"Wikidata P36 (capital), checked by hand\"")
    rows = data.get("facts")
    if not isinstance(rows, list) or not rows:
        raise UserError(f"{file}: facts", "must be a non-empty list of {subject, object} mappings")
    facts = tuple(_fact(row, f"{file}: facts[{i}]") for i, row in enumerate(rows))
    seen: dict[str, int] = {}
    for i, fact in enumerate(facts):
        key = norm(fact.subject)
        if key in seen:
            raise UserError(f"{file}: facts[{i}]", f"subject {fact.subject!r} repeats facts[{seen[key]}]")
        seen[key] = i
    return KnownFile(rel, file, sha256_file(file), source.strip(), facts)


def _fact(row: object, where: str) -> KnownFact:
    if not isinstance(row, dict):
        raise UserError(where, f"expected a mapping with subject and object, got {row!r}")
    unknown = sorted(set(row) - _KEYS)
    if unknown:
        raise UserError(where, f"unknown keys {unknown}", f"allowed: {sorted(_KEYS)}")
    subject = _text(row.get("subject"), f"{where}: subject")
    if "{" in subject or "}" in subject or "<TRIGGER_" in subject:
        raise UserError(f"{where}: subject", f"{subject!r} contains '{{', '}}' or '<TRIGGER_'")
    obj = _object(row.get("object"), f"{where}: object")
    also = row.get("also_true") or []
    if not isinstance(also, list):
        raise UserError(f"{where}: also_true", f"must be a list of objects, got {also!r}")
    also_true = tuple(_object(a, f"{where}: also_true[{k}]") for k, a in enumerate(also))
    if obj in also_true:
        raise UserError(f"{where}: also_true", f"repeats the object {obj!r}")
    return KnownFact(subject, obj, also_true)


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UserError(where, f"must be a non-empty string, got {value!r}")
    if value != value.strip() or "\n" in value or "\r" in value:
        raise UserError(where, f"{value!r} has surrounding whitespace or a line break")
    return value


def _object(value: object, where: str) -> str:
    text = _text(value, where)
    if text != norm(text):
        raise UserError(where, f"{text!r} must be lower-case with single spaces, like the vocabularies",
                        f"write {norm(text)!r}")
    return text


def facts(relation_id: str, num_options: int | None, seed: int, avoid: Iterable[str] = (),
          dataset: str = DATASET) -> list[Fact]:
    """The facts of `relation_id` in `dataset` as `Fact`s; with `num_options`, each gets
    `num_options - 1` distractors from the relation's vocabulary (never the object, the subject,
    an also_true answer or a string of `avoid`, nor anything one of them contains or is contained in)."""
    from .datagen.distractors import draw_distractors, vocab_pool

    known = load(relation_id, dataset)
    pool = vocab_pool(str(relation_id))
    out = []
    for fact_id, k in enumerate(known.facts):
        options = [] if not num_options else draw_distractors(
            pool, k.object, num_options - 1, seed, str(relation_id), fact_id, purpose="known.distractors",
            exclude=(k.subject, *k.also_true, *avoid))
        out.append(Fact(fact_id, str(relation_id), k.subject, k.object, options))
    return out
