"""`mode: generate` in-process (SPEC §4.1-4.3, §4.5, §3.1 manifest)."""
import itertools
import json
import re

import pytest
from hydra.errors import ConfigCompositionException

from util_public.datagen import run, schema
from util_public.errors import UserError
from util_public.facts import conflicts, norm, read_facts
from util_public.paths import root


def _words(n):
    sylls = ["ka", "lo", "mi", "nu", "re", "si", "tu", "ve"]
    return ["".join(p) for p in itertools.islice(itertools.product(sylls, repeat=3), n)]


@pytest.fixture
def vocab_file(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(_words(160)) + "\n", encoding="utf-8")
    return path


def generate(*overrides, http_client=None):
    return run.run(schema.load(schema.compose(list(overrides))), http_client=http_client)


def file_args(vocab_file, *more):
    return ["relation_ids=[50]", "objects.vocab_source=file", f"objects.vocab_file={vocab_file}", *more]


def csv_path(rel="50", dataset="sync_random_o", data_root=None):
    return (data_root or root("data")) / dataset / f"{rel}.csv"


def test_schema_columns_and_guarantees(vocab_file):
    generate(*file_args(vocab_file, "num_facts=30"))
    path = csv_path()
    header = path.read_text(encoding="utf-8").splitlines()[0]
    assert header == "fact_id,relation_id,Head,Fact,Alternate Facts"
    facts = read_facts(path, num_options=100, substring_rule="error")
    assert [f.fact_id for f in facts] == list(range(30))
    assert {f.relation_id for f in facts} == {"50"}
    vocab = set(_words(160))
    for f in facts:
        assert f.object in vocab and len(f.options) == 99 and set(f.options) <= vocab
        assert not any(conflicts(f.head, obj) for obj in vocab)     # heads never touch an object
    raw = path.read_text(encoding="utf-8").splitlines()[1]
    written = json.loads(re.search(r'"(\[.*\])"', raw).group(1).replace('""', '"'))  # options as JSON
    assert written == facts[0].options and len(set(written)) == 99 and set(written) <= vocab - {facts[0].object}


def test_default_is_the_paper_five_with_100_facts_and_99_distractors():
    generate()
    for rel in schema.PAPER_RELATIONS:
        facts = read_facts(csv_path(rel))
        assert len(facts) == 100 and all(len(f.options) == 99 for f in facts)
    manifest = json.loads((root("data") / "sync_random_o" / "manifest.json").read_text())
    assert manifest["schema"] == "mtg.dataset/1"
    assert sorted(manifest["files"]) == sorted(f"{r}.csv" for r in schema.PAPER_RELATIONS)


def _stable(manifest_path):
    data = json.loads(manifest_path.read_text())
    for run_info in data["runs"].values():
        run_info.pop("created_at"), run_info.pop("git")
    return data


def test_same_seed_is_byte_identical_and_another_seed_differs(vocab_file, tmp_path, monkeypatch):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        monkeypatch.setenv("MTG_DATA_ROOT", str(tmp_path / name))   # identical configs, two roots
        generate(*file_args(vocab_file, "num_facts=20", f"seed={seed}"))
    a, b, c = (csv_path(data_root=tmp_path / n).read_bytes() for n in "abc")
    assert a == b and a != c
    fa, fc = (read_facts(csv_path(data_root=tmp_path / n)) for n in "ac")
    assert all(x.head != y.head for x, y in zip(fa, fc))
    assert _stable(tmp_path / "a/sync_random_o/manifest.json") == _stable(tmp_path / "b/sync_random_o/manifest.json")


def test_fact_i_does_not_depend_on_num_facts(vocab_file, tmp_path):
    generate(*file_args(vocab_file, "num_facts=4", f"output_dir={tmp_path / 'few'}"))
    generate(*file_args(vocab_file, "num_facts=9", f"output_dir={tmp_path / 'many'}"))
    few, many = (read_facts(csv_path(data_root=tmp_path / n)) for n in ("few", "many"))
    assert [(f.head, f.object, f.options) for f in few] == [(f.head, f.object, f.options) for f in many[:4]]


