"""The relation and prompt-template catalogue (SPEC §3.2, §3.3).

Shipped files live in `util_public/catalogue/`. A data root may add relations or override shipped
ones: the entries of `{data_root}/relations.yaml` are merged over the shipped table (a user or the
T-REx-MC import adds only its own entries), a `vocab:` path is looked
up under the data root first, then among the shipped vocabularies, and
`{data_root}/prompt_template/{relation_id}.yaml` replaces a relation's prompt catalogue. Every
template is validated on load (exactly one `{head}`, no other field, no surrounding whitespace),
and substitution is a literal replacement, never `str.format`.
"""
from __future__ import annotations

import difflib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path


from . import filecache, paths, textio
from .datagen.names import KINDS
from .errors import UserError
from .runinfo import sha256_file

SHIPPED = Path(__file__).resolve().parent / "catalogue"
LANGUAGES = ("German", "Spanish", "Chinese", "Japanese")
_FIELD = re.compile(r"\{[^{}]*\}")
# The YAML type of each field of a prompt catalogue, checked when it loads: a family of another
# type ended in an AttributeError or TypeError deep inside a run. hgp and mmp are looked up by
# index (a mapping or a list); train and test must be lists, their duplicates and overlap being
# counted over entries.
_FAMILY_TYPES = {"hgp": (dict, list), "mmp": (dict, list), "train": list, "test": list, "unrelated": list,
                 "negation": dict}
_HEADER_KEYS = ("schema", "relation_id", "source", "translations")   # a catalogue's keys besides its families
_SHAPES = ("hgp and mmp are {index: template} or a list of templates; train, test and unrelated lists of "
           "templates; negation {train: [...], test: [...]}; translations {language: {family: ...}}")
# The fields of a relation entry that the stages read, with their YAML types (the rest are notes).
_NULLABLE = (str, type(None))
_RELATION_FIELDS = {"pid": _NULLABLE, "name": _NULLABLE, "subject_type": _NULLABLE, "object_type": _NULLABLE,
                    "subject_kind": _NULLABLE, "example_heads": (list, type(None)), "vocab": _NULLABLE,
                    "derived_from": (str, list, type(None)), "derive_kind": _NULLABLE}
_RELATION_SHAPE = 'write relations: {"<id>": {pid: P36, name: capital, vocab: vocab/<id>.txt, ...}}'


def substitute(template: str, head: str) -> str:
    """P(S): the template with `{head}` replaced literally (subjects may contain braces)."""
    return template.replace("{head}", head, 1)


def validate_template(template: object, where: str) -> str:
    if not isinstance(template, str) or not template:
        raise UserError(where, f"template must be a non-empty string, got {template!r}")
    if template != template.strip() or "\n" in template:
        raise UserError(where, f"template {template!r} has surrounding whitespace or a newline")
    fields = _FIELD.findall(template)
    if fields.count("{head}") != 1 or len(fields) != 1 or template.count("{") != 1 or template.count("}") != 1:
        raise UserError(where, f"template {template!r} must contain '{{head}}' exactly once and no other field")
    return template


def load_yaml(path: Path) -> dict:
    return textio.read_yaml(path, dict)


def relations_files(data_root: Path | None = None) -> list[Path]:
    """The relation catalogues in force, in merge order: the shipped one, then the data root's."""
    override = Path(data_root) / "relations.yaml" if data_root else None
    return [SHIPPED / "relations.yaml", *([override] if override and override.is_file() else [])]


def unmerged(files: list[Path], data_root: Path | None) -> list[Path]:
    """`files` as versions before the merge listed them: a data root's relations.yaml instead of,
    not beside, the shipped one (what the legacy config hash of a training run covered)."""
    shipped, *override = relations_files(data_root)
    return [f for f in files if not (override and f == shipped)]


@filecache.per_content
def _relations(path: Path) -> dict:
    """The relation table by id, each entry of the shape `_RELATION_FIELDS`. An id written
    unquoted (`50:`) is a YAML integer; it is the string "50" that every caller asks for."""
    where = f"{path}: relations"
    table = {}
    for key, entry in textio.require(load_yaml(path).get("relations", {}), dict, where, _RELATION_SHAPE).items():
        rid = str(textio.require(key, (str, int), f"{where}: {key!r}", _RELATION_SHAPE))
        if rid in table:
            raise UserError(f"{where}: {rid}", "given twice, quoted and unquoted", "keep one of them")
        paths.check_name(rid, f"{where}: relation id")   # it names fact files and result folders
        if "+" in rid:     # relspec reads `P1303+v2` as two relations: no later stage could name it
            raise UserError(f"{where}: {rid}", "a relation id cannot contain '+'",
                            "'+' joins relations in data.relation_id (12+21+50); rename the relation")
        textio.require_fields(textio.require(entry, dict, f"{where}: {rid}", _RELATION_SHAPE), _RELATION_FIELDS,
                              f"{where}: {rid}", hint=_RELATION_SHAPE)
        for key in ("example_heads", "derived_from"):
            for i, value in enumerate(entry.get(key) if isinstance(entry.get(key), list) else []):
                textio.require(value, str, f"{where}: {rid}: {key}: {i}")
        _check_subject_kind(entry.get("subject_kind"), f"{where}: {rid}: subject_kind")
        table[rid] = entry
    return table


