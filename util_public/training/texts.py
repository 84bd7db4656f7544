"""Training text assembly for every `data.train_text_type` (SPEC §5.1), with character spans.

Each example is a triple (subject S, template T, object O) written as "T(S) O." unless the type
says otherwise (wiki, ic-lke-inject-entity). Every single-template type is resolved by
`prompts.template` and filled by `catalogue.substitute`, the same resolver evaluation uses, so
training and evaluation build the same context string. The spans of the substituted S and the
appended O are recorded for the loss masks (a composition records both facts' spans).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import catalogue, prompts, relspec, seeding
from ..errors import UserError, under
from ..facts import Fact, wiki_prefix
from . import occurrences
from .selection import Group, Selection

Span = tuple[int, int]
_TRAIN_MIX = re.compile(r"train-mix(?:-(\d+))?")
IC_LKE_TYPE = "ic-lke-inject-entity"
_SENTINEL = "\ue000"   # a private-use character: cannot occur in a chat template's own text


@dataclass(frozen=True)
class FactSpans:
    """Where one fact's subject and object sit in an assembled text (None: not present)."""
    fact_id: int
    relation_id: str
    subject: Span | None
    object: Span
    subject_text: str = ""    # S as stored, also when it does not occur in the text


@dataclass
class TrainText:
    fact_id: int
    relation_id: str          # the group name: "50", or "21&105" for a composition
    text_type: str            # the configured component type, e.g. "train-mix"
    prompt_id: str            # the concrete prompt, e.g. "train-3"
    text: str
    facts: list[FactSpans] = field(default_factory=list)
    rehearsal: bool = False   # a real fact of `data.rehearsal`, not one of the stage's facts

    def record(self) -> dict:
        """The `data/train_texts.jsonl` fields that describe the text (token counts are added later)."""
        return {"fact_id": self.fact_id, "relation_id": self.relation_id, "text_type": self.text_type,
                "prompt_id": self.prompt_id, "text": self.text,
                "subject_spans": [list(f.subject) if f.subject else None for f in self.facts],
                "object_spans": [list(f.object) for f in self.facts], **({"rehearsal": True} if self.rehearsal else {})}


@dataclass
class Options:
    """What text assembly needs besides the facts (all from the stage config)."""
    data_root: Path | None = None
    key_format: str = prompts.KEY_FORMAT
    combine_spacing: str = "single"
    compose_joiner: str = " "
    ic_sep: str = " : "
    seed: int = 42
    wiki_on_missing_object: str = "error"
    chat: tuple[str, str] | None = None          # (prefix, suffix) of the chat wrapping, or None


def components(text_type: str) -> list[str]:
    """`trigger-mid&hgp-0` -> ["trigger-mid", "hgp-0"]: one text per fact for each type."""
    parts = [p.strip() for p in text_type.split("&")]
    if any(not p for p in parts):
        raise UserError("data.train_text_type", f"{text_type!r} has an empty part")
    if len(set(parts)) < len(parts):        # each fact's text would be trained twice per epoch
        raise UserError("data.train_text_type", f"{text_type!r} names a type twice", "list each type once")
    for part in parts:
        _prompt_names(part, None)   # validates the name before any data is read
    return parts


def key_tokens_needed(selection: Selection, text_type: str, key_format: str) -> list[str]:
    """Key tokens the configured text types use, per atomic relation (composites need every part)."""
    if not any(part.startswith("trigger-") for part in components(text_type)):
        return []
    tokens: list[str] = []
    for rel in selection.atomic_relations():
        tokens += [t for t in prompts.key_tokens(rel, key_format) if t not in tokens]
    return tokens


def _prompt_names(component: str, cat: catalogue.PromptCatalogue | None) -> list[str]:
    """The concrete prompt types a component expands to, in prompt-index order."""
    m = _TRAIN_MIX.fullmatch(component)
    if m:
        if cat is None:
            return []
        available = cat.indices("train")
        n = int(m.group(1)) if m.group(1) else len(available)
        if not 1 <= n <= len(available):
            raise UserError("data.train_text_type", f"{component}: N must be 1..{len(available)} "
                            f"(the train prompts in {cat.path})")
        return [f"train-{i}" for i in available[:n]]
    if component == "mix":
        return [f"{family}-{i}" for family in ("hgp", "mmp") for i in range(3)]
    if component in ("wiki", IC_LKE_TYPE):
        return [component]
    ptype = prompts.parse(component)
    if ptype.wildcard or ptype.borrow or ptype.family.startswith("only-") or ptype.family == "ic-lke":
        raise UserError("data.train_text_type", f"{component!r} is an evaluation-only prompt type",
                        "train with trigger-*, subject, hgp/mmp/train/test/unrelated/NegTrain/NegTest-k, "
                        "train-mix[-N], mix, wiki, ic-lke-inject-entity or X&Y")
    return [component]


