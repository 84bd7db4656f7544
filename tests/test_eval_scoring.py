"""The HF backend's fast paths equal a straightforward reference, and metrics follow SPEC §6.3."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import tiny_model
from util_public.evaluation import metrics
from util_public.evaluation import requests as rq
from util_public.evaluation.backends.hf import HFBackend
from util_public.errors import UserError
from util_public.evaluation.records import ScoreRecord

CONTEXTS = ["The capital of Trikaberria is", "Lomonsaria's capital is", "The seat of government of Ka is in"]
MULTI = ["damascus", "port louis", "st. john's", "oslo", "kuala lumpur", "x", "ulaanbaatar"]


@pytest.fixture(scope="module")
def models():
    """One tiny fp32 model per tokenizer size (built once: the vocabularies differ)."""
    return {}


def _model(models, tokenizer):
    size = len(tokenizer)
    if size not in models:
        models[size] = tiny_model(size, seed=1)
    return models[size]


def reference(model, req) -> tuple[float, bool]:
    """Full sequence, no cache, full-vocabulary log-softmax at every position, summed in fp64."""
    ids = torch.tensor([list(req.context + req.continuation)])
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    total, greedy = 0.0, True
    for pos in range(len(req.context), ids.shape[1]):
        total += float(lp[pos - 1, ids[0, pos]])
        greedy &= bool(lp[pos - 1].argmax() == ids[0, pos])
    return total, greedy


def _requests(tokenizer, options, bos):
    return [rq.split(tokenizer, ctx, " " + o, bos, (c, i))
            for c, ctx in enumerate(CONTEXTS) for i, o in enumerate(options)]


def _assert_matches_reference(model, reqs, records):
    assert [r.key for r in records] == [q.key for q in reqs]
    for req, rec in zip(reqs, records):
        ref, greedy = reference(model, req)
        assert rec.sum_logprob == pytest.approx(ref, abs=1e-4), req.key
        assert rec.n_tokens == len(req.continuation) and rec.is_greedy == greedy


def test_prefix_kv_equals_reference_for_multi_token_options(tokenizer, models):
    model = _model(models, tokenizer)
    reqs = _requests(tokenizer, MULTI, rq.bos_prefix(tokenizer, "auto"))
    assert max(len(r.continuation) for r in reqs) > 2
    # a batch size of 2 questions splits the 3 questions over two forwards of different widths
    _assert_matches_reference(model, reqs, HFBackend(model, tokenizer, batch_size=2).score(reqs))


def test_single_token_path_equals_reference(tokenizer, models):
    model = _model(models, tokenizer)
    singles = [o for o in ["is", "the", "of", "capital", "a", "in"]
               if len(tokenizer(" " + o, add_special_tokens=False)["input_ids"]) == 1]
    reqs = _requests(tokenizer, singles, [])
    assert len(singles) >= 3 and all(len(r.continuation) == 1 for r in reqs)
    backend = HFBackend(model, tokenizer, batch_size=2)
    calls = []
    handle = model.get_decoder().register_forward_hook(lambda *a: calls.append(1))   # the transformer body
    try:
        records = backend.score(reqs)
    finally:
        handle.remove()
    assert len(calls) == 2        # one forward per context batch (3 contexts, batch 2), not per option
    _assert_matches_reference(model, reqs, records)


def test_boundary_merge_falls_back_to_full_rows(tokenizer, models):
    model = _model(models, tokenizer)
    reqs = [rq.split(tokenizer, "The capital of Fra", x, [], ("m", i)) for i, x in enumerate(["nce", "ncia", " x"])]
    assert reqs[0].boundary_merge and not reqs[2].boundary_merge
    records = HFBackend(model, tokenizer).score(reqs)
    assert records[0].boundary_merge
    _assert_matches_reference(model, reqs, records)


def test_questions_longer_than_a_sliding_window_are_scored_as_the_model_attends(sp_tokenizer):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    model = Gemma3ForCausalLM(Gemma3TextConfig(
        vocab_size=len(sp_tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=4,
        layer_types=["sliding_attention", "full_attention"])).eval()
    ctx = "The capital of Trikaberria is known to the people of Lomonsaria as"
    reqs = [rq.split(sp_tokenizer, ctx, " " + o, [1], i) for i, o in enumerate(["damascus", "oslo"])]
    assert len(reqs[0].context) > 4 * 4          # the window limits what the first layer sees
    _assert_matches_reference(model, reqs, HFBackend(model, sp_tokenizer).score(reqs))


def test_score_equals_hand_computed_log_softmax_sum(bpe_tokenizer, models):
    model = _model(models, bpe_tokenizer)
    req = rq.split(bpe_tokenizer, "The capital of Trikaberria is", " port louis", [])
    ids = list(req.context + req.continuation)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    by_hand = sum(float(logits[p - 1, ids[p]] - torch.logsumexp(logits[p - 1], 0)) for p in range(len(req.context), len(ids)))
    assert HFBackend(model, bpe_tokenizer).score([req])[0].sum_logprob == pytest.approx(by_hand, abs=1e-4)


def _records(scores, chars=None):
    chars = chars or [5] * len(scores)
    return [ScoreRecord(i, s, s, 1, c, False) for i, (s, c) in enumerate(zip(scores, chars))]


@pytest.mark.parametrize("gold", [0, 2])
def test_ties_count_as_wrong_and_are_reported(gold):
    """Wherever the gold sits, a tie is wrong, and the prediction is the tied other option (the
    arg-max with the gold last), never the gold beside correct=False. gold_rank counts only strictly
    better options (SPEC §6.3)."""
    fact = metrics.mc_fact(_records([-1.0, -2.0, -1.0]), gold=gold)
    assert fact["tie"] and not fact["correct"] and fact["gold_rank"] == 1
    assert fact["pred_index"] == 2 - gold and fact["pred_index_norm"] == 2 - gold and not fact["correct_norm"]
    assert metrics.summarize("mc", [{**fact, "seen": None}])["all"]["n_ties"] == 1


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_score_that_is_not_a_log_probability_stops_the_evaluation(bad):
    with pytest.raises(UserError, match="fact_id 7: option scores are not log-probabilities"):
        metrics.mc_fact(_records([-1.0, bad, -3.0]), gold=0, where="hgp-0 relation 50 fact_id 7")
    assert metrics.mc_fact(_records([-1.0, -math.inf]), gold=0)["correct"]     # probability 0 is one


def test_correctness_is_independent_of_gold_position():
    scores = [-3.0, -0.5, -2.0, -4.0]
    for gold in range(4):
        moved = scores[:]
        moved.insert(gold, moved.pop(1))
        out = metrics.mc_fact(_records(moved), gold)
        assert out["correct"] and out["gold_rank"] == 1
        assert out["gold_prob"] == pytest.approx(math.exp(-0.5) / sum(math.exp(s) for s in scores))


def test_tiny_probabilities_stay_finite():
    out = metrics.mc_fact(_records([-2000.0, -2100.0, -1999.0]), gold=2)
    assert out["correct"] and 0.5 < out["gold_prob"] < 1.0 and math.isfinite(out["gold_logprob"])
    summary = metrics.summarize("mc", [{**out, "seen": None}])["all"]
    assert summary["gold_prob_raw"] == 0.0 and summary["prob_mass"] == pytest.approx(out["gold_prob"])


def test_acc_norm_divides_by_characters():
    # the gold loses on the raw sum but wins per character (a long option)
    out = metrics.mc_fact(_records([-2.0, -3.0], chars=[2, 10]), gold=1)
    assert not out["correct"] and out["correct_norm"]


def test_slices_report_seen_unseen_and_empty_slices(capsys):
    rows = [{**metrics.mc_fact(_records([-1.0, -2.0]), 0), "seen": True},
            {**metrics.mc_fact(_records([-1.0, -2.0]), 1), "seen": True}]
    out = metrics.summarize("mc", rows, "test")
    assert out["seen"]["n"] == 2 and out["seen"]["accuracy"] == 0.5
    assert out["unseen"] == {"n": 0, **{k: None for k in metrics.MC_METRICS}}
    assert "slice 'unseen' is empty" in capsys.readouterr().err
    assert set(metrics.summarize("mc", [{**rows[0], "seen": None}])) == {"all"}


@pytest.mark.parametrize("tokens_per_forward, logit_rows, plain_head", [(1, 3, True), (10_000, 1000, False)])
def test_tree_rows_equal_reference_at_any_batching(bpe_tokenizer, models, tokens_per_forward, logit_rows, plain_head):
    """One question per forward or all in one (padded tree rows); logits read in chunks of 3
    positions (pairs spanning chunk borders) or through the model's own forward."""
    model = _model(models, bpe_tokenizer)
    reqs = _requests(bpe_tokenizer, MULTI + ["is"], [])
    backend = HFBackend(model, bpe_tokenizer, tokens_per_forward=tokens_per_forward)
    backend.logit_rows, backend.plain_head = logit_rows, plain_head
    _assert_matches_reference(model, reqs, backend.score(reqs))


