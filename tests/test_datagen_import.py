"""`mode: import` of the public layouts from local fixture files (SPEC §4.6, §3.3, §10)."""
import csv
import json
import re

import pytest
import yaml

from util_public import catalogue
from util_public.datagen import run, schema
from util_public.errors import UserError
from util_public.facts import read_facts
from util_public.paths import root

CITIES = ["oslo", "kyiv", "quito", "lima", "bern", "rome", "riga", "baku", "doha", "suva", "apia", "male"]
HEADS = ["Velmora", "Ostrin Dale", "Tarquenhold", "Brevania", "Quillmarsh"]
TRAIN = [f"Train prompt {i} about {{head}} is" for i in range(10)]
TEST = [f"Test prompt {i} about {{head}} is" for i in range(10)]


def write_csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def options_for(gold, k=5):
    return [c for c in CITIES if c != gold][:k]


def fiction_rows():
    # The public files: a pandas index column and Python-list strings in `Alternate Facts`.
    return [[str(i), h, CITIES[i], str(options_for(CITIES[i]))] for i, h in enumerate(HEADS)]


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "T-Rex-Fiction"
    header = ["", "Head", "Fact", "Alternate Facts"]
    write_csv(src / "sync_random_o" / "50.csv", header, fiction_rows())
    write_csv(src / "sync_random_o_German" / "50.csv", header, fiction_rows())
    write_csv(src / "prompt_template" / "50" / "train.csv", ["question"], [[t] for t in TRAIN])
    write_csv(src / "prompt_template" / "50" / "test.csv", ["question"], [[f"  {t} "] for t in TEST])
    return src


def do_import(src, *overrides):
    return run.run(schema.load(schema.compose(
        ["mode=import", f"import.path={src}", "relation_ids=[50]", "num_options=6", *overrides])))


def test_t_rex_fiction_facts_translations_and_prompts(source):
    do_import(source, "import.languages=[German]")
    data = root("data")
    facts = read_facts(data / "sync_random_o" / "50.csv", num_options=6)
    assert [f.fact_id for f in facts] == list(range(5))
    assert [(f.head, f.object, f.options) for f in facts] == [(h, CITIES[i], options_for(CITIES[i]))
                                                               for i, h in enumerate(HEADS)]
    assert (data / "sync_random_o" / "50.csv").read_text().splitlines()[0] == \
        "fact_id,relation_id,Head,Fact,Alternate Facts"
    assert len(read_facts(data / "sync_random_o_German" / "50.csv", num_options=6)) == 5
    prompts = catalogue.prompts("50", data)
    assert prompts.path == data / "prompt_template" / "50.yaml"
    assert prompts.families["train"] == TRAIN and prompts.families["test"] == TEST   # stripped
    assert prompts.lookup("hgp", 0) == "The capital of {head} is"                     # shipped, kept
    assert yaml.safe_load(prompts.path.read_text())["source"] == "t-rex-fiction"
    manifest = json.loads((data / "sync_random_o" / "manifest.json").read_text())
    entry = manifest["files"]["50.csv"]
    assert entry["rows"] == 5 and entry["source"].endswith("sync_random_o/50.csv")
    assert manifest["runs"][entry["run"]]["mode"] == "import"


def test_hub_export_columns(tmp_path):
    src = tmp_path / "hub"
    rows = [[h, CITIES[i], json.dumps(options_for(CITIES[i]) + [CITIES[i]]), "50"] for i, h in enumerate(HEADS)]
    write_csv(src / "sync_random_o" / "50.csv", ["Subject", "Object", "Multiple Choices", "Relation_ID"], rows)
    do_import(src)
    facts = read_facts(root("data") / "sync_random_o" / "50.csv", num_options=6)
    assert all(f.object not in f.options and len(f.options) == 5 for f in facts)
    assert all(not f.extra for f in facts)


def _break(source, kind):
    path = source / "sync_random_o" / "50.csv"
    rows = fiction_rows()
    if kind == "column":
        write_csv(path, ["", "Head", "Answer", "Alternate Facts"], rows)
        return str(path), "missing columns ['Fact']"
    if kind == "options":
        rows[2][3] = "['rome', 'riga'"
        write_csv(path, ["", "Head", "Fact", "Alternate Facts"], rows)
        return f"{path}:4: fact_id 2", "is not a list of strings: \"['rome', 'riga'\""
    if kind == "gold":
        rows[2][3] = str(options_for(CITIES[2], 4) + [CITIES[2]])
        write_csv(path, ["", "Head", "Fact", "Alternate Facts"], rows)
        return f"{path}:4: fact_id 2", "the gold object 'quito' is among the distractors"
    if kind == "duplicate head":
        rows[3][1] = rows[1][1].upper()
        write_csv(path, ["", "Head", "Fact", "Alternate Facts"], rows)
        return f"{path}:5: fact_id 3", "Head 'OSTRIN DALE' repeats line 3"
    template = source / "prompt_template" / "50" / "test.csv"
    write_csv(template, ["question"], [[t] for t in TEST[:3]] + [["No placeholder here"]] + [[t] for t in TEST[4:]])
    return f"{template}:5", "must contain '{head}' exactly once"


