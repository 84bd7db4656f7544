"""Concurrent writers of one output: a symlinked registry, one run directory, one result directory.

- `models.json` reached through symbolic links is written through to the one target file, under
  the target's lock: writers through two links lose no entry and the links stay links.
- A second process writing the same run or result directory stops at once with one `error:` line
  ("already running", exit 2) and changes nothing; staging names are unique per writer, and the
  startup cleanup leaves a live writer's staging alone.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from hardening_kit import run_registry_writers

from util_public import atomicio
from util_public.errors import UserError
from util_public.registry import Registry
from util_public.training.rundir import RunDir

LINK_WRITERS, PER_WRITER = 4, 25


def test_writers_through_two_symlinks_reach_the_shared_file(tmp_path):
    shared = tmp_path / "shared" / "models.json"
    shared.parent.mkdir()
    shared.write_text(json.dumps({"base": "somewhere"}))
    links = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        links.append(tmp_path / name / "models.json")
        links[-1].symlink_to(shared)
    run_registry_writers([str(links[w % 2]) for w in range(LINK_WRITERS)], PER_WRITER)
    assert all(link.is_symlink() for link in links)
    data = json.loads(shared.read_text())
    assert len(data) == 1 + LINK_WRITERS * PER_WRITER
    assert sorted(os.listdir(shared.parent)) == ["models.json"]
    assert sorted(os.listdir(tmp_path / "a")) == ["models.json"]


def test_relative_entries_of_a_linked_registry_resolve_against_its_target(tmp_path):
    shared = tmp_path / "shared" / "models.json"
    (tmp_path / "shared" / "ckpt").mkdir(parents=True)
    shared.write_text(json.dumps({"m": "ckpt"}))
    link = tmp_path / "models.json"
    link.symlink_to(shared)
    reg = Registry(link)
    assert reg.entries()["m"]["path"] == str((tmp_path / "shared" / "ckpt").resolve())
    assert reg.relative_path(tmp_path / "shared" / "ckpt") == "ckpt"


def test_a_second_writer_of_a_run_directory_is_refused(tmp_path):
    run = RunDir(tmp_path / "runs" / "busy", "busy")
    with run.lock():
        with pytest.raises(UserError, match=r"busy: already running in another process \(.*pid=") as err:
            with RunDir(tmp_path / "runs" / "busy", "busy").lock():
                pass
        assert str(err.value).startswith(f"error: {tmp_path / 'runs' / 'busy'}: already running")
    assert not (tmp_path / "runs").exists()      # the lock file goes with its holder, and the folder made for it
    with run.lock():                                    # and the directory is free again
        pass


def test_staging_names_are_unique_and_a_live_writers_staging_dir_survives_cleanup(tmp_path):
    final = tmp_path / "out"
    names = {atomicio._staging_name(final).name for _ in range(50)}
    assert len(names) == 50 and all(atomicio.is_staging(n) for n in names)
    live = tmp_path / f".out.tmp-{os.getppid()}-0a1b2c3d"      # a running process (our parent)
    dead = tmp_path / ".out.tmp-999999999-0a1b2c3d"
    aside = tmp_path / ".out.old-999999999-0a1b2c3d"          # a killed replace_dir, final missing
    for p in (live, dead):
        p.mkdir()
    aside.mkdir()
    (aside / "summary.json").write_text("{}")
    atomicio.clean_stale_temporaries(tmp_path)
    assert live.exists() and not dead.exists() and not aside.exists()
    assert (final / "summary.json").read_text() == "{}"


@pytest.mark.parametrize("tag, removed", [("", True), ("-m{here}", True), ("-m0badc0de", False)])
def test_only_this_machines_dead_writers_are_cleaned(tmp_path, tag, removed):
    """A pid is only this machine's: a second node on a shared results disk removed the staging
    directory of a live writer elsewhere (its pid absent here), which then published a result
    without records.jsonl. Names without a tag come from earlier versions."""
    staging = tmp_path / f".out.tmp-999999999-0a1b2c3d{tag.format(here=atomicio.machine_tag())}"
    staging.mkdir()
    assert atomicio.is_staging(staging.name)
    atomicio.clean_stale_temporaries(tmp_path)
    assert staging.exists() != removed


def test_a_staging_directory_removed_while_filled_is_never_published(tmp_path):
    from util_public.evaluation import results

    final = tmp_path / "f0-7-abc"
    with pytest.raises(UserError, match="staging directory was removed"):
        with atomicio.atomic_dir(final) as tmp:
            atomicio.write_text(tmp / "records.jsonl", "{}\n")
            shutil.rmtree(tmp)                      # another machine's cleanup
            atomicio.write_text(tmp / "summary.json", "{}")     # makes the folder again
    assert not final.exists() and list(tmp_path.iterdir()) == []
    results.write_result(final, [{"fact_id": 0}], {"n": 1}, "cfg: 1\n")     # a rerun lands whole
    assert sorted(p.name for p in final.iterdir()) == ["config.yaml", "records.jsonl", "summary.json"]


def _dirs(tmp_path, *names):
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_text(name)
    return [tmp_path / name for name in names]


@pytest.mark.parametrize("race, left", [("renames its own in between", ["r"]),
                                        ("sets dst aside first", [".r.old-1-00000000", "r", "theirs"])])
def test_replace_dir_when_another_writer_acts_between_our_two_renames(tmp_path, monkeypatch, race, left):
    """The interleavings that made concurrent writers fail ("Directory not empty"; a vanished dst):
    the other writer acts right after our first rename, or right before it; ours still lands and
    nothing of ours stays aside (the other writer's own aside copy is its to remove)."""
    dst, ours, theirs = _dirs(tmp_path, "r", "ours", "theirs")
    real, acted = os.replace, []

    def racing(a, b):
        if Path(a) == dst and not acted and race == "sets dst aside first":
            acted.append(real(dst, tmp_path / ".r.old-1-00000000"))
        real(a, b)
        if Path(a) == dst and not acted and race == "renames its own in between":
            acted.append(real(theirs, dst))

    monkeypatch.setattr(atomicio.os, "replace", racing)
    atomicio.replace_dir(ours, dst)
    assert acted and (dst / "f").read_text() == "ours"
    assert sorted(p.name for p in tmp_path.iterdir()) == left


# ---- evaluation result directories ------------------------------------------------------------------
def test_a_second_evaluation_of_a_held_result_stops_before_loading_weights(isolated_roots, sp_tokenizer,
                                                                          tmp_path, monkeypatch):
    from evalkit import checkpoint_with_key, fictional_facts, write_dataset

    from util_public import modelio
    from util_public.evaluation import api, backends, plan, results, runner, schema

    write_dataset(isolated_roots["data"], "toy", fictional_facts(4, num_options=5))
    ckpt = checkpoint_with_key(sp_tokenizer, tmp_path / "ckpt")
    cfg = schema.config([f"model.path={ckpt}", "data.dataset=toy", "mc.num_options=5", "tasks=[mc,gen]",
                         "gen.max_new_tokens=2"])
    the_plan = plan.build(cfg, api.describe(None, str(ckpt)), modelio.load_tokenizer(ckpt), plan.load_factsets(cfg),
                          None, None, "hf", "float32")
    held = the_plan.jobs[1].directory

    def no_weights(*args, **kwargs):
        raise AssertionError("weights loaded although another process holds a result")

    monkeypatch.setattr(backends, "load", no_weights)
    with results.writer_lock(held):
        with pytest.raises(UserError, match=rf"^error: {held}: already running in another process"):
            runner.run(cfg)
    assert not isolated_roots["results"].exists()      # the other jobs' locks and folders are gone too


_TAGGED = 200


def _rewrite(directory: str, tag: str, rounds: int, start) -> None:
    from util_public.evaluation import results

    start.wait(30)
    for i in range(rounds):
        records = [{"fact_id": k, "tag": f"{tag}{i}"} for k in range(_TAGGED)]
        results.write_result(Path(directory), records, {"tag": f"{tag}{i}"}, "cfg: 1\n")


def _read_in(dir_fd: int, name: str) -> str:
    with open(name, encoding="utf-8", opener=lambda p, f: os.open(p, f, dir_fd=dir_fd)) as fh:
        return fh.read()


def test_concurrent_writers_of_one_result_never_mix_their_files(tmp_path):
    """Two unlocked writers replace one result directory 25 times each while a reader opens the
    directory and reads summary and records through that one handle: both files always come from
    the same writer's round (unique staging directories; before, both staged in `{dir}.tmp`)."""
    import multiprocessing as mp

    directory = tmp_path / "mc" / "f0-9-abcdef12"
    ctx = mp.get_context("fork")
    start = ctx.Event()
    writers = [ctx.Process(target=_rewrite, args=(str(directory), tag, 25, start)) for tag in "ab"]
    for p in writers:
        p.start()
    start.set()
    reads = mixed = 0
    deadline = time.monotonic() + 30       # writers that died before writing must fail the test, not hang it
    while any(p.is_alive() for p in writers) or (reads == 0 and time.monotonic() < deadline):
        try:
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            continue
        try:
            summary = json.loads(_read_in(dir_fd, "summary.json"))["tag"]
            tags = {json.loads(line)["tag"] for line in _read_in(dir_fd, "records.jsonl").splitlines()}
        except FileNotFoundError:     # the directory was replaced and removed while we held it
            continue
        finally:
            os.close(dir_fd)
        reads += 1
        mixed += tags != {summary}
    for p in writers:
        p.join(60)
        assert p.exitcode == 0
    assert reads > 0 and mixed == 0, (reads, mixed)
    assert sorted(p.name for p in directory.parent.iterdir()) == [directory.name]


def _rewrite_summary(directory: str, rounds: int, start) -> None:
    from util_public.evaluation import results

    summary = results.new_summary("mc", "abc", prompt_type="hgp-0", metrics={"all": {"n": 1, "accuracy": 1.0}})
    start.wait(30)
    for _ in range(rounds):
        results.write_result(Path(directory), [{"fact_id": 0}] * _TAGGED, summary.to_json(), "cfg: 1\n")


def test_a_table_read_while_an_evaluation_writes_under_its_root_never_fails(tmp_path):
    """summarize.py (and the recipe collector) walked into staging folders that their writer renamed
    meanwhile: FileNotFoundError, a traceback, in 77 of 3,246 reads."""
    import multiprocessing as mp

    from util_public.evaluation import report

    ctx = mp.get_context("fork")
    start = ctx.Event()
    writer = ctx.Process(target=_rewrite_summary, args=(str(tmp_path / "mc" / "hgp-0" / "f0-0-abc"), 100, start))
    writer.start()
    start.set()
    reads = 0
    while writer.is_alive() or reads == 0:
        found = report.find_summaries([tmp_path])
        assert [s.prompt_type for s in found] in ([], ["hgp-0"])
        reads += 1
    writer.join(60)
    assert writer.exitcode == 0 and reads > 1


def test_results_behind_symbolic_links_are_read_once(tmp_path):
    """The walk that replaced rglob followed links: a `latest` link doubled every result, a link to
    a parent folder repeated them until ELOOP (and two such links never ended)."""
    from util_public.evaluation import report, results

    summary = results.new_summary("mc", "abc", prompt_type="hgp-0", metrics={"all": {"n": 1, "accuracy": 1.0}})
    results.write_result(tmp_path / "E1" / "mc" / "hgp-0" / "f0-0-abc", [{"fact_id": 0}], summary.to_json(), "c: 1\n")
    (tmp_path / "latest").symlink_to("E1")
    (tmp_path / "E1" / "up").symlink_to("..")
    assert len(report.find_summaries([tmp_path])) == 1
