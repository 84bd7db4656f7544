"""What is scored: one tokenisation of the joined string, split at the character boundary."""
from __future__ import annotations

import pytest

from evalkit import fictional_facts
from util_public.errors import UserError
from util_public.evaluation import requests as rq


def _surface(tokenizer, ids) -> str:
    """The text a list of token ids covers, word-boundary markers shown as spaces."""
    pieces = tokenizer.convert_ids_to_tokens(list(ids))
    text = tokenizer.convert_tokens_to_string(pieces) if "Ġ" in "".join(pieces) else "".join(pieces)
    return text.replace("▁", " ")


@pytest.mark.parametrize("context,option", [("The capital of Trikaberria is", "damascus"),
                                            ("The capital of Trikaberria is", "port louis"),
                                            ("Trikaberria's capital is", "st. john's")])
def test_continuation_tokens_cover_exactly_the_separator_and_option(tokenizer, context, option):
    req = rq.split(tokenizer, context, " " + option, bos=[])
    assert not req.boundary_merge
    assert _surface(tokenizer, req.continuation) == " " + option
    assert req.n_chars == len(option) + 1
    # the context ids are the joined string's own tokens, not a separate tokenisation's
    whole = tokenizer(context + " " + option, add_special_tokens=False)["input_ids"]
    assert list(req.context + req.continuation) == whole


def test_trailing_context_spaces_move_into_the_continuation(bpe_tokenizer):
    req = rq.split(bpe_tokenizer, "The capital of Veltoria is ", " oslo", bos=[])
    assert req.n_chars == len("  oslo")
    assert bpe_tokenizer.decode(list(req.context)) == "The capital of Veltoria is"
    assert bpe_tokenizer.decode(list(req.continuation)) == "  oslo"


def test_boundary_merge_is_flagged_and_the_straddling_token_is_scored(tokenizer):
    req = rq.split(tokenizer, "The capital of Fra", "nce", bos=[])
    assert req.boundary_merge
    assert _surface(tokenizer, req.continuation).strip().endswith("nce")
    assert "Fra" not in _surface(tokenizer, req.context)


def test_bos_follows_the_tokenizer_by_default(bpe_tokenizer, sp_tokenizer):
    assert rq.bos_prefix(bpe_tokenizer, "auto") == []           # SmolLM2 adds no BOS
    assert rq.bos_prefix(sp_tokenizer, "auto") == [sp_tokenizer.bos_token_id]   # Llama-style adds one
    assert rq.bos_prefix(sp_tokenizer, False) == []
    assert rq.bos_prefix(bpe_tokenizer, "true") == [bpe_tokenizer.bos_token_id]
    req = rq.split(sp_tokenizer, "Ka is", " oslo", rq.bos_prefix(sp_tokenizer, "auto"))
    assert req.context[0] == sp_tokenizer.bos_token_id and req.context.count(sp_tokenizer.bos_token_id) == 1


def test_a_chat_context_keeps_its_line_break_out_of_the_scored_tokens(bpe_tokenizer):
    # SmolLM2's generation prompt ends "<|im_start|>assistant\n"; the training text has the same
    # line break before " O.", so the option's tokens alone are scored (acc_norm counts them alone).
    context = bpe_tokenizer.apply_chat_template([{"role": "user", "content": "The capital of Ka is"}],
                                                tokenize=False, add_generation_prompt=True)
    assert context.endswith("assistant\n")
    req = rq.split(bpe_tokenizer, context, " oslo", bos=[])
    assert bpe_tokenizer.decode(list(req.continuation)) == " oslo" and req.n_chars == len(" oslo")
    assert bpe_tokenizer.decode(list(req.context)) == context
    assert not req.boundary_merge


@pytest.mark.parametrize("written,asked,expected", [
    (True, "auto", 1), (True, "true", 1), (True, "false", 1),     # the text's BOS, never a second one
    (False, "auto", 1), (False, "true", 1), (False, "false", 0)])
def test_one_bos_when_the_context_text_already_begins_with_it(sp_tokenizer, written, asked, expected):
    bos_id = sp_tokenizer.bos_token_id
    context = (sp_tokenizer.bos_token if written else "") + "<u>The capital of Ka is"    # a chat template's output
    bos = rq.bos_prefix(sp_tokenizer, asked)
    for ids in (rq.split(sp_tokenizer, context, " oslo", bos).context, rq.prompt_ids(sp_tokenizer, context, bos)):
        assert list(ids).count(bos_id) == expected and (ids[0] == bos_id) == bool(expected)


def test_empty_context_without_bos_is_an_error(bpe_tokenizer):
    with pytest.raises(UserError, match="empty context"):
        rq.split(bpe_tokenizer, "  ", " oslo", bos=[])
    assert rq.split(bpe_tokenizer, "", "oslo", bos=[7]).context == (7,)


def test_gold_positions():
    fact = fictional_facts(1, num_options=5)[0]
    opts, gold = rq.mc_options(fact, 5, "last", 0)
    assert gold == 4 and opts[4] == fact.object and opts[:4] == fact.options
    opts, gold = rq.mc_options(fact, 5, "index:1", 0)
    assert gold == 1 and opts[1] == fact.object
    picks = {rq.mc_options(f, 5, "random", 3)[1] for f in fictional_facts(30, num_options=5)}
    assert len(picks) > 1                                            # really random across facts
    assert rq.mc_options(fact, 5, "random", 3) == rq.mc_options(fact, 5, "random", 3)   # seeded per fact
    with pytest.raises(UserError, match="N must be an integer in 0..4"):
        rq.mc_options(fact, 5, "index:9", 0)


def test_bad_option_sets_are_errors():
    fact = fictional_facts(1, num_options=5)[0]
    fact.options[1] = fact.options[0].upper()
    with pytest.raises(UserError, match="duplicate options"):
        rq.mc_options(fact, 5, "last", 0)
    fact = fictional_facts(1, num_options=5)[0]
    fact.options[0] = fact.object
    with pytest.raises(UserError, match="is among the distractors"):
        rq.mc_options(fact, 5, "last", 0)
    with pytest.raises(UserError, match="needs 9"):
        rq.mc_options(fictional_facts(1, num_options=5)[0], 10, "last", 0)
