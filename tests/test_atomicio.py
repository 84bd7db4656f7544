"""Atomic writes leave either the old or the new content, never a torn file."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO
from util_public import atomicio
from util_public.errors import UserError


def test_write_json_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    atomicio.write_json(target, {"a": 1})
    atomicio.write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


@pytest.mark.parametrize("block,hint", [
    ("dir", "a directory has that name"),      # the target itself is a directory
    ("file", "not a folder"),                  # its parent is a regular file
])
def test_a_failed_write_gets_the_hint_for_its_reason(tmp_path, block, hint):
    good = tmp_path / "good.json"
    good.write_text("old")
    (tmp_path / "x").mkdir() if block == "dir" else (tmp_path / "x").write_text("a file")
    target = tmp_path / "x" if block == "dir" else tmp_path / "x" / "out.json"
    with pytest.raises(UserError) as err:
        atomicio.write_many([(good, b"new"), (target, b"new")])
    assert err.value.where == str(target) and hint in err.value.hint and "disk space" not in err.value.hint
    assert good.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["good.json", "x"]


def test_atomic_dir_appears_only_when_complete(tmp_path):
    target = tmp_path / "ckpt"
    with pytest.raises(RuntimeError):
        with atomicio.atomic_dir(target) as tmp:
            (tmp / "weights").write_text("half")
            raise RuntimeError("interrupted")
    assert not target.exists() and not (tmp_path / "ckpt.tmp").exists()
    with atomicio.atomic_dir(target) as tmp:
        (tmp / "weights").write_text("full")
    assert (target / "weights").read_text() == "full"


def test_read_jsonl_ignores_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"st')
    assert atomicio.read_jsonl(path) == [{"step": 1}, {"step": 2}]


_KILLED_WRITER = """
import sys, time
sys.path.insert(0, {repo!r})
from util_public import atomicio
from util_public.errors import UserError
payload = "x" * 5_000_000
atomicio.write_text({target!r}, "old\\n")
print("ready", flush=True)
while True:
    atomicio.write_text({target!r}, payload)
    atomicio.write_text({target!r}, "old\\n")
"""


def test_sigkill_mid_write_never_leaves_a_torn_file(tmp_path):
    target = tmp_path / "result.txt"
    for delay in (0.05, 0.13, 0.31):
        proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER.format(repo=str(REPO), target=str(target))],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert target.read_text() in ("old\n", "x" * 5_000_000)
    removed = atomicio.clean_stale_temporaries(tmp_path)
    assert all(".tmp-" in p.name for p in removed)
    assert [p.name for p in tmp_path.iterdir()] == ["result.txt"]
