"""Optional LLM generation through the `openai` client (SPEC §4.4, §4.5).

`connect()` builds an `openai.OpenAI` (or `AzureOpenAI`) client from the config and the
environment; the API key is read from the environment only and never appears in a config, log,
cache, manifest or error message. `Chat` sends one chat request at a time through a replay cache
(`llm_cache.jsonl`, append-only): with `llm.cache` a rerun replays recorded replies, keyed by the
sha256 of (model, messages, parameters), before calling the API.

`request_names()` is the name loop of §4.4: batches of `min(batch, remaining)`, replies parsed line
by line, validity and de-duplication filters, and a clear error after `max_rounds` requests.
`request_paragraph()` asks for one wiki paragraph that must mention the object (§4.5).
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import urlparse

import numpy as np
from tqdm import tqdm

from ..atomicio import append_jsonl, read_jsonl
from ..errors import UserError
from ..facts import mentions
from . import names
from .schema import LlmCfg

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
# List markers before a name: "1.", "1)", "(1)", "[1]", "1:", a bare "1 " (SmolLM2 writes "1 AURORA"),
# bullets and Markdown headings. A bare number is a marker only when followed by whitespace, so "2019-12-02"
# stays whole (and is then rejected for having no letter).
_NUMBERING = re.compile(r"^\s*(?:[(\[]?\d{1,3}(?:[.):\]]|(?=\s))|[-*•·–—]|#+)\s*")
_FIELD = re.compile(r"\{([^{}]*)\}")
MAX_NAME_WORDS = 8


def is_loopback(url: str | None) -> bool:
    host = urlparse(url or "").hostname or ""
    return host in _LOOPBACK or host.startswith("127.")


def check_template(template: str, key: str, allowed: Iterable[str], required: Iterable[str]) -> None:
    """A prompt template uses only `allowed` `{field}`s and all `required` ones."""
    found = set(_FIELD.findall(template))
    unknown = sorted(found - set(allowed))
    missing = sorted(set(required) - found)
    if unknown or missing:
        raise UserError(key, f"template fields {['{' + f + '}' for f in unknown]} are unknown"
                        if unknown else f"template lacks {['{' + f + '}' for f in missing]}",
                        f"allowed fields: {['{' + f + '}' for f in allowed]}")


def fill(template: str, values: dict[str, str]) -> str:
    """Literal `{field}` replacement (names and examples may contain braces)."""
    return _FIELD.sub(lambda m: str(values[m.group(1)]), template)


@dataclass
class Connection:
    client: Any            # openai.OpenAI or openai.AzureOpenAI
    model: str
    where: str             # the endpoint, for messages (never the key)
    secret: str | None     # only to scrub it from server messages


def connect(cfg: LlmCfg, http_client: Any = None) -> Connection:
    """The client for `llm.client`; missing settings are errors naming the key or variable."""
    import openai

    if cfg.client == "azure":
        endpoint, key = os.environ.get("ENDPOINT_URL"), os.environ.get("AZURE_OPENAI_API_KEY")
        model = cfg.model or os.environ.get("DEPLOYMENT_NAME")
        for name, value in (("ENDPOINT_URL", endpoint), ("AZURE_OPENAI_API_KEY", key)):
            if not value:
                raise UserError(f"environment variable {name}", "is not set (needed by llm.client=azure)")
        if not model:
            raise UserError("llm.model", "is not set (nor DEPLOYMENT_NAME) for llm.client=azure")
        client = openai.AzureOpenAI(azure_endpoint=endpoint, api_key=key, api_version=cfg.api_version,
                                    timeout=cfg.timeout_s, max_retries=cfg.max_retries, http_client=http_client)
        return Connection(client, model, endpoint, key)
    if not cfg.model:
        raise UserError("llm.model", "is not set; name the model the server should use",
                        "e.g. llm.model=gpt-4o-mini, or the model path a local server reports at /v1/models")
    base_url = cfg.base_url or os.environ.get("OPENAI_BASE_URL") or None
    key = os.environ.get(cfg.api_key_env) or None
    if key is None:
        if not is_loopback(base_url):
            raise UserError(f"environment variable {cfg.api_key_env}", "is not set",
                            "export the API key (only a loopback llm.base_url may go without one)")
        key_to_send = "unused-on-loopback"     # the client insists on some value
    else:
        key_to_send = key
    client = openai.OpenAI(api_key=key_to_send, base_url=base_url, timeout=cfg.timeout_s,
                           max_retries=cfg.max_retries, http_client=http_client)
    return Connection(client, cfg.model, base_url or "https://api.openai.com/v1", key)


class ReplayCache:
    """Append-only record of every request and reply; replays recorded replies in order."""

    def __init__(self, path: Path, replay: bool):
        self.path = Path(path)
        self._queued: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        if replay and self.path.is_file():
            for record in read_jsonl(self.path):
                if isinstance(record, dict) and "key" in record and isinstance(record.get("reply"), str):
                    self._queued[record["key"]].append(record["reply"])

    @staticmethod
    def key(model: str, messages: list[dict], params: dict) -> str:
        blob = json.dumps({"model": model, "messages": messages, "params": params}, sort_keys=True,
                          ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def replay(self, key: str) -> str | None:
        queue = self._queued.get(key)
        return queue.popleft() if queue else None

    def record(self, key: str, model: str, messages: list[dict], params: dict, reply: str) -> None:
        append_jsonl(self.path, {"key": key, "model": model, "messages": messages, "params": params,
                                 "reply": reply})


class Chat:
    """One chat request at a time, through the replay cache, with errors made readable."""

    def __init__(self, connection: Connection, cfg: LlmCfg, cache: ReplayCache):
        self.connection, self.cfg, self.cache = connection, cfg, cache

    def params(self, seed: int) -> dict:
        params: dict[str, Any] = {"temperature": self.cfg.temperature, "top_p": self.cfg.top_p,
                                  "max_tokens": self.cfg.max_tokens}
        if self.cfg.send_seed:
            params["seed"] = seed
        if self.cfg.extra_body:
            params["extra_body"] = dict(self.cfg.extra_body)
        return params

    def complete(self, messages: list[dict], seed: int) -> str | None:
        """The reply text, or None for a malformed reply (the caller counts it as a lost round)."""
        params = self.params(seed)
        key = ReplayCache.key(self.connection.model, messages, params)
        cached = self.cache.replay(key)
        if cached is not None:
            return cached
        reply = self._send(messages, params)
        if reply is not None:
            self.cache.record(key, self.connection.model, messages, params, reply)
        return reply

    def _send(self, messages: list[dict], params: dict) -> str | None:
        import openai

        where = f"llm.base_url {self.connection.where}"
        attempts = self.cfg.max_retries + 1
        try:
            response = self.connection.client.chat.completions.create(
                model=self.connection.model, messages=messages, **params)
        except openai.APITimeoutError:
            raise UserError(where, f"no reply within llm.timeout_s={self.cfg.timeout_s:g} s "
                            f"({attempts} attempts)", "raise llm.timeout_s or check the server") from None
        except openai.APIConnectionError as exc:
            raise UserError(where, f"cannot connect after {attempts} attempts ({self._scrub(exc)})",
                            "check llm.base_url and that the server is running") from None
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise UserError(where, f"the server rejected the credentials (HTTP {exc.status_code})",
                            f"check the key in ${self.cfg.api_key_env}") from None
        except openai.APIStatusError as exc:
            raise UserError(where, f"HTTP {exc.status_code} for model {self.connection.model!r}: "
                            f"{self._scrub(exc)[:300]}") from None
        except (openai.APIResponseValidationError, json.JSONDecodeError, ValueError) as exc:
            print(f"warning: {where}: malformed reply ignored ({type(exc).__name__})", file=sys.stderr)
            return None
        return _reply_text(response)

    def _scrub(self, exc: Exception) -> str:
        text = str(exc)
        return text.replace(self.connection.secret, "***") if self.connection.secret else text


def _reply_text(response: Any) -> str | None:
    """The first choice's text, or None when the reply does not have the chat shape."""
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list) or not choices:
        return None
    message = getattr(choices[0], "message", None)
    content = getattr(message, "content", None)
    return content if isinstance(content, str) else None


