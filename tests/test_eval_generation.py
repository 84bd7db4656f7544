"""Generation accuracy (SPEC §6.4): matchers, visible key tokens, batching, the fact-id join."""
from __future__ import annotations

import copy

import pytest
import torch

from conftest import tiny_model
from evalkit import fictional_facts
from util_public import greedy
from util_public.evaluation import api, generation
from util_public.evaluation.backends.hf import HFBackend
from util_public.evaluation.modelinfo import ModelInfo
from util_public.evaluation.plan import FactSet


@pytest.mark.parametrize("response,exact,prefix,contains", [
    (" Lisbon.", True, True, True),
    (" lisbon\nThe next", True, True, True),
    (" Lisbon. It is big", True, True, True),
    (" Lisbon is a city", False, True, True),
    (" Lisbonia", False, False, True),
    (" It is Lisbon.", False, False, True),
    (" LISBON", True, True, True),
    ("\u3000Lisbon", True, True, True),          # NFKC turns the ideographic space into a space
    (" Oslo", False, False, False),
    (" Lisbon.5", False, True, True),
])
def test_matchers(response, exact, prefix, contains):
    assert generation.exact(response, "lisbon") is exact
    assert generation.prefix(response, "lisbon") is prefix
    assert generation.contains(response, "lisbon") is contains


def test_contains_drops_punctuation_from_the_gold():
    assert generation.contains(" st johns is the answer", "st. john's".replace("'", ""))


@pytest.mark.parametrize("response,gold,expected", [
    (" j. k. rowling.", "j. k. rowling", True),        # the gold's own '.' and ',' no longer block it
    (" J. K. Rowling wrote it", "j. k. rowling", True),
    (" j.k. rowling", "j. k. rowling", True),
    (" washington, d.c.", "washington, d.c.", True),
    (" st. louis", "st louis", True),
    (" 12:30", "12:30", True),
    (" j. k. rowlings", "j. k. rowling", True),          # a substring still counts (the original's rule)
    (" k. rowling", "j. k. rowling", False),
    (" rowling", "j. k. rowling", False),
    (" ...", "j. k. rowling", False),
    (" USA", "u.s.a.", True),                  # deleted, not spaced: "usa" (spaced, "u s a" never matched)
    (" Washington DC", "washington, d.c.", True),
    (" 1000 people", "1,000", True),
    (" 1 000 people", "1,000", True),
    (" about 1.5 million", "15", False),       # the response keeps its punctuation: "1.5" is not "15"
    (" at 10:30", "1030", False),
])
def test_contains_normalises_gold_and_response_alike(response, gold, expected):
    assert generation.contains(response, gold) is expected


@pytest.mark.parametrize("response,gold,expected", [
    (" Tell us more about it", "u.s.", False),  # deleting the dots made the pronoun an emission of "U.S."
    (" It was founded in 1990", "i.t.", False),
    (" the U.S. said", "u.s.", True),
    (" J.K. Rowling wrote", "j. k. rowling", True),
    (" st. louis", "st louis", True),
])
def test_emission_needs_the_object_as_written_apart_from_spacing(response, gold, expected):
    assert generation.emitted(response, gold) is expected


RESPONSES = [" USA.", " u.s.a", " U. S. A.", " 1,000", " 1000", " 1 000", " st. louis", " St Louis!", " J.K. Rowling",
             " j. k. rowling.", " Washington, D.C.", " washington dc", " 12:30", " 1230", " f. scott fitzgerald"]
GOLDS = ["u.s.a.", "usa", "1,000", "st. louis", "st louis", "j. k. rowling", "washington, d.c.", "12:30",
         "f. scott fitzgerald"]


def test_contains_credits_every_response_the_originals_rule_credits():
    """SPEC §6.4: the gold with ':', ',' and '.' deleted, a substring of the response (normalised).
    Spacing the punctuation in both strings alone was stricter than that: "USA" missed "u.s.a."."""
    from util_public.matching import _normal

    for response in RESPONSES:
        for gold in GOLDS:
            original = " ".join("".join(c for c in _normal(gold) if c not in ":,.").split()) in _normal(response)
            assert generation.contains(response, gold) or not original, (response, gold)


