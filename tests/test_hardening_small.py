"""Smaller bad-input defects, one test each: tracebacks on request, sweeps that leave no file
in the working directory, run names that paste into an override, the memorization check's
message, the pipeline naming the registry it writes to, representation outputs that stay
under `output_dir`, and readers of the results root that skip them."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from evalkit import checkpoint_with_key, fictional_facts, write_dataset
from hardening_kit import REPO, Roots, start_driver

from util_public import atomicio, paths, prompts
from util_public.artifacts import CheckpointRecord, RunManifest
from util_public.errors import UserError

EVAL = str(REPO / "evaluation" / "eval.py")


def test_debug_from_the_environment_and_sweeps_leave_the_working_directory_alone(tmp_path):
    roots = Roots(tmp_path / "roots")
    work = tmp_path / "cwd"
    work.mkdir()
    bad = ["model.path=/nonexistent/ckpt"]
    cases = [
        {"id": "debug-env", "script": EVAL, "argv": bad, "env": {**roots.env, "MTG_DEBUG": "1"}},
        {"id": "debug-off", "script": EVAL, "argv": bad, "env": roots.env},
        # an explicit debug=false wins over the environment (it was read as "not set")
        {"id": "debug-env-off", "script": EVAL, "argv": [*bad, "debug=false"], "env": {**roots.env, "MTG_DEBUG": "1"}},
        {"id": "sweep", "script": EVAL, "argv": ["-m", "model.path=/nonexistent/a,/nonexistent/b"], "env": roots.env,
         "cwd": str(work)},
    ]
    proc, results_file = start_driver(cases, tmp_path / "driver", "small")
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    out = json.loads(results_file.read_text())
    # MTG_DEBUG=1 shows the traceback although the config's `debug` is false by default
    assert out["debug-env"]["code"] == 1 and "UserError" in out["debug-env"]["stderr"]
    assert out["debug-off"]["code"] == 2 and out["debug-off"]["stderr"].startswith("error: ")
    assert out["debug-env-off"]["code"] == 2 and out["debug-env-off"]["stderr"].startswith("error: ")
    assert out["sweep"]["code"] == 2 and "error: " in out["sweep"]["stderr"]
    assert list(work.iterdir()) == []                                    # no multirun.yaml here
    assert not Path(tempfile.gettempdir(), f"mtg-hydra-sweep-{proc.pid}").exists()   # nor left in the temp folder


def test_phase2_names_paste_into_an_override_unquoted():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from util_public.training import naming

    phase1 = naming.checkpoint_name(naming.run_name("smollm2-135m", "50", "sync_random_o", "trigger-mid", "normal",
                                                    False, 16, 1e-4, "cosine", 20, 0, 99, 42, False), 400)
    phase2 = naming.checkpoint_name(naming.run_name(phase1, "50", "sync_random_o", "hgp-0", "o", False, 2, 3e-5,
                                                    "cosine", 3, 0, 49, 42, False), 75)
    assert len(phase1) > naming.MAX_BASE_TAG and "~" not in phase2 and "=" not in phase2
    parsed = OverridesParser.create().parse_override(f"model.name={phase2}")
    assert parsed.value() == phase2


def test_a_failed_memorization_check_says_which_threshold(isolated_roots, sp_tokenizer, tmp_path, capsys):
    from util_public.training import memcheck

    write_dataset(isolated_roots["data"], "toy", fictional_facts(4, num_options=3))
    ckpt = checkpoint_with_key(sp_tokenizer, tmp_path / "ckpt")           # untrained: it memorized nothing
    code = memcheck.main([str(ckpt), "--dataset", "toy", "--end", "4", "--min-accuracy", "0.99"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"error: {ckpt}: greedy trigger-mid accuracy 0.000 on 4 facts is below --min-accuracy 0.99" in err


def _stub_python(tmp_path: Path, runs: Path) -> Path:
    """A stand-in for the pipeline's Python: training prints a dry-run name, everything else is real."""
    stub = tmp_path / "py"
    stub.write_text(f"""#!/usr/bin/env bash
if [ "$1" = training/train.py ]; then
  case "$*" in *train.dry_run=true*) echo '{{"run_name": "R", "run_dir": "{runs}/R"}}' ;; esac
  exit 0
fi
exec {sys.executable} "$@"
""")
    stub.chmod(0o755)
    return stub


def test_the_pipeline_names_the_registry_it_writes_to(tmp_path):
    data, runs = tmp_path / "data", tmp_path / "runs"
    (data / "sync_random_o").mkdir(parents=True)
    (data / "sync_random_o" / "50.csv").write_text("stub\n")
    (runs / "R").mkdir(parents=True)
    RunManifest(run_name="R", status="complete",
                checkpoints={"1": CheckpointRecord(1, "checkpoint-1", "R_checkpoint-1")}).write(runs / "R" / "manifest.json")
    env = {**os.environ, "SKIP_SETUP": "1", "PY": str(_stub_python(tmp_path, runs)), "MTG_DATA_ROOT": str(data),
           "SLURM_GPUS_ON_NODE": "0", "MEMCHECK": "0", "OMP_NUM_THREADS": "1"}
    env.pop("MTG_MODELS_JSON", None)
    tracked = subprocess.run(["bash", str(REPO / "pipeline_llama_custome.sh")], capture_output=True, text=True,
                             env=env, timeout=120)
    assert tracked.returncode == 0, tracked.stderr
    assert "registered in the repository's tracked models.json" in tracked.stderr
    assert "MTG_MODELS_JSON=" in tracked.stderr
    own = subprocess.run(["bash", str(REPO / "pipeline_llama_custome.sh")], capture_output=True, text=True,
                         env={**env, "MTG_MODELS_JSON": str(tmp_path / "models.json")}, timeout=120)
    assert own.returncode == 0 and f"registered in {tmp_path / 'models.json'}" in own.stderr


