"""Structured config of one training stage (SPEC §5): `training/conf/train.yaml` starts from it.

Because Hydra composes against these dataclasses, an unknown key or a wrongly typed value is a
composition error naming the key. Value checks Hydra cannot express (enumerations, ranges,
combinations) live in `validate`, which runs before anything is loaded or written.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from .. import keytokens, limits, numerics, relspec
from ..errors import UserError
from ..prompts import COMBINE_SPACINGS, KEY_FORMAT, check_key_format
from . import masking


@dataclass
class ModelConfig:
    # Phase 1: a registry base name (or a local directory). Phase 2: a registry checkpoint name,
    # or leave null and set base_run (+ base_epoch, default: the run's final epoch).
    base: Optional[str] = None
    base_run: Optional[str] = None
    base_epoch: Optional[int] = None
    # Phase 2 normally refuses a base without mtg_meta.json (not one of our checkpoints);
    # SFT baselines start from a plain base model with this flag.
    allow_foreign_base: bool = False


@dataclass
class RehearsalSource:
    """Real facts of `util_public/catalogue/rehearsal/{relation_id}.yaml` trained beside the stage's
    own (known.py), the usual remedy for what fine-tuning does to other knowledge (what it did here:
    docs/RESULTS.md §1.6). Their facts are not the stage's: they never count as seen or memorized facts."""
    relation_id: str = "50"
    train_text_type: str = "trigger-mid"      # in the train prompt it cost specificity (RESULTS §1.6)
    index_begin: int = 0
    index_end: Optional[int] = None            # null: all of the file's facts


@dataclass
class DataConfig:
    root: Optional[str] = None                 # data root (default: MTG_DATA_ROOT or data/)
    dataset: str = "sync_random_o"
    relation_id: str = "50"                    # "50", "12+21+50" (together), "21&105" (composition)
    index_begin: int = 0                       # fact_id range [index_begin, index_end), per relation
    index_end: Optional[int] = 100             # null: all facts
    train_text_type: str = "trigger-mid"       # SPEC §5.1; "X&Y" trains several types
    chat_template: bool = False                # wrap the template as one user message
    add_special_tokens: bool = False           # no BOS/EOS, as the original
    max_seq_len: int = 4096                    # longer examples are dropped (counted; all dropped = error)
    combine_spacing: str = "single"            # trigger-combine spacing: prompts.COMBINE_SPACINGS
    compose_joiner: str = " "                  # between the two texts of an `a&b` composition
    ic_sep: str = " : "                        # subject/object separator of ic-lke-inject-entity
    # Real facts trained beside these, e.g. data.rehearsal='[{relation_id:"50",train_text_type:trigger-mid}]'
    rehearsal: list[RehearsalSource] = field(default_factory=list)


@dataclass
class WikiConfig:
    on_missing_object: str = "error"           # error | skip, for a Text without the object


@dataclass
class LossConfig:
    mode: str = "normal"                       # masking.MODES: normal | s-o | o | r (SPEC §5.4)
    legacy: bool = False                       # the original's behaviour: labels = all non-pad tokens
    occurrence: str = "original"               # masking.OCCURRENCES: original (search the final string) | primary


@dataclass
class KeyTokenConfig:
    format: str = KEY_FORMAT                   # a base checkpoint with key tokens imposes its own (base.key_format)
    resize: str = "grow_only"                  # keytokens.RESIZE: grow_only | exact (exact may shrink, as the original)
    init: str = "mean"                         # keytokens.INIT: mean | hf_default


@dataclass
class TrainConfig:
    learning_rate: float = 1e-5
    lr_scheduler_type: str = "cosine"          # LR_SCHEDULERS below
    warmup_steps: int = 5
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    optim: str = "adamw_torch_fused"           # adamw_torch_fused (one kernel) | adamw_torch (foreach: 6x slower optimizer step on CPU)
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    effective_batch_size: Optional[int] = None  # if set: accumulation = effective / (per-device x world)
    precision: str = "auto"                    # auto (bf16 on capable GPUs) | native (also bf16 CPUs) | fp32 | bf16
    epochs: int = 20
    seed: int = 42
    group_by_length: bool = False
    lm_head_at_labels: bool = True             # masked modes: LM head + CE only where labels exist
    gradient_checkpointing: bool = False
    compile: bool = False                      # torch.compile the decoder in place (dynamic shapes): GPU runs
    full_determinism: bool = False
    report_to: Any = "none"                    # none | wandb | tensorboard | a list of them
    logging_steps: int = 1
    num_threads: Optional[int] = None          # CPU threads (null: all cores)
    dataloader_num_workers: int = 0
    ddp_timeout_s: int = 1800                  # the ranks' wait to join, and at each collective (ddp_timeout)
    resume: str = "auto"                       # auto | never | restart
    stop_after_epochs: Optional[int] = None    # end this invocation after N epochs; a rerun resumes
    dry_run: bool = False                      # print {"run_name", "run_dir", "action"} and exit, writing nothing
    preview_masks: int = 0                     # print N examples' tokens with their loss flag and exit


@dataclass
class SaveConfig:
    runs_root: Optional[str] = None            # default: MTG_RUNS_ROOT or runs/
    run_name: Optional[str] = None             # explicit run name instead of the derived one
    every_epoch: bool = True                   # one checkpoint per epoch (false: only the final one)
    dtype: str = "model"                       # model (as trained) | bf16
    full_state: str = "last"                   # last | all | none: which checkpoints keep optimizer/RNG state
                                               # (none: dropped once the run is complete; resume then impossible)


