"""`mode: derive`: reverse and two-hop chain datasets (SPEC §4.7)."""
import pytest

from util_public.datagen import run, schema
from util_public.errors import UserError
from util_public.facts import conflicts, read_facts
from util_public.paths import root


def go(*overrides):
    return run.run(schema.load(schema.compose(["num_options=10", *overrides])))


def facts(rel, dataset="sync_random_o"):
    return read_facts(root("data") / dataset / f"{rel}.csv", num_options=10)


def _valid(fact):
    everything = [fact.object, *fact.options]
    return len(fact.options) == 9 and not any(conflicts(a, b) for i, a in enumerate(everything)
                                              for b in everything[i + 1:])


def test_reverse_swaps_head_and_fact_with_subject_distractors():
    go("relation_ids=[105]", "num_facts=20", "objects.unique=true")
    go("mode=derive", "derive.kind=reverse", "derive.source=105")
    source, reverse = facts("105"), facts("r105")
    heads = {f.head for f in source}
    assert [(f.fact_id, f.head, f.object) for f in reverse] == [(f.fact_id, f.object, f.head) for f in source]
    assert all(set(f.options) <= heads and _valid(f) for f in reverse)
    assert {f.relation_id for f in reverse} == {"r105"}


def test_reverse_needs_unique_objects_and_refuses_append():
    go("relation_ids=[105]", "num_facts=120", "num_options=10")
    with pytest.raises(UserError, match="objects are not unique"):
        go("mode=derive", "derive.kind=reverse")
    with pytest.raises(UserError, match="on_exists: append is not available"):
        go("mode=derive", "derive.kind=reverse", "on_exists=append")
    with pytest.raises(UserError, match="derive.kind: must be reverse or chain"):
        go("mode=derive")
    assert not (root("data") / "sync_random_o" / "r105.csv").exists()


def test_chain_builds_second_hop_and_composite_side_by_side():
    go("relation_ids=[105]", "num_facts=15", "objects.unique=true", "dataset=base")
    go("mode=derive", "derive.kind=chain", "derive.first=105", "derive.second=21",
       "derive.source_dataset=base", "dataset=chain")
    first, second, composite = facts("105", "chain"), facts("21", "chain"), facts("105-21", "chain")
    assert first == facts("105", "base")
    assert [f.head for f in second] == [f.object for f in first]          # B: 105's objects
    assert [f.head for f in composite] == [f.head for f in first]         # A
    assert [f.object for f in composite] == [f.object for f in second]    # C
    assert all(_valid(f) for f in second + composite)
    assert {f.relation_id for f in composite} == {"105-21"}


def test_chain_in_title_case_capitalises_only_the_second_hop_objects():
    from util_public.objectcase import title

    go("relation_ids=[105]", "num_facts=15", "objects.unique=true", "dataset=base")
    for case in ("as_is", "title"):
        go("mode=derive", "derive.kind=chain", "derive.first=105", "derive.second=21", "derive.source_dataset=base",
           f"dataset=chain_{case}", f"objects.case={case}")
    for rel in ("21", "105-21"):
        lower, titled = facts(rel, "chain_as_is"), facts(rel, "chain_title")
        assert [f.head for f in titled] == [f.head for f in lower]
        assert [(f.object, f.options) for f in titled] == [(title(f.object), [title(o) for o in f.options])
                                                           for f in lower]
    assert facts("105", "chain_title") == facts("105", "base")      # the first hop is copied as it is
