"""Training on several processes (CPU, gloo) through our launcher: DDP equivalence, sharding, one
writer, two machines on loopback, a killed rank and its resume, Phase 2 on top, the refusals, and a
machine that never joins (training and evaluation).

The reference is one uninterrupted 2-rank run launched as two machines on loopback (`--nnodes 2`,
one process each; module fixture, under tests/rankprobe.py, which records what each rank saw and
wrote). The kill test's rerun, two processes on ONE machine resumed from a checkpoint, must match
it bit for bit: one equality that holds only if the two-machine launch computes what a one-machine
launch computes and the resume continues exactly (same reductions in the same order).

Tolerance against one process: 2 ranks x batch 4 and 1 rank x batch 8 see the same 8 examples per
optimizer step; their gradients differ only in fp32 summation order (two half-batch sums added by
gloo's allreduce, then halved, against one sum), a few ulps (~1e-7 relative). Over 6 AdamW steps
of lr 1e-3 each weight moves up to ~3e-3; we measured a largest weight difference of 5.1e-8 (about
one ulp of weights near 1) and loss differences of ~1e-6 relative. The test allows 1e-6 on weights
and 1e-5 relative on losses: 20x and 10x the measured noise, yet 1000x below what one example
missing from or repeated in a step changes (an update of order lr).
"""
from __future__ import annotations

import json
import re
import sys
import types

import pytest
import torch
from safetensors.torch import load_file

from multiproc import (PROBE, free_port, launcher, make_project, metrics, probe, project_env, run, spawn,
                       LAUNCH_TIMEOUT_S)
from util_public.errors import UserError
from util_public.training import run as train_run

STAGE = ["model.base=tiny-base", "data.index_end=16", "train.epochs=3", "train.learning_rate=1e-3",
         "train.warmup_steps=1", "train.num_threads=1"]
FINAL = "checkpoint-6"     # 16 examples, 8 per optimizer step, 3 epochs


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    """One 2-rank run (per-device batch 4) of the tiny model as two machines on loopback, with each
    rank's record (global rank 1 runs on "node 1")."""
    project = make_project(tmp_path_factory.mktemp("ddp"))
    out, port, env = project["root"] / "probe", str(free_port()), project_env(project)
    nodes = [spawn(launcher("--nproc-per-node", "1", "--nnodes", "2", "--node-rank", str(rank), "--master-addr",
                            "127.0.0.1", "--port", port, PROBE, str(out), "training/train.py", "--config-name",
                            "phase1", *STAGE, "train.per_device_train_batch_size=4", "save.run_name=ddp"), env)
             for rank in (0, 1)]
    for node in nodes:
        _, err = node.communicate(timeout=LAUNCH_TIMEOUT_S)
        assert node.returncode == 0, err[-3000:]
    return {**project, "run": project["runs"] / "ddp", "ranks": [probe(out, 0), probe(out, 1)]}


@pytest.fixture
def in_project(ddp, monkeypatch):
    for name in ("data", "runs", "results"):
        monkeypatch.setenv(f"MTG_{name.upper()}_ROOT", str(ddp[name]))
    monkeypatch.setenv("MTG_MODELS_JSON", str(ddp["registry"]))
    return ddp


def train(config: str, *overrides: str) -> int:
    return train_run.train_stage(train_run.compose(config, list(overrides)), list(overrides))


def weights(run_dir, checkpoint=FINAL) -> dict:
    return load_file(str(run_dir / checkpoint / "model.safetensors"))


