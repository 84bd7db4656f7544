"""Training stage of the memorize-then-generalize framework (SPEC §5).

Modules by concept: `schema` (structured config), `selection` (relation-id syntax, fact range),
`texts` (text assembly with spans), `occurrences` + `masking` (loss-mode labels), `keytokens`,
`dataset` + `collator`, `loss` (LM head at label positions), `trainer` (thin HF Trainer
subclass), `callbacks`, `hfargs`, `base` (the starting model), `naming`, `confighash`,
`rundir` (run directory, manifest, checkpoints, resume), `preview`, `curves`, `memcheck`,
and `run` (one stage end to end, the task behind `training/train.py`).
"""
