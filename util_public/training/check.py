"""The checks of a training stage that need neither its facts nor its base model:

    python -m util_public.training.check --config-name phase2 --world-size 2 [overrides ...]

composition, types, undeclared keys, choices, limits, the batch arithmetic on that many ranks, and
the text type's templates in each relation's prompt catalogue. `pipeline_llama_custome.sh` runs it
for Phase 2 before Phase 1 starts (and for Phase 1 where a plan has no data to dry-run it on): a
typo in a Phase-2 setting stopped the pipeline only after Phase 1 had trained.
"""
from __future__ import annotations

import argparse
import sys

from .. import paths
from ..cli import checked_config
from ..errors import exit_on_user_error
from . import run, texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m util_public.training.check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-name", default="phase1", choices=("phase1", "phase2"))
    parser.add_argument("--world-size", type=int, default=1, help="ranks the stage will run on (default 1)")
    parser.add_argument("overrides", nargs="*", help="as for training/train.py")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    cfg = checked_config(args.overrides, lambda some: run.compose(args.config_name, some))
    run.check_config(cfg, args.world_size)
    paths.check_name(cfg.data.dataset, "data.dataset")
    texts.check_templates(cfg.data.train_text_type, cfg.data.relation_id, paths.root("data", cfg.data.root))
    return 0


if __name__ == "__main__":
    sys.exit(exit_on_user_error(main))
