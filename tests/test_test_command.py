"""The test command (scripts/test.sh): vLLM's environment builds beside `.venv`'s setup and the suite,
and the real-vLLM tests wait for it (tests/vllmkit.py). Run on a copy of the script with stub
setup scripts and a stub `.venv/bin/python` in place of pytest."""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import vllmkit
from conftest import REPO

STUB_SETUP = """#!/usr/bin/env bash
echo setup >> calls
exit "${SETUP_RC:-0}"
"""
# The build ends after the suite has started: the stub pytest records whether its status existed yet.
STUB_BUILD = """#!/usr/bin/env bash
echo setup_vllm >> calls
sleep 1
echo "pip: some noise"
echo "setup_vllm: vllm ready in 1 s" >&2
[ -z "${BUILD_KILL:-}" ] || kill -9 "$PPID"        # the shell that would write the build's status
exit "${BUILD_RC:-0}"
"""
STUB_PYTEST = """#!/usr/bin/env bash
cd "$(dirname "$0")/../.."
ended=no; [ ! -e "${MTG_VLLM_BUILD:-/none}.rc" ] || ended=yes
echo "pytest $* build=${MTG_VLLM_BUILD:+set} ended=$ended" >> calls
echo "${MTG_VLLM_BUILD:-}" > build_path
exit "${PYTEST_RC:-0}"
"""


def _repo(tmp: Path) -> Path:
    repo = tmp / "repo"
    (repo / "scripts").mkdir(parents=True)
    for name in ("test.sh", "bashlib.sh"):
        shutil.copy(REPO / "scripts" / name, repo / "scripts" / name)
    (repo / "scripts" / "setup.sh").write_text(STUB_SETUP)
    (repo / "scripts" / "setup_vllm.sh").write_text(STUB_BUILD)
    (repo / ".venv" / "bin").mkdir(parents=True)
    (repo / ".venv" / "bin" / "python").write_text(STUB_PYTEST)
    (repo / ".venv" / "bin" / "python").chmod(0o755)
    return repo


PYTEST = "pytest -m pytest -n 2 --dist loadfile -q"


@pytest.mark.parametrize("env, code, calls, said, not_said", [
    ({}, 0, ["setup", "setup_vllm", f"{PYTEST} build=set ended=no"], ["setup_vllm: vllm ready in 1 s"],
     ["pip: some noise", "error:"]),
    ({"PYTEST_RC": "1"}, 1, ["setup", "setup_vllm", f"{PYTEST} build=set"], ["setup_vllm: vllm ready"], ["error:"]),
    ({"BUILD_RC": "3"}, 2, ["setup", "setup_vllm", f"{PYTEST} build=set"],
     ["pip: some noise", "error: scripts/setup_vllm.sh: the vLLM environment did not build (exit 3"], []),
    ({"BUILD_RC": "3", "PYTEST_RC": "1"}, 1, ["setup", "setup_vllm", f"{PYTEST} build=set"],
     ["did not build (exit 3"], []),
    ({"BUILD_KILL": "1"}, 2, ["setup", "setup_vllm", f"{PYTEST} build=set"], ["did not build (exit interrupted"],
     []),
    ({"SETUP_RC": "4"}, 4, ["setup", "setup_vllm"], [], []),
    ({"MTG_SKIP_VLLM": "1"}, 0, ["setup", f"{PYTEST} build= ended=no"], [], ["setup_vllm"]),
], ids=["both-pass", "tests-fail", "build-fails", "both-fail", "build-killed", "setup-fails", "vllm-skipped"])
def test_the_build_runs_beside_the_suite_and_its_failure_fails_the_command(env, code, calls, said, not_said, tmp_path):
    repo = _repo(tmp_path)
    base = {k: v for k, v in os.environ.items() if k not in ("MTG_SKIP_VLLM", "MTG_VLLM_BUILD")}
    done = subprocess.run(["bash", "scripts/test.sh", "-q"], cwd=repo, env={**base, **env}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == code, done.stderr
    lines = (repo / "calls").read_text().splitlines()
    # the build runs beside setup and the suite (in any order); the suite starts before the build ends
    assert len(lines) == len(calls) and all(any(got.startswith(want) for got in lines) for want in calls), lines
    for text in said:
        assert text in done.stderr, done.stderr
    for text in not_said:
        assert text not in done.stderr, done.stderr
    build = (repo / "build_path").read_text().strip() if (repo / "build_path").exists() else ""
    assert not build or not Path(build).parent.exists()        # its temporary folder is removed


@pytest.mark.parametrize("write, message", [
    (None, None),                                   # no background build: nothing to wait for
    ("0", None),
    ("2", "did not build (scripts/setup_vllm.sh, run by scripts/test.sh); its last lines:\n"
          "collecting vllm\npip: no matching"),
    ("never", "did not end in 1 s; its log: "),
], ids=["unset", "built", "failed", "never-ends"])
def test_the_vllm_tests_wait_for_the_build_and_fail_with_its_log(write, message, tmp_path, monkeypatch):
    build = tmp_path / "setup_vllm"
    if write is None:
        monkeypatch.delenv("MTG_VLLM_BUILD", raising=False)
    else:
        monkeypatch.setenv("MTG_VLLM_BUILD", str(build))
        Path(f"{build}.log").write_text("collecting vllm\npip: no matching distribution\n")
    ends = threading.Timer(0.3, lambda: Path(f"{build}.rc").write_text(f"{write}\n"))
    if write in ("0", "2"):
        ends.start()        # the build ends while the test waits
    try:
        if message is None:
            vllmkit.wait_for_background_build(timeout_s=30, poll_s=0.05)
            assert write is None or Path(f"{build}.rc").exists()
        else:
            with pytest.raises(pytest.fail.Exception) as failed:
                vllmkit.wait_for_background_build(timeout_s=1, poll_s=0.05)
            assert message in str(failed.value), str(failed.value)
    finally:
        ends.cancel()
