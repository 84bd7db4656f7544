"""`evaluation/represent.py`: the representation analysis over several checkpoints (SPEC §6.8).

Writes `{out}/{model}/summary.json` (per-layer arrays and headline values), `{out}/table.csv`
(model, layer, metric, value), `{out}/heatmap.png` (per metric: models x layers, with a colour bar)
and `{out}/pca.png` (2-D PCA of last-layer key states per model, coloured by relation); models are
labelled M1, M2, ... in the figures and on the console, with the key to their names; every file
written is printed.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np

from . import atomicio, catalogue, facts as factsio, keytokens, limits, modelio, paths, plotting, prompts, relspec
from . import distributed, representation, representation_plots, runinfo
from .artifacts import CheckpointMeta
from .cli import to_object
from .errors import UserError
from .runtime import configure_cpu


@dataclass
class ReprCfg:
    models: List[str] = field(default_factory=lambda: ["smollm2-135m"])
    relations: str = "12+21+50+71+105"
    dataset: str = "sync_random_o"
    data_root: Optional[str] = None
    index_begin: int = 0
    index_end: Optional[int] = 20          # default keeps a CPU run short; null = every fact
    families: List[str] = field(default_factory=lambda: ["hgp-0", "train-*", "test-*", "unrelated-*"])
    position: str = "last"                 # last | key
    batch_size: int = 32
    dtype: str = "fp32"
    save_vectors: bool = False
    output_dir: Optional[str] = None       # default: {results root}/repr/{config hash}
    num_threads: Optional[int] = None
    debug: bool = False


def _models(names: list[str]) -> dict[str, str]:
    """Label -> checkpoint directory for every model, all resolved and checked before any loads.
    The label (a registry name, or a directory's own name) names the model's output folder."""
    out: dict[str, str] = {}
    for name in names:
        resolved = modelio.resolve(name)
        label = paths.check_name(resolved.name, "models")
        if label in out:
            raise UserError("models", f"two models are both named {label!r} ({out[label]}, {resolved.path})",
                            "register them in models.json under distinct names")
        modelio.check_checkpoint(resolved.path)
        out[label] = resolved.path
    return out


def _check_prompts(relations: list[str], families: list[str], data_root: Path) -> None:
    """Every family expands for every relation (what `representation.collect` will build), and
    selects at least one prompt."""
    for rel in relations:
        cat = catalogue.prompts(rel, data_root)
        if not [p for family in families for p in prompts.expand(family, cat)]:
            raise UserError("families", f"{families} selects no prompt for relation {rel}",
                            "e.g. families=[hgp-0,test-*]")


def _load(path: str, relations: list[str], dtype: str):
    """(model, tokenizer, whether the key tokens had to be added untrained, the key-token format)."""
    resolved = modelio.resolve(path)
    tokenizer = modelio.load_tokenizer(resolved.path)
    model = modelio.load_causal_lm(resolved.path, dtype=dtype, device=modelio.default_device())
    meta = CheckpointMeta.of(resolved.path)
    key_format = prompts.checkpoint_key_format(meta)
    needed = [t for rel in relations for t in prompts.key_tokens(rel, key_format)]
    keys = keytokens.add(tokenizer, needed, meta, resolved.path)
    keytokens.resize_and_init(model, tokenizer, keys, resize="grow_only", init="mean")
    return model, tokenizer, bool(keys.added), key_format



def run(cfg: ReprCfg) -> dict:
    distributed.check_started()
    if distributed.world()[0] > 1:      # every rank ran the whole analysis and replaced one folder
        raise UserError("launch", f"represent.py runs in one process, not {distributed.world()[0]} ranks",
                        "run it without the launcher")
    if cfg.position not in ("last", "key"):
        raise UserError("position", f"{cfg.position!r} is not last or key")
    limits.check(cfg, {"batch_size": ">= 1", "num_threads": ">= 1", "index_begin": ">= 0"})
    if not cfg.models:
        raise UserError("models", "is empty", "name one or more registry names or checkpoint folders")
    modelio.torch_dtype(cfg.dtype, "cpu")
    configure_cpu(cfg.num_threads)
    relations = relspec.separate(cfg.relations, "relations")
    data_root = paths.root("data", cfg.data_root)
    # Only subjects and objects are read: any option count will do (e.g. the demo's 20).
    facts = {rel: factsio.select(factsio.load_relation(data_root, cfg.dataset, rel, num_options=None,
                                                       substring_rule="off"),
                                 cfg.index_begin, cfg.index_end, f"relation {rel}") for rel in relations}
    small = [rel for rel, chosen in facts.items() if len(chosen) < 2]
    if small:        # one key state per model: no spread for the PCA, no pairs for the cosines
        raise UserError("index_begin/index_end", f"[{cfg.index_begin}, {cfg.index_end}) selects fewer than 2 facts "
                        f"of relation(s) {', '.join(small)}", "select at least 2 facts")
    _check_prompts(relations, cfg.families, data_root)
    models = _models(cfg.models)
    out_dir = paths.resolve(cfg.output_dir) if cfg.output_dir else \
        paths.root("results") / "repr" / runinfo.sha256_text(repr(cfg))[:8]
    atomicio.check_writable_dir(out_dir, "output_dir")
    _check_replaceable(out_dir)
    with atomicio.atomic_dir(out_dir) as staging:      # the folder holds one complete run, never a mix
        summaries, written = _write(cfg, models, relations, facts, data_root, staging)
    _print(summaries, plotting.short_labels(list(summaries)), [out_dir / p.relative_to(staging) for p in written])
    return summaries


OWN_FILES = {"table.csv", "heatmap.png", "pca.png"}
MODEL_FILES = {"summary.json", "vectors.npz"}


def _check_replaceable(out_dir: Path) -> None:
    """The run replaces `output_dir` whole: it must be new, empty, or an earlier run's output."""
    for entry in sorted(out_dir.iterdir()) if out_dir.is_dir() else []:
        ours = entry.name in OWN_FILES if entry.is_file() else \
            entry.is_dir() and {c.name for c in entry.iterdir()} <= MODEL_FILES and (entry / "summary.json").is_file()
        if not ours:
            raise UserError("output_dir", f"{out_dir} holds {entry.name}, which a representation run does not write",
                            "name a new or empty folder (the run replaces the folder whole)")


def _write(cfg: ReprCfg, models: dict[str, str], relations: list[str], facts: dict, data_root: Path,
           out_dir: Path) -> tuple[dict, list[Path]]:
    """Every model's summary (and vectors), the table, the heatmap and the PCA, under `out_dir`."""
    summaries, rows, keys_by_model, written = {}, [], {}, []
    for name, path in models.items():
        model, tokenizer, untrained, key_format = _load(path, relations, cfg.dtype)
        got = representation.collect(model, tokenizer, facts, cfg.families, cfg.position, cfg.batch_size,
                                     key_format, data_root)
        per_layer = representation.metrics(got)
        summaries[name] = {"schema": "mtg.repr/1", "model": name, "key_token_untrained": untrained,
                           "relations": relations, "fact_range": [cfg.index_begin, cfg.index_end],
                           "families": cfg.families, "position": cfg.position, "dtype": cfg.dtype,
                           "git": runinfo.git_info(), "versions": runinfo.package_versions(),
                           "machine": runinfo.machine(), "per_layer": per_layer,
                           "headline": representation.headline(per_layer)}
        written.append(atomicio.write_json(out_dir / name / "summary.json", summaries[name]))
        if cfg.save_vectors:
            buf = io.BytesIO()
            np.savez_compressed(buf, **{f"key_{r}": v for r, v in got.key.items()})
            written.append(atomicio.write_bytes(out_dir / name / "vectors.npz", buf.getvalue()))
        rows += [(name, layer, metric, value) for metric, values in per_layer.items()
                 for layer, value in enumerate(values)]
        keys_by_model[name] = {r: v[:, -1] for r, v in got.key.items()}
        del model
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["model", "layer", "metric", "value"])
    writer.writerows(rows)
    written.append(atomicio.write_text(out_dir / "table.csv", buf.getvalue()))
    labels = plotting.short_labels(list(summaries))
    written.append(representation_plots.heatmap(out_dir / "heatmap.png",
                                                {n: s["per_layer"] for n, s in summaries.items()}, labels))
    written.append(representation_plots.pca(out_dir / "pca.png", keys_by_model, labels))
    return summaries, written


def _print(summaries: dict, labels: dict[str, str], written: list) -> None:
    """The headline table (models by their short labels, then the key) and every file written."""
    metrics = sorted({m for s in summaries.values() for m in s["headline"]})
    print("model".ljust(8) + "".join(m[:22].rjust(24) for m in metrics))
    for name, s in summaries.items():
        print(labels[name].ljust(8) + "".join(f"{s['headline'].get(m, float('nan')):24.3f}" for m in metrics))
    print("\n".join(f"{label} = {name}" for name, label in labels.items()))
    for path in written:
        print(f"wrote {path}")


def main(cfg, overrides) -> None:
    run(to_object(cfg))
