"""The vLLM backend (GPU only): the same requests and records as `hf`, token ids in, never text.

- Rows: `TokensPrompt(context + continuation)` with `SamplingParams(max_tokens=1, temperature=0,
  prompt_logprobs=1)`; position p's entry is looked up by the actual token id at p (the dict's
  first key is the top-1 token, not necessarily ours). A missing id is an error.
- Single-token options sharing a context, where the installed vLLM has `logprob_token_ids`: one
  prompt per context asking for exactly those ids (prompt log-probs bypass the prefix cache and
  recompute the whole prompt, so this is the cheap path; PERF.md).
- Generation: `temperature=0`, `max_tokens`; EOS cut like hf.
vLLM is imported here only, when this backend is constructed; it must run in its own process
(one engine per process: GPU memory is not reliably freed between engines).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

from ...errors import UserError
from ..records import ScoreRecord, from_token_logprobs
from ..requests import Request
from . import VLLM_HINT

_DTYPES = {"auto": "auto", "fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
           "fp16": "float16", "float16": "float16"}


class VllmBackend:
    name = "vllm"
    facts_per_call = 4096      # the engine schedules its own batches; give it plenty

    def __init__(self, model_path: str, tokenizer, cfg):
        try:
            import torch
            import vllm
            from vllm import LLM, SamplingParams
        except ImportError:
            raise UserError("backend", "backend=vllm needs vLLM and a CUDA GPU", VLLM_HINT) from None
        if not torch.cuda.is_available():
            raise UserError("backend", "backend=vllm needs vLLM and a CUDA GPU", VLLM_HINT)
        if cfg.model.dtype not in _DTYPES:
            raise UserError(f"model.dtype={cfg.model.dtype}", "unknown dtype", "use auto, fp32, bf16 or fp16")
        self._vllm, self._SamplingParams = vllm, SamplingParams
        self.tokenizer = tokenizer
        self.max_len = cfg.vllm.max_model_len
        self.rows_per_call = max(1, cfg.vllm.max_rows_per_call)
        self.llm = LLM(model=model_path, tokenizer=model_path, dtype=_DTYPES[cfg.model.dtype],
                       tensor_parallel_size=cfg.vllm.tensor_parallel_size,
                       gpu_memory_utilization=cfg.vllm.gpu_memory_utilization, max_model_len=cfg.vllm.max_model_len,
                       enable_prefix_caching=cfg.vllm.enable_prefix_caching, seed=cfg.seed)
        fields = getattr(SamplingParams, "__struct_fields__", None) or getattr(SamplingParams, "__annotations__", {})
        self.has_token_ids = "logprob_token_ids" in fields
        self.stop = stop_ids(model_path, tokenizer)

    def versions(self) -> dict:
        import torch

        return {"backend": "vllm", "vllm": self._vllm.__version__, "torch": torch.__version__, "device": "cuda"}

    def check_length(self, key, n_tokens: int) -> None:
        if n_tokens > self.max_len:
            raise UserError(f"request {key}", f"{n_tokens} tokens exceed vllm.max_model_len={self.max_len}",
                            "raise vllm.max_model_len or shorten the prompt")

    def _run(self, prompts: list[list[int]], params) -> list:
        from vllm.inputs import TokensPrompt

        outputs = []
        for start in range(0, len(prompts), self.rows_per_call):
            chunk = [TokensPrompt(prompt_token_ids=list(p)) for p in prompts[start:start + self.rows_per_call]]
            outputs.extend(self.llm.generate(chunk, params, use_tqdm=False))
        return outputs

    def score(self, requests: Sequence[Request]) -> list[ScoreRecord]:
        for r in requests:
            self.check_length(r.key, len(r.context) + len(r.continuation))
        per_token = self.token_logprobs(requests)
        return [from_token_logprobs(r, lps, greedy) for r, (lps, greedy) in zip(requests, per_token)]

    def token_logprobs(self, requests: Sequence[Request]) -> list[tuple[list[float], list[bool]]]:
        out: list = [None] * len(requests)
        rows = list(range(len(requests)))
        if self.has_token_ids:
            rows = self._single_token(requests, out)
        params = self._SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1)
        results = self._run([list(requests[i].context + requests[i].continuation) for i in rows], params)
        for i, res in zip(rows, results):
            out[i] = self._from_prompt_logprobs(requests[i], res.prompt_logprobs)
        return out

    def _single_token(self, requests: Sequence[Request], out: list) -> list[int]:
        """Answer single-token groups from one prompt each; returns the indices left for rows."""
        groups: OrderedDict[tuple, list[int]] = OrderedDict()
        rest = []
        for i, r in enumerate(requests):
            if len(r.continuation) == 1 and not r.boundary_merge:
                groups.setdefault(r.context, []).append(i)
            else:
                rest.append(i)
        for ctx, idxs in groups.items():
            targets = sorted({requests[i].continuation[0] for i in idxs})
            params = self._SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=targets)
            step = self._run([list(ctx)], params)[0].outputs[0].logprobs[0]
            for i in idxs:
                entry = step.get(requests[i].continuation[0])
                if entry is None:   # an engine that ignored the ids: score this one as a row
                    rest.append(i)
                else:
                    out[i] = ([float(entry.logprob)], [getattr(entry, "rank", None) == 1])
        return sorted(rest)

    @staticmethod
    def _from_prompt_logprobs(request: Request, prompt_logprobs) -> tuple[list[float], list[bool]]:
        ids = request.context + request.continuation
        values, greedy = [], []
        for pos in range(len(request.context), len(ids)):
            entry = (prompt_logprobs[pos] or {}).get(ids[pos])
            if entry is None:
                raise RuntimeError(f"vLLM returned no log-prob for token {ids[pos]} at position {pos} "
                                   f"of request {request.key}")
            values.append(float(entry.logprob))
            greedy.append(getattr(entry, "rank", None) == 1)
        return values, greedy

    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> list[list[int]]:
        for i, p in enumerate(prompts):
            self.check_length(f"prompt {i}", len(p) + max_new_tokens)
        params = self._SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
        results = []
        for res in self._run([list(p) for p in prompts], params):
            ids = list(res.outputs[0].token_ids)
            cut = next((k for k, t in enumerate(ids) if t in self.stop), len(ids))
            results.append(ids[:cut])
        return results


def stop_ids(model_path: str, tokenizer) -> set[int]:
    """EOS ids of the tokenizer and the checkpoint's generation config (the same set as hf)."""
    from transformers import GenerationConfig

    ids = {tokenizer.eos_token_id} - {None}
    try:
        eos = GenerationConfig.from_pretrained(model_path).eos_token_id
    except OSError:   # no generation_config.json
        eos = None
    ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    return ids
