"""Recipe plans: the steps a `recipes/E*.sh` script writes, one per line, for one executor process.

A recipe script (bash, so it runs under `sbatch` and reads its parameters from the environment)
does not train or evaluate itself: `recipes/common.sh` appends one line per step to a plan file,
and `python -m util_public.recipes.execute PLAN` runs them all in one process, so the libraries
load once. Fields are tab-separated (Hydra overrides never contain tabs):

    meta     KEY VALUE                         recipe.json fields (experiment, title, results, ...)
    data     DATASET RELS [generate.py overrides]     generate the missing RELS files (relation_ids is
                                               set to them), or run a derivation (mode=derive) when any is missing
    language DATASET LANGUAGE RELS             English facts copied to DATASET_LANGUAGE when missing
    train    LABEL CONFIG BASE [train.py overrides]   BASE: `-` (model.base in the overrides), LABEL:EPOCH
                                               or LABEL:final
    eval     MODELS [eval.py overrides]        MODELS: LABEL:EPOCH, LABEL:final, LABEL:all, or =REGISTRY_NAME
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import textio
from ..errors import UserError

KINDS = {"meta": 2, "data": 2, "language": 3, "train": 3, "eval": 1}   # kind -> fixed fields before overrides


@dataclass
class Step:
    kind: str
    args: list[str]                    # the fixed fields of the kind
    overrides: list[str] = field(default_factory=list)
    line: int = 0


@dataclass(frozen=True)
class ModelRef:
    """A model named in an eval step: a training label with an epoch selector, or a registry name."""
    label: str | None
    epoch: str | None                  # an epoch number, "final" or "all"
    name: str | None = None            # a registry name (`=NAME`)


def parse_line(text: str, line: int, where: str) -> Step | None:
    """One plan line as a Step (None for blank lines and comments)."""
    if not text.strip() or text.startswith("#"):
        return None
    fields = text.rstrip("\n").split("\t")
    kind = fields[0]
    if kind not in KINDS:
        raise UserError(f"{where}:{line}", f"unknown step {kind!r}", f"use one of {', '.join(KINDS)}")
    n = KINDS[kind]
    if len(fields) < 1 + n:
        raise UserError(f"{where}:{line}", f"step {kind!r} needs {n} field(s), got {len(fields) - 1}")
    return Step(kind, fields[1:1 + n], [f for f in fields[1 + n:] if f], line)


def read(path: str | Path) -> list[Step]:
    """Every step of a plan file, validated before anything runs."""
    path = Path(path)
    if not path.is_file():
        raise UserError(str(path), "no such plan file", "recipes/E*.sh write it (RECIPE_PLAN_ONLY=1 stops there)")
    steps = [parse_line(t, i, str(path)) for i, t in enumerate(textio.read_text(path).splitlines(), 1)]
    steps = [s for s in steps if s is not None]
    labels: set[str] = set()
    for s in steps:
        where = f"{path}:{s.line}"
        if s.kind == "train":
            label, _, base = s.args
            if label in labels:
                raise UserError(where, f"training label {label!r} is used twice")
            if base != "-":
                ref = model_ref(base, where)
                if ref.label is None or ref.epoch == "all":
                    raise UserError(where, f"training base {base!r}", "use LABEL:EPOCH or LABEL:final "
                                    "(a registry name goes into the overrides as model.base=NAME)")
                _check_known(ref, labels, where)
            labels.add(label)
        elif s.kind == "eval":
            for ref in model_refs(s.args[0], where):
                _check_known(ref, labels, where)
    return steps


def model_ref(text: str, where: str) -> ModelRef:
    """`LABEL:EPOCH|final|all` or `=REGISTRY_NAME`."""
    if text.startswith("="):
        return ModelRef(None, None, text[1:])
    label, sep, epoch = text.partition(":")
    if not sep or not label or not (epoch in ("final", "all") or epoch.isdigit()):
        raise UserError(where, f"model reference {text!r}", "use LABEL:EPOCH, LABEL:final, LABEL:all or =REGISTRY_NAME")
    return ModelRef(label, epoch)


def model_refs(text: str, where: str) -> list[ModelRef]:
    """A comma-separated list of model references."""
    return [model_ref(t, where) for t in text.split(",") if t]


def _check_known(ref: ModelRef, labels: set[str], where: str) -> None:
    if ref.label is not None and ref.label not in labels:
        raise UserError(where, f"model label {ref.label!r} is not trained by an earlier step")
