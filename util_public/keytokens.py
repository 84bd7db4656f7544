"""Key tokens `<TRIGGER_{relation_id}>`: reuse or add, then size and initialise their rows (SPEC §5.2).

- A token already in the base tokenizer is reused only when the base checkpoint's
  `mtg_meta.json` lists it (the normal Phase-2 path); a foreign token of the same name is an error,
  because its row carries meaning the experiment assumes is absent.
- New tokens are added as additional special tokens, so they are never split.
- `resize: grow_only` resizes the embeddings to max(rows, len(tokenizer)); the matrix never shrinks
  (Qwen's padded rows are kept and a new id may land on a padded row).
- `init: mean` sets each new token's input row (and output row when untied) to the mean of the
  rows of the base tokenizer's ids (padded rows excluded): deterministic and neutral, unlike a
  random row. `hf_default` leaves whatever the installed transformers' resize does.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from .artifacts import CheckpointMeta
from .errors import UserError

RESIZE = ("grow_only", "exact")          # key_token.resize
INIT = ("mean", "hf_default")            # key_token.init


@dataclass
class KeyTokens:
    ids: dict[str, int] = field(default_factory=dict)   # every project key token the model carries
    added: list[str] = field(default_factory=list)      # tokens this stage added
    base_vocab: int = 0                                  # len(tokenizer) before adding


def add(tokenizer, tokens: list[str], base_meta: CheckpointMeta | None, base_path: str) -> KeyTokens:
    """Reuse the base's recorded key tokens and add the missing ones to `tokenizer` (in place)."""
    recorded = dict(base_meta.key_tokens) if base_meta else {}
    vocab = tokenizer.get_vocab()
    result = KeyTokens(base_vocab=len(tokenizer))
    for token in tokens:
        if token in vocab and token not in recorded:
            raise UserError(f"key token {token}", f"already in the base vocabulary (id {vocab[token]}) of "
                            f"{base_path} but not recorded as a project key token in its mtg_meta.json",
                            "choose another key_token.format or a base model without that token")
    result.added = [t for t in tokens if t not in vocab]
    if result.added:
        _add_special(tokenizer, result.added)
    ids = {t: i for t, i in tokenizer.get_vocab().items() if t in recorded or t in tokens}
    for token in recorded:
        if token not in ids:
            raise UserError(f"{base_path}/mtg_meta.json", f"lists key token {token} but its tokenizer lacks it")
    result.ids = dict(sorted(ids.items()))
    return result


def _add_special(tokenizer, tokens: list[str]) -> None:
    # transformers 5 renamed `replace_additional_special_tokens`; keep the existing specials either way.
    params = inspect.signature(tokenizer.add_special_tokens).parameters
    keep = "replace_extra_special_tokens" if "replace_extra_special_tokens" in params else "replace_additional_special_tokens"
    tokenizer.add_special_tokens({"additional_special_tokens": tokens}, **{keep: False})


def resize_and_init(model, tokenizer, keys: KeyTokens, resize: str, init: str) -> None:
    """Make room for the tokenizer's ids and initialise the rows of newly added key tokens."""
    import torch

    rows = model.get_input_embeddings().weight.shape[0]
    target = len(tokenizer) if resize == "exact" else max(rows, len(tokenizer))
    if target != rows:
        # With `mean` the new rows are overwritten below, so skip HF's costly covariance-based init.
        accepts = "mean_resizing" in inspect.signature(model.resize_token_embeddings).parameters
        model.resize_token_embeddings(target, **({"mean_resizing": False} if accepts and init == "mean" else {}))
    if init != "mean" or not keys.added:
        return
    new_ids = [keys.ids[t] for t in keys.added]
    with torch.no_grad():
        for matrix in _embedding_matrices(model):
            mean = matrix[: keys.base_vocab].float().mean(dim=0)
            matrix[new_ids] = mean.to(matrix.dtype)


def _embedding_matrices(model) -> list:
    inputs = model.get_input_embeddings().weight
    out = model.get_output_embeddings()
    matrices = [inputs]
    if out is not None and out.weight.data_ptr() != inputs.data_ptr():
        matrices.append(out.weight)
    return matrices
