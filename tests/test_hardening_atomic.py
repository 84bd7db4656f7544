"""Writers killed mid-way leave the old output or the new one, never a torn one (SPEC §2.4).

The fact-CSV generator is the real `data_generation/generate.py`, SIGKILLed by an injected hook
just before and just after its rename; the evaluation results writer (`results.write_result`, a
directory) is SIGKILLed at each step of its protocol and at arbitrary moments from outside.
"""
from __future__ import annotations

import errno
import json
import multiprocessing as mp
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hardening_kit import REPO

from util_public import atomicio, facts
from util_public.datagen import run as datagen, schema as gen_schema
from util_public.errors import UserError
from util_public.evaluation import results

GENERATE = REPO / "data_generation" / "generate.py"

# Runs generate.py as __main__ with os.replace wrapped: at the rename of the file named argv[1],
# the process SIGKILLs itself before (argv[2] == "before") or after ("after") the rename.
_KILL_AT_RENAME = """
import os, runpy, signal, sys
target, when, script, *args = sys.argv[1:]
real = os.replace
def replace(src, dst, *a, **k):
    hit = os.path.basename(os.fspath(dst)) == target
    if hit and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    out = real(src, dst, *a, **k)
    if hit:
        os.kill(os.getpid(), signal.SIGKILL)
    return out
os.replace = replace
sys.argv = [script, *args]
runpy.run_path(script, run_name="__main__")
"""


def _generate_args(data_root: Path, seed: int) -> list[str]:
    return [f"output_dir={data_root}", "relation_ids=[50]", "num_facts=150", f"seed={seed}", "on_exists=overwrite"]


