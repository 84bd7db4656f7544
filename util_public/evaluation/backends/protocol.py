"""What evaluation needs from a backend (`hf`, `vllm`, or a test double): named once, here.

Requests carry token ids from the project's own tokenisation (`requests.Request`); a backend only
runs the model. Planning reads `name`, `max_len` and `versions()` (they enter the result hash);
the task runners call the three model methods, in pieces of `facts_per_call` facts.
"""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from ..records import ScoreRecord
from ..requests import Request


@runtime_checkable
class Backend(Protocol):
    name: str                   # "hf" | "vllm": part of the result hash
    facts_per_call: int         # facts whose requests one call takes (what the backend batches well)
    max_len: int | None         # the longest sequence the model accepts (None: no known limit)

    def versions(self) -> dict:
        """Library versions, device and dtype (`dtype` as the model runs), for the summary."""

    def score(self, requests: Sequence[Request]) -> list[ScoreRecord]:
        """Sum of continuation log-probs and greedy flag per request, in request order."""

    def token_logprobs(self, requests: Sequence[Request]) -> list[tuple[list[float], list[bool]]]:
        """Per continuation token: its log-prob and whether it was the arg-max, in request order."""

    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> list[list[int]]:
        """Greedy continuation ids per prompt (stopping at EOS), in prompt order."""


# Every member a backend needs, read off the protocol above (to name what an object lacks).
MEMBERS = (*Backend.__annotations__, *(n for n, v in vars(Backend).items() if callable(v) and not n.startswith("_")))