def test_on_exists_error_overwrite_append(vocab_file):
    generate(*file_args(vocab_file, "num_facts=5"))
    before = csv_path().read_bytes()
    with pytest.raises(UserError, match="already exists; set on_exists=overwrite or on_exists=append"):
        generate(*file_args(vocab_file, "num_facts=5", "seed=9"))
    assert csv_path().read_bytes() == before
    generate(*file_args(vocab_file, "num_facts=6", "on_exists=append"))
    facts = read_facts(csv_path())
    assert [f.fact_id for f in facts] == list(range(11))
    assert len({norm(f.head) for f in facts}) == 11            # appended subjects never repeat
    assert csv_path().read_text().startswith(before.decode())   # existing facts untouched
    generate(*file_args(vocab_file, "num_facts=3", "on_exists=overwrite", "seed=9"))
    assert [f.fact_id for f in read_facts(csv_path())] == [0, 1, 2]


@pytest.mark.parametrize("first, then", [("as_is", "title"), ("title", "as_is")])
def test_appending_the_other_spelling_is_refused(vocab_file, first, then):
    generate(*file_args(vocab_file, "num_facts=5", f"objects.case={first}"))
    before = csv_path().read_bytes()
    with pytest.raises(UserError, match=rf"50.csv: fact_id 0: its object '.+', like every object there, "
                                        rf"is not written as objects.case={then}"):
        generate(*file_args(vocab_file, "num_facts=5", f"objects.case={then}", "on_exists=append"))
    assert csv_path().read_bytes() == before
    generate(*file_args(vocab_file, "num_facts=5", f"objects.case={first}", "on_exists=append"))    # its own: fine
    assert len(read_facts(csv_path())) == 10


def test_unique_objects(vocab_file):
    generate(*file_args(vocab_file, "num_facts=150", "objects.unique=true", "num_options=5"))
    objects = [f.object for f in read_facts(csv_path(), num_options=5)]
    assert len(set(objects)) == 150
    with pytest.raises(UserError, match="objects.unique needs 200 unused objects"):
        generate(*file_args(vocab_file, "num_facts=200", "objects.unique=true", "on_exists=overwrite"))


def test_template_wiki_paragraphs():
    generate("relation_ids=[71,105]", "num_facts=25", "wiki.enabled=true")
    for rel in ("71", "105"):
        for f in read_facts(csv_path(rel)):
            sentences = re.split(r"(?<=\.) ", f.text.replace(f.object, "OBJECT"))  # objects may hold "."
            assert 3 <= len(sentences) <= 5
            assert f.head in sentences[0]
            hits = re.findall(r"(?<!\w)" + re.escape(f.object) + r"(?!\w)", f.text.lower())
            assert len(hits) == 1 and not f.text.lower().startswith(f.object)
            assert "\n" not in f.text


