"""Sharded evaluation: eval.py on 2 ranks (CPU, gloo) writes, on rank 0 only, the result files a
single-process run writes, record for record (every backend call is the same call in both)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from evalkit import checkpoint_with_key, fictional_facts, write_dataset

from multiproc import PROBE, free_port, launcher, probe, project_env, run
from util_public.errors import UserError
from util_public.evaluation import runner
from util_public.evaluation.schema import config

ARGS = ["data.dataset=toy", "mc.num_options=5", "mc.batch_size=3", "tasks=[mc,gen,loss]", "gen.max_new_tokens=3",
        "prompt.type=[trigger-mid,hgp-0]", "data.seen_fact_ids=0:4", "runtime.num_threads=1",
        "mc.calibration=subjectless"]
PER_RUN = {"created", "wall_time_s", "directory", "machine"}   # fields that describe when and where, not what


def tree(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in root.rglob("*") if p.is_file()}


@pytest.mark.multiproc
def test_two_ranks_split_the_questions_and_rank_zero_writes_what_one_process_writes(
        isolated_roots, bpe_tokenizer, tmp_path):
    write_dataset(isolated_roots["data"], "toy", fictional_facts(10, num_options=5))
    ckpt = checkpoint_with_key(bpe_tokenizer, tmp_path / "ckpt")
    args = [f"model.path={ckpt}", *ARGS]
    project = {"root": tmp_path, **isolated_roots}
    out = tmp_path / "probe"
    done = run(launcher("--nproc-per-node", "2", "--port", str(free_port()), PROBE, str(out), "evaluation/eval.py",
                        *args, f"output.root={tmp_path / 'two'}"), project_env(project))
    assert done.returncode == 0, done.stderr[-3000:]
    runner.run(config([*args, f"output.root={tmp_path / 'one'}"]))

    one, two = tree(tmp_path / "one"), tree(tmp_path / "two")
    assert sorted(one) == sorted(two) and sum(name.endswith("records.jsonl") for name in one) == 6
    for name, path in one.items():
        if name.endswith("summary.json"):
            a, b = json.loads(path.read_text()), json.loads(two[name].read_text())
            assert {k: v for k, v in a.items() if k not in PER_RUN} == {k: v for k, v in b.items() if k not in PER_RUN}
        elif name.endswith("config.yaml"):   # the full config, output.root included
            assert path.read_text().replace("/one", "/two") == two[name].read_text(), name
        else:
            assert path.read_bytes() == two[name].read_bytes(), name
    mc = [json.loads(line) for name, path in one.items() if name.startswith("mc/") and name.endswith("records.jsonl")
          for line in path.read_text().splitlines()]
    assert mc and all("option_null_logprobs" in r for r in mc)     # calibrated MC, sharded like the rest
    rank1 = [w for w in probe(out, 1)["writes"] if w[1].startswith(str(tmp_path)) and not w[1].startswith(str(out))]
    assert rank1 == [] and probe(out, 1)["expected_world"] == "2"
    assert probe(out, 0)["forwards"] > 0 and probe(out, 1)["forwards"] > 0     # both ranks scored


def test_vllm_is_refused_on_several_ranks(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(UserError, match="several ranks split questions with backend=hf"):
        runner._ranks("vllm", 1800)