def _generate_killed(data_root: Path, seed: int, kill: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", _KILL_AT_RENAME, "50.csv", kill, str(GENERATE), *_generate_args(data_root, seed)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd="/",
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def _generate(data_root: Path, seed: int) -> None:
    """An uninterrupted run, in-process (the same code the entry point calls)."""
    args = _generate_args(data_root, seed)
    datagen.main(gen_schema.compose(args), args)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """The old (seed 1) and new (seed 2) bytes of 50.csv, produced by uninterrupted runs."""
    out = {}
    for seed in (1, 2):
        root = tmp_path_factory.mktemp(f"seed{seed}")
        _generate(root, seed)
        out[seed] = (root / "sync_random_o" / "50.csv").read_bytes()
    assert out[1] != out[2]
    return out


@pytest.mark.parametrize("kill", ["before", "after"])
def test_killed_fact_generator_leaves_old_or_new_csv(kill, generated, tmp_path):
    dataset = tmp_path / "sync_random_o"
    dataset.mkdir()
    (dataset / "50.csv").write_bytes(generated[1])
    proc = _generate_killed(tmp_path, 2, kill)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    expected = generated[1] if kill == "before" else generated[2]
    assert (dataset / "50.csv").read_bytes() == expected
    assert len(facts.read_facts(dataset / "50.csv")) == 150
    leftovers = {p.name.split(".tmp-")[0] for p in dataset.iterdir() if atomicio.is_staging(p.name)}
    # The CSV and its manifest are both staged before the first rename; a kill after the CSV's
    # rename leaves the manifest's staging file (the old manifest stays until the next run).
    assert leftovers == ({".50.csv", ".manifest.json"} if kill == "before" else {".manifest.json"})
    # The next run cleans the dead writer's temporary and completes.
    _generate(tmp_path, 2)
    assert (dataset / "50.csv").read_bytes() == generated[2]
    assert not [p for p in dataset.iterdir() if ".tmp" in p.name]


def test_an_append_killed_between_its_renames_is_not_appended_twice(tmp_path):
    """50.csv renamed (appended), then SIGKILL before 21.csv and the manifest: the rerun appended
    to 50.csv again (15 facts beside 21's 10), and its manifest then recorded the 15."""
    args = [f"output_dir={tmp_path}", "relation_ids=[50,21]", "num_facts=5", "seed=1", "num_options=4"]
    datagen.main(gen_schema.compose(args), args)
    dataset = tmp_path / "sync_random_o"
    append = [*args, "on_exists=append"]
    proc = subprocess.run([sys.executable, "-c", _KILL_AT_RENAME, "50.csv", "after", str(GENERATE), *append],
                          capture_output=True, text=True, timeout=120, cwd="/", env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    counts = {rel: len(facts.read_facts(dataset / f"{rel}.csv", num_options=4)) for rel in ("50", "21")}
    assert counts == {"50": 10, "21": 5}
    before = {p.name: p.read_bytes() for p in dataset.glob("*.csv")}
    with pytest.raises(UserError) as err:
        datagen.main(gen_schema.compose(append), append)
    assert err.value.where == str(dataset / "50.csv") and "manifest.json" in err.value.problem
    assert {p.name: p.read_bytes() for p in dataset.glob("*.csv")} == before     # nothing written
    one = [f"output_dir={tmp_path}", "relation_ids=[21]", "num_facts=5", "seed=1", "num_options=4", "on_exists=append"]
    datagen.main(gen_schema.compose(one), one)          # the relation the kill left behind, alone
    assert len(facts.read_facts(dataset / "21.csv", num_options=4)) == 10


# ---- evaluation result directories ------------------------------------------------------------------
N_RECORDS = 3000


def _result(tag: str) -> tuple[list[dict], dict]:
    records = [{"fact_id": i, "tag": tag, "pad": "x" * 200} for i in range(N_RECORDS)]
    return records, {"schema": "mtg.eval/1", "config_hash": tag, "n": N_RECORDS}


def _write(directory: Path, tag: str) -> None:
    records, summary = _result(tag)
    results.write_result(directory, records, summary, f"tag: {tag}\n")


def _state(directory: Path) -> str:
    """'old' / 'new' for a complete result, 'absent' when the final name does not exist; else fails."""
    if not directory.exists():
        return "absent"
    names = sorted(p.name for p in directory.iterdir())
    assert names == ["config.yaml", "records.jsonl", "summary.json"], names
    tag = json.loads((directory / "summary.json").read_text())["config_hash"]
    records = atomicio.read_jsonl(directory / "records.jsonl")
    assert len(records) == N_RECORDS and {r["tag"] for r in records} == {tag}
    assert (directory / "config.yaml").read_text() == f"tag: {tag}\n"
    return tag


def _killed_writer(directory: str, point: str) -> None:
    """Child: overwrite the old result with the new one, SIGKILLing itself at `point`."""
    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    real_replace, real_fsync = os.replace, os.fsync
    fsyncs = []

    def fsync(fd):
        fsyncs.append(fd)
        if point == "mid-build" and len(fsyncs) == 2:       # records written, summary not yet
            die()
        return real_fsync(fd)

    def replace(src, dst, *a, **k):
        if point == "between-renames" and str(dst) == directory:
            die()                                            # the old one is aside, the new not in
        return real_replace(src, dst, *a, **k)

    os.fsync, os.replace = fsync, replace
    _write(Path(directory), "new")
    if point == "after":
        die()


@pytest.mark.parametrize("point,before_clean,after_clean", [
    ("mid-build", "old", "old"),
    ("between-renames", "absent", "old"),
    ("after", "new", "new"),
])
def test_killed_results_writer_leaves_old_or_new_directory(point, before_clean, after_clean, tmp_path):
    directory = tmp_path / "mc" / "hgp-0" / "m" / "toy" / "50" / "close" / "f0-9-abcdef12"
    _write(directory, "old")
    child = mp.get_context("fork").Process(target=_killed_writer, args=(str(directory), point))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    assert _state(directory) == before_clean
    atomicio.clean_stale_temporaries(directory.parent)       # what the next evaluation does first
    assert _state(directory) == after_clean
    assert sorted(p.name for p in directory.parent.iterdir()) == [directory.name]


def _rewrite_forever(directory: str, ready) -> None:
    _write(Path(directory), "old")
    ready.set()
    while True:
        _write(Path(directory), "new")
        _write(Path(directory), "old")


def _rewrite_until_paused(directory: str, paused) -> None:
    """Writes "old", then starts writing "new" and stops at its first fsync (a file of the staged
    result is written, nothing renamed), waiting there to be killed from outside."""
    _write(Path(directory), "old")

    def fsync(fd):
        paused.set()
        time.sleep(120)

    os.fsync = fsync
    _write(Path(directory), "new")


def test_results_writer_killed_at_arbitrary_moments(tmp_path):
    directory = tmp_path / "f0-9-abcdef12"
    ctx = mp.get_context("fork")
    for delay in (0.02, 0.07, 0.13, 0.29, 0.41):       # wherever the writer happens to be
        ready = ctx.Event()
        child = ctx.Process(target=_rewrite_forever, args=(str(directory), ready))
        child.start()
        assert ready.wait(30)
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)
        assert _state(directory) in ("old", "new", "absent")
        atomicio.clean_stale_temporaries(tmp_path)
        assert _state(directory) in ("old", "new")
        assert [p.name for p in tmp_path.iterdir()] == [directory.name]

    # and one kill that certainly lands mid-write (a timed kill may fall between two writes)
    paused = ctx.Event()
    child = ctx.Process(target=_rewrite_until_paused, args=(str(directory), paused))
    child.start()
    try:
        assert paused.wait(30)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)
    assert child.exitcode == -signal.SIGKILL
    staged = [p for p in tmp_path.iterdir() if p != directory]
    assert staged and all(".tmp-" in p.name for p in staged), staged       # killed with the new one half built
    assert _state(directory) == "old"
    assert atomicio.clean_stale_temporaries(tmp_path) == sorted(staged)
    assert _state(directory) == "old" and [p.name for p in tmp_path.iterdir()] == [directory.name]


