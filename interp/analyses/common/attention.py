"""Attention weights and norm-based attention of every head over one prompt.

Norm-based attention (Kobayashi et al. 2020): head h at query i writes
sum_j a_ij f(x_j), with f(x_j) = v_j W_O the value vector through the head's
output matrix. A large weight on a token whose f(x_j) is small moves little
(heads that "rest" on the first token do this), so ||a_ij f(x_j)|| shows what a
head actually writes, beside the plain weights a_ij.
"""

import torch


def norm_based(pattern: torch.Tensor, v: torch.Tensor, W_O: torch.Tensor) -> torch.Tensor:
    """||a_ij v_j W_O|| per head: pattern [head, q, k], v [k, head, d_head], W_O [head, d_head, d_model]."""
    f_norm = torch.einsum("khd,hdm->hkm", v, W_O).norm(dim=-1)   # [head, key]: ||f(x_j)||
    return pattern * f_norm[:, None, :]


@torch.no_grad()
def attention_maps(model, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights, norms) of a HookedTransformer on tokens [1, pos], each [layer, head, query, key]."""
    _, cache = model.run_with_cache(tokens.to(model.cfg.device),
                                    names_filter=lambda n: n.endswith(("hook_pattern", "hook_v")))
    layers = range(model.cfg.n_layers)
    weights = torch.stack([cache["pattern", l][0] for l in layers])
    norms = torch.stack([norm_based(cache["pattern", l][0], cache["v", l][0], model.blocks[l].attn.W_O)
                         for l in layers])
    return weights.float().cpu(), norms.float().cpu()


def first_token_share(maps: torch.Tensor) -> torch.Tensor:
    """[layer, head]: mean share of each query's row that goes to position 0 (queries >= 1)."""
    rows = maps[..., 1:, :]
    return (rows[..., 0] / rows.sum(-1).clamp_min(1e-12)).mean(-1)