def _check_subject_kind(kind: str | None, where: str) -> None:
    if kind is not None and kind not in KINDS:
        raise UserError(where, f"unknown kind {kind!r}", f"known kinds: {list(KINDS)}")


def relations(data_root: Path | None = None) -> dict[str, dict]:
    table: dict[str, dict] = {}
    for path in relations_files(data_root):
        table.update(_relations(path))
    return table


def relation(relation_id: str, data_root: Path | None = None) -> dict:
    table = relations(data_root)
    if str(relation_id) not in table:
        raise UserError(f"relation {relation_id!r}", "unknown relation id",
                        f"known ids in {' + '.join(map(str, relations_files(data_root)))}: {sorted(table)}; "
                        "a new relation goes into {data_root}/relations.yaml (data_generation/README.md)")
    return table[str(relation_id)]


def vocab_file(relation_id: str, data_root: Path | None = None) -> Path:
    rel = relation(relation_id, data_root)
    if not rel.get("vocab"):
        raise UserError(f"relation {relation_id!r}", "has no object vocabulary in the catalogue")
    candidates = [*([Path(data_root) / rel["vocab"]] if data_root else []), SHIPPED / rel["vocab"]]
    return next((c for c in candidates if c.is_file()), candidates[0])


def vocab(relation_id: str, data_root: Path | None = None) -> list[str]:
    """The relation's object vocabulary: lower-cased, de-duplicated, in file order."""
    return read_vocab(vocab_file(relation_id, data_root))


def read_vocab(path: Path) -> list[str]:
    """A vocabulary file's words: lower-cased, de-duplicated, in file order."""
    if not path.is_file():
        raise UserError(str(path), "vocabulary file not found")
    seen, out = set(), []
    for line in textio.read_text(path).splitlines():
        word = " ".join(line.lower().split())
        if word and word not in seen:
            seen.add(word)
            out.append(word)
    return out


@dataclass
class PromptCatalogue:
    relation_id: str
    path: Path
    sha256: str
    families: dict[str, object]                         # hgp, mmp, train, test, unrelated, negation
    translations: dict[str, dict] = field(default_factory=dict)

    def lookup(self, family: str, index: int, language: str | None = None) -> str:
        """Template `family[index]` (families: hgp, mmp, train, test, unrelated, NegTrain, NegTest)."""
        source = self.families if not language or language == "English" else self._translation(language, family)
        values = _family_values(source, family)
        if values is None:
            raise UserError(f"{self.path}", f"no prompt family {family!r}" + (f" for {language}" if language else ""),
                            f"families here: {sorted(k for k in source if k != 'negation')}")
        if isinstance(values, dict):
            if index not in values:
                raise UserError(f"{family}-{index}", f"no such prompt in {self.path}", f"valid indices: {sorted(values)}")
            return values[index]
        if not 0 <= index < len(values):
            raise UserError(f"{family}-{index}", f"no such prompt in {self.path}", f"valid indices: 0..{len(values) - 1}")
        return values[index]

    def indices(self, family: str, language: str | None = None) -> list[int]:
        source = self.families if not language or language == "English" else self._translation(language, family)
        values = _family_values(source, family)
        if values is None:
            raise UserError(f"{self.path}", f"no prompt family {family!r}")
        return sorted(values) if isinstance(values, dict) else list(range(len(values)))

    def _translation(self, language: str, family: str) -> dict:
        if language not in self.translations:
            raise UserError(f"{self.path}", f"no {language} translation (family {family})",
                            f"languages here: {sorted(self.translations)}")
        return self.translations[language]


def _family_values(source: dict, family: str):
    if family in ("NegTrain", "NegTest"):
        neg = source.get("negation") or {}
        return neg.get("train" if family == "NegTrain" else "test")
    return source.get(family)


