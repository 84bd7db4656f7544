"""The server launcher without vLLM: a stand-in interpreter (MTG_VLLM_PYTHON) that fails, hangs or serves."""
from __future__ import annotations

import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from util_public import vllm_env, vllm_server
from util_public.errors import UserError

SETTINGS = vllm_server.Settings("/models/m", "m", "fp32", max_model_len=256, seed=3, cpu_kvcache_gib=2,
                                num_threads=1)


def _fake_python(tmp_path: Path, body: str, monkeypatch) -> Path:
    """A stand-in for vLLM's interpreter running `body`; it runs our start-up wrapper
    (`vllm_server.stopped_with_this_process`) with a real Python, as the real one does."""
    script = tmp_path / "python"
    script.write_text(f'#!/bin/bash\nif [ "$1" = "-c" ]; then exec {sys.executable} "$@"; fi\n{body}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("MTG_VLLM_PYTHON", str(script))
    return script


def test_command_and_environment_on_cpu_and_gpu():
    cpu, gpu = vllm_env.VllmEnv("py", cpu=True), vllm_env.VllmEnv("py", cpu=False)
    cmd = vllm_server.command(cpu, SETTINGS, 8001)
    assert cmd[:3] == ["py", "-m", "vllm.entrypoints.openai.api_server"]
    assert " ".join(cmd[3:]).startswith("--model /models/m --served-model-name m --host 127.0.0.1 --port 8001")
    assert "--enforce-eager" in cmd and "--gpu-memory-utilization" not in cmd
    assert cmd[cmd.index("--dtype") + 1] == "float32" and cmd[cmd.index("--max-model-len") + 1] == "256"
    assert "--enforce-eager" not in vllm_server.command(gpu, SETTINGS, 8001)
    env = vllm_server.environment(cpu, SETTINGS)
    assert (env["VLLM_CPU_KVCACHE_SPACE"], env["OMP_NUM_THREADS"], env["HF_HUB_OFFLINE"]) == ("2", "1", "1")
    assert "VLLM_CPU_KVCACHE_SPACE" not in vllm_server.environment(gpu, SETTINGS)
    assert [vllm_server.engine_dtype("auto", c) for c in (True, False)] == ["float32", "bfloat16"]
    with pytest.raises(UserError, match="model.dtype"):
        vllm_server.engine_dtype("fp8", True)


def test_a_server_that_exits_while_starting_is_one_error_line_naming_the_log(tmp_path, monkeypatch):
    _fake_python(tmp_path, 'echo "loading"; echo "ValueError: no config.json in /models/m" >&2; exit 1', monkeypatch)
    with pytest.raises(UserError) as err:
        vllm_server.start(SETTINGS, timeout_s=30, log_path=tmp_path / "server.log")
    message = err.value.message
    assert "\n" not in message and "exited with code 1" in message
    assert "ValueError: no config.json in /models/m" in message and str(tmp_path / "server.log") in message


# The end of a server log -> the reason the error quotes (vLLM ends a config error with pydantic's footer).
STOP_REASONS = [
    ("loading\nValueError: no config.json in /models/m", "ValueError: no config.json in /models/m"),
    ("pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig\n"
     "  Value error, max_model_len (4096) is greater than the derived max_model_len (2048) [type=value_error]\n"
     "    For further information visit https://errors.pydantic.dev/2.14/v/value_error",
     "Value error, max_model_len (4096) is greater than the derived max_model_len (2048) [type=value_error]"),
    ("starting\nKilled", "Killed"),            # no line names an error: the last one
]


@pytest.mark.parametrize("log, reason", STOP_REASONS)
def test_the_error_quotes_the_line_that_says_why_the_server_stopped(log, reason, tmp_path, monkeypatch):
    (tmp_path / "said").write_text(log + "\n")
    _fake_python(tmp_path, f'cat {tmp_path / "said"}; exit 1', monkeypatch)
    with pytest.raises(UserError) as err:
        vllm_server.start(SETTINGS, timeout_s=30, log_path=tmp_path / "server.log")
    assert f"while starting: {reason}" in err.value.message


def test_a_server_that_never_answers_is_stopped_with_its_children(tmp_path, monkeypatch):
    _fake_python(tmp_path, f'sleep 300 & echo $! > {tmp_path}/child; wait', monkeypatch)
    started = time.monotonic()
    with pytest.raises(UserError, match="not up after 2 s"):
        vllm_server.start(SETTINGS, timeout_s=2)
    assert time.monotonic() - started < 30
    child = int((tmp_path / "child").read_text())
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)     # the whole process group went, not only the launcher


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


