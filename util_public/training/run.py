"""One training stage end to end (SPEC §5): the task behind `training/train.py`.

Order matters: everything that can be wrong with the input (config, registry, facts, templates,
key tokens, spans, registry names, writable output) is checked before a model is loaded or a
file is written. Then, holding the run directory's lock, the run is created or resumed, its
checkpoint books are reconciled (`bookkeeping.py`), the model is loaded and trained, and every
epoch's checkpoint is moved into place, registered and recorded.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .. import atomicio, catalogue, distributed, keytokens, modelio, paths, runinfo, tokenspans
from ..artifacts import BaseModelRecord, CheckpointMeta, RunManifest, TokenCount
from .. import cli
from ..cli import to_object
from ..errors import UserError, under
from ..registry import Registry
from . import base as basemodel
from . import bookkeeping, confighash, curves, dataset, hfargs, naming, preview, schema, selection, texts
from .rundir import Decision, RunDir

log = logging.getLogger("mtg.training")
CONF_DIR = paths.REPO_ROOT / "training" / "conf"
SCHEMA_NAME = "train_schema"
PREVIEW_IN_LOG = 5


def compose(config_name: str = "phase1", overrides: list[str] | None = None) -> DictConfig:
    """The composed config, as `training/train.py --config-name NAME overrides...` would see it."""
    return cli.compose(CONF_DIR, config_name, SCHEMA_NAME, schema.TrainStageConfig, list(overrides or []))


def check_config(cfg: schema.TrainStageConfig, world_size: int) -> tuple[int, int]:
    """The checks that need neither data nor a model, on `world_size` ranks (a recipe makes them for
    every stage before its first step); returns (gradient accumulation, effective batch)."""
    schema.validate(cfg)
    texts.check_text_type(cfg.data.train_text_type)
    for i, source in enumerate(cfg.data.rehearsal):
        key = f"data.rehearsal[{i}].train_text_type"
        texts.check_text_type(source.train_text_type, key)
        if "wiki" in texts.components(source.train_text_type):
            raise UserError(key, "rehearsal facts have no wiki paragraph", "use a template type such as hgp-0 or trigger-mid")
    hfargs.check_reporters(cfg.train.report_to)
    return schema.effective_batch(cfg.train, world_size)


def train_stage(cfg_node: DictConfig, overrides: list[str]) -> int:
    cfg: schema.TrainStageConfig = to_object(cfg_node)
    distributed.check_started()
    world_size, rank = distributed.world()
    _setup_logging(rank)
    distributed.check_sharding_mode()
    grad_accum, eff_batch = check_config(cfg, world_size)
    registry, runs_root, base, data_root, chosen, rehearsed = _inputs(cfg)
    cfg_node.key_token.format = cfg.key_token.format     # the run directory's config says what ran
    unrelated = basemodel.unrelated_data(base, cfg.data.dataset, chosen.atomic_relations())
    if unrelated and rank == 0:
        print(f"warning: {unrelated}", file=sys.stderr)

    tokenizer, keys, encoded = _examples(cfg, base, chosen, rehearsed, data_root)
    unmemorized = basemodel.unmemorized(base, cfg.data.dataset, encoded.trained_fact_ids()) if cfg.phase == 2 else None
    if unmemorized and rank == 0:
        print(f"warning: {unmemorized}", file=sys.stderr)
    if cfg.train.preview_masks:
        for i, (t, m) in enumerate(list(zip(encoded.texts, encoded.masked))[:cfg.train.preview_masks]):
            print(preview.render(tokenizer, t, m, i))
        return 0

    fingerprint = runinfo.fingerprint(list(dict.fromkeys([*chosen.input_files, *(f for r in rehearsed for f in r.input_files)])))
    precision = "bf16" if hfargs.use_bf16(cfg.train.precision) else "fp32"
    legacy = runinfo.combined({runinfo.file_key(f): fingerprint["files"][runinfo.file_key(f)]
                               for f in catalogue.unmerged(chosen.input_files, data_root)})
    stage = confighash.stage_hash(cfg, base.identity, encoded.sha256(), fingerprint, legacy, eff_batch, precision)
    config_hash = stage.value
    run_name = _run_name(cfg, base, chosen, eff_batch)
    run = RunDir(runs_root / run_name, run_name)
    books = bookkeeping.CheckpointBooks(run, registry, cfg.registry.overwrite)
    steps = hfargs.steps_per_epoch(len(encoded.masked), cfg.train.per_device_train_batch_size, grad_accum, world_size)
    saved_at = [steps * epoch for epoch in range(1, cfg.train.epochs + 1)]
    if cfg.train.dry_run:   # what the real run would refuse, read without writing: the run directory, the names
        existing = atomicio.nearest_existing(runs_root)
        if not existing.is_dir():       # the real run refuses it; the dry run answered "fresh"
            raise UserError(f"save.runs_root: {runs_root}", f"{existing} is a file, not a folder",
                            "choose another runs root")
        decision = run.decide(stage, cfg.train.resume)
        books.check_names(saved_at)
        print(json.dumps({"run_name": run_name, "run_dir": str(run.path), "action": decision.action}))
        return 0
    if rank == 0:   # the only writer (the probe file is removed again, but it is a write)
        atomicio.check_writable_dir(runs_root, "save.runs_root")
        books.preflight(saved_at)
    with run.lock() if rank == 0 else contextlib.nullcontext():
        decision = run.decide(stage, cfg.train.resume)
        if decision.action == "complete":
            if rank == 0:
                _print_registered(books.reconcile())
                print(f"already complete: {run.path} (config hash {config_hash[:12]})")
            return 0

        if world_size > 1:       # the ranks meet here
            distributed.join(cfg.train.ddp_timeout_s, "train.ddp_timeout_s")
        args = hfargs.training_arguments(cfg, run.path, grad_accum, run_name)   # reuses the process group
        from accelerate import PartialState

        state = PartialState()
        if rank == 0:
            run.start(decision, _manifest(cfg, run_name, stage, base, fingerprint, world_size,
                                          grad_accum, eff_batch, steps, precision, encoded),
                      OmegaConf.to_yaml(cfg_node, resolve=True), overrides, encoded.records())
            books.reconcile()      # checkpoints a killed invocation moved into place but did not book
            file_handler = _log_to_file(run.log_path)
            log.info("run %s: %s, %d examples, %d steps/epoch, effective batch %d", run_name, decision.action,
                     len(encoded.masked), steps, eff_batch)
            per_step = world_size * cfg.train.per_device_train_batch_size
            if world_size > 1 and len(encoded.masked) % per_step:
                log.warning("%d examples are not a multiple of world size x per-device batch (%d): accelerate "
                            "repeats the first %d of each epoch's order so that every rank gets a full last batch",
                            len(encoded.masked), per_step, per_step - len(encoded.masked) % per_step)
            for i, (t, m) in enumerate(list(zip(encoded.texts, encoded.masked))[:PREVIEW_IN_LOG]):
                # The preview goes to the log file only; the console gets it with train.preview_masks.
                file_handler.stream.write(f"mask preview\n{preview.render(tokenizer, t, m, i)}\n")
            file_handler.flush()
        state.wait_for_everyone()
        meta = _checkpoint_meta(cfg, run_name, config_hash, base, keys, chosen, encoded, tokenizer)
        return _train(cfg, args, run, decision, books, base.path, tokenizer, keys, encoded, meta)


def _train(cfg, args, run: RunDir, decision: Decision, books: bookkeeping.CheckpointBooks, base_path: str,
           tokenizer, keys, encoded: dataset.Encoded, meta: CheckpointMeta) -> int:
    import torch
    from transformers import AutoModelForCausalLM, ProgressCallback, set_seed

    from . import callbacks
    from .collator import PadCollator
    from .trainer import MtgTrainer

    if args.use_cpu:
        from ..runtime import configure_cpu

        configure_cpu(cfg.train.num_threads)
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32, use_safetensors=True)
    set_seed(cfg.train.seed)
    keytokens.resize_and_init(model, tokenizer, keys, cfg.key_token.resize, cfg.key_token.init)
    if cfg.train.compile:
        from .loss import compile_decoder

        compile_decoder(model)
    epochs = callbacks.EpochCheckpoints(cfg.save.every_epoch, cfg.train.epochs, cfg.train.stop_after_epochs)

    def finalize(staged: Path, state) -> None:
        epoch, step = round(float(state.epoch)), state.global_step
        checkpoint = books.commit(staged, meta.at(epoch, step), cfg.save.dtype)
        if cfg.save.full_state in ("last", "none"):
            run.prune_full_state(keep=checkpoint.directory)
        log.info("checkpoint epoch %d step %d -> %s (registered as %s)", epoch, step, checkpoint.directory,
                 checkpoint.name)

    masked_mode = cfg.loss.mode != "normal" and not cfg.loss.legacy
    head_at_labels = cfg.train.lm_head_at_labels and masked_mode
    trainer = MtgTrainer(model=model, args=args, train_dataset=dataset.TrainDataset(encoded.masked),
                         data_collator=PadCollator(tokenspans.pad_id(tokenizer), label_index=head_at_labels),
                         processing_class=tokenizer,
                         callbacks=[epochs, callbacks.FiniteLoss(), callbacks.MetricsLog(run.metrics_path, encoded.tokens,
                                                                 encoded.label_tokens)],
                         lm_head_at_labels=head_at_labels,
                         finalize_checkpoint=finalize, final_state=cfg.save.full_state != "none",
                         save_bf16=cfg.save.dtype == "bf16")
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(callbacks.QuietProgress)
    started = time.time()
    try:
        trainer.train(resume_from_checkpoint=str(decision.checkpoint) if decision.checkpoint else None)
    except BaseException as exc:
        if args.should_save:
            run.add_wall_time(time.time() - started)
            run.fail(f"{type(exc).__name__}: {exc}")
        raise
    if args.should_save:
        run.add_wall_time(time.time() - started)
        curve = curves.plot(run.metrics_path, run.path / "loss_curve.png", run.run_name)
        if curve is not None:
            print(f"loss curve: {curve}")
        in_place = books.reconcile()
        _require_balanced(books)
        if epochs.stopped_early:
            run.save_manifest()
            print(f"stopped after {cfg.train.stop_after_epochs} epoch(s) as configured; rerun to resume: {run.path}")
        else:
            run.complete()
            if cfg.save.full_state == "none":   # a complete run is never resumed: its state is dead weight
                run.prune_full_state(keep=None)
            print(f"complete: {run.path}")
        _print_registered(in_place)
    trainer.accelerator.wait_for_everyone()
    return 0


def _inputs(cfg: schema.TrainStageConfig):
    """(registry, runs root, base model, data root, chosen facts, rehearsal facts per `data.rehearsal`
    source) of a stage, checked before any output; `cfg.key_token.format` becomes the base
    checkpoint's where it has key tokens."""
    registry = Registry(cfg.registry.path, cfg.registry.lock_timeout_s, cfg.registry.allow_hub_ids)
    runs_root = paths.root("runs", cfg.save.runs_root)
    base = basemodel.resolve(cfg, registry, runs_root)
    modelio.check_checkpoint(base.path)     # before any output: loadable, and never from pickles
    cfg.key_token.format = basemodel.key_format(cfg.key_token.format, base)
    data_root = paths.root("data", cfg.data.root)
    chosen = selection.load(cfg.data.relation_id, data_root, cfg.data.dataset, cfg.data.index_begin, cfg.data.index_end)
    rehearsed = [selection.rehearsal(s.relation_id, s.index_begin, s.index_end, data_root, f"data.rehearsal[{i}]")
                 for i, s in enumerate(cfg.data.rehearsal)]
    return registry, runs_root, base, data_root, chosen, rehearsed


