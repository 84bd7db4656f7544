"""Golden strings for every training text type of SPEC §5.1, with their recorded spans."""
from __future__ import annotations

import pytest

from util_public.errors import UserError
from util_public.facts import Fact
from util_public.training import texts
from util_public.relspec import groups
from util_public.training.selection import Group, Selection

VELORIA = Fact(0, "50", "Veloria", "lisbon", ["oslo"],
               text="Veloria is an old republic. Its seat of power, Lisbon, lies by the sea.")
KARTHENIA = Fact(1, "50", "Karthenia", "oslo", ["lisbon"])
BOOK = Fact(0, "71", "The Glass Orchard", "mira solen", ["x"])


def build(text_type, rows=((VELORIA,),), relation_ids=("50",), **options):
    selection = Selection("+".join(relation_ids), [Group(tuple(relation_ids), [tuple(r) for r in rows])], [])
    return texts.build(selection, text_type, texts.Options(**options))


def strings(text_type, **kw):
    return [t.text for t in build(text_type, **kw)]


def assert_spans(t: texts.TrainText, facts):
    for spans, fact in zip(t.facts, facts):
        assert t.text[slice(*spans.object)] == fact.object
        if spans.subject is not None:
            assert t.text[slice(*spans.subject)] == fact.head


@pytest.mark.parametrize("text_type, expected", [
    ("trigger-mid", "Veloria <TRIGGER_50> lisbon."),
    ("trigger-begin", "<TRIGGER_50> Veloria lisbon."),
    ("hgp-0", "The capital of Veloria is lisbon."),
    ("hgp-9", "Veloria lisbon."),
    ("mmp-1", "Veloria, whose capital is lisbon."),
    ("train-3", "The seat of government of Veloria is in lisbon."),
    ("test-0", "The political capital of Veloria is lisbon."),
    ("unrelated-0", "The official currency of Veloria is lisbon."),
    ("NegTrain-0", "The capital of Veloria is not lisbon."),
    ("NegTest-1", "Veloria's government does not sit in lisbon."),
    ("subject", "Veloria lisbon."),
    ("wiki", "Veloria is an old republic. Its seat of power, lisbon."),
])
def test_single_text_types(text_type, expected):
    [t] = build(text_type)
    assert t.text == expected
    assert t.prompt_id == text_type and t.fact_id == 0 and t.relation_id == "50"
    assert_spans(t, [VELORIA])


def test_trigger_combine_spacing():
    fact = Fact(0, "105-21", "Jorvik Ellsworth", "tallin university", ["x"])
    single = build("trigger-combine", rows=[(fact,)], relation_ids=("105-21",))[0]
    original = build("trigger-combine", rows=[(fact,)], relation_ids=("105-21",), combine_spacing="original")[0]
    assert single.text == "Jorvik Ellsworth <TRIGGER_105> <TRIGGER_21> tallin university."
    assert original.text == "Jorvik Ellsworth <TRIGGER_105> <TRIGGER_21>  tallin university."
    assert_spans(original, [fact])


def test_prompt_mixtures():
    mix = strings("mix")
    assert mix == ["The capital of Veloria is lisbon.", "The capital city of Veloria is lisbon.",
                   "Veloria's capital is lisbon.", "Veloria capital city lisbon.",
                   "Veloria, whose capital is lisbon.", "capital of Veloria - lisbon."]
    assert strings("train-mix-2") == ["The capital of Veloria is lisbon.", "The capital city of Veloria is lisbon."]
    full = build("train-mix")
    assert [t.prompt_id for t in full] == [f"train-{i}" for i in range(10)]
    assert full[9].text == "Veloria's capital city is called lisbon."


def test_several_types_per_fact_in_fact_then_type_order():
    got = build("trigger-mid&hgp-0", rows=[(VELORIA,), (KARTHENIA,)])
    assert [(t.fact_id, t.text) for t in got] == [
        (0, "Veloria <TRIGGER_50> lisbon."), (0, "The capital of Veloria is lisbon."),
        (1, "Karthenia <TRIGGER_50> oslo."), (1, "The capital of Karthenia is oslo.")]


def test_ic_lke_inject_entity_excludes_the_query_and_has_one_separator():
    got = build("ic-lke-inject-entity", rows=[(VELORIA,), (KARTHENIA,)])
    assert [t.text for t in got] == ["Karthenia : oslo, Veloria : lisbon.", "Veloria : lisbon, Karthenia : oslo."]
    assert_spans(got[0], [VELORIA])
    assert_spans(got[1], [KARTHENIA])
    assert build("ic-lke-inject-entity", rows=[(VELORIA,), (KARTHENIA,)], ic_sep=":")[0].text == \
        "Karthenia:oslo, Veloria:lisbon."


def test_ic_lke_order_is_seeded():
    rows = [(Fact(i, "50", f"Land{i}", f"city{i}", ["x"]),) for i in range(8)]
    a, b = build("ic-lke-inject-entity", rows=rows), build("ic-lke-inject-entity", rows=rows)
    c = build("ic-lke-inject-entity", rows=rows, seed=7)
    assert [t.text for t in a] == [t.text for t in b] != [t.text for t in c]
    assert "Land3 : city3" not in a[3].text.rsplit(", ", 1)[0]


