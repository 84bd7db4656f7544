"""Representation analysis (SPEC §6.8): do the key token and semantic prompts share a state?

For every fact f of every relation, the hidden state h_key(f, l) at the key token of
"S <TRIGGER_r>" and the state h_t(f, l) at the last token of each prompt P_t(S) (its key token
with position=key) are collected for every layer l (0 = embeddings), each text tokenised once after
the BOS ids evaluation puts before it. Per layer:
- dcos(l): mean cosine of key states over same-relation pairs f != g minus the mean over
  cross-relation pairs (do key tokens cluster by relation?);
- cos(key, family)(l): mean over facts and templates of cos(h_key(f, l), h_t(f, l)).
The headline value is the mean over layers 1..L. A base model without the key token gets it in
memory with the `mean` initialisation and is flagged `key_token_untrained`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import catalogue, prompts
from .errors import UserError
from .facts import Fact
from .tokenspans import encode, pad_id


@dataclass
class Collected:
    key: dict[str, np.ndarray] = field(default_factory=dict)          # relation -> [facts, layers+1, hidden]
    family: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # family -> relation -> [facts, templates, layers+1, hidden]


def _states(model, rows: list[list[int]], positions: list[int], batch_size: int, pad: int) -> np.ndarray:
    """Hidden states of every layer at one token position per row of ids: [rows, layers+1, hidden]."""
    out = []
    for start in range(0, len(rows), batch_size):
        ids = rows[start:start + batch_size]
        width = max(map(len, ids))
        batch = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros_like(batch)
        for i, row in enumerate(ids):   # right padding keeps every position index as in the text
            batch[i, :len(row)] = torch.tensor(row)
            mask[i, :len(row)] = 1
        with torch.no_grad():
            hidden = model(input_ids=batch.to(model.device), attention_mask=mask.to(model.device),
                           output_hidden_states=True).hidden_states
        stacked = torch.stack(hidden, dim=1).float()                   # [batch, layers+1, seq, hidden]
        pos = torch.tensor(positions[start:start + batch_size], device=stacked.device)
        out.append(stacked[torch.arange(len(ids)), :, pos].cpu().numpy())
    return np.concatenate(out)


def _tokens(tokenizer, texts: list[str], bos: list[int]) -> list[list[int]]:
    """Each text tokenised once, after the BOS ids evaluation would put before it."""
    return [list(bos) + encode(tokenizer, text).ids for text in texts]


def _key_position(ids: list[int], key_id: int) -> int:
    """The last occurrence of the key token."""
    return len(ids) - 1 - ids[::-1].index(key_id)


def templates(rel: str, family: str, key_format: str, data_root: Path | None) -> list[tuple[str, str]]:
    """(name, template) of every prompt of `family` for `rel`, from the data root's catalogue where
    it has one, as training and evaluation read them."""
    cat = catalogue.prompts(rel, data_root)
    return [(n, prompts.template(n, rel, cat, key_format=key_format)) for n in prompts.expand(family, cat)]


def check_position(position: str, relations: list[str], families: list[str], key_format: str = prompts.KEY_FORMAT,
                   data_root: Path | None = None) -> None:
    """`position=key` needs the key token in every prompt: a semantic prompt has none, and its state
    would silently be the last token's, as with `last`."""
    if position not in ("last", "key"):
        raise UserError("position", f"{position!r} is not last or key")
    for rel in relations if position == "key" else []:
        key_token = prompts.key_tokens(rel, key_format)[-1]
        for family in families:
            for name, tpl in templates(rel, family, key_format, data_root):
                if key_token not in tpl:
                    raise UserError("position", f"key: prompt {name} (family {family}, relation {rel}) has no key "
                                    f"token {key_token}", f"use position=last, or prompts that hold {key_token} "
                                    "(trigger-mid does)")


def collect(model, tokenizer, facts_by_relation: dict[str, list[Fact]], families: list[str],
            position: str = "last", batch_size: int = 32, key_format: str = prompts.KEY_FORMAT,
            data_root: Path | None = None, bos: list[int] = ()) -> Collected:
    """Key-token and prompt states for every relation, fact and template of `families`; prompt
    states at each prompt's last token, or at its key token (`position="key"`)."""
    check_position(position, list(facts_by_relation), families, key_format, data_root)
    got, pad = Collected(), pad_id(tokenizer)
    for rel, facts in facts_by_relation.items():
        key_id = tokenizer.convert_tokens_to_ids(prompts.key_tokens(rel, key_format)[-1])
        key_rows = _tokens(tokenizer, [catalogue.substitute(prompts.template("trigger-mid", rel, None,
                                                                             key_format=key_format), f.head)
                                       for f in facts], bos)
        got.key[rel] = _states(model, key_rows, [_key_position(row, key_id) for row in key_rows], batch_size, pad)
        for family in families:
            named = templates(rel, family, key_format, data_root)
            rows = _tokens(tokenizer, [catalogue.substitute(tpl, f.head) for f in facts for _, tpl in named], bos)
            pos = [_key_position(row, key_id) if position == "key" else len(row) - 1 for row in rows]
            states = _states(model, rows, pos, batch_size, pad)
            got.family.setdefault(family, {})[rel] = states.reshape(len(facts), len(named), *states.shape[1:])
    return got


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12, None)


def delta_cos(key: dict[str, np.ndarray]) -> np.ndarray:
    """Per layer: mean same-relation cosine (f != g) minus mean cross-relation cosine."""
    rels = list(key)
    units = _unit(np.concatenate([key[r] for r in rels]))            # [N, layers+1, hidden]
    labels = np.concatenate([[i] * len(key[r]) for i, r in enumerate(rels)])
    sims = np.einsum("alh,blh->lab", units, units)                     # [layers+1, N, N]
    same = labels[:, None] == labels[None, :]
    off_diag = ~np.eye(len(labels), dtype=bool)
    undefined = np.full(sims.shape[0], np.nan)     # one fact per relation / one relation: no pairs
    within = sims[:, same & off_diag].mean(axis=1) if (same & off_diag).any() else undefined
    across = sims[:, ~same].mean(axis=1) if (~same).any() else undefined
    return within - across


def key_family_cos(key: dict[str, np.ndarray], family: dict[str, np.ndarray]) -> np.ndarray:
    """Per layer: mean over relations, facts and templates of cos(h_key, h_template)."""
    values = []
    for rel, states in family.items():
        k = _unit(key[rel])[:, None]                                    # [facts, 1, layers+1, hidden]
        values.append((k * _unit(states)).sum(-1).reshape(-1, states.shape[2]))
    return np.concatenate(values).mean(axis=0)


def metrics(got: Collected) -> dict[str, list[float]]:
    """Per-layer arrays keyed by metric name (`dcos`, `cos_key_<family>`)."""
    out = {"dcos": delta_cos(got.key).tolist()} if len(got.key) > 1 else {}
    for family, states in got.family.items():
        out[f"cos_key_{family}"] = key_family_cos(got.key, states).tolist()
    return out


def headline(per_layer: dict[str, list[float]]) -> dict[str, float]:
    """The mean over layers 1..L (layer 0, the embedding output, is stored but not averaged)."""
    return {name: float(np.mean(values[1:])) for name, values in per_layer.items()}
