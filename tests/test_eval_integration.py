"""Golden log-probabilities of the embedded SmolLM2-135M (fp32, CPU) through the scoring core."""
from __future__ import annotations

import pytest
import torch

from util_public import modelio
from util_public.evaluation import requests as rq
from util_public.evaluation.backends.hf import HFBackend

# Measured once with this code (transformers 5.24, torch 2.13 CPU); fp32 drift stays far below 1e-3.
GOLDEN = {"Paris": -0.26061, "London": -4.40585, "Lyon": -7.16605, "Buenos Aires": -12.84008}


@pytest.mark.integration
def test_smollm2_capital_of_france():
    torch.set_num_threads(1)
    path = modelio.resolve("smollm2-135m").path
    tok = modelio.load_tokenizer(path)
    backend = HFBackend(modelio.load_causal_lm(path, "fp32", "cpu"), tok)
    bos = rq.bos_prefix(tok, "auto")
    reqs = [rq.split(tok, "The capital of France is", " " + city, bos, city) for city in GOLDEN]
    records = backend.score(reqs)
    for rec in records:
        assert rec.sum_logprob == pytest.approx(GOLDEN[rec.key], abs=1e-3), rec.key
    assert [r.is_greedy for r in records] == [True, False, False, False]
    assert records[3].n_tokens == 2          # the multi-token option went through the prefix-KV path
