"""Every cache of a parsed file serves the file's current content: a long-lived process (a
notebook, the recipe executor) that reads a catalogue, a vocabulary, a known-fact file or a run's
JSON again after an edit sees the edit, even one that keeps the size within one timestamp tick."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from util_public import catalogue, known
from util_public.datagen.distractors import vocab_pool
from util_public.recipes import collect

SHIPPED = catalogue.SHIPPED


def _edit_in_place(path, old: str, new: str):
    """Replace `old` by `new` (same length) and restore the file times: only the content changes."""
    assert len(old) == len(new)
    st = os.stat(path)
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _copy(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    return dst


def _data_root_with_relations(root):
    """A data root that overrides relations.yaml and relation 50's vocabulary."""
    _copy(SHIPPED / "relations.yaml", root / "relations.yaml")
    _copy(SHIPPED / "vocab" / "50.txt", root / "vocab" / "50.txt")
    return root


def _recipe_json(root):
    root.mkdir()
    (root / "recipe.json").write_text(json.dumps({"experiment": "E1"}))
    return root / "recipe.json"


CASES = {   # what is cached -> (make the file under a root, what the loader gives, edit old -> new, gives then)
    "prompt catalogue": (lambda root: _copy(catalogue.prompts_file("50"), root / "prompt_template" / "50.yaml"),
                         lambda root, _: catalogue.prompts("50", root).lookup("hgp", 0),
                         ("The capital of {head} is\"", "The kapital of {head} is\""), "The kapital of {head} is"),
    "relation table": (lambda root: _data_root_with_relations(root) / "relations.yaml",
                       lambda root, _: catalogue.vocab_file("50", root).name, ("vocab/50.txt", "vocab/51.txt"),
                       "51.txt"),
    "vocabulary pool": (lambda root: _data_root_with_relations(root) / "vocab" / "50.txt",
                        lambda root, _: vocab_pool("50", root).candidates[0], ("abu dhabi\n", "abu dhabx\n"), "abu dhabx"),
    "known facts": (lambda root: _copy(known.path("50"), root / "50.yaml"),
                    lambda root, path: known.read(path).facts[0].object, ("paris", "parix"), "parix"),
    "recipe.json": (_recipe_json, lambda root, _: collect._recipe(root)["experiment"], ("E1", "E2"), "E2"),
}


@pytest.mark.parametrize("what", list(CASES))
def test_a_cached_file_is_read_again_once_its_content_changes(what, tmp_path):
    make, read, (old, new), expected = CASES[what]
    root = tmp_path / "root"
    path = make(root)
    first = read(root, path)
    assert read(root, path) == first != expected
    _edit_in_place(path, old, new)
    assert read(root, path) == expected