def test_representation_outputs_of_a_checkpoint_path_stay_under_output_dir(isolated_roots, sp_tokenizer, tmp_path):
    from util_public.representation_run import ReprCfg, run

    write_dataset(isolated_roots["data"], "toy", fictional_facts(3, num_options=3))
    ckpt = checkpoint_with_key(sp_tokenizer, tmp_path / "ckpt")
    before = sorted(p.name for p in ckpt.iterdir())
    out = tmp_path / "repr"
    run(ReprCfg(models=[str(ckpt)], relations="50", dataset="toy", index_end=3, families=["hgp-0"],
                output_dir=str(out), num_threads=1))
    assert (out / "ckpt" / "summary.json").is_file()
    assert sorted(p.name for p in ckpt.iterdir()) == before


def test_readers_of_the_results_root_skip_representation_summaries(isolated_roots, sp_tokenizer, tmp_path, capsys):
    """represent.py's default output_dir lies under the results root, and its `summary.json` files
    are not evaluation summaries: summarize and the recipe collector read past them."""
    from evaluation import summarize
    from util_public.recipes import collect
    from util_public.representation_run import ReprCfg, run

    write_dataset(isolated_roots["data"], "toy", fictional_facts(3, num_options=3))
    ckpt = checkpoint_with_key(sp_tokenizer, tmp_path / "ckpt")
    run(ReprCfg(models=[str(ckpt)], relations="50", dataset="toy", index_end=3, families=["hgp-0"], num_threads=1))
    root = isolated_roots["results"]
    (represented,) = root.glob("repr/*/ckpt/summary.json")
    result = root / "mc" / "hgp-0" / "ckpt" / "toy" / "50" / "close" / "f0-2-0a1b2c3d"
    result.mkdir(parents=True)
    (result / "summary.json").write_text(json.dumps(
        {"schema": "mtg.eval/1", "task": "mc", "model": {"name": "ckpt"}, "prompt_type": "hgp-0", "relation_id": "50",
         "dataset": "toy", "test_type": "close", "fact_range": {"begin": 0, "end": 3},
         "metrics": {"all": {"n": 3, "accuracy": 0.5}}}))
    capsys.readouterr()
    assert summarize.main([]) == 0
    assert "0.500" in capsys.readouterr().out
    assert list(collect.table(root)["accuracy"]) == [0.5]
    with pytest.raises(UserError, match="is not a mtg.eval file"):     # named on its own, it is refused
        summarize.main([str(represented)])


# Reads outside `util_public/textio.py` that are not of a project input file, with the reason.
TEXT_READS_ALLOWED = {
    ("util_public/locking.py", "lock_path.read_text("): "names a lock's holder in a message",
    ("util_public/vllm_server.py", "json.load(reply)"): "an HTTP reply of the local vLLM server",
    ("util_public/vllm_server.py", "self.log_path.read_text("): "the server's own log, shown on failure",
    ("util_public/evaluation/backends/vllm.py", "json.load(reply)"): "an HTTP reply of the vLLM server",
    ("util_public/numerics.py", "Path(cpuinfo).read_text("): "the kernel's CPU flags (/proc/cpuinfo), not an input",
}
# Text reads: `x.read_text(`, `json.load(`, `yaml.safe_load(`, and `open(` without a binary,
# write or append mode.
_READ = re.compile(r"(?P<owner>\w*)\.read_text\(|\bjson\.load\(|\byaml\.safe_load\("
                   r"|(?<![\w.])open\((?![^)]*[\"'](?:rb|wb|ab|a|w)[\"'])")


def test_every_input_file_is_read_through_textio():
    """The encoding and JSON-type class has one home: a new direct read of an input file fails here."""
    found = []
    for path in sorted((REPO / "util_public").rglob("*.py")):
        rel = str(path.relative_to(REPO))
        if rel == "util_public/textio.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in _READ.finditer(line.split("#")[0]):
                allowed = any(r == rel and call in line for r, call in TEXT_READS_ALLOWED)
                if not allowed and match.group("owner") != "textio":
                    found.append(f"{rel}:{number}: {line.strip()}")
    assert found == []



def _passes(call, value) -> bool:
    try:
        call(value)
    except UserError:
        return False
    return True


@pytest.mark.parametrize("accepts, value", [
    (lambda v: _passes(lambda x: paths.check_name(x, "dataset"), v), "abc"),
    (lambda v: _passes(prompts.parse, v), "hgp-0"),
    (atomicio.is_staging, ".a.csv.tmp-12-ab12cd34-m0123abcd"),
], ids=["safe name", "prompt type", "staging name"])
def test_name_patterns_match_the_whole_value_not_a_line(accepts, value):
    """A pattern anchored with `^...$` and `re.match` lets a trailing newline through (`$` matches
    before a final newline): `dataset='abc\n'` made a folder named so. Each name pattern matches the
    whole value."""
    assert accepts(value)
    assert not accepts(value + "\n")