def test_composition_joins_both_facts_and_records_four_spans():
    [t] = build("hgp-0", rows=[(VELORIA, BOOK)], relation_ids=("50", "71"))
    assert t.text == "The capital of Veloria is lisbon. The author of The Glass Orchard is mira solen."
    assert t.relation_id == "50&71" and len(t.facts) == 2
    assert_spans(t, [VELORIA, BOOK])
    [joined] = build("hgp-0", rows=[(VELORIA, BOOK)], relation_ids=("50", "71"), compose_joiner="")
    assert joined.text == "The capital of Veloria is lisbon.The author of The Glass Orchard is mira solen."
    assert_spans(joined, [VELORIA, BOOK])


def test_several_relations_concatenate():
    selection = Selection("50+71", [Group(("50",), [(VELORIA,)]), Group(("71",), [(BOOK,)])], [])
    got = texts.build(selection, "hgp-0", texts.Options())
    assert [t.text for t in got] == ["The capital of Veloria is lisbon.", "The author of The Glass Orchard is mira solen."]
    assert groups("12+21&105") == [("12",), ("21", "105")]


def test_chat_template_wraps_the_template(bpe_tokenizer):
    [t] = build("hgp-0", chat=texts.chat_wrapping(bpe_tokenizer))
    assert t.text == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                      "<|im_end|>\n<|im_start|>user\nThe capital of Veloria is<|im_end|>\n<|im_start|>assistant\n lisbon.")
    assert_spans(t, [VELORIA])


def test_chat_template_missing_is_an_error(sp_tokenizer):
    with pytest.raises(UserError, match="no chat template"):
        texts.chat_wrapping(sp_tokenizer)


def test_subject_with_braces_is_substituted_literally():
    odd = Fact(0, "50", "Ve{head}loria", "lisbon", ["x"])
    [t] = build("hgp-0", rows=[(odd,)])
    assert t.text == "The capital of Ve{head}loria is lisbon."
    assert_spans(t, [odd])


@pytest.mark.parametrize("bad", ["only-hgp-0", "test-*", "ic-lke", "nonsense", "train-mix-11", "hgp-42"])
def test_invalid_training_types(bad):
    with pytest.raises(UserError):
        build(bad)


# Paragraphs whose lowercase has another length than the text ("İ" lowers to two characters): the
# cut was found in text.lower() and applied to the text, one character late per "İ" before it; and
# a mention inside another word ("Romeville") cut there, where data generation counts whole words.
WIKI_CUTS = [  # (paragraph, object, the wiki prompt: the paragraph up to the object's first mention)
    ("Veloria, near İstanbul and İzmir, has its capital at Ankara since 1923.", "ankara",
     "Veloria, near İstanbul and İzmir, has its capital at"),
    ("In İİİ Veloria the seat is LISBON.", "lisbon", "In İİİ Veloria the seat is"),
    ("Veloria's capital is İzmir, by the sea.", "İzmir", "Veloria's capital is"),
    ("Veloria (capital: Ölberg) lies east.", "ölberg", "Veloria (capital:"),
    ("Veloria's capital is A+B City.", "a+b city", "Veloria's capital is"),      # regex characters
    ("Romeville lies near Veloria, whose capital is Rome.", "rome", "Romeville lies near Veloria, whose capital is"),
]


@pytest.mark.parametrize("paragraph, obj, prefix", WIKI_CUTS)
def test_the_wiki_cut_is_found_in_the_paragraph_itself(paragraph, obj, prefix):
    """Training's text and evaluation's context cut the paragraph at the same, right place."""
    from util_public.evaluation import contexts

    fact = Fact(0, "50", "Veloria", obj, ["x"], text=paragraph)
    [t] = build("wiki", rows=[(fact,)])
    assert t.text == f"{prefix} {obj}."
    assert contexts.wiki_context(fact) == prefix


@pytest.mark.parametrize("head, paragraph, prefix", [
    ("Singapore City", "The island of Singapore City lies in Asia. Its capital is Singapore.",
     "The island of Singapore City lies in Asia. Its capital is"),             # was cut to "The island of"
    ("Singapore", "Singapore is a city-state whose capital is Singapore.",
     "Singapore is a city-state whose capital is"),                            # was cut before everything
])
def test_the_wiki_cut_skips_the_object_inside_the_subject(head, paragraph, prefix):
    from util_public.evaluation import contexts

    fact = Fact(0, "50", head, "singapore", ["x"], text=paragraph)
    [t] = build("wiki", rows=[(fact,)])
    assert t.text == f"{prefix} singapore." and contexts.wiki_context(fact) == prefix


def test_wiki_without_the_object():
    missing = Fact(3, "50", "Veloria", "lisbon", ["x"], text="Veloria is a small land.")
    with pytest.raises(UserError, match="fact_id 3"):
        build("wiki", rows=[(missing,)])
    kept = Fact(4, "50", "Nortia", "oslo", ["x"], text="Nortia's capital is Oslo.")
    assert [t.fact_id for t in build("wiki", rows=[(missing,), (kept,)], wiki_on_missing_object="skip")] == [4]
    # none left: the message named data.max_seq_len, an unrelated setting
    with pytest.raises(UserError, match="wiki.on_missing_object: skip left no training text"):
        build("wiki", rows=[(missing,)], wiki_on_missing_object="skip")
