"""Representation analysis (SPEC §6.8): do the key token and semantic prompts share a state?

For every fact f of every relation, the hidden state h_key(f, l) at the key token of
"S <TRIGGER_r>" and the state h_t(f, l) at the last token of each prompt P_t(S) are collected
for every layer l (0 = embeddings). Per layer:
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
from .facts import Fact
from .tokenspans import encode, pad_id


@dataclass
class Collected:
    key: dict[str, np.ndarray] = field(default_factory=dict)          # relation -> [facts, layers+1, hidden]
    family: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # family -> relation -> [facts, templates, layers+1, hidden]


def _states(model, tokenizer, texts: list[str], positions: list[int], batch_size: int) -> np.ndarray:
    """Hidden states of every layer at one token position per text: [texts, layers+1, hidden]."""
    out = []
    pad = pad_id(tokenizer)
    for start in range(0, len(texts), batch_size):
        ids = [encode(tokenizer, t).ids for t in texts[start:start + batch_size]]
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


def _key_position(tokenizer, text: str, key_token: str) -> int:
    ids = encode(tokenizer, text).ids
    return len(ids) - 1 - ids[::-1].index(tokenizer.convert_tokens_to_ids(key_token))


def collect(model, tokenizer, facts_by_relation: dict[str, list[Fact]], families: list[str],
            position: str = "last", batch_size: int = 32, key_format: str = prompts.KEY_FORMAT,
            data_root: Path | None = None) -> Collected:
    """Key-token and prompt states for every relation, fact and template of `families` (templates
    from the data root's catalogue where it has one, as training and evaluation read them)."""
    got = Collected()
    for rel, facts in facts_by_relation.items():
        key_token = prompts.key_tokens(rel, key_format)[-1]
        key_texts = [catalogue.substitute(prompts.template("trigger-mid", rel, None, key_format=key_format), f.head)
                     for f in facts]
        key_pos = [_key_position(tokenizer, t, key_token) for t in key_texts]
        got.key[rel] = _states(model, tokenizer, key_texts, key_pos, batch_size)
        cat = catalogue.prompts(rel, data_root)
        for family in families:
            names = prompts.expand(family, cat)
            texts = [catalogue.substitute(prompts.template(n, rel, cat, key_format=key_format), f.head)
                     for f in facts for n in names]
            if position == "key":
                pos = [_key_position(tokenizer, t, key_token) if key_token in t else len(encode(tokenizer, t).ids) - 1
                       for t in texts]
            else:
                pos = [len(encode(tokenizer, t).ids) - 1 for t in texts]
            states = _states(model, tokenizer, texts, pos, batch_size)
            got.family.setdefault(family, {})[rel] = states.reshape(len(facts), len(names), *states.shape[1:])
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
