"""Distractors under the substring rule (SPEC §4.3, §11)."""
import itertools

import pytest

from util_public.datagen.distractors import DistractorPool, draw_distractors
from util_public.errors import UserError
from util_public.facts import conflicts


def _words(n):
    sylls = ["ka", "lo", "mi", "nu", "re", "si", "tu", "ve"]
    return ["".join(p) for p in itertools.islice(itertools.product(sylls, repeat=3), n)]


# Deliberately overlapping entries (the examples of §4.3) among conflict-free filler.
OVERLAPPING = ["usa", "usa network", "jerusalem", "en", "english", "new york", "york", "kalo"]


@pytest.fixture(scope="module")
def pool():
    return DistractorPool(OVERLAPPING + _words(150))


def _check(gold, options, k):
    assert len(options) == k
    assert len({o.lower() for o in options}) == k
    assert gold not in options
    everything = [gold, *options]
    assert not any(conflicts(a, b) for i, a in enumerate(everything) for b in everything[i + 1:])


@pytest.mark.parametrize("gold", ["usa", "english", "kalomi", "york", "not in vocab"])
def test_exact_count_unique_no_conflicts_gold_absent(pool, gold):
    for fact_id in range(15):
        _check(gold, draw_distractors(pool, gold, 99, seed=0, relation_id="50", fact_id=fact_id), 99)


def test_candidates_conflicting_with_the_gold_are_never_drawn(pool):
    for fact_id in range(30):
        options = draw_distractors(pool, "usa", 99, 0, "50", fact_id)
        assert not {"usa network", "jerusalem"} & set(options)


def test_deterministic_per_seed_and_fact(pool):
    a = draw_distractors(pool, "kalomi", 99, 0, "50", 3)
    assert a == draw_distractors(pool, "kalomi", 99, 0, "50", 3)
    assert a != draw_distractors(pool, "kalomi", 99, 0, "50", 4)
    assert a != draw_distractors(pool, "kalomi", 99, 1, "50", 3)
    assert a != draw_distractors(pool, "kalomi", 99, 0, "71", 3)


def test_first_drawn_wins_keeps_exactly_one_of_a_conflicting_pair():
    small = DistractorPool(["usa", "usa network", "oslo", "kyiv", "quito"])
    seen = set()
    for fact_id in range(40):
        options = draw_distractors(small, "lima", 4, 0, "50", fact_id)
        _check("lima", options, 4)
        seen.add("usa" in options)
    assert seen == {True, False}       # either member of the pair can win, by draw order


def test_impossible_request_names_relation_fact_gold_vocab_size_and_count():
    small = DistractorPool(_words(40))
    with pytest.raises(UserError) as err:
        draw_distractors(small, "kalolo", 99, 0, "50", 7)
    message = err.value.message
    for part in ("relation 50", "fact_id 7", "'kalolo'", "vocabulary size 40", "only 39 of 99"):
        assert part in message
