"""Context strings per fact and prompt type (SPEC §6.2): what the model reads before the answer.

Template types go through `util_public.prompts.template` + `catalogue.substitute`, the same
resolver that training uses, so "P(S)" is byte-identical in both stages. `open` prepends the
fact statement "T(S) O." (the ICL baseline); `chat_template` wraps the final context as one
user message with the generation prompt.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from .. import catalogue, prompts
from ..catalogue import PromptCatalogue
from ..errors import UserError, under
from ..facts import Fact, wiki_prefix
from . import ic_lke
from .schema import IcLkeCfg


@dataclass(frozen=True)
class ContextSpec:
    """Everything besides the fact and the prompt type that shapes a context string."""
    relation_id: str
    catalogue: PromptCatalogue | None
    language: str | None = None
    separator: str = " "
    test_type: str = "close"
    open_content: str | None = None
    chat_template: bool = False
    combine_spacing: str = "single"
    key_format: str = prompts.KEY_FORMAT
    data_root: Path | None = None       # where imported catalogues of borrowed (`X@B`) prompts live


def check_test_type(spec: ContextSpec) -> None:
    if spec.test_type not in ("close", "open"):
        raise UserError("prompt.test_type", f"{spec.test_type!r} is neither close nor open")
    if spec.test_type == "open" and not spec.open_content:
        raise UserError("prompt.open_content", "test_type=open needs the fact statement type to prepend",
                        "set prompt.open_content=hgp-0 (or another single-template type, or wiki)")
    if spec.test_type == "open" and spec.open_content != "wiki":
        with under(f"prompt.open_content={spec.open_content}"):
            kind = prompts.parse(str(spec.open_content))
        if kind.wildcard or kind.family == "ic-lke":
            raise UserError(f"prompt.open_content={spec.open_content}", "is not one statement of the fact",
                            "name one prompt, such as hgp-0, trigger-mid or wiki")


def wiki_context(fact: Fact) -> str:
    """`Text` up to the object's first mention (`facts.wiki_prefix`), trailing space removed."""
    context, where = wiki_prefix(fact), f"fact_id {fact.fact_id} (relation {fact.relation_id})"
    if context is None:     # as training says it: a missing paragraph is not a paragraph without the object
        raise UserError(where, f"its wiki Text does not contain the object {fact.object!r}" if fact.text
                        else "has no Text column value (wiki paragraph)",
                        "generate wiki paragraphs (data_generation) or use another prompt type")
    if not context:     # training refuses it too: the object would be scored with no context at all
        raise UserError(where, "its wiki Text starts with the object, leaving no context")
    return context


def statement(open_content: str, fact: Fact, spec: ContextSpec) -> str:
    """The full fact as training writes it, "T(S) O." (`wiki`: the whole paragraph)."""
    if open_content == "wiki":
        if not fact.text:
            raise UserError(f"fact_id {fact.fact_id}", "prompt.open_content=wiki but the fact has no Text")
        return fact.text
    with under(f"prompt.open_content={open_content}"):
        tpl = prompts.template(open_content, spec.relation_id, spec.catalogue, spec.language,
                               key_format=spec.key_format, combine_spacing=spec.combine_spacing,
                               data_root=spec.data_root)
    return f"{catalogue.substitute(tpl, fact.head)} {fact.object}."


CALIBRATIONS = ("none", "subjectless")


def check_calibration(mode: str, null_subject: str, test_type: str) -> None:
    """`mc.calibration` and `mc.null_subject`, before any data load."""
    if mode not in CALIBRATIONS:
        raise UserError("mc.calibration", f"{mode!r} is not one of {', '.join(CALIBRATIONS)}")
    if mode == "none":
        return
    if not null_subject or null_subject != null_subject.strip():
        raise UserError("mc.null_subject", f"{null_subject!r}: the subject's stand-in must be non-empty text "
                        "without surrounding whitespace", "use mc.null_subject=X")
    if test_type == "open":     # the prepended statement names the subject and the answer
        raise UserError("mc.calibration", "a subjectless question cannot follow the fact's statement "
                        "(prompt.test_type=open)", "calibrate close questions, or set mc.calibration=none")


def subjectless(prompt_type: str, selected: list[Fact], spec: ContextSpec, null_subject: str,
                tokenizer=None) -> dict[int, str]:
    """fact_id -> the context with the subject replaced by `null_subject` (`mc.calibration=subjectless`):
    the same question about no one, so its option scores are what the model prefers whatever the
    subject. Only a template's `{head}` can be replaced: wiki text and IC-LKE examples also hold subjects."""
    if prompts.parse(prompt_type).family in ("wiki", "ic-lke"):
        raise UserError("mc.calibration", f"prompt type {prompt_type!r} has no template whose subject can be "
                        "replaced", "calibrate template prompts (hgp-0, test-*, trigger-mid), or set "
                        "mc.calibration=none")
    return build(prompt_type, [replace(f, head=null_subject) for f in selected], spec, tokenizer=tokenizer)


def build(prompt_type: str, selected: list[Fact], spec: ContextSpec, *, tokenizer=None,
          pool: list[Fact] | None = None, ic_cfg: IcLkeCfg | None = None) -> dict[int, str]:
    """fact_id -> context for every selected fact (validates everything; builds no tokens)."""
    check_test_type(spec)
    family = prompts.parse(prompt_type).family
    if family in ("wiki", "ic-lke"):
        tpl = None
    else:
        tpl = prompts.template(prompt_type, spec.relation_id, spec.catalogue, spec.language,
                               key_format=spec.key_format, combine_spacing=spec.combine_spacing,
                               data_root=spec.data_root)
    if spec.chat_template and not getattr(tokenizer, "chat_template", None):
        raise UserError(f"tokenizer {getattr(tokenizer, 'name_or_path', '?')}", "has no chat template",
                        "set prompt.chat_template=false")
    out = {}
    for fact in selected:
        if family == "wiki":
            ctx = wiki_context(fact)
        elif family == "ic-lke":
            ctx = ic_lke.context(fact, pool if pool is not None else selected, ic_cfg or IcLkeCfg(),
                                 spec.separator, spec.relation_id)
        else:
            ctx = catalogue.substitute(tpl, fact.head)
        if spec.test_type == "open":
            ctx = f"{statement(spec.open_content, fact, spec)} {ctx}"
        if spec.chat_template:
            ctx = tokenizer.apply_chat_template([{"role": "user", "content": ctx}], tokenize=False,
                                                add_generation_prompt=True)
        out[fact.fact_id] = ctx
    return out
