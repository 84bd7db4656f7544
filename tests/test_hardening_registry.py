"""models.json under load: 8 writer processes x 50 registrations while a reader parses it non-stop."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import time

import pytest
from hardening_kit import run_registry_writers

from util_public import atomicio
from util_public.errors import UserError
from util_public.registry import Registry

WRITERS, PER_WRITER = 8, 50


def _reader(path: str, stop, out) -> None:
    """Parse the file as fast as possible; record parses, failures and whether the count ever dropped."""
    parses = failures = drops = last = 0
    while not stop.is_set():
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (json.JSONDecodeError, UnicodeDecodeError, FileNotFoundError):
            failures += 1
            continue
        parses += 1
        drops += len(data) < last
        last = len(data)
    out.put((parses, failures, drops))


def test_concurrent_writers_with_a_reader_never_see_invalid_json(tmp_path):
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"base": "somewhere"}))
    ctx = mp.get_context("fork")
    stop, out = ctx.Event(), ctx.Queue()
    reader = ctx.Process(target=_reader, args=(str(path), stop, out), daemon=True)
    reader.start()
    try:
        run_registry_writers([str(path)] * WRITERS, PER_WRITER)
    finally:                # a failed writer assertion must not leave the reader running (and pytest waiting)
        stop.set()
    parses, failures, drops = out.get(timeout=30)
    reader.join(30)
    data = json.loads(path.read_text())
    assert len(data) == 1 + WRITERS * PER_WRITER
    assert all(data[f"w{w}-{i}"]["path"] == f"runs/w{w}/{i}" for w in range(WRITERS) for i in range(PER_WRITER))
    assert failures == 0 and drops == 0 and parses > 50, (parses, failures, drops)
    assert sorted(os.listdir(tmp_path)) == ["models.json"]


def _hold_lock(path: str, held, release) -> None:
    with Registry(path).locked():
        held.set()
        release.wait(30)


def test_lock_timeout_names_the_lock_and_its_holder(tmp_path):
    path = tmp_path / "models.json"
    path.write_text("{}")
    ctx = mp.get_context("fork")
    held, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(path), held, release))
    holder.start()
    try:
        assert held.wait(30)
        t0 = time.monotonic()
        with pytest.raises(UserError, match=rf"{re.escape(str(path))}\.lock: lock not acquired .*pid={holder.pid}"):
            Registry(path, lock_timeout_s=0.3).register({"m": {"path": "x"}})
        assert time.monotonic() - t0 < 5
    finally:
        release.set()
        holder.join(30)
    assert path.read_text() == "{}"


def test_a_full_disk_leaves_the_registry_unchanged(tmp_path, monkeypatch):
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"a": "x"}))
    before = path.read_bytes()

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomicio.os, "fsync", full)
    with pytest.raises(UserError, match=re.escape(f"{path}: cannot write (No space left on device)")):
        Registry(path).register({"b": {"path": "y"}})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["models.json"]
