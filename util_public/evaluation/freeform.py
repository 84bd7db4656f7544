"""Questions and prompts of your own, scored without facts, datasets or result files (notebook use).

    from util_public.evaluation import api, freeform
    model, tok = api.load(api.describe("smollm2-135m"), api.config())
    freeform.choose(model, tok, [("The capital of France is", ["Paris", "Rome", "Oslo"], 0)])
    freeform.generate(model, tok, ["The capital of France is"], max_new_tokens=5)

Texts are tokenised and scored as evaluation scores its own questions (the same requests, backend
and metrics): BOS per `prompt.add_bos`, each option after `prompt.separator`, context and option
tokenised together once and split at the character boundary; greedy generation with the same stop
tokens. `model` is an HF model or a backend (`api.load` gives either).
"""
from __future__ import annotations

from typing import Sequence

from ..errors import UserError
from ..facts import check_options
from . import api, generation, metrics, requests
from .schema import EvalConfig, config


def choose(model, tokenizer, questions: Sequence[tuple[str, Sequence[str], int]],
           cfg: EvalConfig | None = None) -> list[dict]:
    """Multiple choice: each question is (context, options, index of the gold option). Per question
    the options' summed log-probabilities and the fields of an evaluation record (`pred_index`,
    `correct`, `gold_prob`, `gold_rank`, the length-normalised choice, ...)."""
    cfg = cfg or config()
    bos = requests.bos_prefix(tokenizer, cfg.prompt.add_bos)
    reqs: list[requests.Request] = []
    for q, (context, options, gold) in enumerate(questions):
        if not 0 <= gold < len(options):
            raise UserError(f"question {q}", f"gold index {gold} is not one of its {len(options)} options")
        check_options(options[gold], [o for i, o in enumerate(options) if i != gold], f"question {q}")
        reqs += requests.option_requests(tokenizer, q, context, options, cfg.prompt.separator, bos)
    scores = iter(api.as_backend(model, tokenizer, cfg).score(reqs))
    out = []
    for q, (context, options, gold) in enumerate(questions):
        scored = [next(scores) for _ in options]
        out.append({"context": context, "options": list(options), "gold_index": gold,
                    "option_logprobs": [r.sum_logprob for r in scored],
                    **metrics.mc_fact(scored, gold, f"question {q}")})
    return out


def generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int | None = None,
             cfg: EvalConfig | None = None) -> list[str]:
    """Greedy continuations of `prompts` (`gen.max_new_tokens` unless given), special tokens shown."""
    cfg = cfg or config()
    bos = requests.bos_prefix(tokenizer, cfg.prompt.add_bos)
    ids = [requests.prompt_ids(tokenizer, prompt, bos) for prompt in prompts]
    responses = api.as_backend(model, tokenizer, cfg).generate(ids, max_new_tokens or cfg.gen.max_new_tokens)
    return [generation.decode(tokenizer, r) for r in responses]
