"""Hydra wiring shared by every entry point.

Each script registers a structured schema (a dataclass), so an unknown or mistyped key is a
Hydra composition error that names the key. Hydra is told not to change directory, not to
create `outputs/` and not to write log files: the project writes its own run directories. A `-m`
sweep's `multirun.yaml` goes to a temporary folder that is removed at exit, never the working
directory. Tracebacks: `debug=true` or `MTG_DEBUG=1` (either one).
"""
from __future__ import annotations

import atexit
import contextlib
import dataclasses
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import UserError, exit_on_user_error

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


# What Hydra and OmegaConf raise for an override they cannot apply (a wrong type, an unknown key or
# preset, broken override syntax): a traceback from them would not say which override it was.
COMPOSE_ERRORS = (HydraException, OmegaConfBaseException)


def checked_config(overrides: list[str], compose_fn: Callable[[list[str]], DictConfig],
                   typed: Callable[[DictConfig], Any] = to_object, hint: str = "fix that override; nothing has run"
                   ) -> Any:
    """`typed(compose_fn(overrides))` (the composition refuses keys the schema lacks, as the entry
    points do). An override that Hydra or OmegaConf cannot apply is a UserError naming it."""
    def build(some: list[str]) -> Any:
        return typed(compose_fn(some))

    try:
        return build(overrides)
    except COMPOSE_ERRORS as exc:
        problem = str(exc.__cause__ or exc).splitlines()[0]
    # Their messages name the override in several ways, or not at all (a missing preset): bisect for
    # the shortest failing prefix instead; its last override is the bad one. A composition can take
    # 0.3 s, so not one per override.
    good, bad = 0, len(overrides)
    while bad - good > 1:
        middle = (good + bad) // 2
        good, bad = (good, middle) if _fails(build, overrides[:middle]) else (middle, bad)
    raise UserError(overrides[bad - 1], problem, hint)


def _fails(build: Callable[[list[str]], Any], overrides: list[str]) -> bool:
    """Whether `overrides` fail to compose (another complaint, such as a missing key, is not that)."""
    try:
        build(overrides)
    except COMPOSE_ERRORS:
        return True
    except UserError:
        return False
    return False