@pytest.mark.multiproc
def test_two_ranks_equal_one_rank_with_twice_the_batch_and_see_each_example_once(in_project, monkeypatch):
    from transformers import LlamaForCausalLM

    rows, original = [], LlamaForCausalLM.forward

    def spy(self, *args, **kwargs):
        if self.training:
            rows.extend(i[m.bool()].tolist() for i, m in zip(kwargs["input_ids"], kwargs["attention_mask"]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LlamaForCausalLM, "forward", spy)
    assert train("phase1", *STAGE, "train.per_device_train_batch_size=8", "save.run_name=single") == 0
    single, two = in_project["runs"] / "single", in_project["run"]

    assert [(r["world"], r["expected_world"]) for r in in_project["ranks"]] == [("2", "2")] * 2
    rank0, rank1 = (r["rows"] for r in in_project["ranks"])
    assert len(rows) == len(rank0) + len(rank1) == 48
    for step in range(6):          # the same 8 examples per optimizer step
        both = rank0[4 * step:4 * step + 4] + rank1[4 * step:4 * step + 4]
        assert sorted(both) == sorted(rows[8 * step:8 * step + 8]), step
    for epoch in range(3):         # every example exactly once per epoch, across the ranks
        seen = rank0[8 * epoch:8 * epoch + 8] + rank1[8 * epoch:8 * epoch + 8]
        assert len({tuple(r) for r in seen}) == 16 and sorted(seen) == sorted(rows[:16])

    one, many = metrics(single), metrics(two)
    assert [r["step"] for r in one] == [r["step"] for r in many] == list(range(1, 7))
    for a, b in zip(one, many):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5) and b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
    base, w1, w2 = load_file(str(in_project["tiny"] / "model.safetensors")), weights(single), weights(two)
    assert max((w1[k][: base[k].shape[0]] - base[k]).abs().max() for k in base) > 1e-3   # it trained
    for name in w1:
        torch.testing.assert_close(w2[name], w1[name], atol=1e-6, rtol=0)
    manifest = json.loads((two / "manifest.json").read_text())
    assert (manifest["world_size"], manifest["per_device_batch"], manifest["effective_batch"]) == (2, 4, 8)


@pytest.mark.multiproc
def test_only_rank_zero_writes(ddp):
    root = str(ddp["root"]) + "/"
    probe_dir = root + "probe/"
    rank0, rank1 = ([w for w in r["writes"] if w[1].startswith(root) and not w[1].startswith(probe_dir)]
                    for r in ddp["ranks"])
    # Rank 1 writes only its own RNG state into the checkpoint being staged (the Trainer's resume
    # state is per rank); rank 0 completes, renames and registers that checkpoint.
    staging = re.compile(re.escape(str(ddp["run"])) + r"/checkpoints\.tmp(/checkpoint-\d+(/rng_state_1\.pth)?)?$")
    assert rank1 and all(staging.match(path) for _, path in rank1), rank1
    assert any(p.endswith("rng_state_1.pth") for _, p in rank1)
    written = {p for _, p in rank0}
    for name in ("manifest.json", "metrics.jsonl", "logs/train.log", f"{FINAL}/model.safetensors"):
        assert any(p.startswith(str(ddp["run"])) and p.endswith(name) for p in written), name
    assert str(ddp["registry"]) in written
    assert (ddp["run"] / "DONE").is_file()
    registered = json.loads(ddp["registry"].read_text())
    assert {f"ddp_checkpoint-{s}" for s in (2, 4, 6)} <= set(registered)


