"""Fact CSV reading and writing (SPEC §3.1, §10)."""
from __future__ import annotations

import json
import random

import pytest

from util_public.errors import UserError
from util_public.facts import Fact, conflicts, contained_pairs, facts_to_csv, load_relation, read_facts, write_facts

OPTIONS = [f"opt{i:02d}x" for i in range(99)]


def _fact(i: int = 0, **kw) -> Fact:
    base = dict(fact_id=i, relation_id="50", head=f"Veltoria{i}", object="lisbon", options=list(OPTIONS))
    base.update(kw)
    return Fact(**base)


def _cell(value: str) -> str:
    """One CSV cell, quoted the way csv writers quote."""
    return '"' + value.replace('"', '""') + '"'


def _write_raw(tmp_path, text: str, name: str = "50.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_round_trip_keeps_everything(tmp_path):
    facts = [_fact(0, text="A paragraph, with \"quotes\".", extra={"Title": "T", "note": "ü"}), _fact(1)]
    path = write_facts(tmp_path / "50.csv", facts)
    assert read_facts(path) == [
        Fact(0, "50", "Veltoria0", "lisbon", OPTIONS, 'A paragraph, with "quotes".', {"Title": "T", "note": "ü"}),
        Fact(1, "50", "Veltoria1", "lisbon", OPTIONS, None, {"Title": "", "note": ""}),
    ]
    header = path.read_text().splitlines()[0]
    assert header == "fact_id,relation_id,Head,Fact,Alternate Facts,Text,Title,note"


LINE_BREAKS = ["\r", "\n", "\r\n", "\n\r", "\u2028", "\x0b", "\x0c", "\x1c", "\x85", "\r\r"]


@pytest.mark.parametrize("brk", LINE_BREAKS, ids=[repr(b) for b in LINE_BREAKS])
@pytest.mark.parametrize("column", ["Text", "Title", "note"])
def test_every_line_break_in_a_free_text_cell_round_trips(tmp_path, brk, column):
    """Text, Title and pass-through cells may hold any line break (an import passes them through):
    the file written must read back as the same facts, the next row intact."""
    value = f"first{brk}second{brk}"
    fact = _fact(0, text=value) if column == "Text" else _fact(0, extra={column: value})
    facts = [fact, _fact(1)]
    back = read_facts(write_facts(tmp_path / "50.csv", facts))
    assert [(f.fact_id, f.head, f.text if column == "Text" else f.extra[column]) for f in back] == \
        [(0, "Veltoria0", value), (1, "Veltoria1", None if column == "Text" else "")]


def test_options_are_written_as_json():
    line = facts_to_csv([_fact(3)]).splitlines()[1]
    assert line.startswith('3,50,Veltoria3,lisbon,"[""opt00x"", ""opt01x""')


def test_legacy_python_list_form_is_read(tmp_path):
    options = repr(OPTIONS)
    path = _write_raw(tmp_path, f'Head,Fact,Alternate Facts\nVeltoria,lisbon,"{options}"\n')
    (fact,) = read_facts(path)
    assert fact.fact_id == 0 and fact.relation_id == "50" and fact.options == OPTIONS


@pytest.mark.parametrize("header,row,message", [
    ("Head,Fact", "A,b", "missing columns ['Alternate Facts']"),
    ("Head,Fact,Alternate Facts", 'A,b,"not a list"', "not a list of strings"),
    ("Head,Fact,Alternate Facts", 'A,b,"[1, 2]"', "not a list of strings"),
    ("Head,Fact,Alternate Facts", 'A,b,"[""x""]"', "1 distractors, expected 99; this fact has 2 options: ask for 2 "
     "(mc.num_options), or generate facts with num_options=100 into a dataset of their own"),
    ("Head,Fact,Alternate Facts", 'A,opt05x,' + _cell(json.dumps(OPTIONS)), "gold object"),
    ("Head,Fact,Alternate Facts", 'A{x},b,' + _cell(json.dumps(OPTIONS)), "contains '{'"),
    ("fact_id,Head,Fact,Alternate Facts", 'zero,A,b,' + _cell(json.dumps(OPTIONS)), "not an integer"),
    ("relation_id,Head,Fact,Alternate Facts", '71,A,b,' + _cell(json.dumps(OPTIONS)), "differs from the file name"),
    ("Head,Fact,Alternate Facts,Fact", 'A,b,' + _cell(json.dumps(OPTIONS)) + ',c', "column 'Fact' appears twice"),
    ("Head,Fact,Alternate Facts", 'A,b,"[' + "x" * 200_000 + ']"', "field larger than field limit"),
])
def test_bad_rows_name_file_and_line(tmp_path, header, row, message):
    path = _write_raw(tmp_path, f"{header}\n{row}\n")
    with pytest.raises(UserError) as err:
        read_facts(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_nameless_columns_are_not_repeated_fields(tmp_path):
    # A spreadsheet's trailing commas give several nameless columns: they hold no field.
    path = _write_raw(tmp_path, "Head,Fact,Alternate Facts,,\nA,b," + _cell(json.dumps(OPTIONS)) + ",,\n")
    assert [(f.head, f.object, f.extra) for f in read_facts(path)] == [("A", "b", {})]


def test_duplicate_options_and_fact_ids(tmp_path):
    dup = OPTIONS[:98] + ["OPT00X"]
    path = _write_raw(tmp_path, "Head,Fact,Alternate Facts\nA,b," + _cell(json.dumps(dup)) + "\n")
    with pytest.raises(UserError, match="duplicate options"):
        read_facts(path)
    opts = _cell(json.dumps(OPTIONS))
    path = _write_raw(tmp_path, f"fact_id,Head,Fact,Alternate Facts\n4,A,b,{opts}\n4,B,b,{opts}\n")
    with pytest.raises(UserError, match="duplicate fact_id 4"):
        read_facts(path)


def test_substring_rule_error_or_warning(tmp_path, capsys):
    opts = OPTIONS[:98] + ["lisbon east"]
    path = write_facts(tmp_path / "50.csv", [_fact(0, options=opts)])
    with pytest.raises(UserError, match="substring rule"):
        read_facts(path)
    assert read_facts(path, substring_rule="warn")[0].options == opts
    assert "1 facts break the substring rule" in capsys.readouterr().err


def test_conflict_rule_is_plain_substring():
    assert conflicts("usa", "Jerusalem") and conflicts("en", "english") and conflicts("Oslo", "oslo")
    assert not conflicts("lisbon", "oslo")


CONTAINMENT = {   # forms -> why the case is there
    ("usa", "jerusalem", "oslo"): "one inside another, mid-word",
    ("aa", "aaa", "a"): "overlapping occurrences, a form inside several",
    ("ab", "ab", "b"): "equal forms: each contains the other",
    ("", "x", "yz"): "the empty form is in every form",
    ("zürich", "rich", "zu"): "beyond ASCII",
    ("new york", "york", "new york city", "city"): "spaces inside forms",
    ("abc",): "one form",
    (): "none",
}


@pytest.mark.parametrize("forms", list(CONTAINMENT), ids=list(CONTAINMENT.values()))
def test_contained_pairs_are_exactly_the_pairwise_substrings(forms):
    brute = {(i, j) for i, a in enumerate(forms) for j, b in enumerate(forms) if i != j and a in b}
    found = list(contained_pairs(list(forms)))
    assert len(found) == len(set(found)) and set(found) == brute


def test_contained_pairs_agree_with_the_pairwise_rule_on_random_names():
    rng = random.Random(0)
    for _ in range(200):     # a three-letter alphabet makes containment frequent
        forms = ["".join(rng.choice("ab ") for _ in range(rng.randint(1, 5))).strip() or "a" for _ in range(12)]
        brute = {(i, j) for i, a in enumerate(forms) for j, b in enumerate(forms) if i != j and a in b}
        assert set(contained_pairs(forms)) == brute, forms


def test_the_first_pair_that_breaks_the_substring_rule_is_named(tmp_path):
    opts = OPTIONS[:96] + ["opt05x west", "bon", "lisbon east"]    # three conflicts; gold-first order names "bon"
    path = write_facts(tmp_path / "50.csv", [_fact(0, options=opts)])
    with pytest.raises(UserError, match="options 'lisbon' and 'bon' violate the substring rule"):
        read_facts(path)


def test_whitespace_is_stripped_and_counted(tmp_path, capsys):
    opts = _cell(json.dumps([" " + o for o in OPTIONS]))
    path = _write_raw(tmp_path, f"Head,Fact,Alternate Facts\n Veltoria ,lisbon ,{opts}\n")
    (fact,) = read_facts(path)
    assert (fact.head, fact.object, fact.options[0]) == ("Veltoria", "lisbon", "opt00x")
    assert "101 cells" in capsys.readouterr().err


def test_only_regular_files_are_listed_as_available_relations(tmp_path):
    write_facts(tmp_path / "toy" / "50.csv", [_fact(0)])
    (tmp_path / "toy" / "60.csv").mkdir()
    with pytest.raises(UserError) as err:
        load_relation(tmp_path, "toy", "999")
    assert err.value.hint == f"available under {tmp_path / 'toy'}: ['50']"
    with pytest.raises(UserError, match="is a directory, not a fact file"):     # asked for by its name
        load_relation(tmp_path, "toy", "60")


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_a_fact_file_that_is_not_a_file_says_what_it_is(tmp_path, kind):
    """A directory at the name said "fact file not found" (trained_pull --trained, on_exists=append)."""
    path = tmp_path / "50.csv"
    if kind == "directory":
        path.mkdir()
    with pytest.raises(UserError) as err:
        read_facts(path)
    assert err.value.message.startswith(f"error: {path}: " + ("fact file not found" if kind == "missing"
                                                               else "is a directory, not a fact file"))