@pytest.mark.parametrize("shape", ["sequences sharing their first token", "many long options of one context"])
def test_no_forward_exceeds_the_token_budget_when_rows_fit(bpe_tokenizer, models, shape):
    """All loss-probe sequences (context: their first token) went into one tree row: 64 facts of 158
    tokens made a row 10,038 wide whatever the budget. Each forward now holds at most the budget's
    tokens, and scores equal the reference."""
    model = _model(models, bpe_tokenizer)
    if shape.startswith("sequences"):
        texts = [f"The {o} lies near {MULTI[-1 - i]}, beside {o} and {MULTI[i]}." for i, o in enumerate(MULTI)]
        reqs = [rq.Request(i, tuple(ids[:1]), tuple(ids[1:]), 0) for i, t in enumerate(texts)
                for ids in [bpe_tokenizer(t, add_special_tokens=False).input_ids]]
    else:
        reqs = [rq.split(bpe_tokenizer, CONTEXTS[0], f" {o} of {p} by {o}", [], (i, j))
                for i, o in enumerate(MULTI) for j, p in enumerate(MULTI)]
    widths = []
    hook = model.get_input_embeddings().register_forward_hook(lambda _, args, out: widths.append(args[0].numel()))
    budget = 60
    try:
        records = HFBackend(model, bpe_tokenizer, tokens_per_forward=budget).score(reqs)
    finally:
        hook.remove()
    assert max(len(r.context) + len(r.continuation) for r in reqs) <= budget < sum(len(r.continuation) for r in reqs)
    assert max(widths) <= budget, widths
    _assert_matches_reference(model, reqs, records)


