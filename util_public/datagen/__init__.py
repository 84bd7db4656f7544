"""Stage 1, data generation (SPEC §4): fictional fact datasets, imports of the public data, and
derived (reverse / chain) datasets.

Entry: `run.run(schema.load(cfg))` (what `data_generation/generate.py` calls). Modules by concept:
`schema` (config), `names` (offline fictional names), `vocab` (object vocabularies, assignment),
`distractors` (§4.3), `wiki` (template paragraphs), `llm` (openai client, replay cache, name loop),
`generation` / `importer` / `derive` (the three modes), `outputs` and `manifest` (writing).
"""
