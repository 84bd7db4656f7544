"""One training stage: `python training/train.py --config-name phase1|phase2 [hydra overrides]`.

Also runs under `accelerate launch --config_file util_public/training/config/<cfg>.yaml`.
All logic lives in `util_public.training`; see training/README.md for the keys.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import util_public  # noqa: E402,F401  (first: sets thread/offline environment before torch loads)
from util_public.cli import hydra_entry  # noqa: E402
from util_public.training.run import CONF_DIR, SCHEMA_NAME, train_stage  # noqa: E402
from util_public.training.schema import TrainStageConfig  # noqa: E402


def main() -> None:
    hydra_entry(CONF_DIR, "train", SCHEMA_NAME, TrainStageConfig, train_stage)


if __name__ == "__main__":
    main()
