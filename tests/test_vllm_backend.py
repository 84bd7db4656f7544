"""The vLLM backend's HTTP side against stand-in servers (no vLLM): a server that stops or fails
mid-evaluation is one error line, and the context it is given fits the model."""
from __future__ import annotations

import http.server
import json
import threading
import time

import pytest
from conftest import save_tiny_checkpoint

from util_public.errors import UserError
from util_public.evaluation import runner
from util_public.evaluation.backends import vllm
from util_public.evaluation.schema import EvalConfig

BODY = {"prompt": [[1, 2, 3]], "max_tokens": 1}


class StandIn(http.server.ThreadingHTTPServer):
    """/health answers `health` after `health_delay` s; /v1/completions answers `status` after `delay` s,
    or (`status` None) holds each request until `release`, as a stopping vLLM does, then answers it."""
    daemon_threads = True

    def __init__(self, status: int | None, health: int = 200, delay: float = 0.0, health_delay: float = 0.0):
        self.status, self.health, self.release = status, health, threading.Event()
        self.delay, self.health_delay = delay, health_delay
        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def stop_listening(self) -> None:
        self.shutdown()
        self.server_close()          # new connections are refused; the held requests stay open


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        time.sleep(self.server.health_delay)
        self.send_response(self.server.health)
        self.end_headers()

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(self.server.delay)
        status = self.server.status
        if status is None:
            self.server.release.wait(60)
            status = 200
        self.send_response(status)
        self.end_headers()
        self.wfile.write(json.dumps({"choices": []}).encode() if status == 200 else b"engine dead")


def backend(url: str, timeout_s: float = 3600) -> vllm.VllmBackend:
    """The backend's HTTP state without a model: no server of its own, `url` to talk to."""
    b = object.__new__(vllm.VllmBackend)
    b.url, b.model, b.timeout_s, b.server, b.rows_per_call = url, "m", timeout_s, None, 1
    return b


def test_a_server_that_stops_mid_request_is_an_error_not_a_wait(monkeypatch):
    """SIGTERM left vLLM 'waiting for connections to close': an evaluation waited out
    vllm.request_timeout_s (an hour) on the requests it held."""
    monkeypatch.setattr(vllm, "WATCH_S", 0.2)
    server = StandIn(status=None)
    threading.Timer(0.5, server.stop_listening).start()
    started = time.monotonic()
    try:
        with pytest.raises(UserError, match=r"stopped during the evaluation: it refuses connections"):
            backend(server.url)._post_all([BODY] * 6)
    finally:
        server.release.set()
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("health, health_delay", [(200, 0.0), (200, 1.0), (404, 0.0)])
def test_a_busy_server_is_waited_for(health, health_delay, monkeypatch):
    """Answers after 1 s, several checks apart: a /health that times out (a busy server) or that
    a proxy in front of the server does not know (404) is no sign of a stopped server."""
    monkeypatch.setattr(vllm, "WATCH_S", 0.2)
    server = StandIn(status=200, health=health, delay=1.0, health_delay=health_delay)
    assert backend(server.url)._post_all([BODY] * 6) == [[]] * 6
    server.stop_listening()


def test_a_failed_request_is_one_error_line():
    """An engine error came back as a RuntimeError traceback (exit 1), not the project's error line."""
    server = StandIn(status=500)
    with pytest.raises(UserError, match=r"vllm server .*: HTTP 500: b'engine dead'"):
        backend(server.url)._post_all([BODY] * 3)
    server.stop_listening()


def test_the_log_an_error_names_outlives_the_server(tmp_path):
    """The error of a server that failed mid-run named its temporary log, which closing the backend
    then deleted."""
    import subprocess

    from util_public import vllm_server

    log = tmp_path / "mtg-vllm.log"
    log.write_text("engine died\n")
    stand_in = StandIn(status=500)
    b = backend(stand_in.url)
    b.server = vllm_server.Server(subprocess.Popen(["sleep", "30"], start_new_session=True), stand_in.url, "m",
                                  log, temporary_log=True)
    try:
        with pytest.raises(UserError, match=f"its log: {log}"):
            b._post_all([BODY])
    finally:
        b.server.close()
        stand_in.stop_listening()
    assert log.read_text() == "engine died\n"


