"""General-text probe (`tasks: [ppl]`): the model's perplexity on a small fixed English text.

The text is a catalogue file (`util_public/catalogue/text/{name}.txt`, written for this project;
`ppl.text` names it, or gives a path), stripped of surrounding whitespace and scored as ONE
document: tokenised once, BOS prepended per `prompt.add_bos`, every token after the first
position scored (the first token too when a BOS precedes it). A text longer than the model's
context is scored in windows: the first covers `max_len` tokens, each later one scores the next
`max_len // 2` tokens with the `max_len - max_len // 2` tokens before them as context.

The requests are ordinary `requests.Request`s and the backend returns the usual `ScoreRecord`s
(log-probs summed in fp64), so any backend scores it. Metrics, all from summed log-probs:
- `nll_per_token`: -(sum of log p) / (scored tokens), in nats;
- `perplexity`: exp(nll_per_token);
- `bits_per_byte`: -(sum of log p) / (ln 2 * UTF-8 bytes of the text): independent of the tokenizer.
Perplexity compares models that share a tokenizer (the demo's four rows do).
"""
from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from .. import catalogue, paths, textio, tokenspans
from ..errors import UserError
from ..runinfo import sha256_file
from .requests import Request

FOLDER = catalogue.SHIPPED / "text"


@dataclass(frozen=True)
class Text:
    name: str          # the catalogue name, or the file stem of a path
    path: Path
    sha256: str        # of the file as stored
    content: str       # what is scored: the file's text without surrounding whitespace


def load(name_or_path: str) -> Text:
    """A catalogue text by name (`general`) or a UTF-8 text file by path."""
    value = str(name_or_path).strip()
    if not value:
        raise UserError("ppl.text", "no text given", f"use a name from {available()} or a file path")
    looks_like_path = "/" in value or value.endswith(".txt")
    path = paths.resolve(value) if looks_like_path else FOLDER / f"{paths.check_name(value, 'ppl.text')}.txt"
    if not path.is_file():
        raise UserError(f"ppl.text={value}", f"no such text ({path})", f"use a name from {available()} or a file path")
    content = textio.read_text(path).strip()
    if not content:
        raise UserError(f"ppl.text: {path}", "the text is empty")
    return Text(path.stem if not looks_like_path else result_name(path), path, sha256_file(path), content)


def result_name(path: Path) -> str:
    """The results folder name of a text file: its stem with accents dropped and every other
    character a folder name should not hold as `-` (`t ok é.txt` -> `t-ok-e`); the text's hash in
    the folder name keeps two files of one name apart."""
    ascii_stem = unicodedata.normalize("NFKD", path.stem).encode("ascii", "ignore").decode()
    name = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._+=~@-]+", "-", ascii_stem)).strip(".-")[:100]
    return name or "text"


def available() -> list[str]:
    return sorted(p.stem for p in FOLDER.glob("*.txt"))


def requests(tokenizer, text: Text, bos: list[int], max_len: int | None) -> list[Request]:
    """The scoring requests of one text: one, or one per window when it exceeds `max_len` tokens."""
    seq = list(bos) + tokenspans.encode(tokenizer, text.content).ids
    if len(seq) < 2:
        raise UserError(f"ppl.text={text.name}", "the text has fewer than two tokens: nothing to score")
    window = len(seq) if not max_len or len(seq) <= max_len else int(max_len)
    if window < 2:
        raise UserError(f"ppl.text={text.name}", f"a model context of {max_len} tokens cannot score text")
    blocks, end = [(1, window)], window
    stride = max(1, window // 2)
    while end < len(seq):
        blocks.append((end, min(len(seq), end + stride)))
        end = blocks[-1][1]
    return [Request((text.name, i), tuple(seq[max(0, b - window):a]), tuple(seq[a:b]), 0)
            for i, (a, b) in enumerate(blocks)]


def record(text: Text, reqs: list[Request], scores: list) -> dict:
    """The one record of a text: its identity, token and byte counts and summed log-prob."""
    counts = {"sum_logprob": math.fsum(s.sum_logprob for s in scores),
              "n_tokens": sum(len(r.continuation) for r in reqs), "n_bytes": len(text.content.encode("utf-8"))}
    return {"text": text.name, "text_sha256": text.sha256, "n_windows": len(reqs), **counts, **_derived(**counts)}


def summary_metrics(records: list[dict]) -> dict:
    """Token-weighted over the records (one per text): NLL per token, perplexity, bits per byte."""
    counts = {"sum_logprob": math.fsum(r["sum_logprob"] for r in records),
              "n_tokens": sum(r["n_tokens"] for r in records), "n_bytes": sum(r["n_bytes"] for r in records)}
    return {"n": len(records), "n_tokens": counts["n_tokens"], **_derived(**counts)}


def _derived(sum_logprob: float, n_tokens: int, n_bytes: int) -> dict:
    nll = -sum_logprob / n_tokens
    return {"nll_per_token": nll, "perplexity": math.exp(nll), "bits_per_byte": -sum_logprob / (math.log(2) * n_bytes)}
