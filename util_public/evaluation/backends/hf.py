"""The transformers backend (CPU or GPU): scores requests and generates greedily.

Scoring follows what requests share (lm-evaluation-harness groups by context the same way):
- requests with the same context ids form a question; a batch of questions runs its contexts
  once (left-padded, LM head at the last position only), which scores every first token, so
  single-token option sets cost one forward per batch of questions;
- longer continuations run on top of their question's KV cache, rows of equal length together
  (no padding), feeding all but their last token; the LM head runs only at those positions;
- boundary merges (their context ids differ from their siblings') run as full rows.
Position ids count real tokens, so padding never shifts a row. Log-softmax is taken in fp32
from the logits; sums accumulate in fp64; each forward's scores cross to the CPU in one transfer.
"""
from __future__ import annotations

import copy
import inspect
from collections import OrderedDict
from typing import Sequence

import torch

from ...errors import UserError
from ..records import ScoreRecord, from_token_logprobs
from ..requests import Request


class HFBackend:
    name = "hf"

    def __init__(self, model, tokenizer, batch_size: int | None = None, gen_batch_size: int = 16):
        self.model = model.eval()
        self.tokenizer = tokenizer
        # Rows per forward: small on CPU (compute-bound anyway), large on a GPU (launch-bound otherwise).
        default = 512 if self.device.type == "cuda" else 64
        self.batch_size = max(1, int(batch_size or default))
        self.gen_batch_size = max(1, int(gen_batch_size))
        self.facts_per_call = self.batch_size
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad) if pad is not None else 0
        self.max_len = getattr(model.config, "max_position_embeddings", None)
        # transformers 5.x renamed `past_key_values` to `cache` (the old name warns, then goes).
        params = inspect.signature(model.forward).parameters
        self.cache_kw = "cache" if "cache" in params else "past_key_values"
        # ... and 4.50 renamed `num_logits_to_keep`; a model with neither computes every position.
        self.keep_kw = next((k for k in ("logits_to_keep", "num_logits_to_keep") if k in params), None)

    def _tail_logits(self, keep: int, **inputs) -> torch.Tensor:
        """Logits of the last `keep` positions, with the LM head applied only there when possible."""
        extra = {self.keep_kw: keep} if self.keep_kw else {}
        return self.model(**inputs, **extra).logits[:, -keep:]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def versions(self) -> dict:
        import transformers

        return {"backend": "hf", "torch": torch.__version__, "transformers": transformers.__version__,
                "device": str(self.device), "dtype": str(next(self.model.parameters()).dtype)}

    # ---- limits ----------------------------------------------------------------------------
    def check_length(self, key, n_tokens: int) -> None:
        if self.max_len and n_tokens > self.max_len:
            raise UserError(f"request {key}", f"{n_tokens} tokens exceed the model limit of {self.max_len}",
                            "shorten the prompt (e.g. fewer ic_lke.example_num)")

    # ---- scoring ---------------------------------------------------------------------------
    @torch.inference_mode()
    def score(self, requests: Sequence[Request]) -> list[ScoreRecord]:
        """One record per request, in request order."""
        for r in requests:
            self.check_length(r.key, len(r.context) + len(r.continuation))
        per_token = self.token_logprobs(requests)
        return [from_token_logprobs(r, lps, greedy) for r, (lps, greedy) in zip(requests, per_token)]

    @torch.inference_mode()
    def token_logprobs(self, requests: Sequence[Request]) -> list[tuple[list[float], list[bool]]]:
        """Per request: the log-prob of each continuation token and whether it was the arg-max."""
        out: list = [None] * len(requests)
        groups: OrderedDict[tuple, list[int]] = OrderedDict()
        merged = []
        for i, r in enumerate(requests):
            if r.boundary_merge:
                merged.append(i)        # its context differs from its siblings': never shared
            else:
                groups.setdefault(r.context, []).append(i)
        # Contexts of similar length share a batch, so left padding stays short.
        ordered = sorted(groups.items(), key=lambda item: len(item[0]))
        for start in range(0, len(ordered), self.batch_size):
            self._shared_contexts(ordered[start:start + self.batch_size], requests, out)
        self._full_rows(merged, requests, out)
        return out

    def _left_pad(self, sequences: list[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """ids, attention mask and position ids of left-padded rows (positions count real tokens
        only, so a padded row sees the positions it would see alone)."""
        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for b, seq in enumerate(sequences):
            ids[b, width - len(seq):] = torch.tensor(list(seq), dtype=torch.long)
            mask[b, width - len(seq):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return ids.to(self.device), mask.to(self.device), positions.to(self.device)

    def _shared_contexts(self, batch: list[tuple[tuple, list[int]]], requests: Sequence[Request], out: list) -> None:
        """Run each context of `batch` once; score first tokens there and longer continuations
        on top of its KV cache, rows of equal length together (no padding, LM head only there)."""
        ids, mask, positions = self._left_pad([ctx for ctx, _ in batch])
        first = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                           **({self.keep_kw: 1} if self.keep_kw else {}))
        cache = first.get(self.cache_kw)
        members = [(q, i) for q, (_, idxs) in enumerate(batch) for i in idxs]
        q_of = torch.tensor([q for q, _ in members], device=self.device)
        heads = torch.tensor([requests[i].continuation[0] for _, i in members], device=self.device)
        head_lp, head_greedy = _score(first.logits[:, -1], heads, rows=q_of)
        tails: dict[int, tuple[list[float], list[bool]]] = {}
        buckets: dict[int, list[tuple[int, int]]] = {}
        for q, i in members:
            if len(requests[i].continuation) > 1:
                buckets.setdefault(len(requests[i].continuation) - 1, []).append((q, i))
        lengths = mask.sum(-1)
        for width, rows in sorted(buckets.items()):
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start:start + self.batch_size]
                q_idx = torch.tensor([q for q, _ in chunk], device=self.device)
                feed = torch.tensor([requests[i].continuation[:-1] for _, i in chunk], device=self.device)
                target = torch.tensor([requests[i].continuation[1:] for _, i in chunk], device=self.device)
                attn = torch.cat([mask[q_idx], torch.ones_like(feed)], dim=1)
                pos = lengths[q_idx, None] + torch.arange(width, device=self.device)
                logits = self.model(input_ids=feed, attention_mask=attn, position_ids=pos, use_cache=True,
                                    **{self.cache_kw: _select_rows(cache, q_idx)}).logits
                values, greedy = _score(logits, target)
                tails.update({i: (v, g) for (_, i), v, g in zip(chunk, values, greedy)})
        for (_, i), v, g in zip(members, head_lp, head_greedy):
            tail_v, tail_g = tails.get(i, ([], []))
            out[i] = ([v, *tail_v], [g, *tail_g])

    def _full_rows(self, idxs: list[int], requests: Sequence[Request], out: list) -> None:
        """Whole sequences, left-padded; the LM head runs on the last positions only."""
        order = sorted(idxs, key=lambda i: len(requests[i].context) + len(requests[i].continuation))
        for start in range(0, len(order), self.batch_size):
            chunk = [requests[i] for i in order[start:start + self.batch_size]]
            keep = max(len(r.continuation) for r in chunk)
            # The last continuation token is only a target: feed everything before it.
            ids, mask, positions = self._left_pad([r.context + r.continuation[:-1] for r in chunk])
            logits = self._tail_logits(keep, input_ids=ids, attention_mask=mask, position_ids=positions)
            # Right-align targets with the kept positions; unscored slots (shorter rows) are dropped.
            target = torch.zeros((len(chunk), keep), dtype=torch.long)
            for b, r in enumerate(chunk):
                target[b, keep - len(r.continuation):] = torch.tensor(r.continuation, dtype=torch.long)
            values, greedy = _score(logits, target.to(self.device))
            for i, r, v, g in zip(order[start:start + self.batch_size], chunk, values, greedy):
                n = len(r.continuation)
                out[i] = (v[keep - n:], g[keep - n:])

    # ---- generation ------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> list[list[int]]:
        """Greedy continuations (token ids, EOS and padding removed) for token-id prompts."""
        from transformers import GenerationConfig

        for i, p in enumerate(prompts):
            self.check_length(f"prompt {i}", len(p) + max_new_tokens)
        stop = self.stop_ids()
        config = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
                                  eos_token_id=sorted(stop) or None, pad_token_id=self.pad_id)
        results: list = [None] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        for start in range(0, len(order), self.gen_batch_size):
            chunk = order[start:start + self.gen_batch_size]
            ids, mask, _ = self._left_pad([prompts[i] for i in chunk])
            width = ids.shape[1]
            gen = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
            for b, i in enumerate(chunk):
                new = gen[b, width:].tolist()
                cut = next((k for k, t in enumerate(new) if t in stop), len(new))
                results[i] = new[:cut]
        return results

    def stop_ids(self) -> set[int]:
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids


