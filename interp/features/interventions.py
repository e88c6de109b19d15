"""What a feature does: steering, ablation inside the spliced SAE, attribution (activation × gradient).

All work through plain TransformerLens hooks at the SAE's hook (a transcoder's: read at its input hook,
act at its target hook, the MLP's output), so they apply to any HookedRootModule (our transformers,
GPT-2 with a pretrained SAE). A feature's direction is what one unit of it adds to
the SAE's output, `decode(e_f) - decode(0)` (= W_dec[f] for SAELens's SAEs, and still right for SAEs
that rescale their output).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

from interp.data.batch import IGNORE_INDEX
from interp.features.indices import check_feature_index
from interp.sae.sites import hook_of, sites_of  # noqa: F401 (hook_of: the features package's name for it)


def feature_direction(sae, feature: int) -> torch.Tensor:
    """[d_in]: the change in the SAE's output per unit of `feature`."""
    check_feature_index(sae, feature)
    zero = torch.zeros(2, sae.cfg.d_sae, device=sae.W_dec.device, dtype=sae.W_dec.dtype)
    zero[1, feature] = 1.0
    out = sae.decode(zero)
    return (out[1] - out[0]).detach()


def _like(vec: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """`vec` [d_in] shaped for an activation whose trailing dims hold d_in (hook_z: [head, d_head])."""
    return vec.to(act.dtype).view(act.shape[2:] if act.ndim > 3 else act.shape[-1:])


def steering_hook(sae, feature: int | list[int], scale: float):
    """A forward hook adding `scale × direction(feature)` at every position (several features: the sum
    of their directions, each times `scale`)."""
    features = [feature] if isinstance(feature, int) else list(feature)
    direction = sum(feature_direction(sae, f) for f in features)

    def hook(act, x=None):
        return act + scale * _like(direction, act)
    return hook


def ablation_hook(sae, features: list[int]):
    """A forward hook that zeroes `features` inside the spliced SAE and keeps its error term:
    decode(a') + (y - decode(a)) = y + decode(a') - decode(a), so nothing else changes."""
    for f in features:
        check_feature_index(sae, f)

    def hook(act, x):
        feats = sae.encode(_rows(x).to(sae.W_enc.dtype))
        ablated = feats.clone()
        ablated[..., features] = 0
        delta = sae.decode(ablated) - sae.decode(feats)
        return act + delta.to(act.dtype).view(act.shape)
    return hook


def _rows(act: torch.Tensor) -> torch.Tensor:
    return act.reshape(*act.shape[:2], -1) if act.ndim > 3 else act


@contextmanager
def hooked(model, sae, hook_fn):
    """Run `model` with `hook_fn(act, x)` at the dictionary's target hook: `act` is the target's activation
    (what the hook returns replaces it), `x` the input hook's (the same tensor for an SAE, the MLP's input
    for a transcoder, whose interventions act on the MLP's output)."""
    sites = sites_of(sae)
    if not sites.transcodes:
        with model.hooks(fwd_hooks=[(sites.hook, lambda act, hook=None: hook_fn(act, act))]):
            yield model
        return
    seen = {}

    def keep(act, hook=None):
        seen["x"] = act

    with model.hooks(fwd_hooks=[(sites.hook, keep), (sites.target, lambda act, hook=None: hook_fn(act, seen["x"]))]):
        yield model


@torch.no_grad()
def steered_logits(model, sae, feature: int | list[int], scale: float, tokens: torch.Tensor) -> torch.Tensor:
    with hooked(model, sae, steering_hook(sae, feature, scale)):
        return model(tokens)


@torch.no_grad()
def steer_generate(model, sae, feature: int | list[int], scale: float, tokens: list[int], max_new_tokens: int,
                   stop_id: int) -> tuple[list[int], list[int]]:
    """Greedy continuations of `tokens` without and with the steering vector added."""
    from interp.tasks.generate import greedy_complete

    max_len = getattr(getattr(model, "cfg", None), "n_ctx", None)
    clean = greedy_complete(model, [tokens], max_new_tokens, stop_id, max_len=max_len)[0]
    with hooked(model, sae, steering_hook(sae, feature, scale)):
        steered = greedy_complete(model, [tokens], max_new_tokens, stop_id, max_len=max_len)[0]
    return clean, steered


def token_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-token cross-entropy [B, T] (0 where the target is IGNORE_INDEX)."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten().to(logits.device),
                           ignore_index=IGNORE_INDEX, reduction="none").view(targets.shape)


@torch.no_grad()
def ablation_effect(model, sae, features: list[int], tokens: torch.Tensor, targets: torch.Tensor) -> dict:
    """Clean and ablated per-token losses [B, T] and logits of one batch."""
    clean = model(tokens)
    with hooked(model, sae, ablation_hook(sae, features)):
        ablated = model(tokens)
    return {"clean_logits": clean, "ablated_logits": ablated,
            "clean_loss": token_losses(clean, targets), "ablated_loss": token_losses(ablated, targets)}


def attribute(model, sae, tokens: torch.Tensor, answer: int, position: int = -1) -> dict:
    """Attribution of the logit of `answer` at `position` to every feature at every position:
    activation × gradient, with the SAE spliced in (error term kept, so the forward is the clean one).

    Returns attr [pos, d_sae], the metric, and the two other terms of the exact decomposition
    grad·x = Σ_f attr_f + grad·(decode(0) + error) at each position (`rest`, `grad_dot_x`).
    """
    saved = {}

    def splice(act, x_in):
        x = act.detach()
        feats = sae.encode(_rows(x_in.detach()).to(sae.W_enc.dtype)).detach().requires_grad_(True)
        recon = sae.decode(feats)
        error = (x - recon).detach()   # a skip transcoder's skip path is part of it
        out = (recon + error).to(act.dtype)
        out.retain_grad()
        saved.update(x=x, feats=feats, error=error, out=out)
        return out

    with torch.enable_grad(), hooked(model, sae, splice):
        logits = model(tokens)
        metric = logits[0, position, answer]
        metric.backward()
    feats, g, x = saved["feats"], saved["out"].grad, saved["x"]
    bias = sae.decode(torch.zeros_like(feats[0, :1])).detach()
    return {"attr": (feats * feats.grad)[0].detach(), "metric": metric.item(), "logits": logits.detach(),
            "rest": (g * (saved["error"] + bias)).sum(-1)[0], "grad_dot_x": (g * x).sum(-1)[0]}