def test_a_failing_health_check_stops_the_requests_not_yet_sent(monkeypatch):
    """When the check failed, the worker threads went on sending the remaining requests."""
    monkeypatch.setattr(vllm, "WATCH_S", 0.2)
    server = StandIn(status=None, health=503)
    sent = []
    post = vllm.VllmBackend._post
    monkeypatch.setattr(vllm.VllmBackend, "_post", lambda self, body: sent.append(body) or post(self, body))
    try:
        with pytest.raises(UserError, match="stopped during the evaluation: its /health answers HTTP 503"):
            backend(server.url)._post_all([BODY] * 12)
    finally:
        server.release.set()                        # the held requests are answered now
    time.sleep(0.5)
    assert len(sent) == vllm.IN_FLIGHT              # and the workers sent none of the other eight
    server.stop_listening()


@pytest.mark.parametrize("asked, own, given", [(4096, 2048, 2048), (1024, 2048, 1024), (4096, 8192, 4096)])
def test_the_server_context_is_capped_at_the_models_own(asked, own, given, sp_tokenizer, tmp_path):
    """vllm.max_model_len=4096 (the default) made vLLM refuse every model with a shorter context."""
    ckpt = save_tiny_checkpoint(sp_tokenizer, tmp_path / "m")
    config = json.loads((ckpt / "config.json").read_text())
    config["max_position_embeddings"] = own
    (ckpt / "config.json").write_text(json.dumps(config))
    assert vllm.context_tokens(asked, str(ckpt)) == given
    cfg = EvalConfig()
    cfg.vllm.max_model_len = asked
    assert runner._max_len("vllm", cfg, str(ckpt)) == given - 1      # one token generated per request



class Sent(Exception):
    """Raised where the backend would have sent its requests to the server."""


@pytest.mark.parametrize("task", ["mc", "gen"])
@pytest.mark.parametrize("short", [0, 1])
def test_the_plan_and_the_backend_draw_the_length_limit_at_the_same_token(task, short, sp_tokenizer, monkeypatch):
    """The plan refused a generation prompt one token shorter than the backend would have run."""
    from util_public.evaluation import plan, requests

    context = "The capital of Reltesh is"
    ids = requests.prompt_ids(sp_tokenizer, context, [])
    cfg = EvalConfig()
    cfg.gen.max_new_tokens = 3
    extra = cfg.gen.max_new_tokens if task == "gen" else 1
    b = backend("http://127.0.0.1:1/v1")
    b.context = len(ids) + extra + 1 - short   # vllm.max_model_len: scoring generates one token more
    b.max_len = b.context - 1                   # as runner._max_len gives the plan
    b.stop = set()

    def send(*args, **kwargs):
        raise Sent

    monkeypatch.setattr(b, "_rows", send)
    monkeypatch.setattr(b, "token_logprobs", send)
    verdicts = []
    for step in (lambda: plan._check_lengths({0: context}, sp_tokenizer, [], b.max_len, cfg, [task]),
                 lambda: b.generate([ids], extra) if task == "gen"
                 else b.score([requests.Request(0, tuple(ids), (5,), 2)])):
        try:
            step()
        except Sent:
            pass
        except UserError:
            verdicts.append("refused")
            continue
        verdicts.append("ran")
    assert verdicts == ["refused" if short else "ran"] * 2


@pytest.mark.parametrize("listed, extra", [(None, set()), (7, {7}), ([7, 9], {7, 9})])
def test_vllm_stops_where_the_hf_backend_stops(listed, extra, sp_tokenizer, tmp_path):
    """One stop set from the tokenizer's EOS and every EOS of generation_config.json (a list in
    Qwen2.5's), read from the checkpoint by vLLM and from the loaded model by hf."""
    from transformers import AutoModelForCausalLM

    from util_public import greedy

    ckpt = save_tiny_checkpoint(sp_tokenizer, tmp_path / "m")
    if listed is None:
        (ckpt / "generation_config.json").unlink()
    else:
        config = json.loads((ckpt / "generation_config.json").read_text())
        (ckpt / "generation_config.json").write_text(json.dumps({**config, "eos_token_id": listed}))
    hf_config = AutoModelForCausalLM.from_pretrained(ckpt).generation_config
    expected = {sp_tokenizer.eos_token_id} | extra
    assert vllm.stop_ids(str(ckpt), sp_tokenizer) == greedy.stop_ids(sp_tokenizer, hf_config) == expected
