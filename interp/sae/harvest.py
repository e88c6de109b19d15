"""Activations of a frozen base model at one hook, as rows [n_tokens, d_in].

Only the layers up to the hook run (`stop_at_layer` for transformers); padding
positions (`attention_mask` False) are dropped so they never reach the SAE.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import torch
from transformer_lens import HookedTransformer

from interp.data.batch import model_inputs, padding_mask
from interp.errors import ConfigError


def stop_layer(model, hook: str) -> int | None:
    """First transformer block that need not run to produce `hook` (None: run everything)."""
    if not isinstance(model, HookedTransformer):
        return None
    if hook in ("hook_embed", "hook_pos_embed", "hook_tokens"):
        return 0
    m = re.match(r"blocks\.(\d+)\.", hook)
    return int(m.group(1)) + 1 if m else None


@torch.no_grad()
def activations(model, batch: dict, hook: str) -> torch.Tensor:
    """[n_valid_positions, d] activations of `batch` at `hook` (rows of a regression batch)."""
    device = next(model.parameters()).device
    inputs = model_inputs(batch).to(device)
    kwargs = {"stop_at_layer": stop_layer(model, hook)} if isinstance(model, HookedTransformer) else {}
    _, cache = model.run_with_cache(inputs, names_filter=hook, **kwargs)
    return rows(cache[hook], batch, hook)


def rows(acts: torch.Tensor, batch: dict, hook: str) -> torch.Tensor:
    """A hook's cached activations as SAE input rows [n, d]: one per valid position (or example)."""
    if acts.ndim == 2:          # [B, d]: one row per example (arithmetic MLP)
        return acts
    if acts.ndim != 3:          # e.g. attention hooks [B, head, q, k]: not one vector per token
        raise ConfigError(f"sae.hook={hook!r} gives activations of shape {list(acts.shape)}; an SAE needs "
                          "one vector per token ([batch, pos, d]). Fix: choose such a hook, e.g. blocks.0.hook_resid_post.")
    mask = padding_mask(batch)
    return acts[mask.to(acts.device)] if mask is not None else acts.flatten(0, 1)


def hook_width(model, batch: dict, hook: str) -> int:
    small = {k: v[:1] for k, v in batch.items()}
    return activations(model, small, hook).shape[-1]


def stream(model, batches: Iterable[dict], hook: str) -> Iterator[torch.Tensor]:
    for batch in batches:
        yield activations(model, batch, hook)
