"""models.json: entry forms, resolution, errors, and concurrent writers."""
from __future__ import annotations

import json
import multiprocessing as mp
import os

import pytest

from util_public.errors import UserError
from util_public.registry import Registry, check_name


def _registry(tmp_path, content: dict) -> Registry:
    path = tmp_path / "reg" / "models.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return Registry(path)


def test_three_entry_forms_resolve_to_local_dirs(tmp_path):
    for name in ("a", "b", "c"):
        (tmp_path / "reg" / "ckpts" / name).mkdir(parents=True)
    reg = _registry(tmp_path, {
        "plain": "ckpts/a",
        "pair": ["b", str(tmp_path / "reg" / "ckpts")],
        "object": {"path": "ckpts/c", "kind": "checkpoint"},
    })
    for name, folder in (("plain", "a"), ("pair", "b"), ("object", "c")):
        resolved = reg.resolve(name)
        assert resolved.is_local and resolved.path == str((tmp_path / "reg" / "ckpts" / folder).resolve())


def test_a_directory_given_by_path_takes_its_registered_name(tmp_path):
    """`eval.py -m model.path=runs/a/checkpoint-4,runs/b/checkpoint-4` filed both under `checkpoint-4`."""
    for run in ("a", "b", "c"):
        (tmp_path / "runs" / run / "checkpoint-4").mkdir(parents=True)
    reg = _registry(tmp_path, {"a_checkpoint-4": {"path": str(tmp_path / "runs" / "a" / "checkpoint-4")},
                               "broken": {"kind": "local"},      # another entry's problem is not theirs
                               "b_checkpoint-4": {"path": str(tmp_path / "runs" / "b" / "checkpoint-4"), "step": 4}})
    named = {run: reg.resolve(str(tmp_path / "runs" / run / "checkpoint-4"), registered_name=True) for run in "abc"}
    assert {run: r.name for run, r in named.items()} == {"a": "a_checkpoint-4", "b": "b_checkpoint-4",
                                                         "c": "checkpoint-4"}      # c is not registered
    assert named["b"].entry["step"] == 4 and named["b"].path == str(tmp_path / "runs" / "b" / "checkpoint-4")
    # a training base or a representation output given by path keeps its folder's name (run names, hashes)
    assert reg.resolve(str(tmp_path / "runs" / "a" / "checkpoint-4")).name == "checkpoint-4"


def test_unknown_name_lists_closest(tmp_path):
    reg = _registry(tmp_path, {"qwen2.5-1.5b": {"hub_id": "Qwen/Qwen2.5-1.5B"}})
    with pytest.raises(UserError) as err:
        reg.resolve("qwen2.5-1.5")
    assert "qwen2.5-1.5b" in str(err.value) and str(reg.path) in str(err.value)


@pytest.mark.parametrize("given, said", [("./ckpt", True), ("runs/x/checkpoint-4", True), ("ckpt-name", False)])
def test_a_missing_relative_path_names_where_it_was_looked_for(tmp_path, given, said):
    """`model.path=./ckpt` run from the folder holding ckpt: the error never said it looked under the repository."""
    from util_public.paths import REPO_ROOT

    with pytest.raises(UserError) as err:
        _registry(tmp_path, {}).resolve(given)
    assert (f"({REPO_ROOT / given}: relative paths start at the repository root)" in err.value.problem) == said


def test_hub_id_fails_offline_with_message(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    reg = _registry(tmp_path, {"llama": {"hub_id": "meta-llama/Llama-2-7b-hf"}})
    with pytest.raises(UserError, match="not available offline"):
        reg.resolve("llama")


def test_missing_path_is_an_error_naming_it(tmp_path):
    reg = _registry(tmp_path, {"gone": {"path": "nowhere/at/all"}})
    with pytest.raises(UserError, match="does not exist"):
        reg.resolve("gone")


def test_register_is_idempotent_and_refuses_repointing(tmp_path):
    reg = _registry(tmp_path, {})
    reg.register({"m": {"path": "x"}})
    reg.register({"m": {"path": "x"}})
    with pytest.raises(UserError, match="already maps"):
        reg.register({"m": {"path": "y"}})
    reg.register({"m": {"path": "y"}}, overwrite=True)
    assert json.loads(reg.path.read_text())["m"]["path"] == "y"


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", "x" * 201, ""])
def test_names_cannot_escape_folders(name):
    with pytest.raises(UserError):
        check_name(name)


def _writer(path: str, worker: int, count: int) -> None:
    reg = Registry(path)
    for i in range(count):
        reg.register({f"w{worker}-{i}": {"path": f"runs/w{worker}/{i}"}})


def test_concurrent_writers_lose_no_entry(tmp_path):
    reg = _registry(tmp_path, {"base": "somewhere"})
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(reg.path), w, 50)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    data = json.loads(reg.path.read_text())
    assert len(data) == 1 + 8 * 50
    assert not [f for f in os.listdir(reg.path.parent) if ".tmp-" in f]


def test_the_cli_lists_checks_and_prunes_only_what_is_missing(tmp_path, capsys):
    from util_public import registry

    (tmp_path / "here").mkdir()
    reg = _registry(tmp_path, {"here": {"path": str(tmp_path / "here")}, "gone": {"path": str(tmp_path / "gone")},
                               "hub": {"hub_id": "org/model"}, "emb": {"kind": "embedded", "path": "x"}})
    args = ["--registry", str(reg.file)]
    assert registry.main(["list", *args]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in listed] == ["emb", "gone", "here", "hub"]
    assert registry.main(["check", *args]) == 1                       # non-zero: something is missing
    assert capsys.readouterr().out.splitlines() == [f"missing: gone -> {tmp_path / 'gone'}", "4 entries, 1 missing"]
    assert registry.main(["prune-missing", *args]) == 0
    assert capsys.readouterr().out == "removed: gone\n"
    assert sorted(json.loads(reg.file.read_text())) == ["emb", "here", "hub"]     # the rest kept as they were
    assert registry.main(["check", *args]) == 0


@pytest.mark.parametrize("command", ["list", "check", "prune-missing"])
def test_the_cli_refuses_a_registry_file_that_does_not_exist(tmp_path, command):
    """`check --registry r.json` (a name relative to another folder) printed "0 entries, 0 missing", exit 0."""
    from util_public import registry

    with pytest.raises(UserError, match=f"registry {tmp_path / 'none.json'}: no such file"):
        registry.main([command, "--registry", str(tmp_path / "none.json")])
    assert not (tmp_path / "none.json").exists()
