"""Activations of a frozen base model at a dictionary's sites, as rows [n_tokens, width].

An SAE's row is its hook's activation; a transcoder's is its input hook's beside its target hook's
([x | y], interp.sae.sites). Only the layers up to the last hook run (`stop_at_layer` for
transformers); padding positions (`attention_mask` False) are dropped so they never reach the SAE.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from transformer_lens import HookedTransformer

from interp.data.batch import model_inputs, padding_mask
from interp.errors import ConfigError
from interp.sae.sites import Sites, as_sites, hook_of


def stop_layer(model, where: str | Sites) -> int | None:
    """First transformer block that need not run to produce the hook(s) (None: run everything)."""
    return as_sites(where).stop_layer() if isinstance(model, HookedTransformer) else None


def run_to(model, inputs: torch.Tensor, where: str | Sites) -> dict[str, torch.Tensor]:
    """{hook: activations} of `inputs` at every hook of `where`, running only the layers needed."""
    sites = as_sites(where)
    device = next(model.parameters()).device
    kwargs = {"stop_at_layer": s} if (s := stop_layer(model, sites)) is not None else {}
    _, cache = model.run_with_cache(inputs.to(device), names_filter=list(sites.hooks), **kwargs)
    return {hook: cache[hook] for hook in sites.hooks}


@torch.no_grad()
def activations(model, batch: dict, where: str | Sites) -> torch.Tensor:
    """[n_valid_positions, width] rows of `batch` at the sites (rows of a regression batch)."""
    acts = run_to(model, model_inputs(batch), where)
    return torch.cat([rows(a, batch, hook) for hook, a in acts.items()], dim=-1)


def rows(acts: torch.Tensor, batch: dict, hook: str) -> torch.Tensor:
    """A hook's cached activations as SAE input rows [n, d]: one per valid position (or example)."""
    if acts.ndim == 2:          # [B, d]: one row per example (arithmetic MLP)
        return acts
    if acts.ndim != 3:          # e.g. attention hooks [B, head, q, k]: not one vector per token
        raise ConfigError(f"sae.hook={hook!r} gives activations of shape {list(acts.shape)}; an SAE needs "
                          "one vector per token ([batch, pos, d]). Fix: choose such a hook, e.g. blocks.0.hook_resid_post.")
    mask = padding_mask(batch)
    return acts[mask.to(acts.device)] if mask is not None else acts.flatten(0, 1)


def hook_widths(model, batch: dict, where: str | Sites) -> tuple[int, ...]:
    """The width of each hook of `where`, from one example."""
    small = {k: v[:1] for k, v in batch.items()}
    acts = run_to(model, model_inputs(small), where)
    return tuple(rows(a, small, hook).shape[-1] for hook, a in acts.items())


def execution_order(model, batch: dict, hooks: Iterable[str]) -> list[str]:
    """`hooks` in the order a forward pass reaches them (one example)."""
    seen: list[str] = []

    def record(act, hook):
        seen.append(hook.name)

    small = {k: v[:1] for k, v in batch.items()}
    with torch.no_grad():
        model.run_with_hooks(model_inputs(small).to(next(model.parameters()).device),
                             fwd_hooks=[(h, record) for h in hooks])
    return list(dict.fromkeys(seen))


@torch.no_grad()
def feature_acts(model, sae, inputs: torch.Tensor) -> torch.Tensor:
    """A dictionary's feature activations of `inputs` (tokens [B, T], or rows [B, n] of a regression model):
    the model up to the dictionary's input hook, then its encoder; [B, T, d_sae] (or [B, d_sae]) on its device."""
    hook = hook_of(sae)
    return encode_acts(sae, run_to(model, inputs, hook)[hook])


@torch.no_grad()
def encode_acts(sae, acts: torch.Tensor) -> torch.Tensor:
    """A dictionary's features of its input hook's cached activations, on its device."""
    acts = acts.flatten(2) if acts.ndim > 3 else acts   # hook_z [.., head, d_head]: one vector, as SAELens reshapes
    return sae.encode(acts.to(sae.W_enc.device, sae.W_enc.dtype))


def stream(model, batches: Iterable[dict], where: str | Sites) -> Iterator[torch.Tensor]:
    for batch in batches:
        yield activations(model, batch, where)