def prompts_file(relation_id: str, data_root: Path | None = None) -> Path:
    """The data root's catalogue of the relation (an import writes it), else the shipped one. The
    original project's prompt files in a data root (`prompt_template/{id}/train.csv`) are read by
    an import only: a stage reading that root would silently use the shipped prompts instead."""
    paths.check_name(relation_id, "relation id")
    if data_root:
        imported = Path(data_root) / "prompt_template" / f"{relation_id}.yaml"
        if imported.is_file():
            return imported
        original = Path(data_root) / "prompt_template" / relation_id
        if original.is_dir():
            raise UserError(str(original), "holds the original project's prompt files, which only an import reads",
                            f"import them first: python data_generation/generate.py mode=import "
                            f"import.path=<the original data folder> relation_ids=[{relation_id}]")
    return SHIPPED / "prompts" / f"{relation_id}.yaml"


def prompts(relation_id: str, data_root: Path | None = None) -> PromptCatalogue:
    path = prompts_file(str(relation_id), data_root)
    if not path.is_file():
        relation(str(relation_id), data_root)  # an unknown id gets the "known ids" message
        where = Path(data_root) / "prompt_template" / f"{relation_id}.yaml" if data_root else path
        raise UserError(f"relation {relation_id!r}", f"has no prompt catalogue ({where})",    # not the shipped path
                        "write one there, shaped as util_public/catalogue/prompts/50.yaml")
    return _prompts(path)


@filecache.per_content
def _prompts(path: Path) -> PromptCatalogue:
    data = load_yaml(path)
    textio.require_fields(data, {"schema": str, "relation_id": (str, int), "source": str}, str(path))
    labelled = str(data.get("relation_id", path.stem))
    if labelled != path.stem:       # a copy of another relation's catalogue, used for this one
        raise UserError(f"{path}: relation_id", f"is {labelled!r}, but this file serves relation {path.stem!r}",
                        f"set relation_id: \"{path.stem}\", or name the file {labelled}.yaml")
    families, translations = _families(data, str(path), _HEADER_KEYS), _translations(data.get("translations"), path)
    for lang, fams in [("English", families), *translations.items()]:
        _validate_families(path, lang, fams)
    return PromptCatalogue(labelled, path, sha256_file(path), families, translations)


def _translations(data: object, path: Path) -> dict[str, dict]:
    """{language: its families}; none when the key is absent or has no value."""
    where = f"{path}: translations"
    table = {} if data is None else textio.require(data, dict, where, _SHAPES)
    return {textio.require(lang, str, f"{where}: {lang!r}", _SHAPES): _families(fams, f"{where}: {lang}")
            for lang, fams in table.items()}


def _families(data: object, where: str, other_keys: tuple[str, ...] = ()) -> dict:
    """The prompt families of one language, each of its YAML type (`_FAMILY_TYPES`); a family
    without a value is absent. Any other key than a family or `other_keys` is refused: a misspelt
    family (`trian:`) was dropped without a word."""
    textio.require(data, dict, where, _SHAPES)
    unknown = sorted(str(k) for k in data if k not in _FAMILY_TYPES and k not in other_keys)
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(_FAMILY_TYPES), n=1)
        raise UserError(f"{where}: {unknown[0]}", "is not a prompt family",
                        (f"did you mean {close[0]!r}? " if close else "") + f"families: {', '.join(_FAMILY_TYPES)}")
    families = {}
    for name, kinds in _FAMILY_TYPES.items():
        if data.get(name) is None:
            continue
        values = families[name] = textio.require(data[name], kinds, f"{where}: {name}", _SHAPES)
        if name == "negation":
            for split in ("train", "test"):
                if values.get(split) is not None:
                    textio.require(values[split], list, f"{where}: negation: {split}", _SHAPES)
        elif isinstance(values, dict):          # looked up by index: `hgp-0` finds key 0, never "0"
            for index in values:
                textio.require(index, int, f"{where}: {name}: key {index!r}", _SHAPES)
    return families


def _validate_families(path: Path, language: str, fams: dict) -> None:
    tag = "" if language == "English" else f" ({language})"
    for family in ("hgp", "mmp", "train", "test", "unrelated", "NegTrain", "NegTest"):
        values = _family_values(fams, family)
        if values is None:
            continue
        items = values.items() if isinstance(values, dict) else enumerate(values)
        for index, template in items:
            validate_template(template, f"{path}: {family}{tag} index {index}")
    train, test = fams.get("train") or [], fams.get("test") or []
    for name, values in (("train", train), ("test", test)):
        if len(set(values)) != len(values):
            raise UserError(f"{path}: {name}{tag}", "duplicate templates")
    overlap = set(train) & set(test)
    if overlap:
        raise UserError(f"{path}: train/test{tag}", f"lists intersect: {sorted(overlap)[:3]}")
    hgp = fams.get("hgp") or {}
    hgp0 = hgp.get(0) if isinstance(hgp, dict) else hgp[0]     # hgp may be a list as well
    if hgp0 is not None and hgp0 in test:
        print(f"warning: {path}: hgp-0{tag} also appears in test", file=sys.stderr)
