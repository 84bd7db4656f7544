"""Greedy generation accuracy (exact / prefix / contains): python evaluation/eval_gen.py [overrides]

Config: evaluation/conf/eval_gen.yaml (schema util_public.evaluation.schema.EvalConfig, SPEC §6.9).
All logic lives in util_public.evaluation; this file only wires Hydra.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import util_public  # noqa: E402,F401  (first: sets thread and offline environment before torch loads)
from util_public.cli import hydra_entry  # noqa: E402
from util_public.evaluation import runner  # noqa: E402
from util_public.evaluation.schema import EvalConfig  # noqa: E402

if __name__ == "__main__":
    hydra_entry(Path(__file__).resolve().parent / "conf", "eval_gen", "eval_schema", EvalConfig, runner.task)
