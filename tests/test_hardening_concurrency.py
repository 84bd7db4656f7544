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
    assert os.listdir(tmp_path / "runs") == []          # the lock file goes with its holder
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
