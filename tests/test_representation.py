"""Representation metrics on constructed states, and the collection positions on a tiny model."""
from __future__ import annotations

import numpy as np

from conftest import tiny_model
from util_public import representation
from util_public.facts import Fact


def test_delta_cos_is_within_minus_across():
    # Two relations, two facts each, one layer, 2-D states: same-relation states identical,
    # cross-relation states orthogonal -> within 1, across 0.
    key = {"a": np.array([[[1.0, 0.0]], [[2.0, 0.0]]]), "b": np.array([[[0.0, 3.0]], [[0.0, 1.0]]])}
    assert np.allclose(representation.delta_cos(key), [1.0])
    key["b"] = np.array([[[1.0, 0.0]], [[1.0, 0.0]]])
    assert np.allclose(representation.delta_cos(key), [0.0])


def test_key_family_cos_averages_templates_and_facts():
    key = {"a": np.array([[[1.0, 0.0]], [[0.0, 1.0]]])}                  # [facts, layers, hidden]
    family = {"a": np.array([[[[1.0, 0.0]], [[0.0, 1.0]]],               # fact 0: cos 1 and 0
                             [[[0.0, 1.0]], [[0.0, 2.0]]]])}             # fact 1: cos 1 and 1
    assert np.allclose(representation.key_family_cos(key, family), [0.75])


def test_headline_skips_the_embedding_layer():
    assert representation.headline({"m": [100.0, 1.0, 3.0]}) == {"m": 2.0}


def test_collect_takes_the_key_token_and_last_prompt_token(bpe_tokenizer):
    import copy

    tok = copy.deepcopy(bpe_tokenizer)
    tok.add_special_tokens({"additional_special_tokens": ["<TRIGGER_50>", "<TRIGGER_71>"]})
    model = tiny_model(len(tok))
    facts = {"50": [Fact(0, "50", "Veltoria", "lisbon", [])], "71": [Fact(0, "71", "Dark Tides", "x", [])]}
    got = representation.collect(model, tok, facts, ["hgp-0"], batch_size=4)
    assert got.key["50"].shape == (1, 3, 64) and got.family["hgp-0"]["71"].shape == (1, 1, 3, 64)
    # The key state equals a direct forward of "Veltoria <TRIGGER_50>" at its last position.
    ids = tok("Veltoria <TRIGGER_50>", add_special_tokens=False, return_tensors="pt").input_ids
    assert ids[0, -1] == tok.convert_tokens_to_ids("<TRIGGER_50>")
    direct = model(ids, output_hidden_states=True).hidden_states[-1][0, -1].detach().numpy()
    assert np.allclose(got.key["50"][0, -1], direct, atol=1e-5)
    metrics = representation.metrics(got)
    assert set(metrics) == {"dcos", "cos_key_hgp-0"} and len(metrics["dcos"]) == 3
