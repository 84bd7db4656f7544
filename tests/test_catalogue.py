"""The shipped relation and prompt catalogue, and template validation (SPEC §3.2, §3.3)."""
from __future__ import annotations

import pytest
import yaml

from util_public import catalogue, prompts
from util_public.errors import UserError
from util_public.facts import conflicts

PAPER_FIVE = ("12", "21", "50", "71", "105")
CANONICAL = {"50": "The capital of {head} is", "71": "The author of {head} is", "21": "{head} is educated at",
             "105": "{head} is the child of", "12": "The genre of {head} is", "7": "{head} means",
             "105-21": "The mother of {head} is educated at", "r105": "The child of {head} is",
             "P19": "{head} was born in", "P27": "{head} is a citizen of", "P106": "The occupation of {head} is",
             "P37": "The official language of {head} is", "P17": "{head} is located in"}


def test_relations_cover_the_paper_and_five_more():
    table = catalogue.relations()
    assert set(PAPER_FIVE) <= set(table)
    assert {"7", "r105", "105-21"} <= set(table)
    extra = [r for r in table if r not in (*PAPER_FIVE, "7", "r105", "105-21")]
    assert len(extra) >= 5
    assert table["7"]["pid"] is None and table["7"]["verified"] is False
    assert {table[r]["pid"] for r in PAPER_FIVE} == {"P136", "P69", "P36", "P50", "P25"}


@pytest.mark.parametrize("rel", [r for r in catalogue.relations() if catalogue.relations()[r].get("vocab")])
def test_vocabulary_is_large_and_substring_free(rel):
    words = catalogue.vocab(rel)
    assert len(words) >= 150
    clashes = [(a, b) for i, a in enumerate(words) for b in words[i + 1:] if conflicts(a, b)]
    assert not clashes[:3]
    heads = catalogue.relation(rel)["example_heads"]
    assert len(heads) >= 10 and not [h for h in heads for w in words if conflicts(h, w)]


@pytest.mark.parametrize("rel", list(catalogue.relations()))
def test_prompt_catalogue_shape(rel):
    cat = catalogue.prompts(rel)
    assert rel in CANONICAL, f"relation {rel}: add its canonical prompt (hgp-0) to CANONICAL"
    assert cat.lookup("hgp", 0) == CANONICAL[rel]
    assert len(cat.families["train"]) >= 10 and len(cat.families["test"]) >= 10
    assert len(cat.families["unrelated"]) == 3
    assert cat.lookup("hgp", 9) == "{head}" and "xyzcl" in cat.lookup("hgp", 7)
    if rel in PAPER_FIVE:
        assert set(catalogue.LANGUAGES) <= set(cat.translations)
        for lang in catalogue.LANGUAGES:
            assert len(cat.translations[lang]["train"]) == len(cat.families["train"])
            assert len(cat.translations[lang]["test"]) == len(cat.families["test"])
            assert prompts.template("test-3", rel, cat, lang)


@pytest.mark.parametrize("bad", ["The capital of is", "{head} and {head}", "{head} of {tail}", " {head} is",
                                 "{head} is ", "", "{head}\nis", "{{head}}"])
def test_bad_templates_are_rejected(bad):
    with pytest.raises(UserError, match="template"):
        catalogue.validate_template(bad, "prompts/50.yaml: hgp index 0")


def test_substitution_is_literal():
    assert catalogue.substitute("The capital of {head} is", "A{0}B") == "The capital of A{0}B is"


def test_catalogue_errors_name_file_family_and_index(tmp_path):
    (tmp_path / "prompt_template").mkdir()
    (tmp_path / "prompt_template" / "50.yaml").write_text(
        'relation_id: "50"\nhgp: {0: "The capital of {head} is"}\ntrain: ["x {head}"]\ntest: ["The {city} of"]\n')
    with pytest.raises(UserError) as err:
        catalogue.prompts("50", data_root=tmp_path)
    assert "50.yaml: test index 0" in str(err.value)


def test_unknown_relation_and_prompt_index():
    with pytest.raises(UserError, match="known ids"):
        catalogue.prompts("999")
    with pytest.raises(UserError, match="valid indices: 0..9"):
        prompts.template("test-12", "50", catalogue.prompts("50"))


def _imported(tmp_path, **fields):
    """A data root whose prompt catalogue of 50 has valid families, with `fields` replaced."""
    data = {"relation_id": "50", "hgp": {0: "The capital of {head} is"}, "train": ["x {head}"], "test": ["y {head}"],
            **fields}
    (tmp_path / "prompt_template").mkdir()
    (tmp_path / "prompt_template" / "50.yaml").write_text(yaml.safe_dump(data))
    return tmp_path


def test_numbered_family_may_be_a_list(tmp_path):
    cat = catalogue.prompts("50", _imported(tmp_path, hgp=["The capital of {head} is", "{head} has its capital"]))
    assert cat.lookup("hgp", 1) == "{head} has its capital" and cat.indices("hgp") == [0, 1]