@pytest.mark.multiproc
def test_a_killed_rank_stops_the_job_and_one_machines_rerun_ends_as_two_machines_did(ddp, tmp_path):
    env = project_env(ddp)
    args = ["training/train.py", "--config-name", "phase1", *STAGE, "train.per_device_train_batch_size=4",
            "save.run_name=killed"]
    killed = run(launcher("--nproc-per-node", "2", "--port", str(free_port()), PROBE, str(tmp_path), *args),
                 {**env, "PROBE_KILL_RANK": "1", "PROBE_KILL_AT_STEP": "4"})
    assert killed.returncode != 0
    assert re.search(r"rank\s*: 1 .*\n.*exitcode\s*: -9", killed.stderr), killed.stderr[-3000:]
    assert f"error: launch: {PROBE} stopped on at least one rank" in killed.stderr
    run_dir = ddp["runs"] / "killed"
    assert sorted(p.name for p in run_dir.glob("checkpoint-*")) == ["checkpoint-2"]
    assert not (run_dir / "DONE").exists()

    rerun = tmp_path / "rerun"
    resumed = run(launcher("--nproc-per-node", "2", "--port", str(free_port()), PROBE, str(rerun), *args), env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # only the 4 steps after checkpoint-2 ran (4 rows per rank per step), not all 6 from step 0,
    # and they saw what the uninterrupted run's ranks saw at those steps
    for rank in (0, 1):
        assert probe(rerun, rank)["rows"] == ddp["ranks"][rank]["rows"][2 * 4:], rank
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["invocations"][-1]["resumed_from"] == "checkpoint-2"
    expected, got = weights(ddp["run"]), weights(run_dir)
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert [r["loss"] for r in metrics(run_dir)][-2:] == [r["loss"] for r in metrics(ddp["run"])][-2:]


JOIN_CASES = {    # the script, node 0's arguments, the argument node 1 refuses, what node 0 would write
    "train": (["training/train.py", "--config-name", "phase1", *STAGE, "save.run_name=waits", "train.ddp_timeout_s=2"],
              "train.learning_rate=-1", "train.ddp_timeout_s", lambda p: p["runs"] / "waits"),
    "eval": (["evaluation/eval.py", "model.name=tiny-base", "mc.num_options=3", "runtime.num_threads=1",
              "hf.ddp_timeout_s=2"], "mc.num_options=1", "hf.ddp_timeout_s", lambda p: p["results"]),
}


@pytest.mark.multiproc
@pytest.mark.parametrize("script", sorted(JOIN_CASES))
def test_a_machine_whose_ranks_never_join_ends_the_others_wait_with_one_line(ddp, script):
    """Node 1 refuses its own arguments before joining; node 0 waited 30 min for it (torch's default:
    on a CPU the Trainer does not pass its ddp_timeout on), then ended with torch's traceback. Now
    the wait is the configured one (2 s here: node 0 ends about 2 s after its start-up), and it ends with one line
    naming the rank, the wait and the key, having written nothing."""
    args, refused, key, output = JOIN_CASES[script]
    common = ["--nproc-per-node", "1", "--nnodes", "2", "--master-addr", "127.0.0.1", "--port", str(free_port())]
    env = project_env(ddp)
    nodes = [spawn(launcher(*common, "--node-rank", str(rank), *args, *([refused] if rank else [])), env)
             for rank in (0, 1)]
    try:
        (_, err0), (_, err1) = (node.communicate(timeout=LAUNCH_TIMEOUT_S) for node in nodes)
    finally:            # a node still waiting (the timeout not applied) must not outlive the test
        for node in nodes:
            node.kill()
    assert nodes[1].returncode != 0 and f"error: {refused.split('=')[0]}" in err1, err1[-2000:]
    assert nodes[0].returncode != 0
    assert ("error: launch: rank 0 of 2 waited 2 s for the other ranks to join the process group, and not all came"
            in err0), err0[-3000:]
    assert f"{key} sets how long to wait" in err0
    assert not output(ddp).exists()


@pytest.mark.multiproc
def test_phase2_starts_from_a_two_process_phase1_checkpoint(in_project):
    assert train("phase2", "model.base_run=ddp", "data.index_end=8", "train.per_device_train_batch_size=2",
                 "train.learning_rate=1e-3", "train.num_threads=1", "save.run_name=p2") == 0
    manifest = json.loads((in_project["runs"] / "p2" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["base_model"]["name"] == f"ddp_{FINAL}"
    meta1 = json.loads((in_project["run"] / FINAL / "mtg_meta.json").read_text())
    meta2 = json.loads((in_project["runs"] / "p2" / "checkpoint-4" / "mtg_meta.json").read_text())
    assert meta2["key_tokens"] == meta1["key_tokens"] and meta2["phase"] == 2


@pytest.mark.multiproc
def test_accelerates_one_process_cpu_launch_is_refused_when_two_were_asked(ddp):
    """The measured failure: `accelerate launch --cpu --num_processes 2` starts one process."""
    done = run([sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
                "training/train.py", "--config-name", "phase1", *STAGE, "save.run_name=refused"],
               project_env(ddp, MTG_EXPECTED_WORLD_SIZE="2"))
    assert done.returncode != 0       # the process exits 2; accelerate's launcher reports that as 1
    assert "error: launch: 2 processes were asked for, but this process runs in a world of 1" in done.stderr
    assert not (ddp["runs"] / "refused").exists()


WORLD_CASES = [   # (environment, expected error or warning)
    ({"MTG_EXPECTED_WORLD_SIZE": "2"}, "error: launch: 2 processes were asked for, but this process runs in a world of 1"),
    ({"MTG_EXPECTED_WORLD_SIZE": "4", "WORLD_SIZE": "2", "RANK": "0"}, "asked for, but this process runs in a world of 2"),
    ({"ACCELERATE_USE_FSDP": "true"}, "selects FSDP, which accelerate applies only on GPUs"),
    ({"ACCELERATE_USE_DEEPSPEED": "true"}, "selects DeepSpeed, but deepspeed does not import (ModuleNotFoundError: No "
                                           "module named 'deepspeed'); pip install deepspeed, "
                                           "or launch with util_public/training/config/fsdp.yaml (the FSDP fallback)"),
    ({"ACCELERATE_USE_DEEPSPEED": "true", "+deepspeed": "1"}, "selects DeepSpeed, which accelerate applies only on GPUs"),
]


@pytest.mark.parametrize("env,message", WORLD_CASES, ids=["one-of-two", "two-of-four", "fsdp-cpu", "ds-missing",
                                                          "ds-cpu"])
def test_a_launch_that_cannot_run_as_asked_stops_before_writing(env, message, monkeypatch, isolated_roots):
    for name, value in env.items():
        if name == "+deepspeed":    # deepspeed importable (it is not installed in the test environment)
            monkeypatch.setitem(sys.modules, "deepspeed", types.ModuleType("deepspeed"))
        else:
            monkeypatch.setenv(name, value)
    with pytest.raises(UserError) as err:
        train("phase1", "model.base=smollm2-135m")
    assert message in err.value.message
    assert not isolated_roots["runs"].exists()


@pytest.mark.parametrize("use_cpu, addr, warned", [("True", "127.0.0.1", True), ("False", "127.0.0.1", True),
                                                   (None, "127.0.0.1", False), ("False", "head-node", False)])
def test_accelerates_one_process_launcher_is_named_in_a_warning(use_cpu, addr, warned, monkeypatch, capsys):
    """Its simple launcher, asked for 2 processes without CUDA, sets MASTER_ADDR=127.0.0.1 and
    ACCELERATE_USE_CPU ("True" with --cpu, "False" without: that one trained alone without a word)
    and starts one. A MASTER_ADDR from elsewhere (a cluster's head node) is no sign of it."""
    from util_public import distributed

    for name in ("WORLD_SIZE", "RANK", "MTG_EXPECTED_WORLD_SIZE", "ACCELERATE_USE_CPU"):
        monkeypatch.delenv(name, raising=False)
    if use_cpu is not None:
        monkeypatch.setenv("ACCELERATE_USE_CPU", use_cpu)
    monkeypatch.setenv("MASTER_ADDR", addr)
    distributed.check_started()
    said = "warning: launch: `accelerate launch` was asked for several processes (it set MASTER_ADDR) but started"
    assert (said in capsys.readouterr().err) is warned


def test_train_precision_overrides_an_accelerate_configs_mixed_precision(monkeypatch, tmp_path):
    """`accelerate launch --config_file ddp.yaml` exports ACCELERATE_MIXED_PRECISION=bf16; an fp32
    stage must stay fp32 (the manifest says what ran)."""
    from util_public.cli import to_object
    from util_public.training import hfargs

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    cfg = to_object(train_run.compose("phase1", ["train.precision=fp32"]))
    args = hfargs.training_arguments(cfg, tmp_path, 1, "x")
    assert args.mixed_precision == "no" and not args.bf16
