"""Mode dispatch for `data_generation/generate.py` (SPEC §4).

Each mode returns its planned outputs, fully validated and built in memory; only then are they
written (atomically) and recorded in the dataset manifests.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from .. import paths
from . import manifest, outputs, schema
from .derive import run_derive
from .generation import Generator
from .importer import run_import


def run(cfg: schema.GenConfig, http_client=None) -> list[Path]:
    """Produce the configured dataset files; returns the paths written."""
    data_root = paths.root("data", cfg.output_dir)
    llm_cache = None
    if cfg.mode == "generate":
        generator = Generator(cfg, data_root, http_client=http_client)
        planned = generator.run()
        llm_cache = str(generator.cache_path()) if generator.uses_llm() else None
    elif cfg.mode == "import":
        planned = run_import(cfg, data_root)
    else:
        planned = run_derive(cfg, data_root)
    outputs.ensure_dirs(planned)     # before the (slower) run description is assembled
    run_info = manifest.producer(cfg.mode, cfg.seed, schema.to_dict(cfg), llm_cache)
    written = outputs.write(planned, run_info)
    for out in planned:
        rows = f" ({out.rows} facts)" if out.relation_id is not None else ""
        print(f"wrote {out.path}{rows}")
    return written


def main(cfg: DictConfig, overrides: list[str]) -> None:
    """The Hydra task: typed config, then `run`."""
    run(schema.load(cfg))