def test_a_failing_disk_keeps_the_old_file_and_names_it(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    atomicio.write_json(target, {"v": "old"})

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomicio.os, "replace", full)
    with pytest.raises(UserError, match=re.escape(f"{target}: cannot write (No space left on device)")):
        atomicio.write_json(target, {"v": "new"})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"v": "old"} and [p.name for p in tmp_path.iterdir()] == [target.name]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EIO])
def test_a_directory_that_cannot_be_renamed_in_keeps_the_old_one(tmp_path, monkeypatch, code):
    """rename(2) may fail for want of a directory block; the old result, set aside for the new one,
    was deleted all the same, and neither stood."""
    target = tmp_path / "result"
    with atomicio.atomic_dir(target) as staging:
        (staging / "summary.json").write_text("old")
    real = os.replace

    def failing(src, dst):
        if Path(src).name.startswith(".result.tmp-"):
            raise OSError(code, os.strerror(code))
        return real(src, dst)

    monkeypatch.setattr(atomicio.os, "replace", failing)
    with pytest.raises(Exception):
        with atomicio.atomic_dir(target) as staging:
            (staging / "summary.json").write_text("new")
    monkeypatch.undo()
    assert (target / "summary.json").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["result"]


DIRECTORY_FAILURES = [   # (raised inside the block, explained as a full or read-only disk?)
    (OSError(errno.ENOSPC, "No space left on device"), True),
    (OSError(errno.EROFS, "Read-only file system"), True),
    (RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 3951822848 vs 3951822740"), True),
    (Exception('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'),
     True),                                                             # safetensors
    (OSError(errno.ENOENT, "No such file or directory"), False),        # a missing input, not the disk
    (UserError("x.json", "cannot write (No space left on device)"), False),   # already explained
]


@pytest.mark.parametrize("error, explained", DIRECTORY_FAILURES,
                         ids=["enospc", "erofs", "torch-zip", "safetensors", "enoent", "user-error"])
def test_a_staged_directory_that_fills_the_disk_names_the_directory(tmp_path, error, explained):
    target = tmp_path / "converted"
    with pytest.raises(Exception) as failed:
        with atomicio.atomic_dir(target) as staging:
            (staging / "model.safetensors").write_bytes(b"partial")
            raise error
    if explained:
        assert isinstance(failed.value, UserError) and failed.value.__cause__ is error
        assert re.fullmatch(rf"error: {re.escape(str(target))}: cannot write \(.+; \d+\.\d GiB free on its disk\); .+",
                            failed.value.message)
    else:
        assert failed.value is error
    assert list(tmp_path.iterdir()) == []                               # no partial directory


@pytest.mark.parametrize("kind", ["file", "link"])
def test_a_file_where_a_directory_goes_is_refused_and_kept(tmp_path, kind):
    """A result's directory name taken by a user's file: it was set aside as `.{name}.old-*` and left."""
    target = tmp_path / "f0-4-6c63a951"
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    target.write_text("mine") if kind == "file" else target.symlink_to(notes)
    with pytest.raises(UserError) as refused:
        with atomicio.atomic_dir(target) as staging:
            (staging / "summary.json").write_text("{}")
    assert refused.value.message == (f"error: {target}: is a file, where a directory is to be written; "
                                     "move it away or choose another output location")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({target.name, notes.name})
    assert target.read_text() == "mine"


def test_a_live_writers_temporary_is_not_cleaned(tmp_path):
    live = tmp_path / f".out.json.tmp-{os.getppid()}"      # a running process (our parent)
    dead = tmp_path / ".out.json.tmp-999999999"
    for p in (live, dead):
        p.write_text("partial")
    atomicio.clean_stale_temporaries(tmp_path)
    assert live.exists() and not dead.exists()


# ---- the audit: every output in util_public goes through atomicio ----------------------------------
# Direct writes that are not outputs: each is allowed with the reason it is safe.
ALLOWED_DIRECT_WRITES = {
    ("util_public/embedded.py", "open(joined, \"wb\")"): "inside the atomic_dir temporary of the conversion",
    ("util_public/embedded.py", "save_pretrained(out_dir"): "inside the atomic_dir temporary of the conversion",
    ("util_public/embedded.py", "tokenizer.save_pretrained(out_dir)"): "same temporary directory",
    ("util_public/datagen/importer.py", ".write_text(text, encoding=\"utf-8\")"): "a throw-away mkdtemp staging copy",
    ("util_public/vllm_server.py", "open(log_path, \"ab\")"): "the vLLM server's log: append-only, as logs may be",
    ("util_public/training/trainer.py", "save_model(self.accelerator"): "fp32 master weights inside the staged "
                                                                       "checkpoint (checkpoints.tmp/), renamed later",
}
OPEN_FOR_WRITING = re.compile(r"""open\([^)]*["'][wax]b?\+?["']""")
WRITE_CALLS = re.compile(r"\.write_text\(|\.write_bytes\(|\.to_csv\(|json\.dump\(|save_pretrained\(|savefig\(|"
                         r"np\.save|torch\.save\(|save_file\(|save_model\(|yaml\.dump\(")


def _direct_writes() -> list[tuple[str, str]]:
    found = []
    for path in sorted((REPO / "util_public").rglob("*.py")):
        rel = str(path.relative_to(REPO))
        if rel == "util_public/atomicio.py":
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            code = line.split("#", 1)[0]
            bare = re.sub(r""""[^"]*"|'[^']*'""", '""', code)     # calls named inside messages do not count
            hit = OPEN_FOR_WRITING.search(code) or WRITE_CALLS.search(bare)
            if hit and "atomicio." not in code and "(buf" not in code:  # (buf: rendered in memory first
                found.append((rel, code.strip()))
    return found


def test_every_output_write_goes_through_atomicio():
    found = _direct_writes()
    for f, snippet in ALLOWED_DIRECT_WRITES:     # the scanner sees the known ones (and the list stays current)
        assert any(rel == f and snippet in code for rel, code in found), (f, snippet)
    unexplained = []
    for rel, code in found:
        if any(rel == f and snippet in code for f, snippet in ALLOWED_DIRECT_WRITES):
            continue
        if rel == "util_public/training/rundir.py" and "save_file(converted" in code:
            continue      # rewrites weights inside the staged checkpoint (checkpoints.tmp/), renamed later
        unexplained.append(f"{rel}: {code}")
    assert not unexplained, "non-atomic writes:\n" + "\n".join(unexplained)