def test_key_tokens_stay_visible_in_responses(bpe_tokenizer):
    tok = copy.deepcopy(bpe_tokenizer)
    tok.add_special_tokens({"additional_special_tokens": ["<TRIGGER_50>"]})
    fact = fictional_facts(1)[0]
    ids = tok(" <TRIGGER_50> " + fact.object + ".", add_special_tokens=False)["input_ids"]
    rec = generation.record(fact, "p", ids, tok, None)
    assert "<TRIGGER_50>" in rec["response"]
    assert not rec["exact"] and not rec["prefix"] and rec["contains"]
    # what skip_special_tokens would have produced counts as exact: the reason it is not used
    assert generation.exact(tok.decode(ids, skip_special_tokens=True), fact.object)


GEN_PROMPTS = ["The capital of Veltoria is", "Hi", "The seat of government of Ka is located in"]


def test_batched_left_padded_generation_equals_one_by_one(bpe_tokenizer):
    """The untied LM head makes the tiny model's answers depend on the context (a tied one repeats
    the prompt's last token whatever it attends to, so attending to the padding went unnoticed)."""
    model = tiny_model(len(bpe_tokenizer), seed=2, tie=False)
    prompts = [bpe_tokenizer(t, add_special_tokens=False)["input_ids"] for t in GEN_PROMPTS]
    batched = HFBackend(model, bpe_tokenizer, gen_batch_size=3).generate(prompts, 6)
    alone = [HFBackend(model, bpe_tokenizer, gen_batch_size=1).generate([p], 6)[0] for p in prompts]
    assert batched == alone and all(len(r) == 6 for r in batched)
    assert all(len(set(r)) > 1 for r in alone)        # not one token repeated: the context matters


@pytest.mark.parametrize("budget, batch, calls", [
    (lambda w: 10_000, 64, [3]),            # all three prompts in one call
    (lambda w: 10_000, 2, [2, 1]),          # the count limit
    (lambda w: 2 * w[1], 64, [2, 1]),       # the token limit: two rows as wide as the second
    (lambda w: 2 * w[1] - 1, 64, [1, 1, 1]),    # one token less: no two rows fit
    (lambda w: 1, 64, [1, 1, 1]),           # a budget below one row still makes progress
])
def test_generation_batches_within_the_token_budget(bpe_tokenizer, monkeypatch, budget, batch, calls):
    """Prompts per generate call: at most `gen_batch_size`, and at most `gen_tokens_per_call` padded
    tokens (prompt + new tokens of the widest row, times the rows); the answers never change."""
    max_new = 6
    model = tiny_model(len(bpe_tokenizer), seed=2, tie=False)
    prompts = [bpe_tokenizer(t, add_special_tokens=False)["input_ids"] for t in GEN_PROMPTS]
    widths = sorted(len(p) + max_new for p in prompts)
    assert widths[0] < widths[1] < widths[2]
    budget = budget(widths)
    alone = [HFBackend(model, bpe_tokenizer, gen_batch_size=1).generate([p], max_new)[0] for p in prompts]
    seen: list[int] = []
    real = greedy.generate
    monkeypatch.setattr(greedy, "generate", lambda m, ids, *a, **k: seen.append(len(ids)) or real(m, ids, *a, **k))
    backend = HFBackend(model, bpe_tokenizer, gen_batch_size=batch, gen_tokens_per_call=budget)
    assert backend.generate(prompts, max_new) == alone
    assert seen == calls


def test_long_prompts_still_share_a_call_on_a_cpu(bpe_tokenizer, monkeypatch):
    """The CPU's default budget keeps 16 prompts of ~1,000 tokens (+ 24 new) in one call, as the old
    count limit did (the scoring budget, 1,024 tokens, would have made it one prompt per call)."""
    model = tiny_model(len(bpe_tokenizer), seed=2, tie=False)
    model.config.max_position_embeddings = 4096
    seen: list[int] = []

    def fake(m, ids, mask, new, *a, **k):
        seen.append(len(ids))
        return torch.cat([ids, torch.zeros((len(ids), new), dtype=ids.dtype)], dim=1)

    monkeypatch.setattr(greedy, "generate", fake)
    backend = HFBackend(model, bpe_tokenizer)
    assert backend.device.type == "cpu"
    backend.generate([[5] * 1000] * 20, 24)
    assert seen == [16, 4]
    seen.clear()
    backend.generate([[5] * 10] * 130, 8)          # the demo's short prompts: the count limit, 64
    assert seen == [64, 64, 2]


