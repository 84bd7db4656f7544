"""Greedy decoding that means the same on every checkpoint.

`model.generate` fills every field its GenerationConfig leaves unset from the checkpoint's
`generation_config.json`, and instruct checkpoints ship a repetition penalty, an n-gram ban or
sampling defaults there (Qwen2.5-Instruct: repetition_penalty 1.1). A penalty lowers exactly the
answers that repeat the prompt (an `open` or in-context prompt states the object), and it makes the
hf backend disagree with vLLM, which is sent neutral values. So during our greedy calls the model
sees a generation config that keeps only the checkpoint's special-token ids.
"""
from __future__ import annotations

import contextlib

_TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")


@contextlib.contextmanager
def checkpoint_defaults_off(model):
    """Within the block, `model.generation_config` holds the library defaults plus the token ids."""
    from transformers import GenerationConfig

    saved = model.generation_config
    model.generation_config = GenerationConfig(**{k: getattr(saved, k, None) for k in _TOKEN_IDS})
    try:
        yield
    finally:
        model.generation_config = saved


def stop_ids(tokenizer, generation_config) -> set[int]:
    """The ids that end a generation: the tokenizer's EOS and every EOS of the checkpoint's
    generation config (Qwen2.5-Instruct lists `<|im_end|>` and `<|endoftext|>`); hf and vLLM alike."""
    eos = getattr(generation_config, "eos_token_id", None)
    ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
    return ids | ({tokenizer.eos_token_id} - {None})


def generate(model, input_ids, attention_mask, max_new_tokens: int, eos_token_id=None, pad_token_id=None):
    """Greedy continuations (prompt included, as `model.generate` returns them)."""
    from transformers import GenerationConfig

    config = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
                              eos_token_id=eos_token_id, pad_token_id=pad_token_id)
    with checkpoint_defaults_off(model):
        return model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config)
