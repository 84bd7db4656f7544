"""Loss-mode labels from character spans, on both tokenizer styles (SPEC §5.4, §5.5)."""
from __future__ import annotations

import copy

import pytest

from util_public.errors import UserError
from util_public.facts import Fact
from util_public import keytokens
from util_public.training import masking, occurrences, texts
from util_public.training.collator import PadCollator
from util_public.training.masking import IGNORE
from util_public.training.selection import Group, Selection

FACT = Fact(0, "50", "Veloria", "san marino", ["oslo"])


@pytest.fixture
def keyed(tokenizer):
    """A private copy of the tokenizer with <TRIGGER_50> added as a special token."""
    tok = copy.deepcopy(tokenizer)
    keytokens.add(tok, ["<TRIGGER_50>"], None, "test")
    return tok


def one_text(text_type):
    [t] = texts.build(Selection("50", [Group(("50",), [(FACT,)])], []), text_type, texts.Options())
    return t


def labelled_runs(tok, m: masking.Masked) -> list[str]:
    """Decoded runs of consecutive label values (stripped): what the loss sees, piece by piece.
    The label values themselves are decoded (not the input ids at labelled positions), and every
    label must be the token at its own position: the model shifts them, a pre-shifted label is wrong."""
    assert len(m.input_ids) == len(m.labels)
    runs, current = [], []
    for i, (tid, lab) in enumerate(zip(m.input_ids, m.labels)):
        if lab != IGNORE:
            assert lab == tid, f"label at position {i} is {lab}, the token there is {tid}"
            current.append(lab)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [tok.decode(r).strip() for r in runs]


def do_mask(tok, t, mode, **kw):
    return masking.mask(tok, t, mode, specials=tok.all_special_tokens, **kw)


def test_only_an_unknown_piece_standing_in_for_text_is_not_special(sp_tokenizer):
    """SmolLM2's unknown token is <|endoftext|>: the literal token in a text stays special, a
    stand-in for a character the vocabulary lacks does not."""
    from util_public import tokenspans

    lacking = tokenspans.encode(sp_tokenizer, "São")
    assert [s for i, s in zip(lacking.ids, lacking.special) if i == sp_tokenizer.unk_token_id] == [False]
    tok = copy.deepcopy(sp_tokenizer)
    tok.unk_token = tok.eos_token                       # as SmolLM2's
    spelled = tokenspans.encode(tok, f"Paris{tok.eos_token}Rome")
    assert [s for i, s in zip(spelled.ids, spelled.special) if i == tok.eos_token_id] == [True]


def test_an_unknown_piece_inside_the_subject_or_object_is_trained_with_it(sp_tokenizer):
    """The test SentencePiece vocabulary has no "ã": "São" is S, <unk>, o. The <unk> was taken for a
    special token (BOS, a key token) and left out of S and O, so `o` trained "o Tomé"."""
    tok = copy.deepcopy(sp_tokenizer)
    keytokens.add(tok, ["<TRIGGER_50>"], None, "test")
    fact = Fact(0, "50", "São Tomé", "são paulo", ["oslo"])
    [t] = texts.build(Selection("50", [Group(("50",), [(fact,)])], []), "trigger-mid", texts.Options())
    assert tok.unk_token_id in do_mask(tok, t, "normal").input_ids
    assert labelled_runs(tok, do_mask(tok, t, "s-o")) == ["S<unk>o Tomé", "s<unk>o paulo"]
    assert labelled_runs(tok, do_mask(tok, t, "o")) == ["s<unk>o paulo"]


@pytest.mark.parametrize("text_type", ["hgp-0", "trigger-mid"])
def test_modes_decode_to_the_intended_text(keyed, text_type):
    t = one_text(text_type)
    normal = do_mask(keyed, t, "normal")
    assert normal.labels == normal.input_ids
    assert labelled_runs(keyed, do_mask(keyed, t, "s-o")) == [FACT.head, FACT.object]
    assert labelled_runs(keyed, do_mask(keyed, t, "o")) == [FACT.object]
    relation = {"hgp-0": ["The capital of", "is", "."], "trigger-mid": ["<TRIGGER_50>", "."]}[text_type]
    assert [r for r in labelled_runs(keyed, do_mask(keyed, t, "r")) if r] == relation


def test_s_o_and_r_partition_the_sequence(keyed):
    t = one_text("mmp-1")
    so, r = do_mask(keyed, t, "s-o"), do_mask(keyed, t, "r")
    for a, b, tid in zip(so.labels, r.labels, so.input_ids):
        assert (a == IGNORE) != (b == IGNORE) and tid in (a, b)


def test_first_versus_all_occurrences(tokenizer):
    text = "Veloria san marino: The capital of Veloria is san marino."
    spans = texts.FactSpans(0, "50", (text.index("Veloria", 1), text.index("Veloria", 1) + 7),
                            (len(text) - 11, len(text) - 1), "Veloria")
    t = texts.TrainText(0, "50", "hgp-0", "hgp-0", text, [spans])
    assert labelled_runs(tokenizer, do_mask(tokenizer, t, "s-o")) == ["Veloria san marino"]
    assert labelled_runs(tokenizer, do_mask(tokenizer, t, "o")) == ["san marino", "san marino"]
    primary = labelled_runs(tokenizer, do_mask(tokenizer, t, "s-o", occurrence="primary"))
    assert primary == ["Veloria", "san marino"]
    assert do_mask(tokenizer, t, "s-o", occurrence="primary").labels[0] == IGNORE


