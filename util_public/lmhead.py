"""How a causal LM's LM head sits on its decoder: what both the masked-loss trainer and the
scoring backend need to run the head only where logits are wanted."""
from __future__ import annotations

import inspect

# Post-processing some architectures apply to logits after the LM head; calling the head
# directly would skip it, so those models take the forward route.
_LOGIT_POSTPROCESSING = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def head_is_plain(model) -> bool:
    """True when logits are exactly `get_output_embeddings()(last hidden state)`."""
    config = getattr(model, "config", None)
    return model.get_output_embeddings() is not None and not any(
        getattr(config, name, None) not in (None, 0, 1, 1.0) for name in _LOGIT_POSTPROCESSING)


def decoder(model):
    """The module that returns the last hidden states (the model without its LM head)."""
    inner = model.get_decoder() if hasattr(model, "get_decoder") else None
    return inner if inner is not None and inner is not model else model.base_model


def keep_keyword(model) -> str | None:
    """The forward's keyword that limits logits to the last positions (transformers 4.50 renamed
    `num_logits_to_keep`); None when the model has neither and computes every position."""
    params = inspect.signature(model.forward).parameters
    return next((k for k in ("logits_to_keep", "num_logits_to_keep") if k in params), None)
