"""The evaluation entry points' logic: validate everything, load the model once, run, report.

Order matters (SPEC §2.2, §10): config, facts, prompts, key tokens and the output location are
all checked before the model's weights are loaded, and result directories appear only when
complete. When every job already has an identical result, nothing is loaded ("cached").
Under `python -m util_public.launcher ... evaluation/eval.py` (several ranks, backend hf) every
rank loads the model and scores its share of the questions; rank 0 writes (`shards.py`).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from omegaconf import DictConfig

from .. import distributed, modelio, paths
from ..artifacts import ResultSummary
from ..atomicio import check_writable_dir, write_json
from ..cli import to_object
from ..errors import UserError
from ..runtime import configure_cpu
from . import api, backends, plan as planning, report
from .modelinfo import describe
from .schema import EvalConfig


def _max_len(backend: str, cfg: EvalConfig, model_path: str) -> int | None:
    """The longest sequence the backend scores: the model's context; on vLLM at most
    vllm.max_model_len, less the one token the server generates per request."""
    if backend == "vllm":
        from .backends.vllm import context_tokens

        return context_tokens(cfg.vllm.max_model_len, model_path) - 1
    return modelio.context_length(model_path)


def check(cfg: EvalConfig) -> str:
    """The backend `cfg` runs on, after the checks that need neither facts nor a model (a recipe makes
    them for every evaluation before its first step)."""
    backend_name = backends.choose(cfg.backend)
    planning.check_config(cfg, cfg.tasks, backend_name)
    return backend_name


def run(cfg: EvalConfig) -> list[dict]:
    """Evaluate `cfg` end to end; returns the summaries (also printed as a table)."""
    distributed.check_started()
    backend_name = check(cfg)
    configure_cpu(cfg.runtime.num_threads)
    device = _ranks(backend_name, cfg.hf.ddp_timeout_s)
    info = describe(cfg.model.name, cfg.model.path)
    modelio.check_checkpoint(info.path)     # before any output, for either backend
    tokenizer = modelio.load_tokenizer(info.path)
    factsets = planning.load_factsets(cfg)
    dtype = backends.resolved_dtype(backend_name, cfg)
    the_plan = planning.build(cfg, info, tokenizer, factsets, None, None, backend_name, dtype,
                              _max_len(backend_name, cfg, info.path))
    main = distributed.is_main()      # the only writer
    if main:
        # before the weights load
        check_writable_dir(the_plan.root, paths.root_setting("results", "output.root", cfg.output.root))
    with api.writing(the_plan):        # "already running" before the weights load
        if api.pending(the_plan, cfg):
            backend = backends.load(backend_name, info.path, tokenizer, cfg, device)
        else:
            backend = _NoModel(backend_name, dtype)
            print("cached: every result already exists with the same config hash", file=sys.stderr)
        summaries = api.execute(the_plan, backend, tokenizer, info, cfg)
    if main:
        print(report.table([ResultSummary.from_json(s, s["directory"]) for s in summaries]))
    return summaries


def _ranks(backend_name: str, timeout_s: int) -> str | None:
    """On several ranks: join the process group (accelerate; gloo on CPU) and return this rank's
    device; on one: None (the configured device)."""
    if distributed.world()[0] == 1:
        return None
    if backend_name != "hf":
        raise UserError("backend", f"{backend_name} evaluates in one process (its own tensor parallelism: "
                        "vllm.tensor_parallel_size); several ranks split questions with backend=hf",
                        "set backend=hf, or run eval.py without the launcher")
    return str(distributed.join(timeout_s, "hf.ddp_timeout_s").device)


class _NoModel:
    """Stands in for a backend when every result is cached (no weights are loaded, nothing is run)."""
    facts_per_call = 1
    max_len = None

    def __init__(self, name: str, dtype: str):
        self.name, self.dtype = name, dtype

    def versions(self) -> dict:
        return {"backend": self.name, "dtype": self.dtype}

    def _unloaded(self, *_args):
        raise RuntimeError("no model is loaded: every result was cached")

    score = token_logprobs = generate = _unloaded


# Where a caller that runs eval.py as a subprocess (a recipe's vLLM evaluation: one engine per
# process) learns the result directories it wrote or found cached, as a JSON list.
RESULTS_LIST_ENV = "MTG_EVAL_RESULTS_LIST"


def task(cfg: DictConfig, overrides: list[str]) -> None:
    """`cli.hydra_entry` callback shared by eval.py, eval_gen.py, eval_all_loss.py and ic_lke.py."""
    summaries = run(to_object(cfg))
    listing = os.environ.get(RESULTS_LIST_ENV)
    if listing and distributed.is_main():
        write_json(Path(listing), [s["directory"] for s in summaries])