@pytest.mark.parametrize("fields,where,problem", [
    ({"hgp": "The capital of {head} is"}, "hgp", "must be an object or a list, found a string"),
    ({"hgp": {"a": "The capital of {head} is"}}, "hgp: key 'a'", "must be an integer"),
    ({"train": 5}, "train", "must be a list, found an integer 5"),
    ({"unrelated": {0: "z {head}"}}, "unrelated", "must be a list, found an object"),
    ({"negation": ["not {head}"]}, "negation", "must be an object, found a list"),
    ({"negation": {"train": "not {head}"}}, "negation: train", "must be a list, found a string"),
    ({"translations": ["German"]}, "translations", "must be an object, found a list"),
    ({"translations": {"German": ["x {head}"]}}, "translations: German", "must be an object, found a list"),
    ({"translations": {"German": {"train": 5}}}, "translations: German: train", "must be a list"),
    ({"relation_id": [50]}, "relation_id", "must be a string or an integer"),
])
def test_a_field_of_the_wrong_yaml_type_names_file_key_and_shape(tmp_path, fields, where, problem):
    with pytest.raises(UserError) as err:
        catalogue.prompts("50", _imported(tmp_path, **fields))
    path = tmp_path / "prompt_template" / "50.yaml"
    assert err.value.where == f"{path}: {where}" and problem in err.value.problem


def _relations_yaml(tmp_path, text: str):
    (tmp_path / "relations.yaml").write_text("schema: mtg.relations/1\n" + text)
    return tmp_path


def test_an_unquoted_relation_id_is_its_string(tmp_path):
    # `50:` is YAML's integer 50; it used to give "relation '50': unknown relation id; known ids ...: [50]".
    root = _relations_yaml(tmp_path, "relations:\n  50: {name: capitol, vocab: null}\n")
    assert catalogue.relation("50", root)["name"] == "capitol" and catalogue.relations(root)["50"]["vocab"] is None


@pytest.mark.parametrize("text,where,problem", [
    ('relations: {"50": capital}', "relations: 50", "must be an object, found a string"),
    ('relations: {"50": {vocab: 5}}', "relations: 50: vocab", "must be a string or null, found an integer 5"),
    ('relations: {"50": {example_heads: Veloria}}', "relations: 50: example_heads", "must be a list or null"),
    ('relations: {"50": {example_heads: [Veloria, 7]}}', "relations: 50: example_heads: 1", "must be a string"),
    ('relations: {"50": {}, 50: {}}', "relations: 50", "given twice"),
    ("relations: {1.5: {}}", "relations: 1.5", "must be a string or an integer"),
    ("relations: [50]", "relations", "must be an object, found a list"),
    ('relations: {"P1303+v2": {}}', "relations: P1303+v2", "cannot contain '+'"),
    ('relations: {"P/1303": {}}', "relations: relation id 'P/1303'", "invalid name"),
])
def test_a_relation_entry_of_the_wrong_yaml_type_names_file_and_key(tmp_path, text, where, problem):
    root = _relations_yaml(tmp_path, text + "\n")
    with pytest.raises(UserError) as err:
        catalogue.relation("50", root)
    assert err.value.where == f"{tmp_path / 'relations.yaml'}: {where}" and problem in err.value.problem


def test_a_new_relation_without_prompts_names_where_its_catalogue_goes(tmp_path):
    """The message named the shipped catalogue's path, not the data root's, where the user must write it."""
    root = _relations_yaml(tmp_path, 'relations: {"P1303": {name: instrument, vocab: null}}\n')
    with pytest.raises(UserError) as err:
        catalogue.prompts("P1303", root)
    assert err.value.message == (f"error: relation 'P1303': has no prompt catalogue ({root / 'prompt_template' / 'P1303.yaml'}); "
                                 "write one there, shaped as util_public/catalogue/prompts/50.yaml")


def test_an_empty_catalogue_says_null_once(tmp_path):
    (tmp_path / "prompt_template").mkdir()
    (tmp_path / "prompt_template" / "50.yaml").write_text("# nothing yet\n")
    with pytest.raises(UserError) as err:
        catalogue.prompts("50", tmp_path)
    assert err.value.message.endswith(": must be an object, found null")


def test_a_data_root_adds_its_own_relation_beside_the_shipped_ones(tmp_path):
    """The README's recipe: one entry, its vocabulary and prompts under the data root; facts are
    generated for it, and the shipped relations still resolve (their vocabularies too)."""
    from util_public.datagen import run, schema
    from util_public.facts import read_facts

    root = _relations_yaml(tmp_path, 'relations:\n  "P1303": {pid: P1303, name: instrument, subject_type: person, '
                                     'object_type: musical instrument, subject_kind: person, example_heads: [], '
                                     'vocab: vocab/P1303.txt}\n')
    words = ["harp", "cello", "oboe", "tuba", "lute", "sitar", "banjo", "kazoo", "zither", "bassoon", "ukulele",
             "marimba"]
    (root / "vocab").mkdir()
    (root / "vocab" / "P1303.txt").write_text("\n".join(words) + "\n")
    (root / "prompt_template").mkdir()
    (root / "prompt_template" / "P1303.yaml").write_text(
        'schema: "mtg.prompts/1"\nrelation_id: "P1303"\nsource: "authored"\nhgp:\n  0: "{head} plays the"\n')
    assert catalogue.vocab_file("P1303", root) == root / "vocab" / "P1303.txt"
    assert catalogue.vocab_file("50", root) == catalogue.SHIPPED / "vocab" / "50.txt"
    assert catalogue.prompts("P1303", root).lookup("hgp", 0) == "{head} plays the"
    assert catalogue.prompts("50", root).path == catalogue.SHIPPED / "prompts" / "50.yaml"
    run.run(schema.load(schema.compose([f"output_dir={root}", "relation_ids=[P1303,50]", "num_facts=4",
                                        "num_options=5"])))
    made = read_facts(root / "sync_random_o" / "P1303.csv", num_options=5)
    assert len(made) == 4 and all(f.object in words and set(f.options) <= set(words) for f in made)
    with pytest.raises(UserError, match="a new relation goes into"):
        catalogue.relation("P9999", root)