def test_subjects_from_a_file(vocab_file, tmp_path):
    subjects = tmp_path / "subjects.txt"
    subjects.write_text("Velmora Quay\n\nOstrin Dale\nTarquenhold\n", encoding="utf-8")
    generate(*file_args(vocab_file, "num_facts=3", "subjects.source=file", f"subjects.file={subjects}"))
    assert [f.head for f in read_facts(csv_path())] == ["Velmora Quay", "Ostrin Dale", "Tarquenhold"]
    subjects.write_text("Velmora Quay\nBad{Name}\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"subjects.txt:2: subject 'Bad\{Name\}'"):
        generate(*file_args(vocab_file, "num_facts=2", "subjects.source=file", f"subjects.file={subjects}",
                            "on_exists=overwrite"))


def test_synthetic_vocabulary():
    generate("relation_ids=[50]", "num_facts=10", "objects.vocab_source=synthetic", "objects.vocab_size=120")
    facts = read_facts(csv_path())
    assert all(f.object == f.object.lower() for f in facts)
    # objects and distractors come from exactly 120 words (10 x 100 draws cover all of them; the default 200 would show)
    words = {w for f in facts for w in (f.object, *f.options)}
    assert len(words) == 120 and all(w == w.lower() for w in words)


def test_validation_happens_before_any_output(tmp_path):
    small = tmp_path / "small.txt"
    small.write_text("oslo\nkyiv\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"2 distinct objects, need at least num_options=100"):
        generate("relation_ids=[50,71]", "objects.vocab_source=file", f"objects.vocab_file={small}")
    with pytest.raises(UserError, match="unknown relation id"):
        generate("relation_ids=[50,nope]")
    assert not (root("data") / "sync_random_o").exists()


def test_schema_rejects_unknown_keys_and_bad_values():
    for override, problem in (("bogus=1", "bogus"), ("import.bogus=1", "import.bogus"), ("num_facts=many", "many")):
        with pytest.raises(ConfigCompositionException, match=re.escape(problem)):   # as generate.py says it
            schema.compose([override])
    for override, key in (("mode=frob", "mode"), ("on_exists=merge", "on_exists"),
                          ("import.format=xml", "import.format"), ("num_facts=0", "num_facts")):
        with pytest.raises(UserError, match=f"^error: {re.escape(key)}: "):
            schema.load(schema.compose([override]))
    cfg = schema.load(schema.compose(["import.repair=true", "relation_ids=[50]"]))
    assert cfg.import_.repair is True and cfg.relation_ids == ["50"]


SPELLINGS = {   # the words of a vocabulary file -> the objects it gives (de-duplicated under norm)
    ("Gießen", "Ελλάς", "Ｔｏｋｙｏ"): ["gießen", "ｔｏｋｙｏ", "ελλάς"],            # spelt as written, lower-cased
    ("Straße", "STRASSE", "Strasse"): ["strasse"],                                  # one word, its most frequent spelling
    ("Zu\u0308rich", "ZÜRICH"): ["zürich"],                                         # composed
    ("new\u200byork", "NewYork", "New  York"): ["newyork", "new york"],            # invisible characters, whitespace
    ("oslo", "Oslo", "lima"): ["oslo", "lima"],                                     # frequency first
}


@pytest.mark.parametrize("words", list(SPELLINGS), ids=[" ".join(w) for w in SPELLINGS])
def test_vocabulary_words_keep_their_spelling_and_only_lose_their_case(words):
    from util_public.datagen.vocab import prepare

    assert prepare(words) == SPELLINGS[words]


@pytest.mark.parametrize("source", ["catalogue", "synthetic"])
def test_title_case_writes_the_same_facts_capitalised(source):
    """`objects.case=title` changes how objects are written, never which: the lower-case dataset's
    heads, objects and options in order, each object title-cased (what a model usually reads)."""
    from util_public.objectcase import title

    for case in ("as_is", "title"):
        generate("relation_ids=[50]", "num_facts=25", "num_options=12", f"objects.vocab_source={source}",
                 f"objects.case={case}", f"dataset={case}")
    lower, titled = read_facts(csv_path(dataset="as_is"), 12), read_facts(csv_path(dataset="title"), 12)
    assert [f.head for f in titled] == [f.head for f in lower]
    assert [(f.object, f.options) for f in titled] == [(title(f.object), [title(o) for o in f.options]) for f in lower]
    assert any(f.object != title(f.object) for f in lower)      # the lower-case file really differed
    [run_info] = json.loads((root("data") / "title" / "manifest.json").read_text())["runs"].values()
    assert run_info["config"]["objects"]["case"] == "title"


def test_title_case_refuses_two_objects_it_would_write_alike(tmp_path):
    vocab = tmp_path / "v.txt"
    vocab.write_text("\n".join(["ıstanbul", "istanbul", *_words(20)]) + "\n", encoding="utf-8")
    generate("relation_ids=[50]", "num_facts=3", "num_options=5", "objects.vocab_source=file",
             f"objects.vocab_file={vocab}", "dataset=lower")               # as stored: two objects
    with pytest.raises(UserError, match="objects.case=title writes 'istanbul' and 'ıstanbul' alike \\('Istanbul'\\)"):
        generate("relation_ids=[50]", "num_facts=3", "num_options=5", "objects.vocab_source=file",
                 f"objects.vocab_file={vocab}", "objects.case=title", "dataset=title")
    assert not csv_path(dataset="title").exists()
