"""Backends: how requests are scored and prompts generated (`hf` or `vllm`, SPEC §6.5).

Both take `requests.Request`s (token ids from the project's own tokenisation) and return
`records.ScoreRecord`s, so results compare record by record. vLLM is never imported here: it runs
in a server process of its own environment (`util_public/vllm_env.py`, `vllm_server.py`).
"""
from __future__ import annotations

import sys

from ...errors import UserError


def vllm_available() -> bool:
    """A vLLM environment exists and a GPU is visible (on CPU, hf scores faster: docs/PERFORMANCE.md)."""
    import torch

    from ... import vllm_env

    return torch.cuda.is_available() and vllm_env.find() is not None


def choose(name: str) -> str:
    """The backend to use: `auto` takes vllm when its environment exists and a GPU is visible, else hf."""
    from ... import vllm_env

    if name == "hf":
        return "hf"
    if name == "vllm":
        vllm_env.require("backend=vllm")
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
        from ... import vllm_env, vllm_server

        if cfg.vllm.base_url:    # the server's own --dtype decides; only the user can say which it is
            if cfg.model.dtype in ("auto", "native"):
                raise UserError("model.dtype", f"{cfg.model.dtype!r} cannot say which format the server at "
                                f"vllm.base_url runs, and results are cached under it",
                                "set model.dtype to the server's --dtype (fp32, bf16 or fp16)")
            return vllm_server.DTYPES.get(cfg.model.dtype, cfg.model.dtype)
        return vllm_server.engine_dtype(cfg.model.dtype, vllm_env.require().cpu)
    device = cfg.hf.device or modelio.default_device()
    return str(modelio.torch_dtype(cfg.model.dtype, device)).removeprefix("torch.")