@pytest.mark.parametrize("kind", ["column", "options", "gold", "duplicate head", "template"])
def test_bad_input_names_file_and_line_and_writes_nothing(source, kind):
    where, problem = _break(source, kind)
    with pytest.raises(UserError) as err:
        do_import(source)
    assert err.value.message.startswith(f"error: {where}")
    assert problem in err.value.message
    data = root("data")
    assert not data.exists() or not [p for p in data.rglob("*") if p.is_file()]


def test_repair_redraws_broken_options_and_lists_them(source):
    path = source / "sync_random_o" / "50.csv"
    rows = fiction_rows()
    rows[2][3] = str(options_for(CITIES[2], 4) + [CITIES[2]])     # the gold among the options
    rows[3][3] = str(options_for(CITIES[3], 4))              # one option short
    write_csv(path, ["", "Head", "Fact", "Alternate Facts"], rows)
    with pytest.raises(UserError, match="fact_id 2"):
        do_import(source)
    do_import(source, "import.repair=true")
    facts = read_facts(root("data") / "sync_random_o" / "50.csv", num_options=6)
    assert facts[0].options == options_for(CITIES[0])
    assert all(len(f.options) == 5 and f.object not in f.options for f in facts)
    manifest = json.loads((root("data") / "sync_random_o" / "manifest.json").read_text())
    assert manifest["files"]["50.csv"]["repaired_fact_ids"] == [2, 3]


@pytest.fixture
def trex_mc(tmp_path):
    src = tmp_path / "T-REx-MC"
    header = ["Head", "Fact", "Alternate Facts", "Title", "Text"]
    for split, heads in (("train", HEADS[:3]), ("test", HEADS[3:])):
        rows = [[h, CITIES[i], str(options_for(CITIES[i])), f"T{i}", f"About {h}."] for i, h in enumerate(heads)]
        write_csv(src / "trex_MC" / "R50" / f"{split}_R50.csv", header, rows)
    (src / "trex_MC" / "all_relationID_names_nomask.json").write_text(
        json.dumps({"50": ["P36", "capital"], "R999": ["P999", "made-up relation"]}), encoding="utf-8")
    return src


def test_trex_mc_splits_and_relation_names(trex_mc):
    do_import(trex_mc, "import.format=trex_mc")
    data = root("data")
    train = read_facts(data / "trex_mc_train" / "50.csv", num_options=6)
    test = read_facts(data / "trex_mc_test" / "50.csv", num_options=6)
    assert [f.head for f in train] == HEADS[:3] and [f.head for f in test] == HEADS[3:]
    assert train[1].extra["Title"] == "T1" and train[1].text == f"About {HEADS[1]}."
    assert catalogue.relation("999", data)["pid"] == "P999"
    assert catalogue.relation("50", data)["imported"] == {"pid": "P36", "name": "capital"}
    assert "oslo" in catalogue.vocab("50", data)        # the shipped vocabulary still resolves
    assert not (catalogue.SHIPPED / "relations.yaml").read_text().count("P999")
    assert not (data / "vocab").exists()


def test_trex_mc_names_merge_into_the_data_roots_own_relations(trex_mc):
    """The import replaced relations.yaml with the shipped table (a relation of one's own was lost
    under on_exists=overwrite) and overwrote the data root's vocabularies without asking."""
    data = root("data")
    (data / "vocab").mkdir(parents=True)
    (data / "vocab" / "50.txt").write_text("my city one\nmy city two\n", encoding="utf-8")
    (data / "relations.yaml").write_text(
        'schema: mtg.relations/1\nrelations:\n  "P1303": {pid: P1303, name: instrument, subject_type: person, '
        'object_type: musical instrument, subject_kind: person, example_heads: [], vocab: vocab/P1303.txt}\n',
        encoding="utf-8")
    with pytest.raises(UserError, match="relations.yaml: already exists"):
        do_import(trex_mc, "import.format=trex_mc")
    assert "P999" not in (data / "relations.yaml").read_text()
    do_import(trex_mc, "import.format=trex_mc", "on_exists=overwrite")
    assert catalogue.relation("P1303", data)["name"] == "instrument" and catalogue.relation("999", data)["pid"] == "P999"
    assert (data / "vocab" / "50.txt").read_text(encoding="utf-8") == "my city one\nmy city two\n"
    before = (data / "relations.yaml").read_text()
    do_import(trex_mc, "import.format=trex_mc", "on_exists=overwrite")   # the same names again: nothing changes
    assert (data / "relations.yaml").read_text() == before


