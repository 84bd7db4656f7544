"""Prompt types: names like `hgp-0`, `test-*`, `trigger-mid`, resolved to `{head}` templates.

Training (text assembly) and evaluation (contexts) share this one resolver, so both build the
same string for the same type. Fact-dependent types (`wiki`, `ic-lke`) are built elsewhere.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .catalogue import PromptCatalogue, validate_template
from .errors import UserError

KEY_FORMAT = "<TRIGGER_{relation_id}>"
CATALOGUE_FAMILIES = ("hgp", "mmp", "train", "test", "unrelated", "NegTrain", "NegTest")
BUILTIN = ("trigger-mid", "trigger-begin", "trigger-combine", "subject", "wiki", "ic-lke")
_INDEXED = re.compile(r"^(only-hgp|only-mmp|hgp|mmp|train|test|unrelated|NegTrain|NegTest)-(\d+|\*)$")


@dataclass(frozen=True)
class PromptType:
    name: str
    family: str            # a builtin name, a catalogue family, or only-hgp / only-mmp
    index: int | None      # None for builtins and for wildcards
    wildcard: bool = False


def parse(name: str) -> PromptType:
    if name in BUILTIN:
        return PromptType(name, name, None)
    m = _INDEXED.match(name)
    if not m:
        raise UserError(f"prompt type {name!r}", "unknown prompt type",
                        f"use one of {', '.join(BUILTIN)} or FAMILY-k / FAMILY-* with FAMILY in "
                        f"{', '.join(CATALOGUE_FAMILIES)}, only-hgp, only-mmp")
    family, idx = m.groups()
    return PromptType(name, family, None if idx == "*" else int(idx), idx == "*")


def expand(name: str, catalogue: PromptCatalogue, language: str | None = None) -> list[str]:
    """Concrete prompt types: `test-*` becomes test-0 .. test-9; others map to themselves."""
    ptype = parse(name)
    if not ptype.wildcard:
        return [name]
    base = ptype.family.removeprefix("only-")
    return [f"{ptype.family}-{i}" for i in catalogue.indices(base, language)]


def key_tokens(relation_id: str, key_format: str = KEY_FORMAT) -> list[str]:
    """Key tokens a relation needs: one per atomic id (`a-b` composites need both)."""
    return [key_format.format(relation_id=part) for part in str(relation_id).split("-") if part]


def template(name: str, relation_id: str, catalogue: PromptCatalogue | None, language: str | None = None,
             key_format: str = KEY_FORMAT, combine_spacing: str = "single") -> str:
    """The context template of a single-template prompt type, containing `{head}` once
    (`only-*` types contain none: the subject is replaced by one space, as the original)."""
    ptype = parse(name)
    if ptype.wildcard:
        raise UserError(f"prompt type {name!r}", "a wildcard names several prompts; expand it first")
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
