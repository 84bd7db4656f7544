"""What evaluation knows about the model under test, without loading its weights.

`ModelInfo` carries the registry name (used in result paths), the local directory, the
checkpoint's `mtg_meta.json` (key tokens, Phase-2 fact ids, spacing), and the identity that
enters the result hash (a project checkpoint: its run and step; any model: the sha256 of its
config, generation config and tokenizer files, and the size and modification time of its weight
files).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from .. import distributed, facts as factio, modelio, prompts
from ..artifacts import CheckpointMeta
from ..errors import UserError
from ..registry import check_name


@dataclass
class ModelInfo:
    name: str
    path: str
    meta: CheckpointMeta | None = None
    registry_entry: dict = field(default_factory=dict)
    weights_sha256: str | None = None   # set for a model in memory that its files no longer hold (api.evaluate)

    @property
    def identity(self) -> dict:
        """What distinguishes this model's results from another's (SPEC §3.6 hash input)."""
        ident = {"name": self.name}
        if self.meta:
            ident.update(self.meta.identity())
        for key in ("config_hash", "run", "step"):
            if key in self.registry_entry:
                ident[f"registry_{key}"] = self.registry_entry[key]
        if Path(self.path).is_dir():    # an in-process backend may stand for a model without a folder
            ident["files_sha256"] = modelio.result_file_digests(self.path)
        ident["weights"] = modelio.weight_stamps(self.path)
        if self.weights_sha256:
            ident["weights_sha256"] = self.weights_sha256
        return ident

    @property
    def combine_spacing(self) -> str:
        return (self.meta.combine_spacing if self.meta else None) or "single"

    @property
    def key_format(self) -> str:
        return prompts.checkpoint_key_format(self.meta)

    @property
    def add_bos_train(self) -> bool | None:
        return self.meta.add_bos_train if self.meta else None


def describe(name_or_path: str | None, path: str | None = None, registry_path: str | None = None) -> ModelInfo:
    """Resolve `model.name` (a registry key) or `model.path` (a directory) to a `ModelInfo`."""
    if not name_or_path and not path:
        raise UserError("model.name", "no model given", "set model.name=<registry name> or model.path=<dir>")
    resolved = modelio.resolve(path or name_or_path, registry_path, registered_name=True)
    # with both given, the name labels the directory; a directory alone is named as the registry
    # names it, else by its folder (describe("runs/x/checkpoint-4") was refused as a result name)
    name = name_or_path if path and name_or_path else resolved.name
    try:
        check_name(name)
    except UserError:
        raise UserError("model", f"{name!r} cannot name a result directory",
                        "register the checkpoint under a short name in models.json") from None
    return ModelInfo(name, resolved.path, CheckpointMeta.of(resolved.path), resolved.entry)


def _auto_split(info: ModelInfo, relation_id: str, dataset: str | None, evaluated: list[int]) -> set[int] | None:
    """The checkpoint's seen facts for `relation_id` in `dataset`. Its fact ids mean nothing in a
    dataset no stage of its lineage trained (no split, with a warning). Where a Phase-1 stage
    memorized this relation, evaluated facts that no stage trained are named: "unseen" would count
    them beside the memorized ones. (A Phase-2-only control, or a relation no stage trained, such
    as a two-hop composite, asks about untrained facts on purpose: no warning.)"""
    where = f"relation {relation_id} ({dataset}), model {info.name}"
    say = distributed.is_main()         # every rank plans the same jobs; one says so
    seen, trained_on = info.meta.seen_fact_ids(relation_id), info.meta.datasets()
    if seen is not None and dataset is not None and trained_on and dataset not in trained_on:
        if say:
            print(f"warning: {where}: trained on {', '.join(sorted(trained_on))}, not {dataset}: its fact ids name "
                  "other facts here, so no seen/unseen split (data.seen_fact_ids=b:e sets one)", file=sys.stderr)
        return None
    if dataset is not None and info.meta.trained_in(dataset, relation_id, phase=1):
        trained = info.meta.trained_in(dataset, relation_id)
        never = [i for i in evaluated if i not in trained]
        if never and say:
            slices = "'all' slice counts" if seen is None else "'all' and 'unseen' slices count"
            print(f"warning: {where}: {len(never)} of the {len(evaluated)} evaluated facts "
                  f"({factio.id_ranges(never)}) were trained by no stage of this model, not even Phase 1; its "
                  f"{slices} them (evaluate the memorized facts: data.index_begin/index_end)", file=sys.stderr)
    return seen


def require_key_tokens(info: ModelInfo, tokenizer, relation_id: str) -> list[str]:
    """Every key token a trigger prompt of `relation_id` needs must be one token of the model."""
    needed = prompts.key_tokens(relation_id, info.key_format)
    added = tokenizer.get_added_vocab()
    own = sorted(info.meta.key_tokens) if info.meta and info.meta.key_tokens else []
    for token in needed:
        if token not in added:
            # A model with other relations' keys was trained with trigger texts, just not on this relation.
            hint = (f"it has {', '.join(own)}: a relation's key token comes from Phase 1 on that relation "
                    f"(data.relation_id=...+{relation_id} trains them jointly)") if own else (
                "trigger-* prompts need a Phase-1 checkpoint trained with a trigger text type "
                "(data.train_text_type=trigger-mid); use a semantic prompt such as hgp-0 otherwise")
            raise UserError(f"model {info.name!r}", f"has no key token {token} ({info.path})", hint)
    return needed


def seen_fact_ids(setting: str | None, info: ModelInfo, relation_id: str, dataset: str | None = None,
                  evaluated: list[int] = ()) -> set[int] | None:
    """The Phase-2 (seen) fact ids: `auto` from mtg_meta.json, an explicit "b:e" range, or None.
    `auto` warns where its split would mislead (`_auto_split`)."""
    if setting is None or str(setting).lower() in ("null", "none", ""):
        return None
    text = str(setting).strip()
    if text == "auto":
        return _auto_split(info, relation_id, dataset, evaluated) if info.meta else None
    begin, sep, end = text.partition(":")
    try:
        lo, hi = int(begin), int(end)
    except ValueError:
        raise UserError("data.seen_fact_ids", f"{text!r} is not auto, null or a range like 0:50") from None
    if not sep or lo < 0 or hi <= lo:
        raise UserError("data.seen_fact_ids", f"{text!r} is not a non-empty range begin:end")
    return set(range(lo, hi))
