"""Offline fictional names (SPEC §4.2): shapes, determinism, the subject/object rule."""
import pytest

from util_public.datagen import names
from util_public.errors import UserError
from util_public.facts import norm
from util_public.seeding import stream


@pytest.mark.parametrize("kind", names.KINDS)
def test_every_kind_gives_valid_unique_deterministic_names(kind):
    first = names.generate(kind, 60, stream(0, "subjects", kind), lambda n: True)
    again = names.generate(kind, 60, stream(0, "subjects", kind), lambda n: True)
    other = names.generate(kind, 60, stream(1, "subjects", kind), lambda n: True)
    assert first == again
    assert first != other
    assert len({norm(n) for n in first}) == 60
    assert all(names.shape_problem(n) is None for n in first)


def test_book_titles_have_two_to_five_words_and_people_two():
    books = names.generate("book", 80, stream(0, "s", "71"), lambda n: True)
    people = names.generate("person", 80, stream(0, "s", "21"), lambda n: True)
    assert all(2 <= len(b.split()) <= 5 for b in books)
    assert all(len(p.split()) == 2 for p in people)


def test_vocab_guard_whole_words_and_substrings():
    guard = names.VocabGuard(["paris", "new york", "rome"])
    assert guard.clash("Paris Veloria") == "paris"          # contains an object as whole words
    assert guard.clash("York") == "new york"                # is a substring of an object
    assert guard.clash("Parisvale") is None                 # "paris" only inside a word
    assert guard.clash("Romero Vask") is None
    assert guard.clash("Vask of Rome") == "rome"


def test_generated_names_respect_the_guard():
    plain = names.generate("country", 30, stream(5, "subjects", "50"), lambda n: True)
    vocab = [n.lower() for n in plain[:10]] + ["land", "mark"]
    guard = names.VocabGuard(vocab)
    guarded = names.generate("country", 30, stream(5, "subjects", "50"), lambda n: guard.clash(n) is None)
    assert not {norm(n) for n in guarded} & set(vocab)
    assert all(guard.clash(n) is None for n in guarded)


def test_taken_and_conflict_free():
    taken = names.generate("city", 5, stream(0, "subjects", "x"), lambda n: True)
    more = names.generate("city", 40, stream(0, "subjects", "x"), lambda n: True, taken=taken, conflict_free=True)
    assert not {norm(t) for t in taken} & {norm(m) for m in more}
    low = [norm(m) for m in more]
    assert not any(a in b for i, a in enumerate(low) for j, b in enumerate(low) if i != j)


@pytest.mark.parametrize("held, key, conflict", [
    (["vrania"], "vrania", True),                 # equal
    (["vrania"], "ania", True),                   # key inside a held name
    (["ania"], "vrania", True),                   # a held name inside key
    (["vr"], "vrania", True), (["vrania"], "ia", True),   # shorter than one 3-character piece
    (["vrania"], "vranid", False), (["vrania", "dronia"], "ronian", False),
    (["aniax", "bania"], "ania", True),           # found in a bucket that is not the first piece's
    (["the glass bell"], "glass", True), (["glass"], "the glass bell", True), ([], "x", False), ([""], "x", True),
])
def test_substring_index_agrees_with_the_pairwise_rule(held, key, conflict):
    assert names.SubstringIndex(held).conflicts(key) is conflict
    assert any(key in h or h in key for h in held) is conflict      # the rule it replaces


def test_substring_index_on_generated_names_matches_brute_force():
    made = [norm(m) for m in names.generate("book", 300, stream(3, "subjects", "x"), lambda n: True)]
    index = names.SubstringIndex(made[:150])
    for key in made[150:] + [m[2:9] for m in made[:150]] + [m + "s" for m in made[:20]]:
        assert index.conflicts(key) == any(key in h or h in key for h in made[:150]), key


@pytest.mark.parametrize("name, problem", [
    ("ab", "length"), ("x" * 41, "length"), ("Bad_Name", "characters"), ("Name{x}", "characters"),
    ("2019-12-02", "no letter"), (" Padded", "characters"),
])
def test_shape_rules(name, problem):
    assert problem in names.shape_problem(name)


def test_shape_accepts_allowed_punctuation_and_word_limit():
    assert names.shape_problem("O'Neil-Smith Jr.") is None
    assert "words" in names.shape_problem("ab cd ef gh ij kl mn op qr", max_words=8)


def test_kind_for_type_and_unknown_kind():
    assert names.kind_for_type("creative work") == "work"
    assert names.kind_for_type("woman") == "woman"
    assert names.kind_for_type("university") == "organization"
    assert names.kind_for_type("genre") == "entity"
    with pytest.raises(UserError, match="unknown kind"):
        names.candidate("planet", stream(0, "x"))


def test_exhaustion_is_a_clear_error():
    with pytest.raises(UserError, match="only 0 of 3"):
        names.generate("entity", 3, stream(0, "x"), lambda n: False, max_attempts=50)
