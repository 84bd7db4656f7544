"""Key tokens: added once, reused from our own checkpoints, mean-initialised, never shrinking."""
from __future__ import annotations

import copy

import pytest
import torch
from conftest import tiny_model

from util_public import keytokens
from util_public.artifacts import CheckpointMeta
from util_public.errors import UserError

KEY = "<TRIGGER_50>"


@pytest.fixture
def tok(sp_tokenizer):
    return copy.deepcopy(sp_tokenizer)


def test_added_once_as_special_and_reused_from_our_meta(tok):
    first = keytokens.add(tok, [KEY], None, "base")
    assert first.added == [KEY] and first.ids == {KEY: first.base_vocab} and len(tok) == first.base_vocab + 1
    assert KEY in tok.all_special_tokens
    assert tok.convert_ids_to_tokens(tok("a <TRIGGER_50> b", add_special_tokens=False)["input_ids"]).count(KEY) == 1
    again = keytokens.add(tok, [KEY], CheckpointMeta(key_tokens=first.ids), "phase1-checkpoint")
    assert again.added == [] and again.ids == first.ids and len(tok) == first.base_vocab + 1


def test_a_foreign_token_of_the_same_name_is_an_error(tok):
    tok.add_tokens([KEY])
    with pytest.raises(UserError, match="TRIGGER_50.*not recorded"):
        keytokens.add(tok, [KEY], None, "some/base")
    with pytest.raises(UserError):
        keytokens.add(tok, [KEY], CheckpointMeta(key_tokens={"<TRIGGER_71>": 5}), "some/base")


def test_meta_tokens_are_carried_even_when_not_used(tok):
    first = keytokens.add(tok, [KEY], None, "base")
    carried = keytokens.add(tok, [], CheckpointMeta(key_tokens=first.ids), "ckpt")
    assert carried.ids == first.ids and carried.added == []


@pytest.mark.parametrize("tie", [True, False])
def test_new_rows_are_the_mean_of_the_old_rows(tok, tie):
    model = tiny_model(len(tok), tie=tie)
    before = [m.clone() for m in keytokens._embedding_matrices(model)]
    keys = keytokens.add(tok, [KEY, "<TRIGGER_71>"], None, "base")
    keytokens.resize_and_init(model, tok, keys, "grow_only", "mean")
    after = keytokens._embedding_matrices(model)
    assert len(after) == (1 if tie else 2)
    for old, new in zip(before, after):
        assert new.shape[0] == len(tok)
        torch.testing.assert_close(new[: old.shape[0]], old)
        for token in keys.added:
            torch.testing.assert_close(new[keys.ids[token]], old.mean(dim=0))


def test_grow_only_never_shrinks_and_uses_padded_rows(tok):
    model = tiny_model(len(tok) + 16)        # Qwen-style padded embedding matrix
    padded = model.get_input_embeddings().weight.clone()
    keys = keytokens.add(tok, [KEY], None, "base")
    keytokens.resize_and_init(model, tok, keys, "grow_only", "mean")
    weight = model.get_input_embeddings().weight
    assert weight.shape[0] == padded.shape[0]
    torch.testing.assert_close(weight[keys.ids[KEY]], padded[: keys.base_vocab].mean(dim=0))
    torch.testing.assert_close(weight[keys.ids[KEY] + 1:], padded[keys.ids[KEY] + 1:])


def test_exact_resize_reproduces_the_shrinking_original(tok):
    model = tiny_model(len(tok) + 16)
    keys = keytokens.add(tok, [KEY], None, "base")
    keytokens.resize_and_init(model, tok, keys, "exact", "hf_default")
    assert model.get_input_embeddings().weight.shape[0] == len(tok)


def _keyed_base(tokenizer, directory, key_format: str):
    """A tiny base checkpoint whose key token was trained under `key_format`."""
    import json

    from conftest import save_tiny_checkpoint

    tok = copy.deepcopy(tokenizer)
    key = key_format.replace("{relation_id}", "50")
    tok.add_special_tokens({"additional_special_tokens": [key]})
    save_tiny_checkpoint(tok, directory, 0)
    meta = {"key_tokens": {key: tok.convert_tokens_to_ids(key)}, "key_token_format": key_format, "phase": 1}
    (directory / "mtg_meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return directory, len(tok)


@pytest.mark.parametrize("configured, expected", [
    (None, "<KEY_50>"),                          # the default: the base's format
    ("<KEY_{relation_id}>", "<KEY_50>"),         # the base's own, named
    ("<K{relation_id}>", "differs from '<KEY_{relation_id}>'"),
])
def test_a_stage_keeps_the_key_format_of_its_base(sp_tokenizer, isolated_roots, tmp_path, configured, expected):
    """Phase 2 on a Phase 1 trained with `<KEY_{relation_id}>` recorded the default format and, asked
    for trigger texts, added and trained a new `<TRIGGER_50>` beside the memorized `<KEY_50>`."""
    from evalkit import fictional_facts, write_dataset

    from util_public.training import run

    base, vocab = _keyed_base(sp_tokenizer, tmp_path / "p1", "<KEY_{relation_id}>")
    write_dataset(isolated_roots["data"], "toy", fictional_facts(4, num_options=5))
    overrides = [f"model.base={base}", "data.dataset=toy", "data.index_end=4", "data.train_text_type=trigger-mid",
                 *([f"key_token.format='{configured}'"] if configured else [])]
    if expected.startswith("differs"):
        with pytest.raises(UserError, match=f"key_token.format: .*{expected}"):
            run.examples(run.compose("phase2", overrides))
        return
    tokenizer, encoded = run.examples(run.compose("phase2", overrides))
    assert len(tokenizer) == vocab and all(expected in t.text for t in encoded.texts)
