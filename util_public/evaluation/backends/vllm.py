"""The vLLM backend: the same requests and records as `hf`, token ids in, never text.

The engine is a vLLM OpenAI-compatible server (`vllm_server`): one this backend starts for the
model (its own process group, stopped on close), or a running one at `vllm.base_url` that must
serve the same checkpoint. Every call is `/v1/completions` with token-id prompts, so the server
never tokenises; what differs from `hf` is the engine alone.
- Rows: prompt = context + continuation with `prompt_logprobs: 0`: each position's entry holds the
  log-prob and rank of the actual token there (rank 1: the arg-max).
- Single-token options sharing a context: one prompt per context with `logprob_token_ids` (at most
  128 ids) and `max_tokens: 1`; the generated token is the greedy one. Prompt log-probs recompute
  the whole prompt (they bypass the prefix cache), so this is the cheap path (docs/PERFORMANCE.md).
- Generation: `temperature: 0`, `max_tokens`, the same EOS ids as hf, answered as token ids.
Several HTTP requests are in flight at once, so the engine's batch stays full between them; while
they wait, the server is checked every `WATCH_S` (a stopped server can hold a request open for
vllm.request_timeout_s).
"""
from __future__ import annotations

import json
import math
import threading
import urllib.error
import urllib.request
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

from ... import modelio, vllm_env, vllm_server
from ...greedy import stop_ids as eos_ids
from ...errors import UserError
from ..records import ScoreRecord, from_token_logprobs
from ..requests import Request

MAX_TARGET_IDS = 128      # vLLM's limit on `logprob_token_ids` per request
IN_FLIGHT = 4             # HTTP requests sent concurrently
WATCH_S = 10.0            # how often a waiting evaluation checks that the server still lives
# Sent with every request: a server applies the model's generation_config.json defaults (a repetition
# penalty, say) to whatever a request leaves out; hf's greedy decoding switches them off too (greedy.py).
GREEDY = {"temperature": 0.0, "repetition_penalty": 1.0, "frequency_penalty": 0.0, "presence_penalty": 0.0}


