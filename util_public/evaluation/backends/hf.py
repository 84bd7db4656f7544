"""The transformers backend (CPU or GPU): scores requests and generates greedily.

Scoring follows what requests share (lm-evaluation-harness groups by context the same way):
- requests with the same context ids form a question; each question becomes one "tree row"
  (`optiontree`): its context once, then every continuation's tokens but the last, with a 4D
  attention mask that lets each continuation see only the context and itself. One forward scores
  a batch of questions (as many as fit `tokens_per_forward`), with no KV-cache copies; the LM
  head runs only at the scored positions, a memory-sized chunk at a time. A set of single-token
  options therefore costs one context pass per batch of questions;
- boundary merges (their context ids differ from their siblings') run as full rows, and so do
  questions longer than a sliding attention window (Gemma, Mistral): the tree's own 4D mask would
  replace the per-layer masks that limit those layers to the window.
Position ids count real tokens, so padding never shifts a row. Log-softmax is taken in fp32
from the logits; sums accumulate in fp64; each chunk's scores cross to the CPU in one transfer.
Per-request sums and greedy flags are numpy segment reductions (`_Scores`), not Python loops: a
100-option evaluation scores 10^5 requests, and Python per request limited the GPU (PERFORMANCE.md).
"""
from __future__ import annotations

import bisect
import contextlib
import gc
import math
from collections import OrderedDict
from typing import Sequence

import numpy as np
import torch

from ... import greedy
from ...errors import UserError
from ...lmhead import decoder, head_is_plain, keep_keyword
from ...tokenspans import pad_id
from .. import optiontree
from ..records import ScoreRecord
from ..requests import Request
from ..schema import GEN_BATCH_SIZE


# Tokens per scoring forward (enough to keep a GPU busy; a CPU is compute-bound at any size) and
# the bytes one chunk of fp32 logits may take (the LM head runs on that many positions at a time).
TOKENS_PER_FORWARD = {"cuda": 8192, "cpu": 1024}
# Tokens of one generate call's rows (prompt + new tokens, padded): its KV cache and one prefill
# without logits, far lighter per token than scoring's; 16 rows of ~1,000 tokens fit on a CPU.
GEN_TOKENS_PER_CALL = {"cuda": 65536, "cpu": 16384}
LOGIT_BYTES = {"cuda": 2**30, "cpu": 128 * 2**20}


