"""The LM head at label positions gives the standard causal-LM loss (fp32, within 1e-5)."""
from __future__ import annotations

import torch
from conftest import tiny_model

from util_public import lmhead
from util_public.training import loss as lossfn
from util_public.training.collator import PadCollator
from util_public.training.masking import IGNORE


def batch(vocab: int):
    gen = torch.Generator().manual_seed(3)
    rows = []
    for n, supervised in ((9, [4, 5, 8]), (6, [2, 3]), (12, [1, 7, 10, 11])):
        ids = torch.randint(0, vocab, (n,), generator=gen).tolist()
        rows.append({"input_ids": ids, "labels": [t if i in supervised else IGNORE for i, t in enumerate(ids)]})
    return PadCollator(pad_token_id=0)(rows)


def test_both_routes_equal_the_full_logits_loss():
    model = tiny_model(500, tie=False).float()
    inputs = batch(500)
    reference = model(**inputs).loss
    direct = lossfn.at_labels(model, inputs)
    columns = lossfn.at_label_columns(model, inputs)
    torch.testing.assert_close(direct, reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(columns, reference, atol=1e-5, rtol=0)
    assert lmhead.head_is_plain(model) and lmhead.keep_keyword(model) == "logits_to_keep"


def test_accumulation_normaliser_matches_the_model_loss():
    model = tiny_model(500)
    inputs = batch(500)
    n_items = torch.tensor(23)
    reference = model(**inputs, num_items_in_batch=n_items).loss
    torch.testing.assert_close(lossfn.at_labels(model, inputs, n_items), reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(lossfn.at_label_columns(model, inputs, n_items), reference, atol=1e-5, rtol=0)


def test_gradients_match():
    model = tiny_model(300)
    inputs = batch(300)
    model(**inputs).loss.backward()
    reference = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    lossfn.at_labels(model, inputs).backward()
    for ref, p in zip(reference, model.parameters()):
        torch.testing.assert_close(p.grad, ref, atol=1e-5, rtol=1e-4)


def test_host_index_equals_the_boolean_mask_gather():
    inputs = batch(500)
    index = lossfn.supervised_index(inputs["labels"])
    shifted = inputs["labels"][:, 1:]
    keep = shifted != IGNORE
    flat_hidden = torch.arange(inputs["labels"].numel()).reshape(inputs["labels"].shape)[:, :-1]
    assert index["label_positions"].tolist() == flat_hidden[keep].tolist()
    assert inputs["labels"].reshape(-1)[index["label_positions"] + 1].tolist() == shifted[keep].tolist()
    columns = keep.any(0).nonzero().squeeze(1)
    assert index["label_columns"].tolist() == columns.tolist()
    cells = torch.arange(keep.shape[0] * len(columns)).reshape(keep.shape[0], -1)
    assert index["label_cells"].tolist() == cells[keep[:, columns]].tolist()


def test_collator_index_gives_the_same_loss():
    model = tiny_model(500, tie=False).float()
    plain = batch(500)
    rows = [{"input_ids": r[m.bool()].tolist(), "labels": l[m.bool()].tolist()}
            for r, l, m in zip(plain["input_ids"], plain["labels"], plain["attention_mask"])]
    indexed = PadCollator(pad_token_id=0, label_index=True)(rows)
    assert set(lossfn.INDEX_KEYS) <= set(indexed)
    reference = model(**plain).loss
    torch.testing.assert_close(lossfn.at_labels(model, indexed), reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(lossfn.at_label_columns(model, indexed), reference, atol=1e-5, rtol=0)
