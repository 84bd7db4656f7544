"""Collect every evaluation summary under a results root into one tidy CSV.

    python recipes/collect.py evaluation/test_result/recipes/E1 --out sweep.csv

Columns and their sources: util_public/recipes/collect.py and recipes/README.md.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import util_public  # noqa: E402,F401  (first: sets thread and offline environment)
from util_public.recipes.collect import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
