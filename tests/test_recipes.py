"""Paper recipes (recipes/E*.sh): plans, presets, the executor and the tidy sweep CSV.

Unit tests read every script's plan (bash only, no model) and compose every step's config; the
integration tests run recipes end to end at SMOKE size on a tiny from-config model.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, save_tiny_checkpoint

from util_public import facts, prompts
from util_public.errors import UserError
from util_public.evaluation import schema as eval_schema
from util_public.recipes import collect, execute, plan
from util_public.recipes.execute import Executor
from util_public.registry import Registry
from util_public.training import run as train_run

SCRIPTS = sorted((REPO / "recipes").glob("E*.sh"), key=lambda p: int(p.name.split("_")[0][1:]))


def recipe_env(tmp_path: Path, **extra: str) -> dict:
    """Environment of a recipe run: isolated roots (conftest), no setup, no GPU, one thread."""
    env = {**os.environ, "SKIP_SETUP": "1", "CUDA_VISIBLE_DEVICES": "", "SMOKE": "1", "THREADS": "1",
           "RECIPE_RESULTS": str(tmp_path / "recipe"), "RECIPE_CHECK": "0", **extra}     # plans only: fast
    env.pop("SLURM_GPUS_ON_NODE", None)
    return env


def write_plan(script: Path, env: dict) -> Path:
    done = subprocess.run(["bash", str(script)], env={**env, "RECIPE_PLAN_ONLY": "1"}, capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    return Path(env["RECIPE_RESULTS"]) / "plan.tsv"


def meta(steps: list[plan.Step]) -> dict:
    return {s.args[0]: s.args[1] for s in steps if s.kind == "meta"}


# ---- plans and presets ---------------------------------------------------------------------------------
def test_there_is_one_script_per_experiment():
    # E1-E13 are the paper's experiments (SPEC §7); E16 is this project's dose-response study
    assert [p.name.split("_")[0] for p in SCRIPTS] == [f"E{i}" for i in (*range(1, 14), 16)]
    for script in SCRIPTS:
        text = script.read_text()
        assert text.startswith("#!/usr/bin/env bash\n#SBATCH --job-name="), script
        assert "recipe_run" in text and "recipes/common.sh" in text, script


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name.split("_")[0])
def test_every_plan_is_valid_and_every_step_composes(script, tmp_path):
    steps = plan.read(write_plan(script, recipe_env(tmp_path, BASE_MODEL="tiny-base")))
    info = meta(steps)
    assert info["experiment"] == script.name.split("_")[0] and info["base_model"] == "tiny-base"
    assert info["smoke"] == "1" and info["facts"] == "4" and info["k"] == "2"
    assert any(s.kind == "eval" for s in steps)
    for step in steps:
        if step.kind == "train":    # unknown keys or presets fail composition; the base is resolved later
            base = [] if step.args[2] == "-" else ["model.base_run=x", "model.base_epoch=1"]
            cfg = train_run.compose(step.args[1], [*step.overrides, *base])
            assert cfg.train.num_threads == 1 and cfg.data.index_end <= 4
        elif step.kind == "eval":
            cfg = eval_schema.compose(["model.name=x", *step.overrides])
            assert cfg.runtime.num_threads == 1 and cfg.data.index_end == 4


def test_defaults_follow_the_device(tmp_path):
    """No GPU: SmolLM2 and the CPU setting; GPUs: Qwen2.5-1.5B, effective batch 2, the five relations."""
    env = recipe_env(tmp_path, SMOKE="0")
    cpu = plan.read(write_plan(REPO / "recipes" / "E1_main.sh", env))
    assert meta(cpu)["base_model"] == "smollm2-135m" and meta(cpu)["gpus"] == "0"
    assert "train.effective_batch_size=16" in [s for s in cpu if s.kind == "train"][0].overrides
    gpu = plan.read(write_plan(REPO / "recipes" / "E1_main.sh", {**env, "CUDA_VISIBLE_DEVICES": "0,1"}))
    assert meta(gpu)["base_model"] == "qwen2.5-1.5b" and meta(gpu)["gpus"] == "2"
    trains = [s for s in gpu if s.kind == "train"]
    assert [s.args[0] for s in trains][::2] == ["p1_r12", "p1_r21", "p1_r50", "p1_r71", "p1_r105"]
    assert {"train.effective_batch_size=2", "train.per_device_train_batch_size=1",
            "data.index_end=100", "train.epochs=20", "train.learning_rate=1e-5"} <= set(trains[0].overrides)


@pytest.mark.parametrize("script", ["E1_main.sh", "E9_reversal.sh", "E10_two_hop.sh"])
def test_data_args_build_every_file_with_the_asked_option_count(script, tmp_path):
    """DATA_ARGS reaches every data step, derivations too (they failed on a 20-option source before)."""
    steps = plan.read(write_plan(REPO / "recipes" / script, recipe_env(tmp_path, DATA_ARGS="num_options=5")))
    data = [s for s in steps if s.kind == "data"]
    assert data and all(s.overrides[-1] == "num_options=5" for s in data)
    executor = Executor(steps, tmp_path / "recipe" / "plan.tsv")
    for step in data:
        executor._data(step)
    files = sorted((Path(os.environ["MTG_DATA_ROOT"]) / data[0].args[0]).glob("*.csv"))
    assert len(files) == {"E1_main.sh": 1, "E9_reversal.sh": 2, "E10_two_hop.sh": 3}[script]
    for csv in files:
        assert {len(json.loads(o)) for o in pd.read_csv(csv)["Alternate Facts"]} == {4}, csv


def test_stage_arguments_reach_their_stage_only(tmp_path):
    env = recipe_env(tmp_path, TRAIN_ARGS="save.dtype=bf16", P1_ARGS="loss.mode=o", P2_ARGS="train.warmup_steps=0")
    p1, p2 = [s for s in plan.read(write_plan(REPO / "recipes" / "E1_main.sh", env)) if s.kind == "train"]
    assert p1.overrides[-2:] == ["save.dtype=bf16", "loss.mode=o"] and "train.warmup_steps=0" not in p1.overrides
    assert p2.overrides[-2:] == ["save.dtype=bf16", "train.warmup_steps=0"] and "loss.mode=o" not in p2.overrides


def test_plan_errors_name_the_line(tmp_path):
    bad = tmp_path / "plan.tsv"
    cases = {"fly\tx\ty": "unknown step", "train\tp1\tphase1": "needs 3 field",
             "eval\tp9:final": "not trained by an earlier step", "eval\t=m\nmeta\texperiment": "needs 2 field",
             "train\tp1\tphase1\t-\ntrain\tp1\tphase2\t-": "used twice", "train\tp2\tphase2\tp1:x": "model reference",
             "train\tp1\tphase1\t-\ntrain\tp2\tphase2\tp1:all": "training base"}
    for text, problem in cases.items():
        bad.write_text(text + "\n")
        with pytest.raises(UserError, match=problem) as err:
            plan.read(bad)
        assert str(bad) in str(err.value)
    assert plan.model_refs("p1:3,p1:final,=qwen", "w") == [plan.ModelRef("p1", "3"), plan.ModelRef("p1", "final"),
                                                          plan.ModelRef(None, None, "qwen")]


# Each was a Hydra traceback (the undeclared key: ignored) once the earlier stages had generated
# data and trained; the tiny base is not even registered: nothing may get that far.
BAD_STAGES = [  # (recipe, environment, the step and override named, the problem)
    ("E1_main.sh", {"P2_ARGS": "train.seed=a"}, "(train p2_r50): train.seed=a: ", "could not be converted to Integer"),
    ("E3_k_sweep.sh", {"P2_ARGS": "+experiment=E99"}, "(train p2_r50_k2): +experiment=E99: ",
     "Could not find 'experiment/E99'"),
    ("E16_dose_response.sh", {"DOSES": "2x"}, "(train p2_r50_lr1e-4_b2x): train.epochs=: ", "converted to Integer"),
    ("E1_main.sh", {"EVAL_ARGS": "+mc.num_option=5"}, "(eval p1_r50:final): mc.num_option: ", "not a key of this"),
    ("E1_main.sh", {"EVAL_ARGS": "tasks=[mcq]"}, "(eval p1_r50:final): tasks: ", "unknown task 'mcq'"),
    ("E4_sft_baseline.sh", {"SFT_TYPES": "bogus"}, "(train sft_r50_bogus): data.train_text_type: prompt type 'bogus'",
     "unknown prompt type"),
    # a Phase-2 base epoch the Phase-1 step keeps no checkpoint of (it failed once that stage was reached)
    ("E2_memorization_depth.sh", {"DEPTH_EPOCHS": "1 5", "P1_EPOCHS": "2"}, "(train p2_r50_from5): model.base_epoch: ",
     "p1_r50 trains 2 epochs and keeps checkpoints of epochs [1, 2], not 5"),
    # a k above the facts Phase 1 memorized: Phase 2 taught facts 4..5 instead of unlocking them
    ("E3_k_sweep.sh", {"K_LIST": "6"}, "(train p2_r50_k6): data.index_begin/index_end: ",
     "facts 0..5 of relation(s) 50, but its base p1_r50:2 memorized facts 0..3"),
]


@pytest.mark.parametrize("recipe,env,step,problem", BAD_STAGES,
                         ids=[f"{r.split('_')[0]}-" + ",".join(f"{k}={v}" for k, v in e.items())
                              for r, e, *_ in BAD_STAGES])
def test_every_stage_is_checked_before_the_first_runs(recipe, env, step, problem, tmp_path, isolated_roots, capsys):
    plan_path = write_plan(REPO / "recipes" / recipe, recipe_env(tmp_path, BASE_MODEL="tiny-base", **env))
    registry = isolated_roots["registry"].read_bytes()
    with pytest.raises(SystemExit) as stop:
        execute.main([str(plan_path)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and err.startswith(f"error: {plan_path}:"), err
    assert step in err and problem in err, err
    assert [p.name for p in plan_path.parent.iterdir()] == ["plan.tsv"]
    assert not any(isolated_roots[k].exists() for k in ("data", "runs", "results"))
    assert isolated_roots["registry"].read_bytes() == registry


def test_a_plan_shown_is_a_plan_checked(tmp_path, isolated_roots):
    """RECIPE_PLAN_ONLY=1 printed, exit 0, a plan its run refused at once (DOSES="50x1 foo")."""
    env = recipe_env(tmp_path, RECIPE_CHECK="1", PY=sys.executable, DOSES="50x1 foo")
    done = subprocess.run(["bash", str(REPO / "recipes" / "E16_dose_response.sh")],
                          env={**env, "RECIPE_PLAN_ONLY": "1"}, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 2 and "(train p2_r50_lr1e-4_bfoo): train.epochs=foo" in done.stderr, done.stderr
    assert "train\tp2_r50_lr1e-4_bfoo" in done.stdout          # the plan itself is still shown
    assert not any(isolated_roots[k].exists() for k in ("data", "runs", "results"))


@pytest.mark.parametrize("recipe, env, note, per_device", [
    # the paper's batch 2 on 4 GPUs: every recipe was refused (2 is not a multiple of 1 x 4)
    ("E1_main.sh", {"SLURM_GPUS_ON_NODE": "4"}, "training on 2 of 4 GPUs", set()),
    ("E1_main.sh", {"SLURM_GPUS_ON_NODE": "2"}, None, set()),
    # one optimizer step of each dose over both ranks (it set per-device = effective: refused on 2 ranks)
    ("E16_dose_response.sh", {"NPROC": "2", "DOSES": "2x1 4x1"}, None, {"1", "2"}),
])
def test_the_default_ranks_fit_the_recipes_batches(tmp_path, recipe, env, note, per_device):
    env = {**recipe_env(tmp_path, RECIPE_CHECK="1", PY=sys.executable), **env}     # recipe_env drops GPUs
    done = subprocess.run(["bash", str(REPO / "recipes" / recipe)], env={**env, "RECIPE_PLAN_ONLY": "1"},
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (note in done.stderr) if note else "recipe: training on" not in done.stderr
    steps = plan.read(Path(env["RECIPE_RESULTS"]) / "plan.tsv")
    phase2 = [s for s in steps if s.kind == "train" and s.args[1] == "phase2"]
    assert {o.split("=")[1] for s in phase2 for o in s.overrides if o.startswith("train.per_device")} >= per_device


# ---- the sweep table ---------------------------------------------------------------------------------
def _result(root: Path, name: str, summary: dict, language: str | None = None) -> None:
    d = root / name
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps(summary))
    (d / "config.yaml").write_text(f"data:\n  language: {language or 'null'}\n")


def _summary(task: str, model: dict, ptype: str, metrics: dict, **kw) -> dict:
    return {"task": task, "model": model, "prompt_type": ptype, "relation_id": "50", "dataset": "d",
            "test_type": "close", "open_content": None, "fact_range": {"begin": 0, "end": 8}, "metrics": metrics, **kw}


def test_collector_rows_lineage_merge_and_skips(tmp_path):
    runs = tmp_path / "runs"
    p1_meta = {"phase": 1, "epoch": 6, "base_model": "qwen", "train_text_type": "trigger-mid", "loss_mode": "normal"}
    for run, manifest in {"p2run": {"hashed_config": {"train": {"seed": 7, "learning_rate": 3e-5}},
                                    "tokens_trained": {"per_epoch": 30},
                                    "label_tokens_trained": {"per_epoch": 5},
                                    "base_model": {"name": "p1_ckpt", "meta": p1_meta}},
                          "sftrun": {"hashed_config": {"train": {"seed": 42}}, "base_model": {"name": "qwen",
                                                                                            "meta": None}}}.items():
        (runs / run / "checkpoint-4").mkdir(parents=True)
        (runs / run / "manifest.json").write_text(json.dumps(manifest))
    p2 = {"name": "p2_ckpt", "path": str(runs / "p2run" / "checkpoint-4"),
          "mtg_meta": {"phase": 2, "epoch": 2, "step": 4, "train_text_type": "hgp-0", "loss_mode": "o",
                       "legacy_loss": False,
                       "trained_fact_ids": {"50": [0, 1, 2, 3]}}}
    sft = {"name": "sft_ckpt", "path": str(runs / "sftrun" / "checkpoint-4"),
           "mtg_meta": {"phase": 2, "epoch": 1, "train_text_type": "train-mix-2", "base_model": "qwen",
                        "trained_fact_ids": {"50": list(range(8))}}}
    root = tmp_path / "results"
    slices = {"all": {"n": 8, "accuracy": 0.25, "prob_mass": 0.3}, "seen": {"n": 4, "accuracy": 0.5},
              "unseen": {"n": 4, "accuracy": 0.0}}
    _result(root, "mc/test-3", _summary("mc", p2, "test-3", slices), language="Spanish")
    _result(root, "gen/test-3", _summary("gen", p2, "test-3", {"all": {"n": 8, "exact": 0.125, "contains": 0.5}}),
            language="Spanish")
    _result(root, "gen/hgp-0", _summary("gen", p2, "hgp-0", {"all": {"n": 8, "exact": 1.0}}))
    _result(root, "mc/sft", _summary("mc", sft, "hgp-0", {"all": {"n": 8, "accuracy": 1.0}}))
    _result(root, "mc/base", _summary("mc", {"name": "qwen", "path": "/x", "mtg_meta": None}, "test-0",
                                      {"all": {"n": 8, "accuracy": 0.5}}, test_type="open", open_content="hgp-0"))
    _result(root, "mc/test-all", {"task": "mc", "prompt_type": "test-all", "metrics": {"all": {"n": 80}}})
    _result(root, "mc/.broken.tmp-999999999-0a1b2c3d", _summary("mc", p2, "test-9", slices))
    (root / "recipe.json").write_text(json.dumps({"experiment": "E9", "models": {"p2_ckpt": "p2"}}))

    out = collect.write_csv(root, tmp_path / "sweep.csv")
    df = pd.read_csv(out)     # empty cells read as NaN
    assert list(df.columns) == collect.COLUMNS
    assert len(df) == 3 + 1 + 1 + 1     # test-3 slices (MC+gen merged), hgp-0 gen only, sft, base; no aggregates
    unseen = df[(df.prompt_type == "test-3") & (df.slice == "unseen")].iloc[0]
    assert (unseen.experiment, unseen.label, unseen.stage, unseen.language) == ("E9", "p2", "phase2", "Spanish")
    assert (unseen.phase1_epochs, unseen.phase1_text_type, unseen.base_model, unseen.k) == (6, "trigger-mid", "qwen", 4)
    assert (unseen.phase2_epoch, unseen.seed, unseen.tokens_trained, unseen.label_tokens_trained) == (2, 7, 60, 10)
    assert (unseen.step, unseen.learning_rate) == (4, 3e-5)
    assert unseen.stderr == 0.0 and pd.isna(unseen.exact)     # no unseen slice in that generation result
    everything = df[(df.prompt_type == "test-3") & (df.slice == "all")].iloc[0]
    assert everything.stderr == pytest.approx((0.25 * 0.75 / 8) ** 0.5)
    assert (everything.gen_n, everything.contains, everything.n) == (8, 0.5, 8)
    hgp = df[df.prompt_type == "hgp-0"].set_index("stage")
    assert sorted(hgp.index) == ["phase2", "sft"] and hgp.loc["phase2"].exact == 1.0
    assert hgp.loc["phase2"].tokens_trained == 60 and pd.isna(hgp.loc["phase2"].accuracy)
    sft_row = df[df.stage == "sft"].iloc[0]
    assert (sft_row.stage, sft_row.phase1_epochs, sft_row.k, sft_row.phase2_text_type) == ("sft", 0, 8, "train-mix-2")
    base = df[df.stage == "base"].iloc[0]
    assert (base.test_type, base.open_content, base.phase1_epochs) == ("open", "hgp-0", 0) and pd.isna(base.label)


def test_collector_keeps_fact_ranges_apart_and_the_newer_of_two_reruns(tmp_path, capsys):
    model = {"name": "qwen", "path": "/x", "mtg_meta": None}
    root = tmp_path / "results"
    _result(root, "mc/all", _summary("mc", model, "hgp-0", {"all": {"n": 8, "accuracy": 0.5}}))
    _result(root, "mc/late", _summary("mc", model, "hgp-0", {"all": {"n": 4, "accuracy": 0.25}},
                                      fact_range={"begin": 4, "end": 8}))
    _result(root, "gen/all-old", _summary("gen", model, "hgp-0", {"all": {"n": 8, "exact": 0.0}}, created="2026-01-01"))
    _result(root, "gen/all-new", _summary("gen", model, "hgp-0", {"all": {"n": 8, "exact": 1.0}}, created="2026-02-01"))
    df = collect.table(root)
    assert sorted(zip(df.facts, df.n, df.gen_n.astype(object).where(df.gen_n.notna(), None))) == \
        [("0-7", 8, 8), ("4-7", 4, None)]                          # ranges never cross-joined
    assert df[df.facts == "0-7"].exact.tolist() == [1.0]           # the newer rerun, once
    err = capsys.readouterr().err
    assert err.count("warning: gen results") == 1 and "all-old" in err and "all-new" in err


def test_results_on_other_questions_than_the_newest_are_left_out_of_both_tables(tmp_path, capsys):
    """mc and gen of test-0, then its template edited and only mc rerun: the old gen result must not
    stand beside the new mc one as if both asked the new question (collect.py and summarize.py)."""
    from util_public.evaluation import report

    model = {"name": "qwen", "path": "/x", "mtg_meta": None}
    root = tmp_path / "results"
    for task, name, created, questions, metrics in [
            ("mc", "mc/old", "2026-01-01", "A", {"all": {"n": 8, "accuracy": 0.5}}),
            ("gen", "gen/old", "2026-01-01", "A", {"all": {"n": 8, "exact": 0.5}}),
            ("mc", "mc/new", "2026-02-01", "B", {"all": {"n": 8, "accuracy": 0.75}}),
            ("gen", "gen/other-prompt", "2026-01-01", "C", {"all": {"n": 8, "exact": 1.0}})]:
        prompt = "test-1" if "other" in name else "test-0"
        _result(root, name, _summary(task, model, prompt, metrics, created=created, questions_sha256=questions))
    df = collect.table(root).set_index("prompt_type")
    assert df.loc["test-0"].accuracy == 0.75 and pd.isna(df.loc["test-0"].exact) and df.loc["test-1"].exact == 1.0
    err = capsys.readouterr().err
    assert "gen result" in err and "gen/old scored other questions than the newest result of test-0" in err
    shown = {(s.task, s.prompt_type): s.metric("all", "accuracy") or s.metric("all", "exact")
             for s in report.find_summaries([root])}
    assert shown == {("mc", "test-0"): 0.75, ("gen", "test-1"): 1.0}


def test_one_table_over_every_recipe_keeps_each_experiments_rows(tmp_path, capsys):
    """recipes/README: `collect.py evaluation/test_result/recipes` is one table over every recipe;
    every recipe evaluates the same base model, and E1's result must not hide E3's."""
    model = {"name": "qwen", "path": "/x", "mtg_meta": None}
    root = tmp_path / "recipes"
    for experiment, acc, created in (("E1", 0.5, "2026-01-01"), ("E3", 0.25, "2026-02-01")):
        _result(root / experiment, "mc/hgp-0", _summary("mc", model, "hgp-0", {"all": {"n": 8, "accuracy": acc}},
                                                       created=created, questions_sha256="Q"))
        (root / experiment / "recipe.json").write_text(json.dumps({"experiment": experiment, "models": {}}))
    df = collect.table(root)
    assert sorted(zip(df.experiment, df.accuracy)) == [("E1", 0.5), ("E3", 0.25)]
    assert "warning" not in capsys.readouterr().err


def test_dose_points_average_families_and_start_from_phase_one(tmp_path):
    from util_public.recipes import plots

    def row(stage, step, lr, ptype, acc, contains, dataset="d", relation="50", slice_="unseen"):
        return {"stage": stage, "step": step, "learning_rate": lr, "prompt_type": ptype, "slice": slice_,
                "dataset": dataset, "relation": relation, "prompt_family": prompts.parse(ptype).family, "n": 50,
                "accuracy": acc, "gen_n": 50, "contains": contains}

    known = {"dataset": "known", "slice_": "all"}
    df = pd.DataFrame([row("phase1", 30, None, "hgp-0", 0.4, 0.0), row("phase1", 30, None, "unrelated-0", 0.3, 0.1),
                       row("phase2", 1, 1e-5, "hgp-0", 0.9, 0.8), row("phase2", 1, 1e-5, "unrelated-0", 0.6, 0.2),
                       row("phase2", 1, 1e-5, "unrelated-1", 0.8, 0.4), row("phase2", 2, 3e-5, "hgp-0", 1.0, 0.9),
                       row("phase2", 2, 3e-5, "hgp-0", 0.0, 0.0, slice_="seen"),
                       row("base", None, None, "hgp-0", 0.8, 0.7, **known),
                       row("phase2", 1, 1e-5, "hgp-0", 0.5, 0.25, **known),
                       row("phase2", 1, 1e-5, "hgp-0", 0.1, 0.0, dataset="known", relation="71", slice_="all")])
    points = plots.dose_points(df).set_index(["learning_rate", "steps", "family", "metric"]).value
    assert points[(1e-5, 0, "hgp", "accuracy")] == 0.4 and points[(3e-5, 0, "unrelated", "contains")] == 0.1
    assert points[(1e-5, 1, "unrelated", "accuracy")] == pytest.approx(0.7)       # mean of the family's prompts
    assert points[(1e-5, 1, "unrelated", "contains")] == pytest.approx(0.3)
    assert points[(3e-5, 2, "hgp", "accuracy")] == 1.0                              # seen slices never count
    assert points[(1e-5, 1, "locality", "contains")] == 0.25                        # the trained relation's only
    assert plots.base_locality(df) == {"accuracy": 0.8, "contains": 0.7}
    out = plots.plot_dose(df, tmp_path / "dose.png", "t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("content, problem", [
    (None, "no such sweep table"),
    ("", "not a sweep table (No columns to parse from file)"),                # was a pandas traceback
    ("model,accuracy\nm,0.5\n", "not a sweep table: no column contains, dataset, gen_n"),   # another table
    ("stage,step,slice,dataset,relation,prompt_family,learning_rate,accuracy,contains,n,gen_n\n"
     "phase1,,unseen,d,50,hgp,,0.5,0.1,50,50\n", "no Phase-2 rows with a step column"),
])
def test_the_dose_figure_refuses_what_is_not_a_sweep_table(tmp_path, content, problem):
    from util_public.recipes import plots

    sweep = tmp_path / "sweep.csv"
    if content is not None:
        sweep.write_text(content)
    with pytest.raises(UserError, match=re.escape(f"{sweep}: {problem}")):
        plots.main(["dose", str(sweep)])
    assert list(tmp_path.iterdir()) == ([sweep] if content is not None else [])


def test_a_rerun_of_a_recipe_keeps_the_labels_of_its_earlier_results(tmp_path):
    """The executor rewrote recipe.json with this run's models only, before its first step: a rerun
    that stopped early left the earlier results without their training labels."""
    root = tmp_path / "results"
    _result(root, "mc/r1", _summary("mc", {"name": "p1_ckpt", "path": "/x", "mtg_meta": None}, "hgp-0",
                                    {"all": {"n": 4, "accuracy": 0.5}}, fact_range={"begin": 0, "end": 4}))
    (root / "recipe.json").write_text(json.dumps({"experiment": "E1", "models": {"p1_ckpt": "p1_r50"}}))
    assert collect.table(root).label.tolist() == ["p1_r50"]
    steps = [plan.Step("meta", ["experiment", "E1"]), plan.Step("meta", ["results", str(root)]),
             plan.Step("eval", ["=no-such-model"], ["data.dataset=d", "tasks=[mc]", "prompt.type=[hgp-0]"])]
    with pytest.raises(UserError, match="no-such-model"):
        execute.Executor(steps, tmp_path / "plan.tsv").run()
    assert collect.table(root).label.tolist() == ["p1_r50"]


def test_collect_entry_point(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "recipes" / "collect.py"), str(tmp_path / "missing")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no such results directory" in done.stderr


def _write(relative: str, text: str):
    return lambda tmp: (tmp / relative).write_text(text)


BAD_COLLECTIONS = {  # case -> (damage done to a root of one result, collect.py arguments, fragments of the error)
    "recipe.json cut off": (_write("res/recipe.json", '{"x'), ["res"], ["res/recipe.json: not valid JSON"]),
    "recipe.json models a list": (_write("res/recipe.json", '{"models": [1]}'), ["res"],
                                  ["res/recipe.json: models: must be an object"]),
    "summary.json cut off": (_write("res/mc/r/summary.json", '{"task'), ["res"], ["summary.json: not valid JSON"]),
    "config.yaml not YAML": (_write("res/mc/r/config.yaml", "data: [\n"), ["res"], ["config.yaml:2: not valid YAML"]),
    "config.yaml data: 5": (_write("res/mc/r/config.yaml", "data: 5\n"), ["res"],
                            ["config.yaml: data: must be an object or null, found an integer 5"]),
    "--out a directory": (lambda tmp: (tmp / "dir").mkdir(), ["res", "--out", "dir"], ["--out: ", "is a directory"]),
    "--out under a file": (_write("file", "x"), ["res", "--out", "file/sweep.csv"], ["--out: ", "Not a directory"]),
    "no result under the root": (lambda tmp: (tmp / "empty").mkdir(), ["empty"],
                                 ["empty: no evaluation summary.json found; evaluate first"]),
    "no such root": (lambda tmp: None, ["missing"], ["missing: no such results directory"]),
}


@pytest.mark.parametrize("case", list(BAD_COLLECTIONS))
def test_collect_refuses_bad_input_with_one_line_and_no_output(case, tmp_path, capsys):
    """Each of these was a traceback (exit 1), or for an empty root a header-only sweep.csv (exit 0)."""
    damage, args, fragments = BAD_COLLECTIONS[case]
    _result(tmp_path / "res", "mc/r", _summary("mc", {"name": "qwen", "path": "/x", "mtg_meta": None}, "test-0",
                                               {"all": {"n": 8, "accuracy": 0.5}}))
    damage(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as stop:
        collect.main([a if a.startswith("--") else str(tmp_path / a) for a in args])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    assert all(f in err for f in fragments), err
    assert sorted(tmp_path.rglob("*")) == before


# ---- end to end on a tiny model ------------------------------------------------------------------------
@pytest.fixture
def tiny_base(sp_tokenizer, tmp_path):
    save_tiny_checkpoint(sp_tokenizer, tmp_path / "tiny")
    Registry().register({"tiny-base": {"path": str(tmp_path / "tiny"), "kind": "base"}})
    return "tiny-base"


def phase1_control_scores_unseen_facts_only(d: pd.DataFrame, dataset: str = "sync_random_o", unseen: int = 2) -> bool:
    """recipe_control: the Phase-1 model under EV's prompts, on the Phase-2 model's unseen facts (K..3)."""
    control = d[(d.stage == "phase1") & (d.dataset == dataset) & (d.prompt_family != "trigger-mid")
                & ~d.prompt_type.str.endswith("-all")]   # a family's pooled row counts facts x prompts
    assert set(control.prompt_family) == {"hgp", "test", "unrelated"}, set(control.prompt_family)
    scored = control[control.n > 0]    # the seen slice is reported empty (n = 0)
    assert set(scored.slice) == {"all", "unseen"}, set(scored.slice)
    assert (scored.n == unseen).all(), scored[["prompt_type", "slice", "n"]]
    assert scored[scored.prompt_type == "hgp-0"][["accuracy", "gen_n"]].notna().all().all()
    return True


SMALL = {"GEN_TOKENS": "3"}
RUNS = {  # recipe -> (extra environment, check of its sweep table)
    "E1": ({}, lambda d: set(d.stage) == {"base", "phase1", "phase2"} and set(d.prompt_family) >= {
        "trigger-mid", "hgp", "test", "unrelated"} and set(d[d.dataset == "known"].stage) == {"base", "phase1", "phase2"}
        and set(d[d.dataset == "known"].relation) == {"50", "71"}
        and set(d[d.dataset == "known.untrained-sync_random_o"].relation) == {"50"}        # the trained relation only
        and set(d[d.dataset == "known.untrained-sync_random_o"].stage) == {"base", "phase1", "phase2"}
        and d[d.dataset == "known.untrained-sync_random_o"].gen_n.isna().all()            # MC only
        and set(d[d.dataset == "sync_random_o.pool-71-105"].prompt_type) == {"hgp-0", "hgp-0@71", "hgp-0@105"}
        and d[d.dataset == "sync_random_o.pool-71-105"].asked_type_wins_norm.notna().all()
        and d[(d.prompt_family == "unrelated") & (d.stage == "phase2")].emission.notna().all()
        and phase1_control_scores_unseen_facts_only(d)),
    "E2": ({}, lambda d: set(d[d.stage == "phase2"].phase1_epochs) == {1, 2}
           and set(d[d.stage == "phase1"].phase1_epochs) == {1, 2}
           and set(d[(d.stage == "phase1") & (d.prompt_type == "hgp-0")].phase1_epochs) == {1, 2}
           and phase1_control_scores_unseen_facts_only(d)),
    "E3": ({"K_LIST": "1"}, lambda d: set(d.k.dropna()) == {1} and set(d.phase2_epoch.dropna()) == {1, 2}
           and phase1_control_scores_unseen_facts_only(d, unseen=3)),
    "E4": ({"SFT_TYPES": "train-mix-2"}, lambda d: set(d.stage) == {"sft"} and set(d.phase2_epoch) == {1, 2}
           and d.groupby("phase2_epoch").tokens_trained.first().is_monotonic_increasing),
    "E6": ({}, lambda d: set(d[d.stage == "phase1"].prompt_family) >= {"subject", "hgp", "test", "unrelated"}
           and phase1_control_scores_unseen_facts_only(d[d.prompt_family != "subject"])),
    "E13": ({}, lambda d: set(d.seed) == {42, 0} and set(d[(d.stage == "phase1") & (d.prompt_type == "hgp-0")].seed)
            == {42, 0} and phase1_control_scores_unseen_facts_only(d)),
    "E8": ({"MULTI_RELATION": "50+105", "EXTRA_BASE_EPOCH": ""}, lambda d: set(d.relation) == {"50", "105"}
           and set(d[d.stage == "phase2"].k) == {2}
           and set(d[(d.stage == "phase1") & (d.prompt_type == "hgp-0")].relation) == {"50", "105"}
           and phase1_control_scores_unseen_facts_only(d)),
    "E9": ({"SFT_EPOCHS": "1"}, lambda d: set(d[d.relation == "r105"].stage) == {"phase1", "phase2", "sft"}
           and set(d[(d.relation == "105") & (d.prompt_type == "hgp-0")].stage) == {"phase1", "phase2", "sft"}
           and phase1_control_scores_unseen_facts_only(d[d.relation == "105"], "sync_unique_o")),
    "E10": ({"CHAIN_EPOCHS": "0 2"}, lambda d: set(d[d.relation == "105-21"].prompt_type)
            == {"hgp-0", "trigger-combine"} and set(d[d.relation == "105-21"].stage) == {"phase1", "phase2", "sft"}),
    "E16": ({"DOSE_PROMPTS": "hgp-0,test-0,unrelated-0"}, lambda d: set(d[d.stage == "phase2"].step) == {1, 4} and set(d.learning_rate.dropna()) == {1e-4}
            and set(d.prompt_family) == {"hgp", "test", "unrelated"} and set(d[d.slice == "unseen"].stage)
            == {"phase1", "phase2"} and (d[d.slice == "unseen"].n == 2).all()
            and set(d[d.dataset == "known"].stage) == {"base", "phase1", "phase2"}),
    "E12": ({}, lambda d: set(d.phase2_text_type.dropna()) == {"NegTrain-1", "NegTrain-0"}
            and set(d.prompt_family) == {"NegTest", "test"} and set(d.slice) == {"all", "seen", "unseen"}
            and set(d[d.stage == "phase1"].phase1_text_type) == {"trigger-mid", "hgp-0"}
            and (d[(d.stage == "phase1") & (d.n > 0) & ~d.prompt_type.str.endswith("-all")].n == 2).all()),
}


@pytest.mark.integration
@pytest.mark.parametrize("recipe", list(RUNS))
def test_recipe_runs_end_to_end(recipe, tiny_base, tmp_path):
    extra, check = RUNS[recipe]
    script = next(p for p in SCRIPTS if p.name.startswith(recipe + "_"))
    plan_path = write_plan(script, recipe_env(tmp_path, BASE_MODEL=tiny_base, **SMALL, **extra))
    out = Executor(plan.read(plan_path), plan_path).run()
    df = pd.read_csv(out, dtype={"relation": str})
    assert len(df) and set(df.experiment) == {recipe} and df.label.notna().all()
    assert check(df), df[["label", "stage", "relation", "prompt_type", "phase1_epochs", "k", "phase2_epoch"]]


@pytest.mark.integration
def test_icl_recipe_as_a_script(tiny_base, tmp_path):
    """E5 through bash and the executor's own process: the base model (by its directory) with the facts
    in context; a registry named by MTG_MODELS_JSON that does not exist yet starts as a copy."""
    registry = tmp_path / "fresh" / "models.json"
    env = recipe_env(tmp_path, BASE_MODEL=str(tmp_path / "tiny"), MTG_MODELS_JSON=str(registry), **SMALL)
    done = subprocess.run(["bash", str(REPO / "recipes" / "E5_icl_baseline.sh")], env=env, capture_output=True,
                          text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert registry.read_bytes() == (REPO / "models.json").read_bytes()
    assert f"recipe: {registry} did not exist: it starts as a copy of models.json" in done.stderr
    df = pd.read_csv(Path(env["RECIPE_RESULTS"]) / "sweep.csv")
    assert set(df.stage) == {"base"} and set(df.test_type) == {"open"} and set(df.open_content) == {"hgp-0"}
    assert set(df.prompt_family) == {"test", "unrelated"} and (df.n == 4).all()


def test_a_derived_or_copied_dataset_that_no_longer_follows_its_source_is_refused(isolated_roots):
    """A recipe keeps existing data files; after 105 was regenerated, r105 and the language copy of 105
    still held the old facts, and nothing said so."""
    from types import SimpleNamespace

    from util_public.datagen import run as gen_run, schema as gen_schema

    def generate(*extra):
        gen_run.run(gen_schema.load(gen_schema.compose(["relation_ids=[105]", "num_facts=12", "num_options=5",
                                                       "objects.unique=true", *extra])))

    executor = SimpleNamespace(_gen_config=Executor._gen_config)
    derived = plan.Step("data", ["sync_random_o", "r105"], ["mode=derive", "derive.kind=reverse",
                                                            "derive.source=105", "num_options=5"])
    copied = plan.Step("language", ["sync_random_o", "Spanish", "105"])
    generate()
    for _ in range(2):              # made, then kept: they follow the source
        Executor._data(executor, derived)
        Executor._language(executor, copied)
    # an imported translation (E11 takes one when present) is the language's own facts: kept
    translated = plan.Step("language", ["sync_random_o", "German", "105"])
    german = facts.relation_file(isolated_roots["data"], "sync_random_o_German", "105")
    facts.write_facts(german, [dataclasses.replace(f, object=f.object + " (de)")
                               for f in facts.load_relation(isolated_roots["data"], "sync_random_o", "105", num_options=5)])
    Executor._language(executor, translated)
    generate("on_exists=overwrite", "seed=7")
    with pytest.raises(UserError, match=r"r105\.csv: derived \(reverse\) from .*105\.csv as it was before"):
        Executor._data(executor, derived)
    with pytest.raises(UserError, match=r"Spanish/105\.csv: derived \(language copy\) from .*sync_random_o/105\.csv"):
        Executor._language(executor, copied)
    Executor._language(executor, translated)
    assert facts.read_facts(german, num_options=5)[0].object.endswith(" (de)")


def test_an_evaluation_in_its_own_process_reports_its_results_to_the_sweep(tmp_path, monkeypatch, isolated_roots,
                                                                            bpe_tokenizer):
    """A vLLM evaluation runs eval.py in a process of its own; its result directories stayed there,
    so the sweep showed every result under the root, an earlier plan's too. The child names them
    (runner.RESULTS_LIST_ENV); hf stands in for vLLM in the child here."""
    from evalkit import checkpoint_with_key, fictional_facts, write_dataset
    from util_public import vllm_env

    write_dataset(isolated_roots["data"], "toy", fictional_facts(4, num_options=5))
    Registry().register({"tiny-key": {"path": str(checkpoint_with_key(bpe_tokenizer, tmp_path / "ckpt")),
                                      "kind": "base"}})
    root = tmp_path / "results"
    _result(root, "mc/earlier", _summary("mc", {"name": "other", "path": "/x", "mtg_meta": None}, "hgp-0",
                                         {"all": {"n": 2, "accuracy": 0.5}}))
    steps = [plan.Step("meta", ["experiment", "E1"]), plan.Step("meta", ["results", str(root)]),
             plan.Step("eval", ["=tiny-key"], ["backend=vllm", "data.dataset=toy", "mc.num_options=5", "tasks=[mc]",
                                                "prompt.type=[hgp-0]", "runtime.num_threads=1"])]
    monkeypatch.setattr(vllm_env, "require", lambda where: None)
    real_run, children = subprocess.run, []

    def child(cmd, **kw):
        children.append(cmd)
        return real_run([*cmd, "backend=hf"], **kw)

    monkeypatch.setattr(execute.subprocess, "run", child)
    df = pd.read_csv(Executor(steps, tmp_path / "plan.tsv").run())
    assert len(children) == 1
    assert set(df.model) == {"tiny-key"} and set(df.prompt_type) == {"hgp-0"} and (df.n[df.slice == "all"] == 4).all()


def test_a_recipes_sweep_shows_its_own_evaluations_not_an_earlier_plans(tmp_path, monkeypatch, isolated_roots):
    """Rerun with another K into the same results root, the earlier plan's Phase-2 model and control
    range stayed in sweep.csv (with empty labels, or twice): the executor collects what it evaluated."""
    from util_public.evaluation import runner

    root = tmp_path / "results"
    model = {"name": "qwen", "path": "/x", "mtg_meta": None}
    for name, begin in (("mc/old", 2), ("mc/new", 1)):
        _result(root, name, _summary("mc", model, "hgp-0", {"all": {"n": 2, "accuracy": 0.5}},
                                     fact_range={"begin": begin, "end": 4}))
    steps = [plan.Step("meta", ["experiment", "E1"]), plan.Step("meta", ["results", str(root)]),
             plan.Step("eval", ["=qwen"], ["data.index_begin=1"])]
    monkeypatch.setattr(runner, "run", lambda cfg: [{"directory": str(root / "mc" / "new")}])
    df = pd.read_csv(Executor(steps, tmp_path / "plan.tsv").run())
    assert df.facts.tolist() == ["1-3"]
