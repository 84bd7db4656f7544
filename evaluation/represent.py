"""Representation analysis (SPEC §6.8): `python evaluation/represent.py [hydra overrides]`.

Example: python evaluation/represent.py models='[smollm2-135m,<phase-1 ckpt>,<phase-2 ckpt>]' index_end=20
"""
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

import util_public  # noqa: E402,F401  - first: sets thread/offline environment defaults
from util_public import representation_run  # noqa: E402
from util_public.cli import hydra_entry  # noqa: E402

if __name__ == "__main__":
    hydra_entry(Path(__file__).resolve().parent / "conf", "represent", "represent_schema",
                representation_run.ReprCfg, representation_run.main)
