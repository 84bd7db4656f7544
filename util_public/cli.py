"""Hydra wiring shared by every entry point.

Each script registers a structured schema (a dataclass), so an unknown or mistyped key is a
Hydra composition error that names the key. Hydra is told not to change directory, not to
create `outputs/` and not to write log files: the project writes its own run directories.
"""
from __future__ import annotations

import sys
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
    "hydra.sweep.dir=.",
    "hydra.sweep.subdir=.",
    "hydra/job_logging=none",
    "hydra/hydra_logging=none",
)


def to_object(cfg: DictConfig) -> Any:
    """The typed dataclass instance behind a composed config."""
    return OmegaConf.to_object(cfg)


def hydra_entry(config_dir: Path, config_name: str, schema_name: str, schema: type,
                task: Callable[[DictConfig, list[str]], Any]) -> None:
    """Run `task(cfg, overrides)` as a Hydra app whose YAML defaults start from `schema_name`."""
    ConfigStore.instance().store(name=schema_name, node=schema)

    @hydra.main(version_base="1.3", config_path=str(config_dir), config_name=config_name)
    def _main(cfg: DictConfig) -> None:
        overrides = [o for o in HydraConfig.get().overrides.task]
        debug = bool(cfg.get("debug", False)) if "debug" in cfg else None
        exit_on_user_error(lambda: task(cfg, overrides), debug=debug)

    given = {arg.split("=", 1)[0] for arg in sys.argv[1:]}
    sys.argv += [q for q in _QUIET_HYDRA if q.split("=", 1)[0] not in given]
    _main()
