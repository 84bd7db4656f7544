"""Tokenised training examples with their labels, and the records of `data/train_texts.jsonl`."""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field

from torch.utils.data import Dataset

from ..errors import UserError
from . import masking
from .masking import Masked
from .texts import TrainText

log = logging.getLogger("mtg.training")


@dataclass
class Encoded:
    texts: list[TrainText] = field(default_factory=list)      # kept examples, in build order
    masked: list[Masked] = field(default_factory=list)
    dropped_long: int = 0
    subject_only_at_start: int = 0

    def records(self) -> list[dict]:
        return [{**t.record(), "n_tokens": len(m.input_ids), "n_label_tokens": m.n_label_tokens}
                for t, m in zip(self.texts, self.masked)]

    def sha256(self) -> str:
        """One hash of exactly what is trained: each kept example's text record, token ids and labels,
        in build order (the shuffle starts from it)."""
        digest = hashlib.sha256()
        for record, m in zip(self.records(), self.masked):
            digest.update(json.dumps([record, m.input_ids, m.labels], sort_keys=True, ensure_ascii=False).encode())
            digest.update(b"\n")
        return digest.hexdigest()

    def trained_fact_ids(self, rehearsal: bool = False) -> dict[str, list[int]]:
        """Fact ids per atomic relation of the kept examples of the stage's facts (`rehearsal`: of
        its rehearsal facts instead): a fact whose every text was dropped (`data.max_seq_len`,
        `wiki.on_missing_object: skip`) was never trained on."""
        out: dict[str, set[int]] = {}
        for text in self.texts:
            for fact in text.facts if text.rehearsal == rehearsal else ():
                out.setdefault(fact.relation_id, set()).add(fact.fact_id)
        return {rel: sorted(ids) for rel, ids in out.items()}

    @property
    def tokens(self) -> int:
        return sum(len(m.input_ids) for m in self.masked)

    @property
    def label_tokens(self) -> int:
        return sum(m.n_label_tokens for m in self.masked)


def encode(tokenizer, texts: list[TrainText], mode: str, occurrence: str, legacy: bool,
           add_special_tokens: bool, max_seq_len: int) -> Encoded:
    """Mask every text (validating its spans), then drop those longer than `max_seq_len`."""
    specials = tuple(tokenizer.all_special_tokens)
    out = Encoded()
    for text in texts:
        m = masking.mask(tokenizer, text, mode, occurrence, legacy, add_special_tokens, specials)
        if len(m.input_ids) > max_seq_len:
            out.dropped_long += 1
            continue
        out.texts.append(text)
        out.masked.append(m)
        out.subject_only_at_start += m.subject_only_at_start
    if not out.masked:
        raise UserError("data.max_seq_len", f"all {len(texts)} examples are longer than {max_seq_len} tokens"
                        if texts else "the selection produced no training texts")
    if out.dropped_long:
        log.warning("dropped %d of %d examples longer than data.max_seq_len=%d", out.dropped_long, len(texts), max_seq_len)
    if out.subject_only_at_start:
        log.warning("%d examples have their subject only at position 0, which the causal shift never predicts "
                    "(inherent to training without BOS)", out.subject_only_at_start)
    return out


class TrainDataset(Dataset):
    """Items are {"input_ids", "labels"}; the collator pads them."""

    def __init__(self, masked: list[Masked]):
        self.items = [{"input_ids": m.input_ids, "labels": m.labels} for m in masked]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]