def examples(cfg_node: DictConfig):
    """(tokenizer with the stage's key tokens, Encoded): the texts, token ids and loss labels a stage
    trains on, built as `train_stage` builds them, without loading weights or writing anything.
    `preview.render(tokenizer, encoded.texts[i], encoded.masked[i], i)` shows each token with its
    loss flag (library use: `examples(compose("phase1", ["data.index_end=4"]))`)."""
    cfg: schema.TrainStageConfig = to_object(cfg_node)
    check_config(cfg, 1)
    _, _, base, data_root, chosen, rehearsed = _inputs(cfg)
    tokenizer, _, encoded = _examples(cfg, base, chosen, rehearsed, data_root)
    return tokenizer, encoded


def _examples(cfg, base, chosen, rehearsed, data_root: Path):
    """(tokenizer with key tokens, KeyTokens, Encoded examples): every text built, masked and checked;
    the rehearsal facts' texts follow the stage's own."""
    from transformers import set_seed

    tokenizer = modelio.load_tokenizer(base.path)
    tokenspans.ensure_pad_token(tokenizer)
    set_seed(cfg.train.seed)
    parts = [(chosen, cfg.data.train_text_type), *zip(rehearsed, (s.train_text_type for s in cfg.data.rehearsal))]
    needed = [t for facts, text_type in parts for t in texts.key_tokens_needed(facts, text_type, cfg.key_token.format)]
    keys = keytokens.add(tokenizer, list(dict.fromkeys(needed)), base.meta, base.path)
    opts = _text_options(cfg, data_root, tokenizer)
    built = texts.build(chosen, cfg.data.train_text_type, opts)
    for i, (facts, text_type) in enumerate(parts[1:]):
        with under(f"data.rehearsal[{i}]"):
            built += [dataclasses.replace(t, rehearsal=True) for t in texts.build(facts, text_type, opts)]
    encoded = dataset.encode(tokenizer, built, cfg.loss.mode, cfg.loss.occurrence, cfg.loss.legacy,
                             cfg.data.add_special_tokens, cfg.data.max_seq_len)
    return tokenizer, keys, encoded


