"""A quick greedy memorization check for a trained checkpoint (not the evaluation stage).

For each fact the context of one prompt type (default `trigger-mid`, "S <TRIGGER_r>") is built
with the shared resolver, greedy decoding continues it, and a fact counts as correct when the
response starts with the object followed by a non-alphanumeric character or the end (the
generation metrics' `prefix` matcher, `util_public/matching.py`, SPEC §6.4). Key tokens stay
visible in responses.

CLI: `python -m util_public.training.memcheck MODEL [--relation 50] [--begin 0] [--end 100]
[--prompt trigger-mid] [--dataset sync_random_o] [--min-accuracy 0.99]`; exit 1 below the minimum.
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:
    import sys
    from pathlib import Path as _P

    sys.path.insert(0, str(_P(__file__).resolve().parents[2]))
    __package__ = "util_public.training"

import argparse
import json
import sys

from .. import catalogue, facts as factio, greedy, modelio, paths, prompts, tokenspans
from ..artifacts import CheckpointMeta
from ..matching import prefix
from ..facts import Fact


def greedy_accuracy(model, tokenizer, facts: list[Fact], prompt_type: str = "trigger-mid",
                    data_root=None, batch_size: int = 32, key_format: str = prompts.KEY_FORMAT) -> dict:
    """{"accuracy", "n", "wrong": [(fact_id, response), ...]} for greedy continuations."""
    import torch

    if not facts:
        return {"accuracy": 0.0, "n": 0, "wrong": []}
    rel = facts[0].relation_id
    needs_cat = not prompt_type.startswith("trigger-") and prompt_type != "subject"
    cat = catalogue.prompts(rel, data_root) if needs_cat else None
    tpl = prompts.template(prompt_type, rel, cat, key_format=key_format)
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    tokenspans.ensure_pad_token(tokenizer)
    wrong, correct = [], 0
    try:
        for start in range(0, len(facts), batch_size):
            chunk = facts[start:start + batch_size]
            contexts = [catalogue.substitute(tpl, f.head) for f in chunk]
            enc = tokenizer(contexts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            longest = max(len(tokenizer(" " + f.object + ".", add_special_tokens=False)["input_ids"]) for f in chunk)
            with torch.no_grad():
                out = greedy.generate(model, enc["input_ids"], enc["attention_mask"], longest + 1,
                                      pad_token_id=tokenizer.pad_token_id)
            for fact, row in zip(chunk, out[:, enc["input_ids"].shape[1]:]):
                response = tokenizer.decode(row, skip_special_tokens=False).replace(tokenizer.pad_token, "")
                if prefix(response, fact.object):
                    correct += 1
                else:
                    wrong.append((fact.fact_id, response))
    finally:
        tokenizer.padding_side = side
    return {"accuracy": correct / len(facts), "n": len(facts), "wrong": wrong}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Greedy memorization accuracy of a checkpoint.")
    parser.add_argument("model", help="registry name or checkpoint directory")
    parser.add_argument("--relation", default="50")
    parser.add_argument("--dataset", default="sync_random_o")
    parser.add_argument("--begin", type=int, default=0)
    parser.add_argument("--end", type=int, default=None)
    parser.add_argument("--prompt", default="trigger-mid")
    parser.add_argument("--min-accuracy", type=float, default=None)
    args = parser.parse_args(argv)
    resolved = modelio.resolve(args.model)
    meta = CheckpointMeta.of(resolved.path)
    data_root = paths.root("data")
    chosen = factio.select(factio.load_relation(data_root, args.dataset, args.relation, num_options=None,
                                                substring_rule="off"), args.begin, args.end, "--begin/--end")
    model = modelio.load_causal_lm(resolved.path, dtype="auto")
    tokenizer = modelio.load_tokenizer(resolved.path)
    result = greedy_accuracy(model, tokenizer, chosen, args.prompt, data_root,
                             key_format=prompts.checkpoint_key_format(meta))
    print(json.dumps({"model": args.model, "prompt": args.prompt, "relation": args.relation,
                      "accuracy": result["accuracy"], "n": result["n"], "wrong_examples": result["wrong"][:5]},
                     ensure_ascii=False))
    if args.min_accuracy is not None and result["accuracy"] < args.min_accuracy:
        print(f"error: {args.model}: greedy {args.prompt} accuracy {result['accuracy']:.3f} on {result['n']} facts "
              f"is below --min-accuracy {args.min_accuracy}; the model has not memorized the facts "
              f"(wrong answers are listed above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from ..errors import exit_on_user_error

    raise SystemExit(exit_on_user_error(main))
