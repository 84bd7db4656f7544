"""Cross-relation multiple choice (`mc.pool_relations`): options pooled from several relations' objects.

Ordinary MC options are all objects of the fact's own relation, so an unrelated prompt still has
to pick one of them and cannot show whether the model knows what was asked. Pooled questions mix
in objects of other relations: with `mc.pool_relations=71+105` a capital question (relation 50)
offers the memorized capital, capitals, authors and mothers. The `num_options - 1` distractors are
split evenly over the relations (the own relation takes the remainder): the own ones are the
fact's first stored distractors, the others are drawn from each relation's vocabulary by the
substring rule (SPEC §4.3), never conflicting with the gold, the subject or an option already
chosen, from the per-fact stream (seed, "mc.pool", "A>B", fact_id).

Scored under the own prompt (`hgp-0`) and under other relations' prompts for the same subject
(`hgp-0@71`, `trigger-mid@71`), each record carries every option's relation, and the summary adds
`asked_type_wins`: the rate at which the model's choice is an object of the relation the prompt
asks about (B for `X@B`). `accuracy` keeps its meaning: the memorized object wins.

Options of different relations differ in length (a city against a full name), and summed
log-probabilities favour short options: SmolLM2-135M picks an author for "The author of S is"
in 2% of the questions by summed score and in 42% by per-character score (20 options, 50
fictional subjects). Compare types with `acc_norm` and `asked_type_wins_norm` (the
per-character choice, lm-evaluation-harness's `acc_norm` convention).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .. import catalogue, prompts, relspec
from ..errors import UserError, under
from ..facts import Fact


def pool_ids(spec: str | None, relation_id: str, data_root: Path | None = None) -> list[str]:
    """The other relations of `mc.pool_relations` ("71+105"), validated against `relation_id`."""
    if not spec:
        return []
    ids = relspec.separate(spec, "mc.pool_relations")
    if relation_id in ids:
        raise UserError("mc.pool_relations", f"{spec!r} names the evaluated relation {relation_id} itself",
                        "list only the other relations whose objects join the options")
    with under("mc.pool_relations"):
        for rel in ids:
            catalogue.vocab_file(rel, data_root)      # an unknown id, or one without objects to pool
    return ids


def dataset_name(dataset: str, others: list[str]) -> str:
    """Pooled questions differ from the plain ones: their results get their own dataset folder."""
    return f"{dataset}.pool-{'-'.join(others)}"


def shares(num_options: int, groups: int) -> tuple[int, int]:
    """(own, each other) distractor counts for `num_options` over `groups` relations."""
    each = (num_options - 1) // groups
    if each < 1:
        raise UserError("mc.num_options", f"{num_options} options cannot hold one object of each of {groups} relations",
                        "raise mc.num_options or pool fewer relations")
    return num_options - 1 - each * (groups - 1), each


def pool_facts(facts: list[Fact], others: list[str], num_options: int, seed: int,
               data_root: Path | None) -> tuple[list[Fact], dict[int, list[str]]]:
    """Facts with pooled distractors, and fact_id -> each distractor's relation (stored order)."""
    from ..datagen.distractors import draw_distractors, vocab_pool

    own_count, each = shares(num_options, 1 + len(others))
    out, labels = [], {}
    for fact in facts:
        if len(fact.options) < own_count:
            raise UserError(f"relation {fact.relation_id} fact_id {fact.fact_id}",
                            f"{len(fact.options)} stored distractors; pooled over {1 + len(others)} relations, "
                            f"mc.num_options={num_options} takes {own_count} of them", "lower mc.num_options")
        options = list(fact.options[:own_count])
        kinds = [fact.relation_id] * own_count
        for other in others:
            options += draw_distractors(vocab_pool(other, data_root), fact.object, each, seed,
                                        f"{fact.relation_id}>{other}", fact.fact_id, purpose="mc.pool",
                                        exclude=(fact.head, *options))
            kinds += [other] * each
        out.append(replace(fact, options=options))
        labels[fact.fact_id] = kinds
    return out, labels


def vocab_files(others: list[str], data_root: Path | None) -> list[Path]:
    return [catalogue.vocab_file(o, data_root) for o in others]


def check_asked(prompt_type: str, relation_id: str, others: list[str]) -> None:
    """A pooled question under `X@B` must offer objects of B."""
    asked = prompts.relation_of(prompt_type, relation_id)
    if asked != relation_id and asked not in others:
        raise UserError(f"prompt type {prompt_type!r}", f"asks about relation {asked}, whose objects are not among "
                        f"the options (mc.pool_relations={'+'.join(others)})", f"add {asked} to mc.pool_relations")


def type_fields(distractor_relations: list[str], gold: int, relation_id: str, pred_index: int,
                pred_index_norm: int, prompt_type: str) -> dict:
    """The record fields of a pooled question: every option's relation, what was asked, what won
    by summed and by per-character score."""
    kinds = list(distractor_relations)
    kinds.insert(gold, relation_id)
    asked = prompts.relation_of(prompt_type, relation_id)
    return {"option_relations": kinds, "asked_relation": asked, "pred_relation": kinds[pred_index],
            "asked_type_win": kinds[pred_index] == asked, "pred_relation_norm": kinds[pred_index_norm],
            "asked_type_win_norm": kinds[pred_index_norm] == asked}