def _run_name(cfg, base, chosen, eff_batch: int) -> str:
    if cfg.save.run_name:
        return naming.explicit(cfg.save.run_name)
    first, last = chosen.fact_range()
    return naming.run_name(base.name, cfg.data.relation_id, cfg.data.dataset, cfg.data.train_text_type,
                           cfg.loss.mode, cfg.loss.legacy, eff_batch, cfg.train.learning_rate,
                           cfg.train.lr_scheduler_type, cfg.train.epochs, first, last, cfg.train.seed,
                           cfg.data.chat_template, [dataclasses.asdict(s) for s in cfg.data.rehearsal])


def _text_options(cfg, data_root: Path, tokenizer) -> texts.Options:
    return texts.Options(data_root=data_root, key_format=cfg.key_token.format, combine_spacing=cfg.data.combine_spacing,
                         compose_joiner=cfg.data.compose_joiner, ic_sep=cfg.data.ic_sep, seed=cfg.train.seed,
                         wiki_on_missing_object=cfg.wiki.on_missing_object,
                         chat=texts.chat_wrapping(tokenizer) if cfg.data.chat_template else None)


def _adds_bos(tokenizer, add_special_tokens: bool) -> bool:
    if not add_special_tokens or tokenizer.bos_token_id is None:
        return False
    return tokenspans.encode(tokenizer, "a", add_special_tokens=True).ids[:1] == [tokenizer.bos_token_id]


