"""Evaluation of trained models (SPEC §6): what to score is separate from how it is scored.

- `contexts`, `ic_lke`: the prompt strings per fact and prompt type;
- `requests`: (context ids, continuation ids) pairs from ONE tokenisation of the joined string;
- `backends`: `hf` and `vllm`, both returning `records.ScoreRecord`s;
- `metrics`, `generation`, `loss_probe`: per-fact records and per-slice summaries;
- `results`, `report`: the result directories (SPEC §3.6) and their tables and charts;
- `api.evaluate`: one loaded model, several prompt types and tasks, in-process;
- `runner`: the Hydra entry points' logic (validate everything, then load the model once).
"""