def parse_names(reply: str) -> list[str]:
    """Candidate names from a reply: one per line, numbering, bullets, quotes and emphasis removed,
    in any nesting ("**3. Name**", "- 1) Name").

    Lines that fail the offline shape rules, have more than 8 words, or read as commentary (a
    sentence of four or more words ending in ., !, ? or :) are dropped. A name is never cut at an
    inner ". " (the original's defect).
    """
    out = []
    for raw in reply.splitlines():
        line, previous = raw.strip(), None
        while line != previous:
            previous, line = line, _NUMBERING.sub("", line.strip("\"'`*_ \t")).strip()
        if not line or names.shape_problem(line, MAX_NAME_WORDS):
            continue
        if line[-1] in ".!?:" and len(line.split()) >= 4:
            continue
        out.append(line)
    return out


def _numbered(items: list[str]) -> str:
    return "\n".join(f"{i}. {item}" for i, item in enumerate(items, 1))


def request_names(chat: Chat, n: int, entity_type: str, examples: list[str], rng: np.random.Generator,
                  accept: Callable[[str], bool], taken: Iterable[str] = (), label: str = "llm names") -> list[str]:
    """`n` new names of `entity_type`, in arrival order (SPEC §4.4 loop).

    Each request shows `llm.num_examples` examples drawn from `examples` and asks for
    `min(batch, remaining)` names; a name must pass `accept` and be new against the accepted names,
    `taken` and all examples: not a near-duplicate of any (`names.NearDuplicates`: same letters up to
    case, accents and punctuation, or one edit apart), since a model asked for a list often repeats a
    name with one letter changed. After `max_rounds` requests without `n` names, an error reports
    the count and the cache path.
    """
    cfg = chat.cfg
    seen = names.NearDuplicates([*examples, *taken])
    accepted: list[str] = []
    bar = tqdm(total=n, desc=label, unit="name", disable=None, leave=False)
    for _ in range(cfg.max_rounds):
        if len(accepted) >= n:
            break
        shown = [examples[int(i)] for i in rng.permutation(len(examples))[:cfg.num_examples]]
        prompt = fill(cfg.prompt_template, {"n": str(min(cfg.batch, n - len(accepted))),
                                            "entity_type": entity_type, "examples": _numbered(shown)})
        messages = [{"role": "system", "content": cfg.system_prompt}, {"role": "user", "content": prompt}]
        reply = chat.complete(messages, seed=int(rng.integers(2**31 - 1)))
        for name in parse_names(reply or ""):
            if len(accepted) < n and seen.match(name) is None and accept(name):
                seen.add(name)
                accepted.append(name)
                bar.update(1)
    bar.close()
    if len(accepted) < n:
        raise UserError("llm", f"{len(accepted)}/{n} valid {entity_type} names after llm.max_rounds="
                        f"{cfg.max_rounds} requests", f"replies are recorded in {chat.cache.path}; raise "
                        "llm.max_rounds or llm.batch, or use another model")
    return accepted


def request_paragraph(chat: Chat, prompt_template: str, values: dict[str, str], obj: str,
                      max_attempts: int, rng: np.random.Generator) -> str | None:
    """A one-line paragraph mentioning `obj` (case-insensitive), or None after `max_attempts`."""
    messages = [{"role": "system", "content": chat.cfg.system_prompt},
                {"role": "user", "content": fill(prompt_template, values)}]
    for _ in range(max_attempts):
        reply = chat.complete(messages, seed=int(rng.integers(2**31 - 1)))
        text = " ".join((reply or "").split())
        if mentions(text, obj):            # as training and evaluation find it
            return text
    return None


NAME_FIELDS = ("n", "entity_type", "examples")
WIKI_FIELDS = ("head", "subject_type", "object_type", "object", "example")