def _checkpoint_meta(cfg, run_name: str, config_hash: str, base, keys, chosen, encoded: dataset.Encoded,
                     tokenizer) -> CheckpointMeta:
    """The `mtg_meta.json` fields shared by every checkpoint of the run (epoch/step added per save)."""
    inherited = base.meta.key_token_init if base.meta and base.meta.key_token_init else cfg.key_token.init
    meta = CheckpointMeta(
        key_tokens=keys.ids, key_token_init=cfg.key_token.init if keys.added else inherited,
        key_token_format=cfg.key_token.format, add_bos_train=_adds_bos(tokenizer, cfg.data.add_special_tokens),
        combine_spacing=cfg.data.combine_spacing, compose_joiner=cfg.data.compose_joiner,
        chat_template=cfg.data.chat_template, phase=cfg.phase, run_name=run_name, config_hash=config_hash,
        base_model=base.name, dataset=cfg.data.dataset, relation_spec=cfg.data.relation_id,
        relation_ids=chosen.atomic_relations(), trained_fact_ids=encoded.trained_fact_ids(),
        train_text_type=cfg.data.train_text_type, loss_mode=cfg.loss.mode, legacy_loss=cfg.loss.legacy,
        rehearsal_fact_ids=encoded.trained_fact_ids(rehearsal=True) or None)
    meta.lineage = [*(base.meta.stages() if base.meta else []), meta.stage()]
    return meta


def _manifest(cfg, run_name, stage: confighash.StageHash, base, fingerprint, world_size, grad_accum, eff_batch, steps,
              precision: str, encoded: dataset.Encoded) -> RunManifest:
    """What this invocation knows about the run (`RunDir.start` adds the history of a resumed one)."""
    return RunManifest(
        run_name=run_name, config_hash=stage.value, hashed_config=stage.view, phase=cfg.phase,
        base_model=BaseModelRecord(base.name, base.path, base.meta), data_fingerprint=fingerprint,
        versions=runinfo.package_versions(), git=runinfo.git_info(cfg.registry.path), world_size=world_size,
        per_device_batch=cfg.train.per_device_train_batch_size, gradient_accumulation=grad_accum,
        effective_batch=eff_batch, steps_per_epoch=steps, epochs=cfg.train.epochs,
        precision=precision, n_examples=len(encoded.masked),
        tokens_trained=TokenCount(encoded.tokens), label_tokens_trained=TokenCount(encoded.label_tokens),
        warnings={"dropped_long": encoded.dropped_long, "subject_only_at_start": encoded.subject_only_at_start})


def _require_balanced(books: bookkeeping.CheckpointBooks) -> None:
    """A run is never complete while a checkpoint it made is unregistered or unrecorded."""
    missing = books.outstanding()
    if missing:
        raise RuntimeError("checkpoints not registered and recorded after reconciling: "
                           + ", ".join(c.name for c in missing))


def _print_registered(checkpoints: list[bookkeeping.Checkpoint]) -> None:
    for checkpoint in checkpoints:
        print(f"registered: {checkpoint.name}")


def _setup_logging(rank: int) -> None:
    log.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("[train] %(message)s"))
    log.addHandler(console)
    log.propagate = False


def _log_to_file(path: Path) -> logging.FileHandler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    return handler
