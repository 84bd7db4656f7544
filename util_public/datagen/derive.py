"""`mode: derive` (SPEC §4.7): datasets built from generated relations, keeping their fact_ids.

- `reverse` (105 -> r105): Head and Fact swap; the options are other subjects of the source
  relation, drawn by §4.3. The source objects must be unique, or the reversed facts would be
  ambiguous.
- `chain` (first 105, second 21): relation 21's subjects become 105's objects B (unique, in
  fact_id order) with objects C from 21's vocabulary, and the composite `105-21` maps A to C with
  options from 21's vocabulary. Written into `dataset` (the first relation is copied there when the
  source dataset differs, so the composite's parts sit side by side).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from .. import catalogue
from ..errors import UserError
from ..facts import Fact, check_fact, load_relation, norm, relation_file
from ..runinfo import sha256_file
from . import manifest, vocab
from .distractors import DistractorPool, draw_distractors
from .outputs import Output, existing_facts
from .schema import GenConfig


def _unique_object_facts(cfg: GenConfig, data_root: Path, dataset: str, relation_id: str) -> list[Fact]:
    """The source relation's facts; a source without any would derive an empty dataset. An imported
    source may break the substring rule among its own options (a warning at import): the derived
    facts never use those options and are checked themselves."""
    facts = sorted(load_relation(data_root, dataset, relation_id, num_options=cfg.num_options, substring_rule="warn"),
                   key=lambda f: f.fact_id)
    if not facts:
        raise UserError(str(relation_file(data_root, dataset, relation_id)), "holds no facts, only a header",
                        "generate the source relation first (data_generation/gen_script.sh)")
    counts = Counter(norm(f.object) for f in facts)
    repeated = sorted(o for o, n in counts.items() if n > 1)
    if repeated:
        raise UserError(str(relation_file(data_root, dataset, relation_id)),
                        f"objects are not unique ({len(repeated)} repeated, e.g. {repeated[:3]}); "
                        "derived facts would be ambiguous",
                        "generate the source relation with objects.unique=true")
    return facts


def _target(cfg: GenConfig, data_root: Path, relation_id: str) -> Path:
    path = relation_file(data_root, cfg.dataset, relation_id)
    existing_facts(path, cfg.on_exists, cfg.num_options)     # `error` refuses an existing file
    return path


def _built(facts: list[Fact], target: Path, num_options: int) -> list[Fact]:
    """Derived facts pass the same read checks as generated ones (e.g. a reversed Head)."""
    for f in facts:
        check_fact(f, num_options, "error", f"{target}: fact_id {f.fact_id}")
    return facts


def reverse(cfg: GenConfig, data_root: Path, source_dataset: str) -> list[Output]:
    rel = cfg.derive.source
    new_rel = f"r{rel}"
    source = _unique_object_facts(cfg, data_root, source_dataset, rel)
    target = _target(cfg, data_root, new_rel)
    pool = DistractorPool([f.head for f in source])
    facts = [Fact(f.fact_id, new_rel, f.object, f.head,
                  draw_distractors(pool, f.head, cfg.num_options - 1, cfg.seed, new_rel, f.fact_id))
             for f in source]
    notes = {"derived_from": {"relation_id": rel, "dataset": source_dataset, "kind": "reverse",
                              "sha256": sha256_file(relation_file(data_root, source_dataset, rel))}}
    return [Output.facts(target, _built(facts, target, cfg.num_options), notes)]


def chain(cfg: GenConfig, data_root: Path, source_dataset: str) -> list[Output]:
    first, second = cfg.derive.first, cfg.derive.second
    composite = f"{first}-{second}"
    catalogue.relation(second, data_root)        # an unknown id fails here, whatever the vocab source
    a_facts = _unique_object_facts(cfg, data_root, source_dataset, first)
    words = vocab.build(cfg, second, data_root)
    vocab.check_size(words, cfg.num_options, second)
    fact_ids = [f.fact_id for f in a_facts]
    c_objects = vocab.assign(words.words, fact_ids, cfg.seed, second, cfg.objects.unique)
    pool = DistractorPool(words.words)
    k = cfg.num_options - 1
    second_facts = [Fact(f.fact_id, second, f.object, c, draw_distractors(pool, c, k, cfg.seed, second, f.fact_id))
                    for f, c in zip(a_facts, c_objects)]
    composite_facts = [Fact(f.fact_id, composite, f.head, c,
                            draw_distractors(pool, c, k, cfg.seed, composite, f.fact_id))
                       for f, c in zip(a_facts, c_objects)]
    notes = {"derived_from": {"first": first, "second": second, "dataset": source_dataset, "kind": "chain",
                              "sha256": sha256_file(relation_file(data_root, source_dataset, first))},
             "vocab_source": words.source}
    outputs = []
    if source_dataset != cfg.dataset:
        target = _target(cfg, data_root, first)
        outputs.append(Output.facts(target, a_facts, {"copied_from": source_dataset}))
    for rel, facts in ((second, second_facts), (composite, composite_facts)):
        target = _target(cfg, data_root, rel)
        outputs.append(Output.facts(target, _built(facts, target, cfg.num_options), notes))
    return outputs


def run_derive(cfg: GenConfig, data_root: Path) -> list[Output]:
    if cfg.derive.kind is None:
        raise UserError("derive.kind", "must be reverse or chain for mode=derive")
    if cfg.on_exists == "append":
        raise UserError("on_exists", "append is not available in mode=derive (fact_ids follow the source)",
                        "use error or overwrite")
    source_dataset = cfg.derive.source_dataset or cfg.dataset
    return (reverse if cfg.derive.kind == "reverse" else chain)(cfg, data_root, source_dataset)


def stale(data_root: Path, dataset: str, relation_id: str) -> str | None:
    """Why the derived file of `relation_id` no longer follows from its source (None when it does,
    or when the manifest does not say where it came from): the source was regenerated since."""
    entry = (manifest.read(Path(data_root) / dataset).get("files") or {}).get(f"{relation_id}.csv") or {}
    origin = entry.get("derived_from") or {}
    source_rel = origin.get("relation_id") or origin.get("first")
    if not origin.get("sha256") or not source_rel:
        return None
    source = relation_file(data_root, origin.get("dataset") or dataset, source_rel)
    if source.is_file() and sha256_file(source) == origin["sha256"]:
        return None
    return (f"derived ({origin.get('kind')}) from {source} as it was before; that file changed or is gone, "
            "so the derived facts no longer match it")
