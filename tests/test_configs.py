"""Every shipped YAML composes against its schema into a valid typed config, and holds overrides only:
the dataclass holds the defaults, a primary config sets only what differs from its parent, and a
group file (+experiment=, +compat=) only what differs in at least one config it is composed onto."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from util_public import demo, representation_run
from util_public.cli import _after_overrides, _refuse_undeclared_before_printing, compose, reject_undeclared, to_object
from util_public.datagen import schema as gen_schema
from util_public.errors import UserError
from util_public.evaluation.plan import check_config
from util_public.evaluation import schema as eval_schema
from util_public.evaluation.schema import EvalConfig
from util_public.paths import REPO_ROOT
from util_public.training import run as train_run, schema as train_schema

TRAIN = ("training/conf", "train_schema", train_schema.TrainStageConfig)
EVAL = ("evaluation/conf", "eval_schema", EvalConfig)
REPR = ("evaluation/conf", "represent_schema", representation_run.ReprCfg)
GEN = ("data_generation/conf", "gen_schema", gen_schema.schema_node())
# Primary configs: (stage, parent config or None for the schema itself).
PRIMARY = {
    "training/conf/train.yaml": (TRAIN, None), "training/conf/phase1.yaml": (TRAIN, "train"),
    "training/conf/phase2.yaml": (TRAIN, "train"),
    "evaluation/conf/eval.yaml": (EVAL, None), "evaluation/conf/eval_gen.yaml": (EVAL, None),
    "evaluation/conf/eval_all_loss.yaml": (EVAL, None), "evaluation/conf/ic_lke.yaml": (EVAL, None),
    "evaluation/conf/represent.yaml": (REPR, None), "data_generation/conf/gen_config.yaml": (GEN, None),
}
# Group folders: the primary configs their files are composed onto.
GROUPS = {"training/conf/experiment": ("phase1", "phase2"), "training/conf/compat": ("phase1", "phase2"),
          "evaluation/conf/experiment": ("eval", "eval_gen", "eval_all_loss", "ic_lke")}
DEMO_RECIPES = {"recipes/demo.yaml": "full", "recipes/demo_quick.yaml": "quick"}


def _compose(stage, name: str, overrides=()):
    folder, schema_name, node = stage
    return compose(REPO_ROOT / folder, name, schema_name, node, list(overrides))


def _check_typed(stage, cfg) -> None:
    """The composed config converts to the stage's dataclass and passes its own checks."""
    if stage is GEN:
        gen_schema.load(cfg)
        return
    typed = to_object(cfg)
    assert isinstance(typed, stage[2])
    if stage is TRAIN:
        if typed.model.base is None and typed.model.base_run is None:
            typed.model.base = "given-on-the-command-line"
        train_schema.validate(typed)
    elif stage is EVAL:
        check_config(typed, typed.tasks, typed.backend)


def _leaves(node, prefix=""):
    for key, value in node.items():
        if key == "defaults":
            continue
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _value(cfg, dotted: str):
    return OmegaConf.to_container(OmegaConf.create({"v": OmegaConf.select(cfg, dotted)}))["v"]


def _own_keys(rel: str) -> list[tuple[str, object]]:
    return list(_leaves(OmegaConf.to_container(OmegaConf.load(REPO_ROOT / rel))))


def test_every_shipped_yaml_is_covered():
    shipped = {str(p.relative_to(REPO_ROOT)) for folder in ("training/conf", "evaluation/conf", "data_generation/conf")
               for p in (REPO_ROOT / folder).rglob("*.yaml")}
    grouped = {p for p in shipped if str(Path(p).parent) in GROUPS}
    assert shipped == set(PRIMARY) | grouped
    assert {str(p.relative_to(REPO_ROOT)) for p in REPO_ROOT.glob("recipes/*.yaml")} == set(DEMO_RECIPES)


@pytest.mark.parametrize("rel", sorted(PRIMARY))
def test_primary_config_composes_and_restates_no_default(rel):
    stage, parent = PRIMARY[rel]
    cfg = _compose(stage, Path(rel).stem)
    _check_typed(stage, cfg)
    base = _compose(stage, parent) if parent else OmegaConf.structured(stage[2])
    restated = [key for key, value in _own_keys(rel) if _value(base, key) == value]
    assert restated == [], f"{rel} restates its parent's values"


@pytest.mark.parametrize("rel", sorted(str(p.relative_to(REPO_ROOT)) for folder in GROUPS
                                       for p in (REPO_ROOT / folder).glob("*.yaml")))
