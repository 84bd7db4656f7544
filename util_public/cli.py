"""Hydra wiring shared by every entry point.

Each script registers a structured schema (a dataclass), so an unknown or mistyped key is a
Hydra composition error that names the key. Hydra is told not to change directory, not to
create `outputs/` and not to write log files: the project writes its own run directories. A `-m`
sweep's `multirun.yaml` goes to a temporary folder that is removed at exit, never the working
directory. Tracebacks: `debug=true` or `MTG_DEBUG=1` (either one).
"""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from .errors import exit_on_user_error

# Appended to the command line unless the user set them: no Hydra output dirs or log files.
_QUIET_HYDRA = (
    "hydra.output_subdir=null",
    "hydra.run.dir=.",
    "hydra.sweep.subdir=.",
    "hydra/job_logging=none",
    "hydra/hydra_logging=none",
)


def to_object(cfg: DictConfig) -> Any:
    """The typed dataclass instance behind a composed config."""
    return OmegaConf.to_object(cfg)


def compose(config_dir: Path, config_name: str, schema_name: str, schema: Any, overrides: list[str]) -> DictConfig:
    """The composed config, as the entry point with these overrides would see it (library use)."""
    from hydra import compose as hydra_compose, initialize_config_dir

    ConfigStore.instance().store(name=schema_name, node=schema)
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


def hydra_entry(config_dir: Path, config_name: str, schema_name: str, schema: type,
                task: Callable[[DictConfig, list[str]], Any]) -> None:
    """Run `task(cfg, overrides)` as a Hydra app whose YAML defaults start from `schema_name`."""
    ConfigStore.instance().store(name=schema_name, node=schema)

    @hydra.main(version_base="1.3", config_path=str(config_dir), config_name=config_name)
    def _main(cfg: DictConfig) -> None:
        overrides = [o for o in HydraConfig.get().overrides.task]
        debug = True if cfg.get("debug", False) else None      # None: MTG_DEBUG decides
        exit_on_user_error(lambda: task(cfg, overrides), debug=debug)

    given = {arg.split("=", 1)[0] for arg in sys.argv[1:]}
    quiet = [*_QUIET_HYDRA, f"hydra.sweep.dir={_sweep_dir()}"]
    sys.argv += [q for q in quiet if q.split("=", 1)[0] not in given]
    _main()


def _sweep_dir() -> str:
    """Where Hydra may put a sweep's `multirun.yaml`: a per-process temporary folder, removed at exit."""
    path = os.path.join(tempfile.gettempdir(), f"mtg-hydra-sweep-{os.getpid()}")
    atexit.register(shutil.rmtree, path, True)
    return path
