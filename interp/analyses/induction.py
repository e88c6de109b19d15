"""Induction and previous-token scores of every attention head (Olsson et al. 2022).

On `[BOS] + r + r` with r random tokens, an induction head at a position in
the second copy attends to the token right after the same token's earlier
occurrence: position t attends to t - len(r) + 1. The score is the mean
attention on that diagonal over the second copy. A previous-token head
attends to t - 1. Both read `blocks.{l}.attn.hook_pattern` directly, which
avoids `transformer_lens.head_detector`'s BOS dilution (see DESIGN.md).
"""

import torch
from transformer_lens import HookedTransformer


def diagonal_score(pattern: torch.Tensor, offset: int, first_query: int) -> torch.Tensor:
    """Mean attention along `pattern[..., q, q + offset]` for queries q >= first_query.

    pattern: [batch, head, query, key] -> [head].
    """
    diag = pattern.diagonal(offset=offset, dim1=-2, dim2=-1)   # [batch, head, n] for keys k = q + offset
    # diagonal(offset<0) starts at query -offset; keep queries >= first_query.
    start = max(0, first_query - max(0, -offset))
    return diag[..., start:].mean(dim=(0, -1))


@torch.no_grad()
def head_scores(model: HookedTransformer, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """Scores [n_layers, n_heads] on `tokens` = [BOS] + r + r (shape [batch, 1 + 2L])."""
    length = (tokens.shape[1] - 1) // 2
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
    patterns = [cache["pattern", layer] for layer in range(model.cfg.n_layers)]
    second_copy = 1 + length   # first query position of the repeat
    return {
        "induction": torch.stack([diagonal_score(p, 1 - length, second_copy) for p in patterns]),
        "previous_token": torch.stack([diagonal_score(p, -1, 1) for p in patterns]),
    }


def run(model, datamodule, out_dir, n_batch: int = 32, length: int = 40, seed: int = 0, **_) -> dict[str, float]:
    """Induction and previous-token score of every head; heatmaps in out_dir."""
    from interp.data import repeated_random_tokens
    from interp.viz import save_head_heatmaps

    if not isinstance(model, HookedTransformer) or model.cfg.n_layers == 0:
        return {}
    cfg = datamodule.cfg
    low, high = (cfg.token_low, cfg.token_high) if hasattr(cfg, "token_low") else (256, model.cfg.d_vocab - 1)
    tokens = repeated_random_tokens(n_batch, length, low, high, seed, bos_id=model.cfg.d_vocab - 1)
    scores = head_scores(model, tokens.to(next(model.parameters()).device))
    save_head_heatmaps({k: v.cpu() for k, v in scores.items()}, out_dir,
                       title=f"head scores on [BOS] + r + r, len(r)={length}")
    results = {}
    for kind, grid in scores.items():
        for layer, row in enumerate(grid.tolist()):
            results.update({f"{kind}/L{layer}H{h}": s for h, s in enumerate(row)})
            results[f"{kind}/max_L{layer}"] = max(row)
    return results
