"""Run a recipe plan (see `plan.py`) in one process: data, training stages, evaluations, sweep CSV.

    python -m util_public.recipes.execute PLAN_FILE

Training stages run in this process on one rank (the libraries load once; a stage is the same
`train_stage` that `training/train.py` runs) and through `python -m util_public.launcher` over
`training/train.py` on two or more ranks (NPROC x NNODES, by default one per GPU; SPEC §5.10). Every stage resumes or answers "already
complete" as usual, so rerunning a recipe only does what is missing; evaluations reuse their
cached result directories. The recipe's results root gets `recipe.json` (experiment, parameters,
and which training label produced which registered model) and, at the end, `sweep.csv`.

Before the first step, every step's config is composed and checked (`Executor.check`): a bad
override of the last stage stops the recipe at once, naming the plan line, the step and the override.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

from .. import atomicio, launcher, paths, relspec, textio
from ..artifacts import RunManifest
from ..cli import checked_config
from ..errors import UserError, exit_on_user_error, under
from ..facts import load_relation, relation_file
from ..runinfo import sha256_file
from . import collect
from .plan import ModelRef, Step, model_refs, read

# A setting no config can take came from a recipe parameter.
FIX_HINT = "fix the recipe parameter that sets it (`bash recipes/E<n>_*.sh --help` lists them); nothing has run"


def quoted(key: str, value: str) -> str:
    """A Hydra override whose value may hold characters the grammar reserves (`~` in run names)."""
    return f"{key}='{value}'"


def launch_command(config_name: str, overrides: list[str]) -> list[str] | None:
    """The launcher line of a training stage on 2 or more ranks (None: one rank, run in-process)."""
    nproc, nnodes = launcher.ranks()
    if nproc * nnodes < 2:
        return None
    return [sys.executable, "-m", "util_public.launcher", "--nproc-per-node", str(nproc), "--nnodes", str(nnodes),
            str(paths.REPO_ROOT / "training" / "train.py"), "--config-name", config_name, *overrides]


def _check_base_epoch(step: Step, trained: dict) -> None:
    """A training step's base epoch must be one its base step keeps a checkpoint of (known from the
    base step's config before anything runs: it failed hours later, when the stage was reached)."""
    base = step.args[2]
    if base == "-":
        return
    [ref] = model_refs(base, f"train {step.args[0]}")
    source = trained.get(ref.label)
    if source is None or ref.epoch in (None, "final"):
        return
    epoch, epochs = int(ref.epoch), source.train.epochs
    kept = range(1, epochs + 1) if source.save.every_epoch else [epochs]
    if epoch not in kept:
        raise UserError("model.base_epoch", f"{ref.label} trains {epochs} epochs and keeps checkpoints of epochs "
                        f"{list(kept) if len(kept) < 12 else f'1..{epochs}'}, not {epoch}",
                        "choose a base epoch it keeps, or train the base longer")


def _check_within_memorized(step: Step, cfg, trained: dict) -> None:
    """A Phase-2 step's facts must lie within those its Phase-1 base step memorized, for every
    relation both train in one dataset: Phase 2 unlocks memorized facts, and facts it meets for the
    first time would be taught instead (E3 with a k above the facts Phase 1 trained)."""
    base = step.args[2]
    if cfg.phase != 2 or base == "-":
        return
    source = trained.get(model_refs(base, f"train {step.args[0]}")[0].label)
    if source is None or source.phase != 1 or source.data.dataset != cfg.data.dataset:
        return
    shared = set(relspec.atomic(cfg.data.relation_id)) & set(relspec.atomic(source.data.relation_id))
    begin, end = cfg.data.index_begin, cfg.data.index_end
    lo, hi = source.data.index_begin, source.data.index_end
    if shared and (begin < lo or (hi is not None and (end is None or end > hi))):
        raise UserError("data.index_begin/index_end", f"facts {begin}..{'end' if end is None else end - 1} of "
                        f"relation(s) {', '.join(sorted(shared))}, but its base {step.args[2]} memorized facts "
                        f"{lo}..{'end' if hi is None else hi - 1}", "Phase 2 trains facts Phase 1 memorized")