def _score(logits: torch.Tensor, target: torch.Tensor, rows: torch.Tensor | None = None) -> tuple[list, list]:
    """log p(target) and arg-max flags from raw logits [..., V] (fp32 log-softmax, one transfer).

    With `rows`, target k is read from `logits[rows[k]]`: many options of one context share its
    distribution, whose normaliser is computed once, not once per option.
    """
    logits = logits.float()
    lse, best = torch.logsumexp(logits, dim=-1), logits.argmax(-1)
    if rows is not None:
        picked, lse, best = logits[rows, target], lse[rows], best[rows]
    else:
        picked = logits.gather(-1, target[..., None])[..., 0]
    return (picked - lse).double().cpu().tolist(), (best == target).cpu().tolist()


def _select_rows(cache, index: torch.Tensor):
    """A new cache holding batch rows `index` of `cache` (rows may repeat); `cache` is untouched.

    Containers are deep-copied while tensors are shared (pre-seeded deepcopy memo), then
    `batch_select_indices` re-indexes the copy: no tensor is copied twice, and only the public
    Cache API is used, so this works across transformers versions and cache layer types.
    """
    memo = {id(t): t for t in _tensors(cache)}
    fresh = copy.deepcopy(cache, memo)
    fresh.batch_select_indices(index)
    return fresh


def _tensors(obj, seen: set | None = None) -> list[torch.Tensor]:
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        children = list(obj.values())
    elif isinstance(obj, (list, tuple)):
        children = list(obj)
    elif hasattr(obj, "__dict__"):
        children = list(vars(obj).values())
    else:
        return []
    return [t for child in children for t in _tensors(child, seen)]
