"""The files the stages exchange, typed and versioned: one home for writing and reading them.

| file | class | written by | read by |
|---|---|---|---|
| `{checkpoint}/mtg_meta.json` | `CheckpointMeta` | training | training (next stage), evaluation, collectors, demo |
| `{run}/manifest.json` | `RunManifest` | training | training (next stage), recipes, demo, collectors, shell drivers |
| `{result}/summary.json` | `ResultSummary` | evaluation | evaluation (cache), summarize, collectors, demo |

Each carries `schema: "<kind>/<version>"`; older files (and files without the field) still read
(`versioned.py`). The shell drivers ask through the CLI instead of parsing JSON themselves:

    python -m util_public.artifacts final-checkpoint RUN_DIR     # registry name of its final checkpoint
    python -m util_public.artifacts checkpoint RUN_DIR EPOCH     # ... of its checkpoint of epoch EPOCH
    python -m util_public.artifacts checkpoints RUN_DIR          # every registered checkpoint, by epoch
"""
from .checkpoint import META_FILE, CheckpointMeta
from .manifest import CHECKPOINT_PREFIX, MANIFEST_FILE, BaseModelRecord, CheckpointRecord, RunManifest, TokenCount
from .summary import SUMMARY_FILE, FactRange, ModelRecord, ResultSummary, current, find as find_summaries, none_found

__all__ = ["META_FILE", "MANIFEST_FILE", "CHECKPOINT_PREFIX", "SUMMARY_FILE", "CheckpointMeta", "RunManifest",
           "CheckpointRecord", "TokenCount", "BaseModelRecord", "ResultSummary", "ModelRecord", "FactRange",
           "current", "find_summaries", "none_found"]
