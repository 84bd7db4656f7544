"""IC-LKE many-shot evaluation (SPEC §6.7): python evaluation/latent_knowledge_extractor/ic_lke.py [overrides]

The prompt type is `ic-lke` ("S1 O1, S2 O2, ..., S" with `ic_lke.*` settings); scoring and
results are those of evaluation/eval.py. Config: evaluation/conf/ic_lke.yaml.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import util_public  # noqa: E402,F401  (first: sets thread and offline environment before torch loads)
from util_public.cli import hydra_entry  # noqa: E402
from util_public.evaluation import runner  # noqa: E402
from util_public.evaluation.schema import EvalConfig  # noqa: E402

if __name__ == "__main__":
    hydra_entry(Path(__file__).resolve().parents[1] / "conf", "ic_lke", "eval_schema", EvalConfig, runner.task)