def test_group_file_composes_onto_each_config_and_changes_something_in_one(rel):
    folder = str(Path(rel).parent)
    stage = TRAIN if folder.startswith("training") else EVAL
    override = f"+{Path(folder).name}={Path(rel).stem}"
    bases = {name: _compose(stage, name) for name in GROUPS[folder]}
    for name in bases:
        _check_typed(stage, _compose(stage, name, [override]))
    same_everywhere = [key for key, value in _own_keys(rel) if all(_value(b, key) == value for b in bases.values())]
    assert same_everywhere == [], f"{rel} sets values every base config already has"


@pytest.mark.parametrize("rel", sorted(DEMO_RECIPES))
def test_demo_recipe_types_against_its_schema(rel):
    cfg = demo.load_config(DEMO_RECIPES[rel])
    assert isinstance(cfg, demo.DemoConfig) and cfg.variant == DEMO_RECIPES[rel]
    for stage, config_name in ((cfg.phase1, "phase1"), (cfg.phase2, "phase2")):
        assert to_object(_compose(TRAIN, config_name, stage))


# Appended keys (+/++): Hydra's struct check lets them through, so the entry points check them.
APPENDED = [
    (EVAL, "eval", "+foo=1", "foo"), (EVAL, "eval", "+mc.num_option=5", "mc.num_option"),
    (TRAIN, "phase1", "++train.learnig_rate=1", "train.learnig_rate"),
    (GEN, "gen_config", "+objects.vocab_sourse=file", "objects.vocab_sourse"),
    (REPR, "represent", "+batchsize=2", "batchsize"),
    (EVAL, "eval", "++mc.batch_size=3", None),                 # ++ on a declared key: a plain set
    (GEN, "gen_config", "+llm.extra_body.top_k=3", None),      # a Dict[str, Any] field takes any key
]


@pytest.mark.parametrize("stage,name,override,undeclared", APPENDED, ids=[a[2] for a in APPENDED])
def test_an_appended_key_is_refused_unless_the_schema_declares_it(stage, name, override, undeclared):
    if undeclared is None:
        reject_undeclared(_compose(stage, name, [override]), stage[2])
        return
    with pytest.raises(UserError) as err:       # library composition refuses it as the entry point does
        _compose(stage, name, [override])
    assert err.value.where == undeclared


# Values YAML 1.1 reads as numbers or booleans, which the command line's grammar keeps as typed.
YAML11_TRAPS = ["1:3", "10:50", "010", "0x10"]
LIBRARY_CONFIGS = {   # the in-process builders: (function of overrides, a string key) -> its value
    "eval": (lambda o: eval_schema.config(o), "data.seen_fact_ids", lambda c: c.data.seen_fact_ids),
    "datagen": (gen_schema.compose, "dataset", lambda c: c.dataset),
    "train": (lambda o: to_object(train_run.compose("phase1", o)), "data.dataset", lambda c: c.data.dataset),
}


@pytest.mark.parametrize("value", YAML11_TRAPS)
@pytest.mark.parametrize("builder", LIBRARY_CONFIGS)
def test_library_configs_read_values_as_the_command_line_does(builder, value):
    """`api.config(["data.seen_fact_ids=1:3"])` gave "63" (sexagesimal), where eval.py kept 1:3."""
    build, key, get = LIBRARY_CONFIGS[builder]
    assert get(build([f"{key}={value}"])) == value