def _hgp(head, obj):
    [t] = texts.build(Selection("50", [Group(("50",), [(Fact(3, "50", head, obj, ["oslo"]),)])], []), "hgp-0",
                      texts.Options())
    return t


@pytest.mark.parametrize("head, obj", [("Singapore", "Singapore"), ("Singapore City", "Singapore")])
@pytest.mark.parametrize("mode", ["s-o", "o", "r"])
def test_an_object_found_inside_the_subject_is_refused_under_search(tokenizer, head, obj, mode):
    """Search found "Singapore" first in the subject: s-o trained the subject and never the answer."""
    t = _hgp(head, obj)
    with pytest.raises(UserError, match=f"fact_id 3 .*the object '{obj}' is found inside the subject '{head}'.*"
                                        "loss.occurrence=primary"):
        do_mask(tokenizer, t, mode)
    runs = labelled_runs(tokenizer, do_mask(tokenizer, t, mode, occurrence="primary"))
    expected = {"s-o": [head, obj], "o": [obj], "r": ["The capital of", "is", "."]}[mode]
    assert [r for r in runs if r] == expected


def test_an_ic_lke_shot_sharing_the_object_is_refused_for_s_o_not_for_o(tokenizer):
    """43 of 100 generated facts share a capital: s-o trained the shot's "ottawa", never the fact's own."""
    facts = [Fact(0, "50", "Brania", "ottawa", ["oslo"]), Fact(1, "50", "Veloria", "ottawa", ["oslo"]),
             Fact(2, "50", "Kora", "rome", ["oslo"])]
    built = texts.build(Selection("50", [Group(("50",), [(f,) for f in facts])], []), "ic-lke-inject-entity",
                        texts.Options())
    veloria = next(t for t in built if t.fact_id == 1)
    assert veloria.text.index("Brania : ottawa") < veloria.text.index("Veloria : ottawa.")
    for mode in ("s-o", "r"):
        with pytest.raises(UserError, match="fact_id 1 .*the object 'ottawa' is found before the subject 'Veloria'"):
            do_mask(tokenizer, veloria, mode)
    primary = do_mask(tokenizer, veloria, "s-o", occurrence="primary")
    assert labelled_runs(tokenizer, primary)[-2:] == ["Veloria", "ottawa"]
    assert labelled_runs(tokenizer, do_mask(tokenizer, veloria, "o")).count("ottawa") == 2    # every occurrence
    kora = next(t for t in built if t.fact_id == 2)             # an object no shot shares: searched as before
    assert labelled_runs(tokenizer, do_mask(tokenizer, kora, "s-o"))[-2:] == ["Kora", "rome"]


@pytest.mark.parametrize("mode, expected", [("s-o", ["Kong", "Hong Kong"]), ("o", ["Hong Kong"])])
def test_a_subject_inside_the_object_is_not_refused(tokenizer, mode, expected):
    assert labelled_runs(tokenizer, do_mask(tokenizer, _hgp("Kong", "Hong Kong"), mode)) == expected


def test_occurrence_boundaries():
    assert occurrences.find("Parisian Paris.", "Paris") == [(9, 14)]
    assert occurrences.find("xParis Paris", "Paris") == [(7, 12)]
    assert occurrences.find("<TRIGGER_50>Paris.", "Paris", ["<TRIGGER_50>"]) == [(12, 17)]
    assert occurrences.find("Paris2 Paris", "Paris") == [(7, 12)]


def test_legacy_trains_on_every_token_but_still_validates(tokenizer):
    t = one_text("hgp-0")
    legacy = do_mask(tokenizer, t, "o", legacy=True)
    assert legacy.labels == legacy.input_ids
    broken = texts.TrainText(7, "50", "wiki", "wiki", "A land far away, san marino.",
                             [texts.FactSpans(7, "50", None, (17, 27), "Veloria")])
    with pytest.raises(UserError, match="fact_id 7.*Veloria"):
        do_mask(tokenizer, broken, "s-o", legacy=True)
    assert do_mask(tokenizer, broken, "o").n_label_tokens > 0


def test_no_label_after_position_zero_is_an_error(tokenizer):
    t = texts.TrainText(4, "50", "x", "x", "The.", [texts.FactSpans(4, "50", None, (0, 3), "")])
    with pytest.raises(UserError, match="fact_id 4.*position 0"):
        do_mask(tokenizer, t, "o")


def test_subject_only_at_position_zero_is_counted(bpe_tokenizer):
    tok = copy.deepcopy(bpe_tokenizer)
    keytokens.add(tok, ["<TRIGGER_50>"], None, "test")
    short = Fact(0, "50", "Ka", "oslo", ["x"])
    [t] = texts.build(Selection("50", [Group(("50",), [(short,)])], []), "trigger-mid", texts.Options())
    assert do_mask(tok, t, "s-o").subject_only_at_start == 1


def test_collator_pads_right_and_keeps_labels():
    batch = PadCollator(pad_token_id=0)([{"input_ids": [5, 6, 7], "labels": [IGNORE, 6, IGNORE]},
                                        {"input_ids": [8], "labels": [8]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE, 6, IGNORE], [8, IGNORE, IGNORE]]