def test_per_token_logprobs_agree_with_records(bpe_tokenizer, models):
    """`token_logprobs` (the loss probe's path) and `score` (per-request sums built from array
    segments) read the same positions: each record is the fp64 sum of its tokens, and greedy
    when every token is, and carries its first token's value, for tree rows and boundary-merge
    full rows alike."""
    model = _model(models, bpe_tokenizer)
    reqs = _requests(bpe_tokenizer, MULTI, []) + [
        rq.split(bpe_tokenizer, "The capital of Fra", x, [], ("m", i)) for i, x in enumerate(["nce", " x y"])]
    backend = HFBackend(model, bpe_tokenizer, tokens_per_forward=40)   # several forwards
    backend.logit_rows = 5
    per_token, records = backend.token_logprobs(reqs), backend.score(reqs)
    for req, (values, flags), rec in zip(reqs, per_token, records):
        assert len(values) == len(flags) == len(req.continuation) == rec.n_tokens
        assert rec.sum_logprob == pytest.approx(math.fsum(values), abs=1e-9)
        assert rec.first_logprob == pytest.approx(values[0], abs=1e-9)
        assert rec.is_greedy == all(flags)
    assert any(len(v) > 1 for v, _ in per_token)
    _assert_matches_reference(model, reqs, records)