class VllmBackend:
    name = "vllm"
    facts_per_call = 1024     # the server schedules its own batches; give it plenty

    def __init__(self, model_path: str, tokenizer, cfg):
        v = cfg.vllm
        self.tokenizer = tokenizer
        self.rows_per_call = max(1, v.max_rows_per_call)
        self.timeout_s = v.request_timeout_s
        self.stop = stop_ids(model_path, tokenizer)
        self.server = None
        if v.base_url:
            self.url, self.device = v.base_url.rstrip("/"), f"server {v.base_url}"
            self.dtype = vllm_server.DTYPES.get(cfg.model.dtype, cfg.model.dtype)   # as the server was told
        else:
            env = vllm_env.require()
            self.dtype = vllm_server.engine_dtype(cfg.model.dtype, env.cpu)
            self.server = vllm_server.start(vllm_server.Settings(
                model_path, "mtg-eval", cfg.model.dtype, context_tokens(v.max_model_len, model_path), cfg.seed,
                v.tensor_parallel_size,
                v.gpu_memory_utilization, v.cpu_kvcache_gib, v.enforce_eager, v.enable_prefix_caching,
                cfg.runtime.num_threads), v.start_timeout_s)
            self._stop_server = weakref.finalize(self, self.server.close)
            self.url, self.device = self.server.base_url, "cpu" if env.cpu else "cuda"
        self.model, self.context, served_root = self._served_model()
        # The longest sequence scored or generated: a scoring request also generates one token in
        # the context; generation keeps the same limit, so the plan's one check holds for both.
        self.max_len = self.context - 1 if self.context else None
        if Path(served_root).resolve() != Path(model_path).resolve():
            raise UserError("vllm.base_url", f"the server at {self.url} serves {served_root}, not {model_path}",
                            "start it with --model set to that checkpoint, or drop vllm.base_url")
        self.version = vllm_server.get_json(self.url.removesuffix("/v1") + "/version").get("version")

    def close(self) -> None:
        if self.server is not None:
            self._stop_server()

    def versions(self) -> dict:
        return {"backend": "vllm", "vllm": self.version, "device": self.device, "dtype": self.dtype}

    def _served_model(self) -> tuple[str, int | None, str]:
        try:
            entry = vllm_server.get_json(f"{self.url}/models")["data"][0]
        except (OSError, ValueError, KeyError, IndexError) as exc:
            raise UserError("vllm.base_url", f"no model list from {self.url}/models ({exc})",
                            "check that a vLLM server runs there") from None
        return entry["id"], entry.get("max_model_len"), entry.get("root") or entry["id"]

    def check_length(self, key, n_tokens: int) -> None:
        """`n_tokens`, prompt and generated tokens together, must fit the server's context less
        the token a scoring request generates."""
        if self.max_len and n_tokens > self.max_len:
            raise UserError(f"request {key}", f"{n_tokens} tokens exceed {self.max_len}, vllm.max_model_len="
                            f"{self.context} less one", "raise vllm.max_model_len or shorten the prompt")

    # ---- HTTP --------------------------------------------------------------------------------
    def _post(self, body: dict) -> list[dict]:
        """The choices of one /v1/completions call, in prompt order."""
        data = json.dumps({"model": self.model, **GREEDY, **body}).encode()
        request = urllib.request.Request(f"{self.url}/completions", data=data,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
                choices = json.load(reply)["choices"]
        except urllib.error.HTTPError as exc:
            raise UserError(f"vllm server {self.url}", f"HTTP {exc.code}: {exc.read()[:300]!r}",
                            self._log_hint()) from None
        except OSError as exc:
            raise UserError(f"vllm server {self.url}", f"no answer ({exc})", self._log_hint()) from None
        return sorted(choices, key=lambda c: c["index"])

    def _post_all(self, bodies: list[dict]) -> list[list[dict]]:
        """The choices of each body, `IN_FLIGHT` requests at a time. The requests wait in daemon
        threads: when the server dies, this thread says so and the process can exit, where a
        thread pool would wait for its workers' open requests."""
        results: list = [None] * len(bodies)
        failures: list[BaseException] = []
        pending = iter(range(len(bodies)))
        lock = threading.Lock()

        def work() -> None:
            while not failures:
                with lock:
                    i = next(pending, None)
                if i is None:
                    return
                try:
                    results[i] = self._post(bodies[i])
                except BaseException as exc:     # re-raised in the calling thread
                    failures.append(exc)

        threads = [threading.Thread(target=work, daemon=True) for _ in range(min(IN_FLIGHT, len(bodies)))]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive() and not failures:
                    t.join(WATCH_S)
                    if t.is_alive():
                        self._check_alive()
        except BaseException as exc:     # the server is gone (or Ctrl-C): the workers send no more
            failures.append(exc)
            raise
        if failures:
            raise failures[0]
        return results

    def _check_alive(self) -> None:
        """A server this backend started must still run; any server must accept a connection to
        /health. A refused connection or a server error (5xx) means it stopped (a stopping vLLM
        leaves open requests unanswered); a slow answer only that it is busy, and a 4xx that
        something in front of the server has no /health."""
        if self.server is not None and self.server.proc.poll() is not None:
            raise UserError("vllm server", f"exited with code {self.server.proc.returncode} during the evaluation: "
                            f"{self.server.reason()[:300]}", self._log_hint())
        try:
            with urllib.request.urlopen(self.url.removesuffix("/v1") + "/health", timeout=WATCH_S):
                return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
            problem = f"its /health answers HTTP {exc.code}"
        except OSError as exc:
            if not isinstance(getattr(exc, "reason", exc), ConnectionError):
                return                                  # a timeout: busy, not gone
            problem = f"it refuses connections ({exc})"
        raise UserError(f"vllm server {self.url}", f"stopped during the evaluation: {problem}", self._log_hint())

    def _log_hint(self) -> str:
        """The hint of a server error; a log it names is kept (closing deleted the temporary log the
        message had just named)."""
        if self.server is None:
            return "check the server; rerun the evaluation: results already written are kept"
        self.server.temporary_log = False
        return f"its log: {self.server.log_path}; rerun the evaluation: results already written are kept"

    def _rows(self, prompts: list[list[int]], **params) -> list[dict]:
        """One choice per prompt, `rows_per_call` prompts per HTTP request."""
        bodies = [{"prompt": prompts[i:i + self.rows_per_call], **params}
                  for i in range(0, len(prompts), self.rows_per_call)]
        return [choice for choices in self._post_all(bodies) for choice in choices]

    # ---- scoring -----------------------------------------------------------------------------
    def score(self, requests: Sequence[Request]) -> list[ScoreRecord]:
        for r in requests:
            self.check_length(r.key, len(r.context) + len(r.continuation))
        per_token = self.token_logprobs(requests)
        return [from_token_logprobs(r, lps, greedy) for r, (lps, greedy) in zip(requests, per_token)]

    def token_logprobs(self, requests: Sequence[Request]) -> list[tuple[list[float], list[bool]]]:
        out: list = [None] * len(requests)
        rows = self._single_token(requests, out)
        choices = self._rows([list(requests[i].context + requests[i].continuation) for i in rows],
                             max_tokens=1, prompt_logprobs=0)
        for i, choice in zip(rows, choices):
            out[i] = _from_prompt_logprobs(requests[i], choice["prompt_logprobs"])
        return out

    def _single_token(self, requests: Sequence[Request], out: list) -> list[int]:
        """Answer single-token options from one prompt per context; returns the indices left for rows.

        Contexts are packed into HTTP requests while the union of their target ids stays within
        `MAX_TARGET_IDS` (a request names one id list for all its prompts)."""
        groups: OrderedDict[tuple, list[int]] = OrderedDict()
        rest = []
        for i, r in enumerate(requests):
            if len(r.continuation) == 1 and not r.boundary_merge:
                groups.setdefault(r.context, []).append(i)
            else:
                rest.append(i)
        parts = []      # (context, member indices) with at most MAX_TARGET_IDS distinct targets each
        for ctx, idxs in groups.items():
            targets = sorted({requests[i].continuation[0] for i in idxs})
            for k in range(0, len(targets), MAX_TARGET_IDS):
                chunk = set(targets[k:k + MAX_TARGET_IDS])
                parts.append((ctx, [i for i in idxs if requests[i].continuation[0] in chunk], chunk))
        bodies, members, union, batch = [], [], set(), []
        for part in parts + [None]:
            if part is None or len(union | part[2]) > MAX_TARGET_IDS or len(batch) == self.rows_per_call:
                if batch:
                    bodies.append({"prompt": [list(ctx) for ctx, _, _ in batch], "max_tokens": 1, "logprobs": 0,
                                   "logprob_token_ids": sorted(union), "return_tokens_as_token_ids": True})
                    members.append(batch)
                union, batch = set(), []
            if part is not None:
                union |= part[2]
                batch.append(part)
        for batch, choices in zip(members, self._post_all(bodies)):
            for (_, idxs, _), choice in zip(batch, choices):
                logprobs = choice["logprobs"]
                chosen = logprobs["tokens"][0]
                top = logprobs["top_logprobs"][0]
                for i in idxs:
                    name = f"token_id:{requests[i].continuation[0]}"
                    out[i] = ([float(top[name])], [chosen == name])
        return sorted(rest)

    # ---- generation --------------------------------------------------------------------------
    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> list[list[int]]:
        for i, p in enumerate(prompts):
            self.check_length(f"prompt {i}", len(p) + max_new_tokens)
        choices = self._rows([list(p) for p in prompts], max_tokens=max_new_tokens,
                             stop_token_ids=sorted(self.stop), return_token_ids=True)
        results = []
        for choice in choices:
            ids = list(choice["token_ids"])
            cut = next((k for k, t in enumerate(ids) if t in self.stop), len(ids))
            results.append(ids[:cut])
        return results


def context_tokens(max_model_len: int, model_path: str) -> int:
    """The server's context: vllm.max_model_len, capped at the model's own limit (vLLM refuses a
    larger one, and the default 4096 exceeds many small models')."""
    own = modelio.context_length(model_path)
    return min(max_model_len, own) if own else max_model_len


def _from_prompt_logprobs(request: Request, prompt_logprobs: list) -> tuple[list[float], list[bool]]:
    """The continuation's per-token log-probs and arg-max flags from one prompt's entries."""
    ids = request.context + request.continuation
    values, greedy = [], []
    for pos in range(len(request.context), len(ids)):
        entry = (prompt_logprobs[pos] or {}).get(str(ids[pos]))
        if entry is None:
            raise RuntimeError(f"vLLM returned no log-prob for token {ids[pos]} at position {pos} "
                               f"of request {request.key}")
        values.append(float(entry["logprob"]) if entry["logprob"] is not None else -math.inf)
        greedy.append(entry.get("rank") == 1)
    return values, greedy


def stop_ids(model_path: str, tokenizer) -> set[int]:
    """The stop set hf uses, from the checkpoint's generation_config.json (when it has one)."""
    from transformers import GenerationConfig

    try:
        config = GenerationConfig.from_pretrained(model_path)
    except OSError:   # no generation_config.json
        config = None
    return eos_ids(tokenizer, config)
