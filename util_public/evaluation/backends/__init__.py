"""Backends: how requests are scored and prompts generated (`hf` or `vllm`, SPEC §6.5).

Both take `requests.Request`s (token ids from the project's own tokenisation) and return
`records.ScoreRecord`s, so results compare record by record. vLLM is imported only when chosen.
"""
from __future__ import annotations

import importlib.util
import sys

from ...errors import UserError

VLLM_HINT = "use backend=hf"


def vllm_available() -> bool:
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def choose(name: str) -> str:
    """The backend to use: `auto` takes vllm when it imports and CUDA exists, else hf."""
    if name == "hf":
        return "hf"
    if name == "vllm":
        if not vllm_available():
            raise UserError("backend", "backend=vllm needs vLLM and a CUDA GPU", VLLM_HINT)
        return "vllm"
    if name == "auto":
        chosen = "vllm" if vllm_available() else "hf"
        print(f"backend=auto: using {chosen}", file=sys.stderr)
        return chosen
    raise UserError("backend", f"{name!r} is not hf, vllm or auto")


def load(name: str, model_path: str, tokenizer, cfg, device: str | None = None):
    """Load the model into the chosen backend (`cfg`: the EvalConfig; `device`: this rank's, over
    `hf.device`, under a launch of several ranks)."""
    from ... import modelio

    if name == "vllm":
        from .vllm import VllmBackend

        return VllmBackend(model_path, tokenizer, cfg)
    from .hf import HFBackend

    model = modelio.load_causal_lm(model_path, cfg.model.dtype, device or cfg.hf.device)
    return HFBackend(model, tokenizer, cfg.mc.batch_size, cfg.gen.batch_size)


def resolved_dtype(name: str, cfg) -> str:
    """The dtype a backend will run in, known before loading (it enters the result hash)."""
    from ... import modelio

    if name == "vllm":
        return cfg.model.dtype
    device = cfg.hf.device or modelio.default_device()
    return str(modelio.torch_dtype(cfg.model.dtype, device)).removeprefix("torch.")
