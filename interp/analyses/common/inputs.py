"""Inputs shared by analyses: prompts typed by a user, validation examples, "does it apply?" checks."""

from __future__ import annotations

import torch

from interp.data.batch import scored
from interp.errors import ConfigError, NotApplicable
from interp.models import context_length


def encode_prompt(prompt: str | None, tokenizer, n_ctx: int | None, *, prepend_bos: bool = True) -> torch.Tensor:
    """A user's prompt as token ids [1, pos] (after the tokenizer's prefix: [eot] for the models trained here,
    as in training; a pretrained model's BOS where it takes one), checked against n_ctx."""
    if prompt is None or not prompt.strip():
        raise ConfigError("the prompt is empty. Fix: pass prompt=\"some text\" (quote it for the shell).")
    ids = (list(tokenizer.prefix) if prepend_bos else []) + tokenizer.encode(prompt)
    if n_ctx is not None and len(ids) > n_ctx:
        raise ConfigError(
            f"the prompt is {len(ids)} tokens (with its leading start token) but the model's context is "
            f"n_ctx={n_ctx}. Fix: shorten the prompt.")
    return torch.tensor([ids], dtype=torch.long)


def require_lm(datamodule, analysis: str) -> None:
    """NotApplicable unless the run is a language model (token ids in, next-token logits out)."""
    if getattr(datamodule, "tokenizer", None) is None:
        raise NotApplicable(f"{analysis} needs a language model; this run's data has no tokenizer")


def first_val_example(datamodule, max_positions: int | None = None) -> torch.Tensor:
    """The first validation sequence [1, pos], cut after its last scored target (drops padding)."""
    example = datamodule.val_ds[0]
    last = int(scored(example["targets"]).nonzero().max()) + 1
    return example["tokens"][:last][:max_positions].unsqueeze(0)


def prompt_tokens(model, datamodule, prompt: str | None = None, max_positions: int = 48) -> torch.Tensor:
    """Token ids [1, pos] of the user's prompt, or of the first validation example when there is none."""
    if prompt is not None:
        return encode_prompt(prompt, datamodule.tokenizer, context_length(model))
    return first_val_example(datamodule, max_positions)


def require_attention(model, analysis: str) -> None:
    """NotApplicable unless the model is a TransformerLens transformer with at least one attention layer."""
    from transformer_lens import HookedTransformer

    if not isinstance(model, HookedTransformer):
        raise NotApplicable(f"{analysis} needs a transformer's attention heads; this model is a {type(model).__name__}")
    if model.cfg.n_layers == 0:
        raise NotApplicable(f"{analysis} needs attention heads; this is a 0-layer transformer "
                            "(logits = W_E W_U, a bigram table)")