class Executor:
    """Runs the steps in order, remembering which run each training label produced."""

    def __init__(self, steps: list[Step], plan_path: Path):
        self.steps = steps
        self.meta = {s.args[0]: s.args[1] for s in steps if s.kind == "meta"}
        if "experiment" not in self.meta:
            raise UserError(str(plan_path), "the plan names no experiment (a `meta experiment ID` line)")
        results = self.meta.get("results") or str(paths.root("results") / "recipes" / self.meta["experiment"])
        self.results = paths.resolve(results)
        self.plan_path = plan_path
        self.runs: dict[str, dict] = {}        # label -> {"run_name", "run_dir", "manifest"}
        # registry name -> label; an earlier run of the plan into this results root keeps its labels
        # (a rerun that stopped early, or ran other settings, left its results unlabelled)
        self.models: dict[str, str] = dict((collect.recipe_json(self.results / "recipe.json") or {}).get("models") or {})
        self.evaluated: set[Path] = set()      # result directories of this plan's evaluations

    # -- bookkeeping --------------------------------------------------------------------------------
    def write_recipe_json(self) -> None:
        atomicio.write_json(self.results / "recipe.json", {**self.meta, "models": self.models})

    def run(self) -> Path:
        self.check()
        atomicio.check_writable_dir(self.results, "recipe results")
        self.write_recipe_json()
        for step in (s for s in self.steps if s.kind != "meta"):
            print(f"recipe {self.meta['experiment']}: {step.kind} {' '.join(step.args)}", file=sys.stderr)
            getattr(self, f"_{step.kind}")(step)
        # This plan's evaluations only: a rerun with other settings (another K) into the same results
        # root leaves the earlier plan's results there, which its sweep table must not show.
        out = collect.write_csv(self.results, self.results / "sweep.csv", self.evaluated)
        print(f"recipe {self.meta['experiment']}: sweep table {out}")
        return out

    # -- checks before the first step ---------------------------------------------------------------
    def check(self) -> None:
        """Compose and check every data, training and evaluation step before the first one runs, so
        that a bad override of a late stage costs nothing. Without the earlier stages' outputs (data,
        base checkpoints, the models to evaluate) no stage can be dry-run here: what is checked is
        everything its config alone decides (composition, types, undeclared keys, choices, limits,
        the batch arithmetic on this launch's ranks, tasks, prompt names, backend). The rest (facts,
        base model, key tokens) is checked when the stage is reached, still before it writes."""
        from ..evaluation import runner
        from ..training import run as train_run

        world = math.prod(launcher.ranks())
        trained = {}
        for step in self.steps:
            with self._naming(step):
                if step.kind == "data":
                    self._gen_config(step, step.args[1].split(","))
                elif step.kind == "train":     # a base run's name is known once it has trained: its label stands in
                    trained[step.args[0]] = cfg = self._train_config(step, lambda label: label)
                    train_run.check_config(cfg, world)
                    _check_base_epoch(step, trained)
                    _check_within_memorized(step, cfg, trained)
                elif step.kind == "eval":      # likewise the models' names: the name plays no part in these checks
                    runner.check(self._eval_config(self._eval_overrides(step.overrides, step.args[0])))

    def _naming(self, step: Step) -> contextlib.AbstractContextManager[None]:
        """A UserError of `step`, prefixed with its plan line and the step (`plan.tsv:7 (train p2_r50): ...`)."""
        return under(f"{self.plan_path}:{step.line} ({step.kind} {step.args[0]})")

    # -- data ---------------------------------------------------------------------------------------
    def _data(self, step: Step) -> None:
        """Generate (or derive) the dataset's missing relation files; existing files are kept,
        unless a derived one no longer follows from its regenerated source (refused)."""
        from ..datagen import derive

        dataset, rels = step.args
        root = paths.root("data")
        missing = [r for r in rels.split(",") if not relation_file(root, dataset, r).is_file()]
        for rel in sorted(set(rels.split(",")) - set(missing)):
            why = derive.stale(root, dataset, rel)
            if why:
                raise UserError(str(relation_file(root, dataset, rel)), why,
                                "derive it again (remove it and rerun the recipe), or restore the source")
        if not missing:
            return
        from ..datagen import run as gen_run

        gen_run.run(self._gen_config(step, missing))

    @staticmethod
    def _gen_config(step: Step, rels: list[str]):
        """The typed data-generation config of a data step for the relations `rels`."""
        from ..datagen import schema as gen_schema

        derive = any(o.startswith("mode=") for o in step.overrides)   # a derivation names its own outputs
        overrides = [f"dataset={step.args[0]}", *([] if derive else [f"relation_ids=[{','.join(rels)}]"]),
                     *step.overrides]
        return checked_config(overrides, gen_schema.compose, gen_schema.load, hint=FIX_HINT)

    def _language(self, step: Step) -> None:
        """Reuse the English facts under `{dataset}_{Language}` (only the prompts change language),
        unless that folder holds the relation already (an imported translation is kept; a copy this
        step made is refused once the English facts it copied changed)."""
        from ..datagen import derive, manifest, outputs

        dataset, language, rels = step.args
        root = paths.root("data")
        for rel in rels.split(","):
            target, source = relation_file(root, f"{dataset}_{language}", rel), relation_file(root, dataset, rel)
            if target.is_file():
                why = derive.stale(root, f"{dataset}_{language}", rel)
                if why:
                    raise UserError(str(target), why, "remove it and rerun the recipe to copy the facts again")
                continue
            english = load_relation(root, dataset, rel, num_options=None, substring_rule="warn")
            origin = {"relation_id": rel, "dataset": dataset, "kind": "language copy", "sha256": sha256_file(source)}
            outputs.write([outputs.Output.facts(target, english, {"derived_from": origin})],
                          manifest.producer("language copy", 0, {"dataset": dataset, "language": language}, None))
            print(f"wrote {target} (English facts; prompts in {language})", file=sys.stderr)

    # -- training -----------------------------------------------------------------------------------
    def _train(self, step: Step) -> None:
        label, config_name, _ = step.args
        overrides = self._train_overrides(step, lambda base: self.runs[base]["run_name"])
        named = self._dry_run(config_name, overrides)
        cmd = launch_command(config_name, overrides)
        if cmd:
            if subprocess.run(cmd, cwd=paths.REPO_ROOT).returncode != 0:
                raise SystemExit(f"error: training stage {label} failed: {' '.join(cmd)}")
        else:
            from ..training import run as train_run

            train_run.train_stage(train_run.compose(config_name, overrides), overrides)
            _release_memory()
        manifest = RunManifest.of(named["run_dir"])
        self.runs[label] = {**named, "manifest": manifest}
        for name in manifest.registry_names():
            self.models[name] = label
        self.write_recipe_json()

    @staticmethod
    def _train_overrides(step: Step, run_name: Callable[[str], str]) -> list[str]:
        """A training step's overrides, with its base run (`run_name(label)`) when it has one."""
        label, _, base = step.args
        overrides = list(step.overrides)
        if base != "-":
            [ref] = model_refs(base, f"train {label}")
            overrides.append(quoted("model.base_run", run_name(ref.label)))
            if ref.epoch != "final":      # without an epoch the base run's last checkpoint is used
                overrides.append(f"model.base_epoch={ref.epoch}")
        return overrides

    def _train_config(self, step: Step, run_name: Callable[[str], str]):
        """The typed training config of a training step (base runs named by `run_name`)."""
        from ..training import run as train_run
        return checked_config(self._train_overrides(step, run_name), lambda o: train_run.compose(step.args[1], o),
                              hint=FIX_HINT)

    @staticmethod
    def _dry_run(config_name: str, overrides: list[str]) -> dict:
        """{"run_name", "run_dir"} of a stage, from its dry run (validates before anything runs)."""
        from ..training import run as train_run

        args = [*overrides, "train.dry_run=true"]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            train_run.train_stage(train_run.compose(config_name, args), args)
        return json.loads(out.getvalue().strip().splitlines()[-1])

    # -- evaluation ---------------------------------------------------------------------------------
    def _eval(self, step: Step) -> None:
        from ..evaluation import runner

        names = self.resolve(model_refs(step.args[0], f"eval {step.args[0]}"))
        self.write_recipe_json()
        for name in names:
            overrides = self._eval_overrides(step.overrides, name)
            cfg = self._eval_config(overrides)
            if cfg.backend == "hf":
                self.evaluated |= {Path(d["directory"]).resolve() for d in runner.run(cfg)}
                _release_memory()
            else:   # vLLM (or auto, which may pick it) gets its own process, one engine per process (SPEC §6.5)
                self.evaluated |= self._eval_in_process(name, overrides)

    @staticmethod
    def _eval_in_process(name: str, overrides: list[str]) -> set[Path]:
        """eval.py in a process of its own; the result directories it wrote or found cached."""
        from ..evaluation import runner

        cmd = [sys.executable, str(paths.REPO_ROOT / "evaluation" / "eval.py"), *overrides]
        with tempfile.TemporaryDirectory(prefix="mtg-eval-") as tmp:
            listing = Path(tmp) / "results.json"
            env = {**os.environ, runner.RESULTS_LIST_ENV: str(listing)}
            if subprocess.run(cmd, cwd=paths.REPO_ROOT, env=env).returncode != 0:
                raise SystemExit(f"error: evaluation of {name} failed: {' '.join(cmd)}")
            return {Path(d).resolve() for d in textio.read_json(listing, list)}

    def _eval_overrides(self, overrides: list[str], name: str) -> list[str]:
        """An eval step's overrides for the model `name`, with the recipe's results root."""
        return [quoted("model.name", name), quoted("output.root", str(self.results)), *overrides]

    @staticmethod
    def _eval_config(overrides: list[str]):
        """The typed evaluation config of these overrides."""
        from ..evaluation import schema as eval_schema

        return checked_config(overrides, eval_schema.compose, hint=FIX_HINT)

    def resolve(self, refs: list[ModelRef]) -> list[str]:
        """Registry names of the referenced checkpoints (epochs from the runs' manifests)."""
        names = []
        for ref in refs:
            if ref.name is not None:          # a registry name is its own label (`=NAME`, as in the plan)
                self.models.setdefault(ref.name, f"={ref.name}")
                names.append(ref.name)
                continue
            manifest: RunManifest = self.runs[ref.label]["manifest"]
            where = f"eval {ref.label}:{ref.epoch}"
            if ref.epoch == "all":
                names += manifest.registry_names()
            elif ref.epoch == "final":
                names.append(manifest.final_checkpoint(where).registry_name)
            elif manifest.checkpoint_of_epoch(int(ref.epoch)) is None:
                raise UserError(where, f"run {manifest.run_name} has no checkpoint for epoch {ref.epoch} "
                                f"(epochs: {manifest.epochs_recorded})")
            else:
                names.append(manifest.checkpoint_of_epoch(int(ref.epoch)).registry_name)
        return names


def _release_memory() -> None:
    """Drop a finished stage's model before the next one loads (matters on a GPU)."""
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m util_public.recipes.execute", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("plan_file", help="a plan.tsv written by a recipe (recipes/common.sh)")
    parser.add_argument("--check", action="store_true",
                        help="only check every step (what the run checks before its first step), run nothing")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    executor = exit_on_user_error(lambda: Executor(read(args.plan_file), Path(args.plan_file)))
    exit_on_user_error(executor.check if args.check else executor.run)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
