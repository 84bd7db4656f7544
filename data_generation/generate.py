"""Data generation entry point (SPEC §4): `python data_generation/generate.py [hydra overrides]`.

Modes: `generate` (fictional facts), `import` (public T-Rex-Fiction / T-REx-MC copies), `derive`
(reverse / chain). All logic lives in `util_public.datagen`.
"""
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

import util_public  # noqa: E402,F401  - first: sets thread/offline environment defaults
from util_public.cli import hydra_entry  # noqa: E402
from util_public.datagen import run, schema  # noqa: E402


def main() -> None:
    hydra_entry(Path(__file__).resolve().parent / "conf", "gen_config", "gen_schema", schema.schema_node(), run.main)


if __name__ == "__main__":
    main()
