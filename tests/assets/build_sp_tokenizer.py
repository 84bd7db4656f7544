"""Build tests/assets/sp_tokenizer: a small SentencePiece-style tokenizer ("▁" word boundaries,
BOS added by default like Llama-2), trained offline on the shipped catalogue's text.

Run once when the catalogue changes a lot: `.venv/bin/python tests/assets/build_sp_tokenizer.py`.
The output is committed so tests never depend on training being bit-stable across versions.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import yaml
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

HERE = Path(__file__).resolve().parent
CATALOGUE = HERE.parents[1] / "util_public" / "catalogue"


def corpus() -> list[str]:
    lines = []
    for path in sorted((CATALOGUE / "prompts").glob("*.yaml")):
        def walk(node):
            if isinstance(node, str):
                lines.append(node.replace("{head}", "Ka"))
            elif isinstance(node, dict):
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)
        walk(yaml.safe_load(path.read_text(encoding="utf-8")))
    for path in sorted((CATALOGUE / "vocab").glob("*.txt")):
        lines += [w.title() for w in path.read_text(encoding="utf-8").split("\n") if w]
    rng = np.random.default_rng(0)  # syllable soup so fictional names split into several pieces
    syllables = ["ka", "lo", "ve", "tri", "mon", "sa", "dor", "el", "qu", "an", "is", "ber", "nia", "th", "ur"]
    for _ in range(3000):
        word = "".join(rng.choice(syllables, size=rng.integers(2, 5)))
        lines.append(word.capitalize() + " " + "".join(rng.choice(syllables, size=3)))
    return lines


def build(out_dir: Path) -> None:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=3000, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
                                  initial_alphabet=[chr(c) for c in range(33, 127)], show_progress=False)
    tok.train_from_iterator(corpus(), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>")
    fast.save_pretrained(out_dir)


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "sp_tokenizer")
