"""Which hooks hold a model's hidden state, and activations at a hook over validation data."""

from __future__ import annotations

import torch
from transformer_lens import HookedTransformer

from interp.data.batch import (
    is_lm_batch,
    model_inputs,
    padding_mask,
    through_last_target,
)
from interp.errors import ConfigError


def hidden_hooks(model) -> list[str]:
    """The hidden state after each stage, input side first (residual stream for transformers)."""
    if isinstance(model, HookedTransformer):
        n = model.cfg.n_layers
        return ["unembed.hook_in"] if n == 0 else \
            ["blocks.0.hook_resid_pre"] + [f"blocks.{layer}.hook_resid_post" for layer in range(n)]
    n_blocks = len(model.blocks)
    if "blocks.0.hook_hidden" in model.hook_dict:   # LSTM
        return ["hook_embed"] + [f"blocks.{i}.hook_hidden" for i in range(n_blocks)]
    first = "hook_input" if "hook_input" in model.hook_dict else "hook_embed"
    return [first] + [f"blocks.{i}.hook_post" for i in range(n_blocks)]


def default_neuron_hook(model) -> str:
    """Where "neurons" live: the last MLP's post-nonlinearity (a privileged basis) if there is one,
    else the last hidden state (LSTM h_t; residual stream of attention-only transformers)."""
    if isinstance(model, HookedTransformer) and not model.cfg.attn_only and model.cfg.n_layers > 0:
        return f"blocks.{model.cfg.n_layers - 1}.mlp.hook_post"
    return hidden_hooks(model)[-1]


def as_neurons(acts: torch.Tensor, hook: str) -> torch.Tensor:
    """[batch, (pos,) ...] -> [batch, (pos,) d]: per-head hooks (q/k/v/z) flatten to head*d_head."""
    if hook.endswith(("hook_pattern", "hook_attn_scores")):
        raise ConfigError(f"hook {hook!r} holds attention weights [batch, head, query, key], not neurons. "
                          "Fix: pick a hook with a hidden dimension (e.g. a hook_resid_post or mlp.hook_post).")
    return acts.flatten(2) if acts.ndim > 3 else acts


@torch.no_grad()
def val_activations(model, datamodule, hooks: list[str], max_rows: int = 20000):
    """Activations at `hooks` over validation data, one row per (sequence, position) that is not padding.

    Returns ({hook: [N, d]}, tokens [B, T] or inputs [B, n], where [N, 2] = (sequence, position) of each
    row; position is 0 for models with one output per input row).
    """
    device = next(model.parameters()).device
    acts, inputs, where, n = {h: [] for h in hooks}, [], [], 0
    for batch in datamodule.val_dataloader():
        x = model_inputs(batch)
        if not is_lm_batch(batch):   # one output per input row
            mask = torch.ones(len(x), 1, dtype=torch.bool)
        else:
            mask = padding_mask(batch)
            mask = mask if mask is not None else through_last_target(batch["targets"])
        _, cache = model.run_with_cache(x.to(device), names_filter=hooks)
        for h in hooks:
            a = as_neurons(cache[h], h).float().cpu()
            acts[h].append(a[mask] if a.ndim == 3 else a)
        idx = mask.nonzero()
        where.append(idx + torch.tensor([sum(len(i) for i in inputs), 0]))
        inputs.append(x)
        n += len(idx)
        if n >= max_rows:
            break
    return {h: torch.cat(a)[:max_rows] for h, a in acts.items()}, torch.cat(inputs), torch.cat(where)[:max_rows]


@torch.no_grad()
def prompt_activations(model, tokens: torch.Tensor, hooks: list[str]) -> dict[str, torch.Tensor]:
    """Activations {hook: [pos, d]} on one prompt `tokens` [1, pos]."""
    _, cache = model.run_with_cache(tokens.to(next(model.parameters()).device), names_filter=hooks)
    return {h: as_neurons(cache[h], h)[0].float().cpu() for h in hooks}
