"""`evaluation/represent.py`: the representation analysis over several checkpoints (SPEC §6.8).

Writes `{out}/{model}/summary.json` (per-layer arrays and headline values), `{out}/table.csv`
(model, layer, metric, value), `{out}/heatmap.png` (metric x layer per model) and `{out}/pca.png`
(2-D PCA of last-layer key states, coloured by relation).
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from . import atomicio, catalogue, facts as factsio, keytokens, limits, modelio, paths, prompts, relspec, representation, runinfo
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
        modelio.require_safetensors(resolved.path)
        out[label] = resolved.path
    return out


def _check_prompts(relations: list[str], families: list[str]) -> None:
    """Every family expands for every relation (what `representation.collect` will build)."""
    for rel in relations:
        cat = catalogue.prompts(rel)
        for family in families:
            prompts.expand(family, cat)


def _load(path: str, relations: list[str], dtype: str):
    resolved = modelio.resolve(path)
    tokenizer = modelio.load_tokenizer(resolved.path)
    model = modelio.load_causal_lm(resolved.path, dtype=dtype, device=modelio.default_device())
    needed = [t for rel in relations for t in prompts.key_tokens(rel)]
    keys = keytokens.add(tokenizer, needed, CheckpointMeta.of(resolved.path), resolved.path)
    keytokens.resize_and_init(model, tokenizer, keys, resize="grow_only", init="mean")
    return model, tokenizer, bool(keys.added)



def run(cfg: ReprCfg) -> dict:
    if cfg.position not in ("last", "key"):
        raise UserError("position", f"{cfg.position!r} is not last or key")
    limits.check(cfg, {"batch_size": ">= 1", "num_threads": ">= 1", "index_begin": ">= 0"})
    modelio.torch_dtype(cfg.dtype, "cpu")
    configure_cpu(cfg.num_threads)
    relations = relspec.separate(cfg.relations, "relations")
    data_root = paths.root("data", cfg.data_root)
    # Only subjects and objects are read: any option count will do (e.g. the demo's 20).
    facts = {rel: factsio.select(factsio.load_relation(data_root, cfg.dataset, rel, num_options=None,
                                                       substring_rule="off"),
                                 cfg.index_begin, cfg.index_end, f"relation {rel}") for rel in relations}
    _check_prompts(relations, cfg.families)
    models = _models(cfg.models)
    out_dir = paths.resolve(cfg.output_dir) if cfg.output_dir else \
        paths.root("results") / "repr" / runinfo.sha256_text(repr(cfg))[:8]
    atomicio.check_writable_dir(out_dir, "output_dir")
    summaries, rows, keys_by_model = {}, [], {}
    for name, path in models.items():
        model, tokenizer, untrained = _load(path, relations, cfg.dtype)
        got = representation.collect(model, tokenizer, facts, cfg.families, cfg.position, cfg.batch_size)
        per_layer = representation.metrics(got)
        summaries[name] = {"schema": "mtg.repr/1", "model": name, "key_token_untrained": untrained,
                           "relations": relations, "fact_range": [cfg.index_begin, cfg.index_end],
                           "families": cfg.families, "position": cfg.position,
                           "per_layer": per_layer, "headline": representation.headline(per_layer)}
        atomicio.write_json(out_dir / name / "summary.json", summaries[name])
        if cfg.save_vectors:
            buf = io.BytesIO()
            np.savez_compressed(buf, **{f"key_{r}": v for r, v in got.key.items()})
            atomicio.write_bytes(out_dir / name / "vectors.npz", buf.getvalue())
        rows += [(name, layer, metric, value) for metric, values in per_layer.items()
                 for layer, value in enumerate(values)]
        keys_by_model[name] = {r: v[:, -1] for r, v in got.key.items()}
        del model
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["model", "layer", "metric", "value"])
    writer.writerows(rows)
    atomicio.write_text(out_dir / "table.csv", buf.getvalue())
    _plots(out_dir, summaries, keys_by_model)
    _print(summaries)
    return summaries


def _plots(out_dir, summaries: dict, keys_by_model: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summaries)
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        per_layer = summaries[name]["per_layer"]
        metrics = list(per_layer)
        ax.imshow(np.array([per_layer[m] for m in metrics]), aspect="auto", cmap="viridis")
        ax.set_yticks(range(len(metrics)), metrics, fontsize=7)
        ax.set_xlabel("layer")
        ax.set_title(name, fontsize=8)
    fig.tight_layout()
    _save(fig, out_dir / "heatmap.png")
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        by_rel = keys_by_model[name]
        stacked = np.concatenate(list(by_rel.values()))
        centred = stacked - stacked.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        coords = centred @ vt[:2].T
        start = 0
        for rel, states in by_rel.items():
            ax.scatter(*coords[start:start + len(states)].T, s=8, label=rel)
            start += len(states)
        ax.set_title(f"{name}: key states, last layer", fontsize=8)
        ax.legend(fontsize=6)
    fig.tight_layout()
    _save(fig, out_dir / "pca.png")


def _save(fig, path) -> None:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomicio.write_bytes(path, buf.getvalue())


def _print(summaries: dict) -> None:
    metrics = sorted({m for s in summaries.values() for m in s["headline"]})
    print("model".ljust(48) + "".join(m[:18].rjust(20) for m in metrics))
    for name, s in summaries.items():
        print(name[:47].ljust(48) + "".join(f"{s['headline'].get(m, float('nan')):20.3f}" for m in metrics))


def main(cfg, overrides) -> None:
    run(to_object(cfg))