# A stand-in for the OpenAI server: answers GET /v1/models on the port it is given.
SERVE = ('port=$(echo "$@" | sed -E "s/.*--port ([0-9]+).*/\\1/"); exec python3 -c "'
         'import http.server, sys\n'
         'class H(http.server.BaseHTTPRequestHandler):\n'
         '    def do_GET(self):\n'
         '        self.send_response(200); self.end_headers(); self.wfile.write(b\'{\\"data\\": []}\')\n'
         'http.server.HTTPServer((\'127.0.0.1\', int(sys.argv[1])), H).serve_forever()" $port')


def test_a_server_that_answers_is_ready_and_close_removes_its_temporary_log(tmp_path, monkeypatch):
    _fake_python(tmp_path, SERVE, monkeypatch)
    with vllm_server.start(SETTINGS, timeout_s=30) as server:
        assert server.base_url.startswith("http://127.0.0.1:") and server.log_path.is_file()
        assert vllm_server.get_json(f"{server.base_url}/models") == {"data": []}
    assert server.proc.poll() is not None and not server.log_path.exists()


def test_the_server_stops_when_the_process_that_started_it_is_killed(tmp_path, monkeypatch):
    """`timeout`, `kill` or scancel of an evaluation left its vLLM server (and engine) running."""
    _fake_python(tmp_path, SERVE, monkeypatch)
    starter = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from util_public import vllm_server\n"
        "s = vllm_server.start(vllm_server.Settings('/models/m', 'm', 'fp32', 256), timeout_s=30)\n"
        "print(s.proc.pid, flush=True)\n"
        "time.sleep(300)\n")], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        server = int(starter.stdout.readline())
        assert _alive(server)
        starter.kill()                                    # SIGKILL: no clean-up code of ours runs
        deadline = time.monotonic() + 15
        while _alive(server) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(server)
    finally:
        starter.kill()
        starter.wait()


def test_without_an_environment_the_error_names_the_setup_command(tmp_path, monkeypatch):
    monkeypatch.delenv("MTG_VLLM_PYTHON", raising=False)
    monkeypatch.setenv("MTG_VLLM_ENV", str(tmp_path / "none"))
    with pytest.raises(UserError) as err:
        vllm_env.require("backend=vllm")
    assert f"no environment at {tmp_path / 'none'}" in err.value.message
    assert "bash scripts/setup_vllm.sh" in err.value.message and "backend=hf" in err.value.message


def test_an_interpreter_that_cannot_run_is_one_error_line_and_leaves_no_log(tmp_path, monkeypatch):
    """Executable on disk but not a program this machine runs (a copy from another platform)."""
    broken = tmp_path / "python"
    broken.write_bytes(b"\x7fELF not really")
    broken.chmod(0o755)
    monkeypatch.setenv("MTG_VLLM_PYTHON", str(broken))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    vllm_server.tempfile.tempdir = None          # TMPDIR is read once per process
    try:
        with pytest.raises(UserError) as err:
            vllm_server.start(SETTINGS, timeout_s=5)
    finally:
        vllm_server.tempfile.tempdir = None
    assert err.value.message.startswith(f"error: backend: vLLM interpreter {broken}: cannot be started (Exec format error)")
    assert "setup_vllm.sh" in err.value.message and list((tmp_path / "tmp").iterdir()) == []
