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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np

from . import atomicio, catalogue, facts as factsio, keytokens, limits, modelio, paths, plotting, prompts, relspec
from . import distributed, numerics, representation, representation_plots, runinfo
from .artifacts import CheckpointMeta
from .cli import to_object
from .errors import UserError
from .evaluation import requests
from .evaluation.modelinfo import ModelInfo
from .runtime import configure_cpu


@dataclass
class ReprCfg:
    models: List[str] = field(default_factory=lambda: ["smollm2-135m"])
    relations: str = "12+21+50+71+105"
    dataset: str = "sync_random_o"
    data_root: Optional[str] = None
    index_begin: int = 0
    index_end: Optional[int] = 100         # facts 0..99 (SPEC §6.8); null = every fact
    families: List[str] = field(default_factory=lambda: ["hgp-0", "train-*", "test-*", "unrelated-*"])
    position: str = "last"                 # last | key
    batch_size: int = 32
    dtype: str = "fp32"
    add_bos: str = "auto"                  # as evaluation's prompt.add_bos: auto | true | false
    save_vectors: bool = False
    output_dir: Optional[str] = None       # default: {results root}/repr/{config hash}
    num_threads: Optional[int] = None
    debug: bool = False


def _models(names: list[str]) -> dict[str, ModelInfo]:
    """Label -> the model, all resolved and checked before any loads. The label (a registry name,
    or a directory's own name) names the model's output folder."""
    out: dict[str, ModelInfo] = {}
    for name in names:
        resolved = modelio.resolve(name)
        label = paths.check_name(resolved.name, "models")
        if label in out:
            raise UserError("models", f"two models are both named {label!r} ({out[label].path}, {resolved.path})",
                            "register them in models.json under distinct names")
        modelio.check_checkpoint(resolved.path)
        out[label] = ModelInfo(label, resolved.path, CheckpointMeta.of(resolved.path), resolved.entry)
    return out


def _check_prompts(relations: list[str], families: list[str], data_root: Path) -> None:
    """Every family's templates exist for every relation (what `representation.collect` will
    build: `hgp-99` was refused only after the first model had loaded), and select at least one."""
    for rel in relations:
        if not [t for family in families for t in representation.templates(rel, family, prompts.KEY_FORMAT, data_root)]:
            raise UserError("families", f"{families} selects no prompt for relation {rel}",
                            "e.g. families=[hgp-0,test-*]")


def _load(info: ModelInfo, tokenizer, relations: list[str], dtype: str):
    """(model, whether the key tokens had to be added untrained to the model and `tokenizer`)."""
    model = modelio.load_causal_lm(info.path, dtype=dtype, device=modelio.default_device())
    needed = [t for rel in relations for t in prompts.key_tokens(rel, info.key_format)]
    keys = keytokens.add(tokenizer, needed, info.meta, info.path)
    keytokens.resize_and_init(model, tokenizer, keys, resize="grow_only", init="mean")
    return model, bool(keys.added)


def _input_files(relations: list[str], dataset: str, data_root: Path) -> list[Path]:
    """What the numbers are computed from besides the models: the fact files and the catalogues."""
    return ([factsio.relation_file(data_root, dataset, rel) for rel in relations]
            + [catalogue.prompts(rel, data_root).path for rel in relations] + catalogue.relations_files(data_root))


def run(cfg: ReprCfg, overrides: list[str] = ()) -> dict:
    distributed.check_started()
    if distributed.world()[0] > 1:      # every rank ran the whole analysis and replaced one folder
        raise UserError("launch", f"represent.py runs in one process, not {distributed.world()[0]} ranks",
                        "run it without the launcher")
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
    tokenizers = {}                          # name -> (tokenizer, the BOS ids its texts start with)
    for name, info in models.items():       # every refusal before the first model loads
        representation.check_position(cfg.position, relations, cfg.families, info.key_format, data_root)
        tokenizer = modelio.load_tokenizer(info.path)
        tokenizers[name] = tokenizer, requests.bos_prefix(tokenizer, cfg.add_bos, "add_bos")
    inputs = runinfo.fingerprint(_input_files(relations, cfg.dataset, data_root))
    # The default folder is named by everything its numbers depend on: the settings, the data and
    # each model (a changed fact file or checkpoint gets a new folder, not the old one overwritten).
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("output_dir", "num_threads", "debug")}
    identity = {"config": settings, "data": inputs["combined"], "models": {n: m.identity for n, m in models.items()}}
    out_dir = paths.resolve(cfg.output_dir) if cfg.output_dir else \
        paths.root("results") / "repr" / runinfo.config_hash(identity)[:8]
    atomicio.check_writable_dir(out_dir, "output_dir")
    _check_replaceable(out_dir)
    with atomicio.atomic_dir(out_dir) as staging:      # the folder holds one complete run, never a mix
        provenance = {"config": asdict(cfg), "overrides": list(overrides), "data_fingerprint": inputs,
                      "git": runinfo.git_info(), "versions": runinfo.package_versions(), "machine": runinfo.machine()}
        summaries, written = _write(cfg, models, tokenizers, relations, facts, data_root, staging, provenance)
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


def _write(cfg: ReprCfg, models: dict[str, ModelInfo], tokenizers: dict, relations: list[str], facts: dict,
           data_root: Path, out_dir: Path, provenance: dict) -> tuple[dict, list[Path]]:
    """Every model's summary (and vectors), the table, the heatmap and the PCA, under `out_dir`."""
    summaries, rows, keys_by_model, written = {}, [], {}, []
    device = modelio.default_device()
    for name, info in models.items():
        tokenizer, bos = tokenizers[name]
        model, untrained = _load(info, tokenizer, relations, cfg.dtype)
        got = representation.collect(model, tokenizer, facts, cfg.families, cfg.position, cfg.batch_size,
                                     info.key_format, data_root, bos)
        per_layer = representation.metrics(got)
        summaries[name] = {"schema": "mtg.repr/1", "model": name, "model_path": info.path,
                           "model_identity": info.identity, "key_token_untrained": untrained,
                           "relations": relations, "fact_range": [cfg.index_begin, cfg.index_end],
                           "families": cfg.families, "position": cfg.position,
                           "dtype": numerics.choose(cfg.dtype, device, "dtype"), "add_bos": bool(bos),
                           **provenance, "per_layer": per_layer, "headline": representation.headline(per_layer)}
        written.append(atomicio.write_json(out_dir / name / "summary.json", summaries[name]))
        if cfg.save_vectors:     # key states with the fact ids that name their rows (join by id, not row)
            buf = io.BytesIO()
            np.savez_compressed(buf, **{f"key_{r}": v for r, v in got.key.items()},
                                **{f"fact_ids_{r}": np.array([f.fact_id for f in facts[r]]) for r in got.key})
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
    run(to_object(cfg), overrides)