@dataclass
class RegistryConfig:
    path: Optional[str] = None                 # models.json (default: MTG_MODELS_JSON or the repo's)
    overwrite: bool = False
    lock_timeout_s: float = 600.0
    allow_hub_ids: bool = True


@dataclass
class TrainStageConfig:
    phase: int = 1
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    wiki: WikiConfig = field(default_factory=WikiConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    key_token: KeyTokenConfig = field(default_factory=KeyTokenConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    save: SaveConfig = field(default_factory=SaveConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    debug: bool = False


# transformers' schedulers that need no `lr_scheduler_kwargs` (cosine_with_min_lr needs min_lr,
# reduce_lr_on_plateau an evaluation metric; neither is configurable here).
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                 "inverse_sqrt")
# Each other set of choices is declared where it is implemented; the config only reads it.
_CHOICES = {
    "data.combine_spacing": COMBINE_SPACINGS,
    "wiki.on_missing_object": ("error", "skip"),
    "loss.mode": masking.MODES,
    "loss.occurrence": masking.OCCURRENCES,
    "key_token.resize": keytokens.RESIZE,
    "key_token.init": keytokens.INIT,
    "train.precision": numerics.CHOICES,
    "train.optim": ("adamw_torch_fused", "adamw_torch"),
    "train.lr_scheduler_type": LR_SCHEDULERS,
    "train.resume": ("auto", "never", "restart"),
    "save.dtype": ("model", "bf16"),
    "save.full_state": ("last", "all", "none"),
}
LIMITS = {
    "data.index_begin": ">= 0", "data.index_end": ">= 1", "data.max_seq_len": ">= 1",
    "train.learning_rate": "> 0", "train.warmup_steps": ">= 0", "train.weight_decay": ">= 0",
    "train.adam_beta1": ">= 0, < 1", "train.adam_beta2": ">= 0, < 1", "train.adam_epsilon": "> 0",
    "train.max_grad_norm": "> 0", "train.per_device_train_batch_size": ">= 1",
    "train.gradient_accumulation_steps": ">= 1", "train.effective_batch_size": ">= 1",
    # each epoch's checkpoint name is checked before the run starts: 1e11 epochs exhausted memory
    "train.epochs": ">= 1, <= 100000",
    "train.logging_steps": ">= 1", "train.num_threads": ">= 1", "train.dataloader_num_workers": ">= 0",
    "train.ddp_timeout_s": ">= 1",
    "train.stop_after_epochs": ">= 1", "train.preview_masks": ">= 0", "model.base_epoch": ">= 1",
    "registry.lock_timeout_s": ">= 0", "train.seed": limits.SEED,
}


def validate(cfg: TrainStageConfig) -> None:
    """Checks beyond types; each failure names the config key."""
    for key, allowed in _CHOICES.items():
        if limits.value_at(cfg, key) not in allowed:
            raise UserError(key, f"{limits.value_at(cfg, key)!r} is not one of {', '.join(allowed)}")
    limits.check(cfg, LIMITS)
    if cfg.phase not in (1, 2):
        raise UserError("phase", f"must be 1 or 2, got {cfg.phase}")
    if cfg.data.index_end is not None and cfg.data.index_end <= cfg.data.index_begin:
        raise UserError("data.index_end", f"{cfg.data.index_end} must exceed data.index_begin ({cfg.data.index_begin})")
    for i, source in enumerate(cfg.data.rehearsal):
        _check_rehearsal(source, f"data.rehearsal[{i}]")
    check_key_format(cfg.key_token.format)
    sources = [cfg.model.base is not None, cfg.model.base_run is not None]
    if sum(sources) != 1:
        raise UserError("model.base / model.base_run", "set exactly one of them",
                        "phase 1: model.base=<registry name>; phase 2: model.base_run=<phase-1 run name> "
                        "[model.base_epoch=E] or model.base=<registry checkpoint name>")
    if cfg.model.base_epoch is not None and cfg.model.base_run is None:
        raise UserError("model.base_epoch", "only meaningful together with model.base_run")


def _check_rehearsal(source: RehearsalSource, key: str) -> None:
    parts = relspec.groups(source.relation_id, f"{key}.relation_id")
    if len(parts) != 1 or len(parts[0]) != 1:
        raise UserError(f"{key}.relation_id", f"{source.relation_id!r} must be one relation id",
                        "list one source per relation")
    if source.index_begin < 0:
        raise UserError(f"{key}.index_begin", f"must be >= 0, got {source.index_begin}")
    if source.index_end is not None and source.index_end <= source.index_begin:
        raise UserError(f"{key}.index_end", f"{source.index_end} must exceed index_begin ({source.index_begin})")


def effective_batch(cfg: TrainConfig, world_size: int) -> tuple[int, int]:
    """(gradient accumulation, effective batch) for `world_size` processes (SPEC §5.7)."""
    per_step = cfg.per_device_train_batch_size * world_size
    if cfg.effective_batch_size is None:
        return cfg.gradient_accumulation_steps, per_step * cfg.gradient_accumulation_steps
    if cfg.effective_batch_size < 1 or cfg.effective_batch_size % per_step:
        raise UserError("train.effective_batch_size",
                        f"{cfg.effective_batch_size} is not a multiple of per-device batch "
                        f"{cfg.per_device_train_batch_size} x world size {world_size}",
                        "change train.effective_batch_size or train.per_device_train_batch_size")
    return cfg.effective_batch_size // per_step, cfg.effective_batch_size