@pytest.mark.parametrize("listed", ["alone", "second of two"])   # Qwen2.5's config lists two EOS
def test_a_response_ends_before_the_first_stop_token(bpe_tokenizer, listed):
    """The continuation is cut at the first EOS of the checkpoint's generation config (or the
    tokenizer's): neither EOS nor the padding after it reaches the response."""
    model = tiny_model(len(bpe_tokenizer), seed=2, tie=False)
    prompts = [bpe_tokenizer(t, add_special_tokens=False)["input_ids"] for t in GEN_PROMPTS]
    backend = HFBackend(model, bpe_tokenizer, gen_batch_size=3)
    free = backend.generate(prompts, 6)
    k, stop = next((k, r[k]) for r in free for k in range(1, 6) if r[k] not in r[:k])
    unused = next(t for t in range(len(bpe_tokenizer)) if all(t not in r for r in free))
    model.generation_config.eos_token_id = stop if listed == "alone" else [unused, stop]
    cut = backend.generate(prompts, 6)
    assert cut == [r[:r.index(stop)] if stop in r else r for r in free]
    assert any(len(r) == k for r in cut) and not any(stop in r for r in cut)


@pytest.mark.parametrize("field,value", [("repetition_penalty", 5.0), ("no_repeat_ngram_size", 1),
                                         ("bad_words_ids", lambda first: [[first]]),
                                         ("suppress_tokens", lambda first: [first])])
def test_greedy_ignores_the_checkpoints_generation_defaults(sp_tokenizer, field, value):
    model = tiny_model(len(sp_tokenizer), seed=3)
    prompt = sp_tokenizer("The capital of Ka is lo ve tri", add_special_tokens=False)["input_ids"]
    backend = HFBackend(model, sp_tokenizer)
    clean = backend.generate([prompt], 6)[0]
    assert len(set(clean)) < len(clean)       # the plain greedy answer repeats a token: penalties bite
    value = value(clean[0]) if callable(value) else value     # a ban on the answer's first token
    setattr(model.generation_config, field, value)    # as an instruct checkpoint's generation_config.json
    ids = torch.tensor([prompt])
    raw = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                         pad_token_id=backend.pad_id)[0, len(prompt):].tolist()
    assert raw != clean                       # transformers applies it when left unset ...
    assert backend.generate([prompt], 6)[0] == clean            # ... our greedy calls do not
    assert greedy.generate(model, ids, torch.ones_like(ids), 6)[0, len(prompt):].tolist() == clean
    assert getattr(model.generation_config, field) == value     # and the checkpoint's config is restored


class EchoBackend:
    """Answers each prompt with its own fact's object: any misaligned join shows as a wrong answer."""
    name = "hf"
    facts_per_call = 16
    max_len = None

    def __init__(self, tokenizer, facts):
        self.tokenizer = tokenizer
        self.answers = {f.head: f.object for f in facts}

    def versions(self):
        return {"backend": "echo", "dtype": "float32"}

    def score(self, requests):
        raise AssertionError("not used")

    token_logprobs = score

    def generate(self, prompts, max_new_tokens):
        out = []
        for ids in prompts:
            text = self.tokenizer.decode(ids)
            head = next(h for h in self.answers if h in text)
            out.append(self.tokenizer(" " + self.answers[head] + ".", add_special_tokens=False)["input_ids"])
        return out


def test_generation_records_join_by_fact_id_with_a_late_slice(bpe_tokenizer, isolated_roots):
    facts = fictional_facts(12)
    cfg = api.config(["data.index_begin=5", "data.index_end=12", "data.seen_fact_ids=0:8"])
    summaries = api.evaluate(EchoBackend(bpe_tokenizer, facts), bpe_tokenizer, ModelInfo("echo", "/nonexistent"),
                             FactSet("50", "toy", None, facts), ["hgp-0"], ["gen"], cfg)
    [summary] = summaries
    assert summary["metrics"]["all"] == {"n": 7, "exact": 1.0, "prefix": 1.0, "contains": 1.0, "emission": 1.0}
    assert summary["metrics"]["seen"]["n"] == 3 and summary["metrics"]["unseen"]["n"] == 4
    from util_public.atomicio import read_jsonl

    records = read_jsonl(f"{summary['directory']}/records.jsonl")
    assert [r["fact_id"] for r in records] == list(range(5, 12))
    assert all(r["subject"] in r["prompt"] and r["response"] == f" {r['object']}." for r in records)