def test_trex_mc_vocabulary_and_examples_for_generation(trex_mc):
    run.run(schema.load(schema.compose([
        "relation_ids=[50]", "num_options=6", "num_facts=4", "objects.vocab_source=trex_mc",
        f"objects.trex_mc_path={trex_mc}"])))
    facts = read_facts(root("data") / "sync_random_o" / "50.csv", num_options=6)
    assert all(f.object in CITIES and set(f.options) <= set(CITIES) for f in facts)


def test_an_import_kept_with_substring_conflicts_can_be_derived_from_and_appended_to(tmp_path, capsys):
    """`import.substring_rule: warn` (the default) writes facts whose options break the rule; every
    later reader of the project's own file must accept them, as the import did."""
    mothers, children = [f"Mothera{c}" for c in "bcdefghi"], [f"Childa{c}" for c in "bcdefghi"]
    rows = []
    for i, (child, mother) in enumerate(zip(children, mothers)):
        options = [m for m in mothers if m != mother][:3]
        if i == 0:
            options[0] = f"{mother} junior"        # contains the gold: kept, with a warning
        rows.append([child, mother, json.dumps(options)])
    write_csv(tmp_path / "src" / "sync_random_o" / "105.csv", ["Head", "Fact", "Alternate Facts"], rows)
    run.run(schema.load(schema.compose(["mode=import", f"import.path={tmp_path / 'src'}", "relation_ids=[105]",
                                        "num_options=4"])))
    assert "1 facts break the substring rule" in capsys.readouterr().err
    data = root("data") / "sync_random_o"
    run.run(schema.load(schema.compose(["mode=derive", "derive.kind=reverse", "derive.source=105", "num_options=4"])))
    assert [(f.head, f.object) for f in read_facts(data / "r105.csv", num_options=4)] == list(zip(mothers, children))
    run.run(schema.load(schema.compose(["relation_ids=[105]", "num_facts=2", "num_options=4", "on_exists=append",
                                        "objects.case=title"])))      # the imported objects' spelling
    appended = read_facts(data / "105.csv", num_options=4, substring_rule="warn")
    assert [f.fact_id for f in appended] == list(range(10)) and appended[0].options[0] == "Motherab junior"


@pytest.mark.parametrize("change, message", [
    (lambda rows: rows[::-1], "fact_id 0: subject 'Quillmarsh' where the English file has 'Velmora' (4 rows differ)"),
    (lambda rows: rows[:-1], "4 facts, the English"),
])
def test_a_translation_out_of_step_with_the_english_facts_is_refused(source, change, message):
    """SPEC §3.1: translations keep the fact_ids. Reordered or missing rows paired ids with other facts."""
    header = ["", "Head", "Fact", "Alternate Facts"]
    write_csv(source / "sync_random_o_German" / "50.csv", header, change(fiction_rows()))
    with pytest.raises(UserError, match=re.escape(message)):
        do_import(source, "import.languages=[German]")
    assert not (root("data") / "sync_random_o_German").exists() and not (root("data") / "sync_random_o").exists()


def test_a_translation_with_translated_subjects_is_taken_row_for_row(source):
    header = ["", "Head", "Fact", "Alternate Facts"]
    write_csv(source / "sync_random_o_German" / "50.csv", header,
              [[i, f"{h}ien", obj, opts] for i, h, obj, opts in fiction_rows()])
    do_import(source, "import.languages=[German]")
    german = read_facts(root("data") / "sync_random_o_German" / "50.csv", num_options=6)
    assert [f.head for f in german] == [f"{h}ien" for h in HEADS]


def test_surrounding_whitespace_is_stripped_counted_and_recorded(source, capsys):
    rows = fiction_rows()
    rows[0][1], rows[1][2] = f"  {rows[0][1]} ", f"{rows[1][2]}\t"
    write_csv(source / "sync_random_o" / "50.csv", ["", "Head", "Fact", "Alternate Facts"], rows)
    do_import(source)
    assert "stripped surrounding whitespace from 2 cells" in capsys.readouterr().err
    facts = read_facts(root("data") / "sync_random_o" / "50.csv", num_options=6)
    assert (facts[0].head, facts[1].object) == (HEADS[0], CITIES[1])
    manifest = json.loads((root("data") / "sync_random_o" / "manifest.json").read_text())
    assert [entry["stripped_cells"] for entry in manifest["files"].values()] == [2]