class HFBackend:
    name = "hf"

    def __init__(self, model, tokenizer, batch_size: int | None = None, gen_batch_size: int = GEN_BATCH_SIZE,
                 tokens_per_forward: int | None = None, gen_tokens_per_call: int | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        kind = "cuda" if self.device.type == "cuda" else "cpu"
        # Questions (and tokens) per forward: small on CPU, large on a GPU (launch-bound otherwise).
        self.batch_size = max(1, int(batch_size or (512 if kind == "cuda" else 64)))
        self.tokens_per_forward = max(1, int(tokens_per_forward or TOKENS_PER_FORWARD[kind]))
        self.logit_rows = max(1, LOGIT_BYTES[kind] // (12 * model.config.vocab_size))   # bf16/fp32 logits + exp
        self.gen_batch_size = max(1, int(gen_batch_size))
        self.gen_tokens_per_call = max(1, int(gen_tokens_per_call or GEN_TOKENS_PER_CALL[kind]))
        self.facts_per_call = self.batch_size
        self.pad_id = pad_id(tokenizer)
        self.max_len = getattr(model.config, "max_position_embeddings", None)
        self.plain_head = head_is_plain(model)
        self.window = _sliding_window(model.config)
        self.keep_kw = keep_keyword(model)

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
                "device": str(self.device),
                "dtype": str(next(self.model.parameters()).dtype).removeprefix("torch.")}   # as vllm names it

    # ---- limits ----------------------------------------------------------------------------
    def check_length(self, key, n_tokens: int) -> None:
        if self.max_len and n_tokens > self.max_len:
            raise UserError(f"request {key}", f"{n_tokens} tokens exceed the model limit of {self.max_len}",
                            "shorten the prompt (e.g. fewer ic_lke.example_num)")

    # ---- scoring ---------------------------------------------------------------------------
    @torch.inference_mode()
    def score(self, requests: Sequence[Request]) -> list[ScoreRecord]:
        """One record per request, in request order."""
        with _gc_paused():   # ~10^5 new objects would trigger repeated full scans of the live requests
            scores = self._run(requests, per_token=False)
            return [ScoreRecord(r.key, s, f, len(r.continuation), r.n_chars, g, r.boundary_merge)
                    for r, s, f, g in zip(requests, scores.sums.tolist(), scores.first.tolist(), scores.greedy.tolist())]

    @torch.inference_mode()
    def token_logprobs(self, requests: Sequence[Request]) -> list[tuple[list[float], list[bool]]]:
        """Per request: the log-prob of each continuation token and whether it was the arg-max."""
        return self._run(requests, per_token=True).tokens

    def _run(self, requests: Sequence[Request], per_token: bool) -> "_Scores":
        groups: OrderedDict[tuple, list[int]] = OrderedDict()
        merged = []
        for i, r in enumerate(requests):
            if r.boundary_merge:
                merged.append(i)        # its context differs from its siblings': never shared
            else:
                groups.setdefault(r.context, []).append(i)
        if self.window:                 # beyond the window only the per-layer masks are right
            for ctx in [c for c, idxs in groups.items()
                        if len(c) + max(len(requests[i].continuation) for i in idxs) > self.window]:
                merged += groups.pop(ctx)
        # Sequences that share only their first token (the loss probe's): one tree row would save a
        # token each and pay attention across all of them; alone, each is a plain row.
        for ctx in [c for c, idxs in groups.items() if len(c) == 1 and len(idxs) > 1]:
            merged += groups.pop(ctx)
        # A tree row holds its context once and every continuation after it; continuations beyond
        # the token budget take further rows (one row's attention mask is quadratic in its length).
        rows = [(ctx, part) for ctx, idxs in groups.items()
                for part in _summed(idxs, lambda i: len(requests[i].continuation) - 1, self.tokens_per_forward - len(ctx))]
        conts = [[requests[i].continuation for i in idxs] for _, idxs in rows]
        length = [optiontree.row_length(ctx, c) for (ctx, _), c in zip(rows, conts)]
        for (ctx, idxs), c in zip(rows, conts):    # a tree row is no longer than its longest full row
            self.check_length(requests[idxs[0]].key, len(ctx) + max(map(len, c)))
        for i in merged:
            self.check_length(requests[i].key, len(requests[i].context) + len(requests[i].continuation))
        scores = _Scores(len(requests), per_token)
        # Rows of similar length share a forward, so padding stays short.
        ordered = sorted(range(len(rows)), key=length.__getitem__)
        for batch in _budgeted(ordered, length.__getitem__, self.batch_size, self.tokens_per_forward):
            self._shared_contexts([rows[r] for r in batch], [conts[r] for r in batch], scores)
        self._full_rows(merged, requests, scores)
        return scores

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

    def _shared_contexts(self, batch: list[tuple[tuple, list[int]]], conts: list[list], scores: "_Scores") -> None:
        """Score every continuation of a batch of tree rows ((context, request indices) and their
        continuations) in one forward."""
        layout = optiontree.build([ctx for ctx, _ in batch], conts, self.pad_id)
        ids, positions, owner = (torch.tensor(x, device=self.device) for x in (layout.ids, layout.positions, layout.owner))
        bias = optiontree.attention_bias(owner, next(self.model.parameters()).dtype)
        inputs = dict(input_ids=ids, attention_mask=bias, position_ids=positions, use_cache=False)
        scored = torch.tensor(layout.scored, device=self.device)
        if self.plain_head:    # hidden states at the scored positions only; the LM head runs there
            hidden = decoder(self.model)(**inputs)[0]
            states = hidden.reshape(-1, hidden.shape[-1]).index_select(0, scored)
            logits_of = self.model.get_output_embeddings()
        else:                  # post-processed logits (softcapping, scaling): the model's own forward
            logits = self.model(**inputs).logits
            states = logits.reshape(-1, logits.shape[-1]).index_select(0, scored)
            logits_of = None
        pair_position = torch.tensor(layout.pair_position, device=self.device)
        target = torch.tensor(layout.pair_target, device=self.device)
        values, greedy, p0 = [], [], 0
        for a in range(0, len(layout.scored), self.logit_rows):
            b = min(a + self.logit_rows, len(layout.scored))
            p1 = bisect.bisect_left(layout.pair_position, b, lo=p0)    # pairs read in rows [a, b)
            chunk = states[a:b] if logits_of is None else logits_of(states[a:b])
            v, g = _score(chunk, target[p0:p1], rows=pair_position[p0:p1] - a)
            values.append(v)
            greedy.append(g)
            p0 = p1
        members = np.array([i for _, idxs in batch for i in idxs], dtype=np.int64)
        scores.put(members, np.concatenate(values), np.concatenate(greedy), np.array(layout.head_pair),
                   np.array(layout.tail_pair), np.array(layout.extra_tokens))

    def _full_rows(self, idxs: list[int], requests: Sequence[Request], scores: "_Scores") -> None:
        """Whole sequences, left-padded; the LM head runs on the last positions only."""
        width = {i: len(requests[i].context) + len(requests[i].continuation) - 1 for i in idxs}
        order = sorted(idxs, key=width.__getitem__)
        for members in _budgeted(order, width.__getitem__, self.batch_size, self.tokens_per_forward):
            chunk = [requests[i] for i in members]
            keep = max(len(r.continuation) for r in chunk)
            # The last continuation token is only a target: feed everything before it.
            ids, mask, positions = self._left_pad([r.context + r.continuation[:-1] for r in chunk])
            logits = self._tail_logits(keep, input_ids=ids, attention_mask=mask, position_ids=positions)
            # Right-align targets with the kept positions; unscored slots (shorter rows) are dropped.
            target = torch.zeros((len(chunk), keep), dtype=torch.long)
            for b, r in enumerate(chunk):
                target[b, keep - len(r.continuation):] = torch.tensor(r.continuation, dtype=torch.long)
            values, greedy = _score(logits, target.to(self.device))
            for i, r, v, g in zip(members, chunk, values, greedy):
                n = len(r.continuation)
                scores.put_one(i, v[keep - n:], g[keep - n:])

    # ---- generation ------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> list[list[int]]:
        """Greedy continuations (token ids, EOS and padding removed) for token-id prompts."""
        for i, p in enumerate(prompts):
            self.check_length(f"prompt {i}", len(p) + max_new_tokens)
        stop = greedy.stop_ids(self.tokenizer, self.model.generation_config)
        results: list = [None] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        # Each new token reads every weight once for the whole batch: wide batches amortize that read.
        for chunk in _budgeted(order, lambda i: len(prompts[i]) + max_new_tokens, self.gen_batch_size,
                               self.gen_tokens_per_call):
            ids, mask, _ = self._left_pad([prompts[i] for i in chunk])
            width = ids.shape[1]
            gen = greedy.generate(self.model, ids, mask, max_new_tokens, sorted(stop) or None, self.pad_id)
            for b, i in enumerate(chunk):
                new = gen[b, width:].tolist()
                cut = next((k for k, t in enumerate(new) if t in stop), len(new))
                results[i] = new[:cut]
        return results


def _budgeted(items: Sequence, width, max_items: int, max_tokens: int):
    """Consecutive batches of `items`, given in ascending `width(item)` (a row's padded length):
    at most `max_items` each and at most `max_tokens` tokens (count × the widest row), at least one."""
    batch: list = []
    for item in items:
        if batch and (len(batch) == max_items or (len(batch) + 1) * width(item) > max_tokens):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def _summed(items: Sequence, size, max_tokens: int):
    """Consecutive runs of `items` whose sizes sum to at most `max_tokens`, at least one item each."""
    run: list = []
    used = 0
    for item in items:
        if run and used + size(item) > max_tokens:
            yield run
            run, used = [], 0
        run.append(item)
        used += size(item)
    if run:
        yield run


def _sliding_window(config) -> int | None:
    """The attention window of a model with sliding-window layers, else None."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    window = getattr(text, "sliding_window", None)
    layer_types = getattr(text, "layer_types", None)
    if layer_types is not None and "sliding_attention" not in layer_types:
        return None
    return int(window) if window else None


def _score(logits: torch.Tensor, target: torch.Tensor, rows: torch.Tensor | None = None):
    """log p(target) (fp64 numpy) and arg-max flags (bool numpy) from raw logits [..., V], with an
    fp32 log-softmax and one transfer.

    With `rows`, target k is read from `logits[rows[k]]`: many options of one context share its
    distribution, whose normaliser is computed once, not once per option.
    """
    logits = logits.float()
    lse, best = torch.logsumexp(logits, dim=-1), logits.argmax(-1)
    if rows is not None:
        picked, lse, best = logits[rows, target], lse[rows], best[rows]
    else:
        picked = logits.gather(-1, target[..., None])[..., 0]
    return (picked - lse).double().cpu().numpy(), (best == target).cpu().numpy()


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector (records hold no cycles; plain refcounting frees them)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _Scores:
    """Per-request results, filled batch by batch: fp64 log-prob sums, first-token log-probs and
    all-greedy flags as arrays (no Python work per request), plus per-token lists when `per_token`
    (the loss probe)."""

    def __init__(self, n: int, per_token: bool):
        self.sums = np.zeros(n, dtype=np.float64)
        self.first = np.zeros(n, dtype=np.float64)
        self.greedy = np.zeros(n, dtype=bool)
        self.tokens: list | None = [None] * n if per_token else None

    def put(self, idx, values, flags, head, tail, extra) -> None:
        """Request idx[k] reads its first token at pair head[k] and its next extra[k] tokens at the
        consecutive pairs from tail[k] on (`optiontree.Layout`)."""
        cum = np.concatenate(([0.0], np.cumsum(values)))     # a segment's sum: two reads
        misses = np.concatenate(([0], np.cumsum(~flags)))
        end = tail + extra
        self.sums[idx] = values[head] + (cum[end] - cum[tail])
        self.first[idx] = values[head]
        self.greedy[idx] = flags[head] & (misses[end] == misses[tail])
        if self.tokens is not None:
            v, g = values.tolist(), flags.tolist()
            for i, h, t, e in zip(idx.tolist(), head.tolist(), tail.tolist(), end.tolist()):
                self.tokens[i] = ([v[h], *v[t:e]], [g[h], *g[t:e]])

    def put_one(self, i: int, values, flags) -> None:
        self.sums[i] = math.fsum(values.tolist())
        self.first[i] = float(values[0])
        self.greedy[i] = bool(flags.all())
        if self.tokens is not None:
            self.tokens[i] = (values.tolist(), flags.tolist())
