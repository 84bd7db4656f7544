"""Helpers for the hardening suite: per-case roots, file snapshots, and a batch entry-point driver.

Starting a Python process that imports torch costs seconds, so the entry-point cases of one
script run in a single driver process: `python tests/hardening_kit.py CASES.json RESULTS.json`
executes the real script file (`runpy`, as `__main__`) once per case with that case's argv and
MTG_* environment, and records the exit code and stderr of each. Everything a case observes
(Hydra composition, `exit_on_user_error`, `sys.exit`) is what a user's process would do.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import runpy
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOT_VARS = ("MTG_DATA_ROOT", "MTG_RUNS_ROOT", "MTG_RESULTS_ROOT", "MTG_MODELS_JSON")


@dataclass
class Roots:
    """One case's private data, runs and results roots and registry file."""
    base: Path
    data: Path = field(init=False)
    runs: Path = field(init=False)
    results: Path = field(init=False)
    registry: Path = field(init=False)

    def __post_init__(self):
        self.base = Path(self.base)
        self.data, self.runs, self.results = (self.base / n for n in ("data", "runs", "results"))
        self.registry = self.base / "models.json"

    @property
    def env(self) -> dict[str, str]:
        return dict(zip(ROOT_VARS, map(str, (self.data, self.runs, self.results, self.registry))))


def snapshot(*dirs: Path) -> dict[str, str]:
    """sha256 of every file and the name of every folder below `dirs` (symlinks not followed):
    what a failed run must not change (an empty folder left behind counts as a change)."""
    out = {}
    for d in dirs:
        for p in sorted(Path(d).rglob("*")):
            if p.is_symlink():
                out[str(p)] = "link"
            elif p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            elif p.is_dir():
                out[str(p)] = "folder"
    return out


def _registry_writer(path: str, worker: int, count: int, start) -> None:
    from util_public.registry import Registry

    start.wait(30)
    reg = Registry(path)
    for i in range(count):
        reg.register({f"w{worker}-{i}": {"path": f"runs/w{worker}/{i}", "kind": "checkpoint"}})


def run_registry_writers(targets: list[str], count: int, timeout_s: float = 180) -> None:
    """One process per registry path in `targets` (forked, started together), each registering
    `count` entries `w{worker}-{i}`; every one must exit 0."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    start = ctx.Event()
    writers = [ctx.Process(target=_registry_writer, args=(t, w, count, start)) for w, t in enumerate(targets)]
    for p in writers:
        p.start()
    start.set()
    for p in writers:
        p.join(timeout_s)
        assert p.exitcode == 0


def drive(cases_file: str, results_file: str) -> None:
    """Run each case's script in this process (in the case's `cwd` if given); write
    {id: {"code", "stderr"}} to `results_file`."""
    cases = json.loads(Path(cases_file).read_text())
    results = {}
    for case in cases:
        saved_env = dict(os.environ)
        os.environ.update(case["env"])
        for name in case.get("unset", []):
            os.environ.pop(name, None)
        sys.argv = [case["script"], *case["argv"]]
        cwd = os.getcwd()
        os.chdir(case.get("cwd", cwd))
        err = io.StringIO()
        code = 0
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                runpy.run_path(case["script"], run_name="__main__")
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException as exc:      # an escaped exception is what exit code 1 would be
                print(f"Traceback (escaped): {type(exc).__name__}: {exc}", file=err)
                code = 1
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        results[case["id"]] = {"code": code, "stderr": err.getvalue()}
    Path(results_file).write_text(json.dumps(results))


def start_driver(cases: list[dict], workdir: Path, name: str) -> tuple[subprocess.Popen, Path]:
    """Launch one driver process for `cases` (returns it with the path its results will be in)."""
    workdir.mkdir(parents=True, exist_ok=True)
    cases_file, results_file = workdir / f"{name}.cases.json", workdir / f"{name}.results.json"
    cases_file.write_text(json.dumps(cases))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MTG_DEBUG": "0"}
    proc = subprocess.Popen([sys.executable, __file__, str(cases_file), str(results_file)], env=env, cwd="/",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, results_file


if __name__ == "__main__":
    drive(sys.argv[1], sys.argv[2])