def compose(config_dir: Path, config_name: str, schema_name: str, schema: Any, overrides: list[str]) -> DictConfig:
    """The composed config, as the entry point with these overrides would see it (library use):
    the same grammar (`1:3` stays a string, where YAML 1.1 reads 63), config groups such as
    `+experiment=E4`, and the same refusal of undeclared keys."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    ConfigStore.instance().store(name=schema_name, node=schema)
    running = GlobalHydra.instance().hydra      # called inside a Hydra app: its own state comes back after
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            cfg = hydra_compose(config_name=config_name, overrides=list(overrides))
    finally:
        if running is not None:
            GlobalHydra.instance().clear()
            GlobalHydra.instance().initialize(running)
    reject_undeclared(cfg, schema)
    return cfg


def hydra_entry(config_dir: Path, config_name: str, schema_name: str, schema: type,
                task: Callable[[DictConfig, list[str]], Any]) -> None:
    """Run `task(cfg, overrides)` as a Hydra app whose YAML defaults start from `schema_name`."""
    ConfigStore.instance().store(name=schema_name, node=schema)

    @hydra.main(version_base="1.3", config_path=str(config_dir), config_name=config_name)
    def _main(cfg: DictConfig) -> None:
        overrides = [o for o in HydraConfig.get().overrides.task]
        given = any(o.lstrip("+~").split("=", 1)[0] == "debug" for o in overrides)
        debug = bool(cfg.get("debug", False)) if given else None      # None: MTG_DEBUG decides

        def checked_task() -> None:
            reject_undeclared(cfg, schema)
            task(cfg, overrides)
        exit_on_user_error(checked_task, debug=debug)

    exit_on_user_error(lambda: _refuse_undeclared_before_printing(config_dir, config_name, schema_name, schema))
    given = {arg.split("=", 1)[0] for arg in sys.argv[1:]}
    quiet = [q for q in (*_QUIET_HYDRA, f"hydra.sweep.dir={_sweep_dir()}") if q.split("=", 1)[0] not in given]
    at = _after_overrides(sys.argv)
    sys.argv[at:at] = quiet
    _main()


def _refuse_undeclared_before_printing(config_dir: Path, config_name: str, schema_name: str, schema: type) -> None:
    """`--cfg job` and `--info config` print the composed config and never run the task, where `+typo=1`
    is refused: so compose it here first and refuse the same keys. Anything else Hydra reports itself
    (help, a sweep, another config directory, its own composition errors)."""
    from hydra._internal.utils import get_args_parser
    try:   # silenced: a malformed command, or --version, is Hydra's to print, once
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            args = get_args_parser().parse_args(sys.argv[1:])
    except SystemExit:
        return
    prints = args.cfg or args.info in ("all", "config")
    if not prints or args.help or args.hydra_help or args.multirun or args.config_path or args.config_dir:
        return
    try:
        compose(config_dir, args.config_name or config_name, schema_name, schema, args.overrides)
    except UserError:
        raise
    except Exception:           # Hydra's composition errors: its printing run reports them in its own words
        return


# Hydra's flags that take a value (`--info` takes one optionally: a word without "=").
_VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                "--config-dir", "-cd", "--experimental-rerun"}


def _after_overrides(argv: list[str]) -> int:
    """Where more overrides may go: at the end of the user's (first) run of overrides, else first.
    Hydra's parser takes overrides as one run of positionals, so `x=1 --cfg job` plus overrides
    appended after the flag would be refused; and when the user's own overrides are split by a flag
    (`a=1 -m b=2`, refused as plain Hydra refuses it), the refusal lists theirs, not ours."""
    last, value_next = 0, False
    for i, arg in enumerate(argv[1:], 1):
        if value_next:
            value_next = False
        elif arg.startswith("-"):
            if last:
                break
            value_next = arg in _VALUE_FLAGS or (arg in ("--info", "-i") and i + 1 < len(argv)
                                                  and "=" not in argv[i + 1] and not argv[i + 1].startswith("-"))
        else:
            last = i
    return last + 1


def reject_undeclared(cfg: DictConfig, schema: Any) -> None:
    """Refuse keys the schema does not declare. Hydra rejects `foo=1` for an unknown key but its own
    hint, `+foo=1`, appends the key to the struct config, where it would be silently ignored."""
    ref = OmegaConf.structured(schema) if isinstance(schema, type) else schema
    unknown = _undeclared(cfg, ref, "")
    if unknown:
        raise UserError(unknown[0], "not a key of this config (added with + or ++)",
                        "remove it, or fix its spelling (`--cfg job` without it prints every key)")


def _undeclared(node: DictConfig, ref: DictConfig, prefix: str) -> list[str]:
    """Dotted paths of keys under `node` that `ref` lacks, below dataclass-typed nodes only
    (a `Dict[str, Any]` field, such as `llm.extra_body`, takes any key)."""
    out = []
    for key in node.keys():
        if key not in ref:
            out.append(f"{prefix}{key}")
            continue
        child, ref_child = node._get_node(key), ref._get_node(key)
        if (isinstance(child, DictConfig) and isinstance(ref_child, DictConfig) and not child._is_none()
                and not ref_child._is_none() and dataclasses.is_dataclass(OmegaConf.get_type(ref_child))):
            out += _undeclared(child, ref_child, f"{prefix}{key}.")
    return out


def _sweep_dir() -> str:
    """Where Hydra may put a sweep's `multirun.yaml`: a per-process temporary folder, removed at exit."""
    path = os.path.join(tempfile.gettempdir(), f"mtg-hydra-sweep-{os.getpid()}")
    atexit.register(shutil.rmtree, path, True)
    return path