def check_text_type(text_type: str, key: str = "data.train_text_type") -> None:
    """What the text type alone decides: every component a training type (a recipe checks every
    stage's before the first runs; `train-mix-N` and the templates need the catalogue, later)."""
    with under(key):
        for component in components(text_type):
            if not _TRAIN_MIX.fullmatch(component):
                _prompt_names(component, None)


def check_templates(text_type: str, relation_id: str, data_root: Path, key_format: str = prompts.KEY_FORMAT) -> None:
    """Every template `build` will look up for `text_type` exists in each relation's catalogue,
    checked without the facts (a stage planned before its data exists)."""
    parts = components(text_type)
    for rel in relspec.atomic(relation_id):
        with under("data.relation_id"):
            cat = _catalogue(rel, parts, data_root)
        with under("data.train_text_type"):
            for part in parts:
                for prompt_id in _prompt_names(part, cat):
                    if prompt_id not in ("wiki", IC_LKE_TYPE):
                        prompts.template(prompt_id, rel, cat, key_format=key_format)


def needs_catalogue(component: str) -> bool:
    return component not in ("wiki", IC_LKE_TYPE, "subject") and not component.startswith("trigger-")


def chat_wrapping(tokenizer) -> tuple[str, str]:
    """(prefix, suffix) that the tokenizer's chat template puts around one user message,
    ending with the generation prompt; the content itself is inserted verbatim."""
    if not getattr(tokenizer, "chat_template", None):
        raise UserError(f"data.chat_template: tokenizer {getattr(tokenizer, 'name_or_path', '?')}",
                        "the tokenizer has no chat template", "set data.chat_template=false")
    wrapped = tokenizer.apply_chat_template([{"role": "user", "content": _SENTINEL}], tokenize=False,
                                            add_generation_prompt=True)
    if wrapped.count(_SENTINEL) != 1:
        raise UserError(f"tokenizer {tokenizer.name_or_path}", "its chat template does not insert the message verbatim")
    prefix, suffix = wrapped.split(_SENTINEL)
    return prefix, suffix


def build(selection: Selection, text_type: str, opts: Options) -> list[TrainText]:
    """All training texts: per group, per fact (fact_id order), per component, per prompt."""
    parts = components(text_type)
    out: list[TrainText] = []
    for group in selection.groups:
        if IC_LKE_TYPE in parts and len(group.relation_ids) > 1:
            raise UserError("data.train_text_type", f"{IC_LKE_TYPE} cannot be combined with the composition {group.name}")
        cats = {rel: _catalogue(rel, parts, opts.data_root) for rel in group.relation_ids}
        for row in group.rows:
            for part in parts:
                for prompt_id in _prompt_names(part, cats[group.relation_ids[0]]):
                    text = _compose(group, row, part, prompt_id, cats, opts)
                    if text is not None:
                        out.append(text)
    if not out and any(group.rows for group in selection.groups):    # only the wiki skip leaves a fact out
        raise UserError("wiki.on_missing_object", "skip left no training text: no selected fact's Text contains "
                        "its object", "check the Text column of " + ", ".join(str(p) for p in selection.input_files if p.suffix == ".csv"))
    return out


def _catalogue(rel: str, parts: list[str], data_root: Path | None) -> catalogue.PromptCatalogue | None:
    return catalogue.prompts(rel, data_root) if any(needs_catalogue(p) for p in parts) else None


def _compose(group: Group, row: tuple[Fact, ...], part: str, prompt_id: str,
             cats: dict, opts: Options) -> TrainText | None:
    """One text for one fact (or one composed pair): the segments joined by the joiner."""
    text, spans = "", []
    for i, fact in enumerate(row):
        segment = _segment(group, fact, part, prompt_id, cats.get(fact.relation_id), opts)
        if segment is None:
            return None
        seg_text, seg_spans = segment
        offset = len(text) + (len(opts.compose_joiner) if i else 0)
        text = (text + opts.compose_joiner if i else text) + seg_text
        spans.append(_shift(seg_spans, offset))
    return TrainText(row[0].fact_id, group.name, part, prompt_id, text, spans)


