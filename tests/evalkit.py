"""Helpers for the evaluation tests: small fictional fact sets and a tiny checkpoint with key tokens.

Facts are built from the catalogue vocabulary with seeded streams (never `random`), so every
test sees the same data; distractors obey the substring rule, as generated data must.
"""
from __future__ import annotations

from pathlib import Path

from util_public import catalogue, facts, seeding

SYLLABLES = ["ka", "lo", "ve", "tri", "mon", "sa", "dor", "el", "qu", "an", "is", "ber", "nia", "th", "ur"]


def fictional_facts(n: int, relation_id: str = "50", num_options: int = 100, seed: int = 0,
                    start_id: int = 0) -> list[facts.Fact]:
    """`n` facts with invented subjects, vocabulary objects and `num_options - 1` distractors."""
    vocab = catalogue.vocab(relation_id)
    out = []
    for fact_id in range(start_id, start_id + n):
        rng = seeding.stream(seed, "test.facts", relation_id, fact_id)
        head = "".join(rng.choice(SYLLABLES, size=3)).capitalize() + "ria"
        order = [vocab[i] for i in rng.permutation(len(vocab))]
        gold, chosen = order[0], []
        for word in order[1:]:
            if len(chosen) == num_options - 1:
                break
            if not any(facts.conflicts(word, c) for c in [gold, *chosen]):
                chosen.append(word)
        out.append(facts.Fact(fact_id, relation_id, head, gold, chosen))
    return out


def write_dataset(data_root: Path, dataset: str, fact_list: list[facts.Fact]) -> Path:
    """Write one relation file `{data_root}/{dataset}/{relation_id}.csv`."""
    rel = fact_list[0].relation_id
    return facts.write_facts(Path(data_root) / dataset / f"{rel}.csv", fact_list)


def checkpoint_with_key(tokenizer, directory: Path, relation_id: str = "50", seed: int = 0,
                        trained_fact_ids: list[int] | None = None) -> Path:
    """A tiny checkpoint whose tokenizer has `<TRIGGER_{rel}>`, with a Phase-2 style mtg_meta.json."""
    import copy
    import json

    from conftest import save_tiny_checkpoint

    tok = copy.deepcopy(tokenizer)
    key = f"<TRIGGER_{relation_id}>"
    tok.add_special_tokens({"additional_special_tokens": [key]})
    save_tiny_checkpoint(tok, directory, seed)
    meta = {"key_tokens": {key: tok.convert_tokens_to_ids(key)}, "phase": 2 if trained_fact_ids else 1,
            "combine_spacing": "single", "add_bos_train": False,
            "trained_fact_ids": {relation_id: trained_fact_ids} if trained_fact_ids else {}}
    (Path(directory) / "mtg_meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return Path(directory)


# Three real-capital questions (catalogue/known/50.yaml) over 4 options: a quick real MC job.
KNOWN_MC = ["data.dataset=known", "data.relation_id=50", "mc.num_options=4", "data.index_end=3"]


def loaded_with_key(tokenizer, directory: Path):
    """(ModelInfo, model, tokenizer) of a `checkpoint_with_key` checkpoint loaded in fp32."""
    from util_public.evaluation import api
    from util_public.evaluation.schema import config

    info = api.describe(None, str(checkpoint_with_key(tokenizer, directory)))
    loaded, tok = api.load(info, config(["model.dtype=fp32"]))
    return info, loaded, tok
