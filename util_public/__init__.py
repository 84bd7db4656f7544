"""Shared library of the memorize-then-generalize framework.

Entry points under data_generation/, training/ and evaluation/ are thin Hydra wrappers;
all behaviour lives here, in modules named by concept.
"""

import os as _os

# Set before torch/OpenMP initialise (entry points import this package first):
# passive OpenMP waits keep 2-core runs from collapsing under contention (docs/PERFORMANCE.md), and
# nothing downloads from a model hub unless a user explicitly allows it.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
_os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if _os.environ.get("MTG_ALLOW_DOWNLOAD") != "1":
    _os.environ.setdefault("HF_HUB_OFFLINE", "1")
