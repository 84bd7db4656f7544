"""Training stage of the memorize-then-generalize framework (SPEC §5).

Modules by concept: `schema` (structured config), `selection` (relations and fact range),
`texts` (text assembly with spans), `occurrences` + `masking` (loss-mode labels),
`dataset` + `collator`, `loss` (LM head at label positions), `trainer` (thin HF Trainer
subclass), `callbacks`, `hfargs`, `base` (the starting model), `naming`, `confighash`,
`rundir` (run directory, checkpoints, resume), `bookkeeping` (move, register, record), `preview`, `curves`, `memcheck`,
and `run` (one stage end to end, the task behind `training/train.py`). Shared with the other
stages (`util_public/`): `artifacts` (the manifest and mtg_meta.json), `keytokens`, `relspec`,
`tokenspans` (spans, padding), `lmhead`.
"""