def test_library_configs_compose_inside_a_running_hydra_app():
    """api.config() in a user's own @hydra.main app: "GlobalHydra is already initialized"."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_dir(config_dir=str(REPO_ROOT / "training" / "conf"), version_base="1.3"):
        running = GlobalHydra.instance().hydra
        assert eval_schema.config(["data.relation_id=71"]).data.relation_id == "71"
        assert GlobalHydra.instance().hydra is running          # the app's own state is back


def test_library_eval_config_takes_config_groups():
    cfg = eval_schema.config(["+experiment=locality"])
    assert (cfg.data.dataset, cfg.tasks) == ("known", ["mc", "gen", "ppl"])


@pytest.mark.parametrize("name", train_schema.LR_SCHEDULERS)
def test_every_allowed_scheduler_builds_without_extra_arguments(name):
    import torch
    from transformers import get_scheduler

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=1, num_training_steps=4)
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] > 0       # past the one warmup step


# The launch command each YAML's header shows: `#   python SCRIPT [--config-name NAME] OVERRIDES`.
SCRIPTS = {"training/train.py": (TRAIN, "train"), "evaluation/eval.py": (EVAL, "eval"),
           "evaluation/eval_gen.py": (EVAL, "eval_gen"), "evaluation/eval_all_loss.py": (EVAL, "eval_all_loss"),
           "evaluation/latent_knowledge_extractor/ic_lke.py": (EVAL, "ic_lke"),
           "evaluation/represent.py": (REPR, "represent"), "data_generation/generate.py": (GEN, "gen_config")}


def _header_command(rel: str) -> list[str] | None:
    for line in (REPO_ROOT / rel).read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            return None
        words = line.lstrip("# ").split("   (")[0]            # "   (...)": a remark after the command
        if words.startswith(("python ", "bash ")):
            return shlex.split(re.sub(r"<[^>]*>", "x", words))
    return None


@pytest.mark.parametrize("rel", sorted(str(p.relative_to(REPO_ROOT)) for folder in
                                       ("training/conf", "evaluation/conf", "data_generation/conf")
                                       for p in (REPO_ROOT / folder).rglob("*.yaml")))
def test_every_config_header_shows_a_launch_command_that_composes(rel):
    command = _header_command(rel)
    assert command and command[0] == "python" and command[1] in SCRIPTS, f"{rel}: no launch command in its header"
    (stage, name), args = SCRIPTS[command[1]], command[2:]
    if "--config-name" in args:
        at = args.index("--config-name")
        name, args = args[at + 1], args[:at] + args[at + 2:]
    cfg = _compose(stage, name, args)
    reject_undeclared(cfg, stage[2])
    if Path(rel).parent.name in ("experiment", "compat"):      # the command uses this very file
        assert f"+{Path(rel).parent.name}={Path(rel).stem}" in args
    else:
        assert Path(rel).stem == name


@pytest.mark.parametrize("stage,name,override,undeclared", APPENDED, ids=[a[2] for a in APPENDED])
@pytest.mark.parametrize("flag", ["--cfg job", "-c all", "--cfg=job", "--info config"])
def test_printing_the_config_refuses_an_appended_key_as_a_run_does(stage, name, override, undeclared, flag,
                                                                     monkeypatch):
    """`--cfg` prints without running the task, whose check refuses appended keys; it used to print the
    typo as one more key and exit 0."""
    monkeypatch.setattr(sys, "argv", ["app", *flag.split(), override])
    check = lambda: _refuse_undeclared_before_printing(REPO_ROOT / stage[0], name, stage[1], stage[2])
    if undeclared is None:
        check()
        return
    with pytest.raises(UserError) as err:
        check()
    assert err.value.where == undeclared


@pytest.mark.parametrize("argv", [["+foo=1"], ["-m", "+foo=1", "--cfg", "job"], ["--cfg"],
                                  ["--config-dir", "/nonexistent", "--cfg", "job", "+foo=1"],
                                  ["--help", "--cfg", "job", "+foo=1"], ["--version"], ["--info", "plugins", "+foo=1"]],
                         ids=["no --cfg", "sweep", "malformed", "other config dir", "help first", "version",
                              "info without the config"])
def test_what_is_not_a_plain_print_is_left_to_hydra_and_the_run(argv, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["app", *argv])
    _refuse_undeclared_before_printing(REPO_ROOT / EVAL[0], "eval", EVAL[1], EVAL[2])
    assert capsys.readouterr() == ("", "")        # argparse's complaint, or the version, is Hydra's to print, once


def test_the_printing_entry_point_exits_two_with_one_line_and_prints_no_config():
    done = subprocess.run([sys.executable, str(REPO_ROOT / "training" / "train.py"), "--config-name", "phase1",
                           "--cfg", "job", "+train.learnig_rate=1"], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.strip().splitlines() == [
        "error: train.learnig_rate: not a key of this config (added with + or ++); remove it, or fix its "
        "spelling (`--cfg job` without it prints every key)"]


@pytest.mark.parametrize("argv,at", [
    (["app"], 1), (["app", "a=1", "--cfg", "job"], 2), (["app", "--cfg", "job", "a=1"], 4),
    (["app", "--cfg", "job"], 1), (["app", "-cn", "phase1", "a=1", "b=2", "-m"], 5),
    (["app", "--info", "config", "a=1"], 4), (["app", "a=1", "--info"], 2), (["app", "--info", "a=1"], 3),
    (["app", "a=1", "-m", "b=2,3"], 2)])       # split by a flag: refused, naming only the user's b=2,3
def test_extra_overrides_join_the_users_run_of_overrides(argv, at):
    assert _after_overrides(argv) == at


def test_an_override_before_a_hydra_flag_still_composes():
    done = subprocess.run([sys.executable, str(REPO_ROOT / "evaluation" / "eval.py"), "mc.num_options=7",
                           "--cfg", "job"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "num_options: 7" in done.stdout, done.stderr
