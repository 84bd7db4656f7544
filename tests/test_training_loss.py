"""The LM head at label positions gives the standard causal-LM loss (fp32, within 1e-5)."""
from __future__ import annotations

import torch
from conftest import tiny_model

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
    assert lossfn.head_is_plain(model) and lossfn.accepts_logits_to_keep(model)


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
