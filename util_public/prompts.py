"""Prompt types: names like `hgp-0`, `test-*`, `trigger-mid`, resolved to `{head}` templates.

Training (text assembly) and evaluation (contexts) share this one resolver, so both build the
same string for the same type. Fact-dependent types (`wiki`, `ic-lke`) are built elsewhere.

A suffix `@B` borrows relation B's prompt for this fact's subject (evaluation only; the
specificity probes): `hgp-0@71` is relation 71's "The author of {head} is", `trigger-mid@71` is
"{head} <TRIGGER_71>", `test-*@71` is every test prompt of 71. B must be a catalogued relation.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from . import catalogue as catalogues
from .catalogue import PromptCatalogue, validate_template
from .errors import UserError

KEY_FORMAT = "<TRIGGER_{relation_id}>"
COMBINE_SPACINGS = ("single", "original")    # trigger-combine keys joined by a space | by nothing (the original)
CATALOGUE_FAMILIES = ("hgp", "mmp", "train", "test", "unrelated", "NegTrain", "NegTest")
BUILTIN = ("trigger-mid", "trigger-begin", "trigger-combine", "subject", "wiki", "ic-lke")
NOT_BORROWABLE = ("trigger-combine", "subject", "wiki", "ic-lke")    # no single relation's template
# One spelling per prompt: `hgp-00` read as hgp-0 but named its run apart (and \d took other scripts' digits).
_INDEXED = re.compile(r"(only-hgp|only-mmp|hgp|mmp|train|test|unrelated|NegTrain|NegTest)-(0|[1-9][0-9]*|\*)")


@dataclass(frozen=True)
class PromptType:
    name: str
    family: str            # a builtin name, a catalogue family, or only-hgp / only-mmp
    index: int | None      # None for builtins and for wildcards
    wildcard: bool = False
    borrow: str | None = None   # `X@B`: relation B's prompt X

    @property
    def base(self) -> str:
        """The name without its `@B` suffix."""
        return self.name.rsplit("@", 1)[0] if self.borrow else self.name

    @property
    def group(self) -> str:
        """The family, with the borrowed relation (`hgp@71`): prompts summarised together."""
        return f"{self.family}@{self.borrow}" if self.borrow else self.family


def parse(name: str) -> PromptType:
    base, at, borrow = str(name).rpartition("@")
    if at:
        if not borrow or not base or "@" in base:
            raise UserError(f"prompt type {name!r}", "a borrowed prompt is written X@B with one relation id B",
                            "e.g. hgp-0@71 or trigger-mid@71")
        inner = parse(base)
        if inner.family in NOT_BORROWABLE:
            raise UserError(f"prompt type {name!r}", f"{base} is not one relation's prompt, so it cannot be borrowed",
                            "borrow trigger-mid, trigger-begin or a catalogue prompt (hgp-0@71, test-*@71)")
        return dataclasses.replace(inner, name=name, borrow=borrow)
    if name in BUILTIN:
        return PromptType(name, name, None)
    m = _INDEXED.fullmatch(name)
    if not m:
        raise UserError(f"prompt type {name!r}", "unknown prompt type",
                        f"use one of {', '.join(BUILTIN)} or FAMILY-k / FAMILY-* with FAMILY in "
                        f"{', '.join(CATALOGUE_FAMILIES)}, only-hgp, only-mmp")
    family, idx = m.groups()
    return PromptType(name, family, None if idx == "*" else int(idx), idx == "*")


def expand(name: str, catalogue: PromptCatalogue, language: str | None = None,
           data_root: Path | None = None) -> list[str]:
    """Concrete prompt types: `test-*` becomes test-0 .. test-9 (`test-*@71`: test-0@71 .. from
    relation 71's catalogue); others map to themselves."""
    ptype = parse(name)
    if not ptype.wildcard:
        return [name]
    if ptype.borrow:
        catalogue = borrowed_catalogue(ptype, data_root)
    base = ptype.family.removeprefix("only-")
    suffix = f"@{ptype.borrow}" if ptype.borrow else ""
    return [f"{ptype.family}-{i}{suffix}" for i in catalogue.indices(base, language)]


def borrowed_catalogue(ptype: PromptType, data_root: Path | None = None) -> PromptCatalogue:
    """The prompt catalogue of the relation an `X@B` type borrows from (an unknown B is an error)."""
    _check_borrow(ptype, data_root)
    return catalogues.prompts(ptype.borrow, data_root)


def _check_borrow(ptype: PromptType, data_root: Path | None) -> None:
    try:
        catalogues.relation(ptype.borrow, data_root)
    except UserError as err:
        raise UserError(f"prompt type {ptype.name!r}", f"borrows from an unknown relation {ptype.borrow!r}",
                        err.hint) from None


def relation_of(name: str, relation_id: str) -> str:
    """The relation whose prompt `name` is, for a fact of `relation_id` (B for `X@B`)."""
    return parse(name).borrow or str(relation_id)


def check_key_format(key_format: str, where: str = "key_token.format") -> None:
    """The key-token format names `{relation_id}` exactly once and no other field."""
    try:
        probe = key_format.format(relation_id="\0")
    except (KeyError, IndexError, ValueError) as err:
        raise UserError(where, f"{key_format!r} is not a format of {{relation_id}} alone ({err!r})",
                        f"e.g. {KEY_FORMAT}") from None
    if probe.count("\0") != 1:
        raise UserError(where, f"{key_format!r} must contain '{{relation_id}}' once", f"e.g. {KEY_FORMAT}")
    # A special token matches wherever its text occurs: `{relation_id}` alone made "50" one, inside
    # subjects, prompts and answers. A bracketed word without spaces occurs in no natural text.
    if not re.fullmatch(r"<[^<>\s]+>", probe.replace("\0", "x")):
        raise UserError(where, f"{key_format!r} must be one bracketed word, as <...{{relation_id}}...>",
                        f"e.g. {KEY_FORMAT}: a special token is matched wherever its text occurs")


def checkpoint_key_format(meta) -> str:
    """The key-token format a checkpoint trained with (its `mtg_meta.json`), else the default."""
    return (meta.key_token_format if meta else None) or KEY_FORMAT


def key_tokens(relation_id: str, key_format: str = KEY_FORMAT) -> list[str]:
    """Key tokens a relation needs: one per atomic id (`a-b` composites need both)."""
    return [key_format.format(relation_id=part) for part in str(relation_id).split("-") if part]


def template(name: str, relation_id: str, catalogue: PromptCatalogue | None, language: str | None = None,
             key_format: str = KEY_FORMAT, combine_spacing: str = "single", data_root: Path | None = None) -> str:
    """The context template of a single-template prompt type, containing `{head}` once
    (`only-*` types contain none: the subject is replaced by one space, as the original).
    `X@B` resolves X for relation B, from B's catalogue (under `data_root` when imported)."""
    ptype = parse(name)
    if ptype.wildcard:
        raise UserError(f"prompt type {name!r}", "a wildcard names several prompts; expand it first")
    if ptype.borrow:
        _check_borrow(ptype, data_root)
        cat = None if ptype.family.startswith("trigger-") else catalogues.prompts(ptype.borrow, data_root)
        return template(ptype.base, ptype.borrow, cat, language, key_format, combine_spacing, data_root)
    if ptype.family == "trigger-mid":
        return "{head} " + key_tokens(relation_id, key_format)[-1]
    if ptype.family == "trigger-begin":
        return key_tokens(relation_id, key_format)[0] + " {head}"
    if ptype.family == "trigger-combine":
        keys = key_tokens(relation_id, key_format)
        if len(keys) < 2:
            raise UserError(f"prompt type {name!r}", f"needs a composite relation id like 105-21, got {relation_id!r}")
        joiner = "" if combine_spacing == "original" else " "
        return "{head} " + joiner.join(keys)
    if ptype.family == "subject":
        return "{head}"
    if ptype.family in ("wiki", "ic-lke"):
        raise UserError(f"prompt type {name!r}", "is built per fact, not from a template")
    if catalogue is None:
        raise UserError(f"prompt type {name!r}", "needs the relation's prompt catalogue")
    if ptype.family.startswith("only-"):
        tpl = catalogue.lookup(ptype.family.removeprefix("only-"), ptype.index, language)
        return tpl.replace("{head}", " ")
    return validate_template(catalogue.lookup(ptype.family, ptype.index, language),
                             f"{catalogue.path}: {name}")

