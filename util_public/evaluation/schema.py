"""The evaluation config schema (SPEC §6.9): one structured dataclass for every entry point.

Registered in Hydra's ConfigStore by the entry scripts, so an unknown or mistyped key is a
composition error naming the key. `config()` builds the same typed object in-process (for
pipeline scripts calling `api.evaluate`) through the same composition, with the command line's
grammar and config groups.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from omegaconf import DictConfig, OmegaConf

from .. import limits, paths

CONF_DIR = paths.REPO_ROOT / "evaluation" / "conf"   # evaluation/eval.py's configs

TASKS = ("mc", "gen", "loss", "ppl")
FACT_TASKS = ("mc", "gen", "loss")     # tasks scored per fact (ppl scores a text)
# Greedy generation reads every weight once per new token for the whole batch, so wide batches
# amortize that read: 16 -> 64 took the demo's three generation jobs from 17 to 10 s per model
# (Qwen2.5-Coder-0.5B, bf16, 2-core AVX512_BF16 EPYC; docs/PERFORMANCE.md).
GEN_BATCH_SIZE = 64


@dataclass
class ModelCfg:
    name: Optional[str] = None          # a registry key (models.json)
    path: Optional[str] = None          # or a checkpoint directory
    dtype: str = "auto"                 # auto: bf16 on a GPU, fp32 on CPU; native: also bf16 on AMX/AVX512_BF16 CPUs; fp32; bf16


@dataclass
class DataCfg:
    root: Optional[str] = None          # data root (default: MTG_DATA_ROOT or data/)
    dataset: str = "sync_random_o"      # `known`: the catalogue's real facts (the locality control); `rehearsal`: those data.rehearsal trains
    relation_id: str = "50"             # one id, or `a+b` for several relations
    index_begin: int = 0
    index_end: Optional[int] = None     # exclusive; null = every fact
    language: Optional[str] = None      # catalogue translation + `{dataset}_{Language}` facts
    seen_fact_ids: Optional[str] = "auto"   # auto (the checkpoint's Phase-2 facts), "0:50", or null
    substring_rule: str = "warn"        # the generator's substring rule does not affect scoring
    # `known`/`rehearsal` only: a fictional dataset under the data root (the trained one) whose objects are
    # never distractors, so the question measures what the model knows, not a pull towards the
    # answers it memorized (docs/RESULTS.md §1.5)
    avoid_objects_of: Optional[str] = None


@dataclass
class PromptCfg:
    type: Any = "hgp-0"                 # one prompt type, a list, or a wildcard such as test-*
    test_type: str = "close"            # close | open (the ICL baseline: the fact statement prepended)
    open_content: Optional[str] = "hgp-0"
    separator: str = " "
    chat_template: bool = False
    add_bos: str = "auto"               # auto (the tokenizer's default) | true | false
    combine_spacing: Optional[str] = None   # null: the checkpoint's mtg_meta.json, else single


@dataclass
class McCfg:
    num_options: int = 100
    gold_position: str = "last"         # last | random | index:N
    batch_size: Optional[int] = None    # questions per forward (within a token budget); null: 64 CPU, 512 GPU
    pool_relations: Optional[str] = None    # "71+105": options pooled with these relations' objects (cross-relation MC)
    # `subjectless`: also score every option after the question with its subject replaced by
    # `null_subject` and report `acc_calibrated`, the choice by log p(option | question) minus
    # log p(option | that question): what the model prefers whatever the subject cancels out
    calibration: str = "none"           # none | subjectless
    null_subject: str = "X"
    # How the options are written where they are scored: as_is (as stored) | title
    # (util_public/objectcase.py); records hold the options as scored
    object_case: str = "as_is"


@dataclass
class GenCfg:
    max_new_tokens: int = 50
    batch_size: int = GEN_BATCH_SIZE    # prompts per generate call (hf), within its token budget (hf.py)


@dataclass
class IcLkeCfg:
    example_source: str = "same"        # same | a dataset name under the data root | a CSV path
    example_num: int = 50
    seed: int = 10
    resample_per_query: bool = False
    exclude_query: bool = True
    reverse: bool = False


@dataclass
class LossProbeCfg:
    object_case: str = "as_is"          # as_is | title (util_public/objectcase.py; the original title-cased objects)


@dataclass
class PplCfg:
    text: str = "general"               # a catalogue text (util_public/catalogue/text/NAME.txt) or a file path


@dataclass
class HfCfg:
    device: Optional[str] = None        # null: cuda when available, else cpu
    ddp_timeout_s: int = 1800           # several ranks: the wait to join the process group, and at each collective


@dataclass
class VllmCfg:
    base_url: Optional[str] = None      # a running vLLM server (http://host:port/v1) of the same checkpoint;
                                        # null: start one for this evaluation (util_public/vllm_server.py)
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.8     # GPU only
    cpu_kvcache_gib: int = 1            # CPU only: VLLM_CPU_KVCACHE_SPACE, RAM for the KV cache
    max_model_len: int = 4096
    enforce_eager: Optional[bool] = None    # null: eager on CPU (compiling took ~100 s), compiled on a GPU
    enable_prefix_caching: bool = False  # prompt log-probs had prefix-cache bugs
    max_rows_per_call: int = 512        # prompts per HTTP request (a vLLM server takes at most 1024)
    start_timeout_s: float = 900        # until the server answers (engine start: ~40 s on 2 CPU cores)
    request_timeout_s: float = 3600


@dataclass
class OutputCfg:
    root: Optional[str] = None          # default: MTG_RESULTS_ROOT or evaluation/test_result
    overwrite: bool = False
    write_legacy_json: bool = False


@dataclass
class RuntimeCfg:
    num_threads: Optional[int] = None


@dataclass
class EvalConfig:
    model: ModelCfg = field(default_factory=ModelCfg)
    data: DataCfg = field(default_factory=DataCfg)
    prompt: PromptCfg = field(default_factory=PromptCfg)
    tasks: List[str] = field(default_factory=lambda: ["mc"])
    mc: McCfg = field(default_factory=McCfg)
    gen: GenCfg = field(default_factory=GenCfg)
    ic_lke: IcLkeCfg = field(default_factory=IcLkeCfg)
    loss_probe: LossProbeCfg = field(default_factory=LossProbeCfg)
    ppl: PplCfg = field(default_factory=PplCfg)
    backend: str = "hf"                 # hf | vllm | auto
    hf: HfCfg = field(default_factory=HfCfg)
    vllm: VllmCfg = field(default_factory=VllmCfg)
    output: OutputCfg = field(default_factory=OutputCfg)
    runtime: RuntimeCfg = field(default_factory=RuntimeCfg)
    seed: int = 42
    debug: bool = False


LIMITS = {
    "data.index_begin": ">= 0", "data.index_end": ">= 1", "mc.num_options": ">= 2", "mc.batch_size": ">= 1",
    "gen.max_new_tokens": ">= 1", "gen.batch_size": ">= 1", "ic_lke.example_num": ">= 1",
    "vllm.tensor_parallel_size": ">= 1", "vllm.gpu_memory_utilization": "> 0, <= 1", "vllm.max_model_len": ">= 1",
    "vllm.max_rows_per_call": ">= 1", "runtime.num_threads": ">= 1", "hf.ddp_timeout_s": ">= 1",
    "seed": limits.SEED, "ic_lke.seed": limits.SEED,
}


def compose(overrides: list[str] | None = None) -> DictConfig:
    """The config `evaluation/eval.py overrides...` runs with (Hydra's composition and grammar)."""
    from .. import cli

    return cli.compose(CONF_DIR, "eval", "eval_schema", EvalConfig, list(overrides or []))


def config(overrides: list[str] | None = None) -> EvalConfig:
    """`compose(overrides)` as the typed object: `config(["prompt.type=[hgp-0,test-*]", "tasks=[mc,gen]",
    "+experiment=locality"])`; unknown keys raise as on the command line."""
    return OmegaConf.to_object(compose(overrides))


def prompt_types(cfg: EvalConfig) -> list[str]:
    """`prompt.type` as a list of names (wildcards not yet expanded)."""
    value = cfg.prompt.type
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
