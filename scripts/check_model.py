"""Smoke check of a registry model: load it and complete a prompt greedily.

`python scripts/check_model.py [model_name] [prompt]` (default: smollm2-135m, "The capital of France is").
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import util_public  # noqa: E402,F401  (environment defaults before torch loads)
from util_public.errors import exit_on_user_error  # noqa: E402


def main() -> None:
    import torch

    from util_public import greedy
    from util_public.modelio import load_causal_lm, load_tokenizer, resolve

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", default="smollm2-135m", help="a registry name or a checkpoint folder")
    parser.add_argument("prompt", nargs="?", default="The capital of France is")
    args = parser.parse_args()
    name, prompt = args.name, args.prompt
    resolved = resolve(name)
    tok = load_tokenizer(resolved.path)
    model = load_causal_lm(resolved.path, dtype="fp32", device="cpu")
    ids = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = greedy.generate(model, ids.input_ids, ids.attention_mask, 8)
    answer = tok.decode(out[0, ids.input_ids.shape[1]:], skip_special_tokens=True)
    print(f"{name}: {prompt!r} -> {answer!r}")


if __name__ == "__main__":
    exit_on_user_error(main)