def _segment(group: Group, fact: Fact, part: str, prompt_id: str, cat, opts: Options):
    """(text, FactSpans) of one fact, or None when a wiki fact is skipped."""
    if prompt_id == "wiki":
        return _wiki(fact, opts)
    if prompt_id == IC_LKE_TYPE:
        return _ic_lke(group, fact, opts)
    tpl = prompts.template(prompt_id, fact.relation_id, cat, key_format=opts.key_format, combine_spacing="single")
    if prompt_id == "trigger-combine" and opts.combine_spacing == "original":
        # Reproduces the original's training string "S <K_a> <K_b>  O." (two spaces before O);
        # its evaluation context differs ("S <K_a><K_b>"), which is why this is compat-only.
        tpl += " "
    return _statement(tpl, fact, opts.chat)


def _statement(tpl: str, fact: Fact, chat: tuple[str, str] | None):
    """"T(S) O." with the spans of the substituted S and the appended O."""
    if chat:
        tpl = chat[0] + tpl + chat[1]
    context = catalogue.substitute(tpl, fact.head)
    s_start = tpl.index("{head}")
    o_start = len(context) + 1
    text = f"{context} {fact.object}."
    return text, FactSpans(fact.fact_id, fact.relation_id, (s_start, s_start + len(fact.head)),
                           (o_start, o_start + len(fact.object)), fact.head)


def _wiki(fact: Fact, opts: Options):
    """`Text` cut before O's first mention (`facts.wiki_prefix`), then " O."."""
    where = f"fact_id {fact.fact_id} (relation {fact.relation_id})"
    context = wiki_prefix(fact)
    if context is None:
        if opts.wiki_on_missing_object == "skip":
            return None
        raise UserError(where, f"its Text does not contain the object {fact.object!r}"
                        if fact.text else "has no Text column value (wiki paragraph)",
                        "set wiki.on_missing_object=skip to leave such facts out")
    if not context:
        raise UserError(where, "its Text starts with the object, leaving no context")
    return _wrapped_context(context, fact, opts.chat)


def _ic_lke(group: Group, fact: Fact, opts: Options):
    """The other facts of the selection in a seeded order as "S_i{sep}O_i", then ", S{sep}O."."""
    others = [row[0] for row in group.rows if row[0].fact_id != fact.fact_id]
    order = seeding.stream(opts.seed, IC_LKE_TYPE, fact.relation_id, fact.fact_id).permutation(len(others))
    shots = ", ".join(f"{others[i].head}{opts.ic_sep}{others[i].object}" for i in order)
    prefix = (shots + ", ") if shots else ""
    return _wrapped_context(prefix + fact.head + opts.ic_sep.rstrip(), fact, opts.chat,
                            subject_at=len(prefix), joiner=opts.ic_sep[len(opts.ic_sep.rstrip()):])


def _wrapped_context(context: str, fact: Fact, chat: tuple[str, str] | None, subject_at: int | None = None,
                     joiner: str = " "):
    """context + joiner + O + "." for a context built per fact (no template); the subject span is
    `subject_at` when known, else its first boundary-respecting occurrence (None if absent)."""
    if subject_at is None:
        found = occurrences.find(context, fact.head)
        subject_at = found[0][0] if found else None
    if chat:
        context = chat[0] + context + chat[1]
        subject_at = None if subject_at is None else subject_at + len(chat[0])
    o_start = len(context) + len(joiner)
    subject = None if subject_at is None else (subject_at, subject_at + len(fact.head))
    return (f"{context}{joiner}{fact.object}.",
            FactSpans(fact.fact_id, fact.relation_id, subject, (o_start, o_start + len(fact.object)), fact.head))


def _shift(spans: FactSpans, offset: int) -> FactSpans:
    move: Callable[[Span | None], Span | None] = lambda s: None if s is None else (s[0] + offset, s[1] + offset)
    return FactSpans(spans.fact_id, spans.relation_id, move(spans.subject), move(spans.object), spans.subject_text)
