"""Loading tokenizers and causal LMs from resolved registry entries (local directories only)."""
from __future__ import annotations

import functools
from pathlib import Path

from . import numerics, textio
from .errors import UserError
from .registry import Registry, ResolvedModel
from .runinfo import sha256_file
from .tokenspans import require_fast

DAMAGED_HINT = "copy the checkpoint again, or retrain it"


def resolve(name_or_path: str, registry_path: str | None = None, registered_name: bool = False) -> ResolvedModel:
    return Registry(registry_path).resolve(name_or_path, registered_name)


def context_length(model_dir: str | Path) -> int | None:
    """The model's own context limit (`max_position_embeddings` of its config), None when unstated."""
    from transformers import AutoConfig

    return getattr(AutoConfig.from_pretrained(str(model_dir)), "max_position_embeddings", None)


def load_tokenizer(model_dir: str | Path):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(model_dir))
    except (OSError, ValueError) as exc:     # a missing or damaged tokenizer file (JSON errors are ValueErrors)
        raise UserError(str(model_dir), f"tokenizer files are missing or damaged ({_first_line(exc)})",
                        DAMAGED_HINT) from None
    require_fast(tok, str(model_dir))
    return tok


def torch_dtype(name: str, device: str):
    """The torch dtype of `model.dtype` on `device`; `auto` and `native` as `numerics` resolves them."""
    import torch

    name = numerics.choose(name, device, "model.dtype")
    try:
        return {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
                "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}[name]
    except KeyError:
        raise UserError(f"dtype {name!r}", "unknown dtype", "use auto, native, fp32, bf16 or fp16") from None


def check_device(device: str | None, key: str) -> None:
    """A configured device exists on this machine (None: the default, always fine)."""
    if device is None:
        return
    import torch

    try:
        kind = torch.device(device)
    except RuntimeError:
        raise UserError(key, f"{device!r} is not a device", "use cpu, cuda or cuda:N") from None
    if kind.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(key, f"{device}: CUDA is not available on this machine", f"set {key}=cpu or leave it unset")
        if kind.index is not None and kind.index >= count:
            raise UserError(key, f"{device}: this machine has {count} CUDA device(s)", f"use cuda:0..cuda:{count - 1}")
    elif kind.type != "cpu":
        raise UserError(key, f"{device}: only cpu and cuda devices are supported")


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_checkpoint(model_dir: str | Path) -> None:
    """What can be wrong with a checkpoint directory without loading its weights, checked before
    any output is written: weights only in safetensors (a pickle, `*.bin`, can run code when
    unpickled), a `config.json` that parses, and weight files whose header and data are all there
    (not cut off by a full disk or an interrupted copy)."""
    from safetensors import SafetensorError, safe_open

    weights = sorted(Path(model_dir).glob("*.safetensors"))
    if not weights:
        checkpoints = sorted(Path(model_dir).glob("checkpoint-*"), key=lambda p: (len(p.name), p.name))
        if checkpoints:      # a run directory: its checkpoints are one level down
            raise UserError(str(model_dir), "is a training run's directory, not a checkpoint",
                            f"point at one of its checkpoints (e.g. {checkpoints[-1]}), or name it: "
                            f"python -m util_public.artifacts final-checkpoint {model_dir}")
        pickles = sorted(Path(model_dir).glob("*.bin"))
        raise UserError(str(model_dir), "no *.safetensors weights" + (
            f" (pickled {pickles[0].name} is not loaded: it can run code)" if pickles else ""),
                        "re-save the model with save_pretrained(..., safe_serialization=True)" if pickles
                        else "point at a directory with config.json and *.safetensors")
    textio.read_json(Path(model_dir) / "config.json", dict, DAMAGED_HINT)
    for name in RESULT_FILES:       # the JSON among them: a loader that skips a file it cannot parse
        path = Path(model_dir) / name       # (generation_config.json: its EOS ids) would answer otherwise
        if name != "config.json" and name.endswith(".json") and path.is_file():
            textio.read_json(path, dict, DAMAGED_HINT)
    for path in weights:
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except (SafetensorError, OSError) as exc:
            raise UserError(str(path), f"damaged weights ({_first_line(exc)})", DAMAGED_HINT) from None


def weight_stamps(directory: str) -> list[list]:
    """[name, size, mtime_ns] of each weight file: two checkpoints under one name (a registry entry
    pointed elsewhere, another folder called `ckpt`, a model retrained in place) differ here, while
    a copy that keeps modification times (`cp -p`, rsync -t) still reuses cached results. Hashing
    the weights themselves would cost seconds to minutes per evaluation of a large model."""
    folder = Path(directory)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin")) \
        if folder.is_dir() else []       # an in-process backend may stand for a model without a folder
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]


# Besides the weights, what decides a checkpoint's answers: its architecture, generation stops
# (generation_config.json's EOS ids), tokenizer and chat template.
RESULT_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "added_tokens.json", "tokenizer.model", "vocab.json", "merges.txt",
                "chat_template.jinja", "chat_template.json")


def result_file_digests(directory: str) -> dict[str, str]:
    """{name: sha256} of the checkpoint's RESULT_FILES that exist."""
    folder = Path(directory)
    found = [folder / name for name in RESULT_FILES if (folder / name).is_file()]
    return {p.name: _digest(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in found}


@functools.lru_cache(maxsize=256)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    """A file's sha256 once per version (size and modification time in the key; an edit of the
    same size within one timestamp tick would be missed): a result hash asks for it per job, and
    Qwen's tokenizer.json of 11 MB takes 19 ms on the 2-core AMD EPYC."""
    return sha256_file(path)


def weights_sha256(model) -> str:
    """sha256 of a loaded model's state: each tensor's name, dtype, shape and the sha256 of its
    bytes. What a model held in memory evaluates with, whatever its files hold. The tensors are
    hashed in `torch.get_num_threads()` threads (hashlib releases the GIL), since an evaluation
    hashes its model at load and at every `api.evaluate` (docs/PERFORMANCE.md)."""
    import hashlib
    from concurrent.futures import ThreadPoolExecutor

    import torch

    def digest(tensor) -> bytes:
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        return hashlib.sha256(flat.view(torch.uint8).numpy()).digest()

    items = sorted(model.state_dict().items())
    h = hashlib.sha256()
    with ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads())) as pool:
        for (name, tensor), d in zip(items, pool.map(digest, [t for _, t in items])):
            h.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
            h.update(d)
    return h.hexdigest()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(": ")


def load_causal_lm(model_dir: str | Path, dtype: str = "auto", device: str | None = None):
    from transformers import AutoModelForCausalLM

    check_checkpoint(model_dir)
    device = device or default_device()
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch_dtype(dtype, device),
                                                 use_safetensors=True)
    return model.to(device).eval()
