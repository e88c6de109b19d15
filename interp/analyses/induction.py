"""Induction, previous-token and duplicate-token scores of every head, and the
in-context-learning score of any language model (Olsson et al. 2022).

On `[BOS] + r + r` with r random tokens, an induction head at a position in
the second copy attends to the token right after the same token's earlier
occurrence: position t attends to t - len(r) + 1. The score is the mean
attention on that diagonal over the second copy. A previous-token head
attends to t - 1; a duplicate-token head attends to the earlier occurrence of
its own token, t - len(r). All read `blocks.{l}.attn.hook_pattern` directly,
which avoids `transformer_lens.head_detector`, whose score is diluted by attention to BOS.

The in-context-learning score is the loss late in the context minus the loss
early in it (Olsson: token 500 minus token 50 of 512). Scaled to n_ctx: the mean
loss over the last 10% of positions minus that over positions 5-15%; negative
means later tokens are predicted better. It also moves with where the data puts
easy tokens (e.g. where induction data's repeats fall) and with sampling noise,
so read it against a 0-layer model on the same data, which cannot use context.
"""

import torch
from transformer_lens import HookedTransformer

from interp.analyses.common.inputs import require_lm
from interp.data.batch import IGNORE_INDEX
from interp.errors import NotApplicable


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
        "duplicate_token": torch.stack([diagonal_score(p, -length, second_copy) for p in patterns]),
    }


@torch.no_grad()
def loss_by_position(model, batches) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean next-token loss, number of scored targets) per position over LM batches."""
    total = count = 0
    for batch in batches:
        tokens, targets = batch["tokens"].to(next(model.parameters()).device), batch["targets"]
        logits = model(tokens).float().cpu()
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE_INDEX,
                                                 reduction="none")   # [batch, pos], 0 where ignored
        total, count = total + loss.sum(0), count + (targets != IGNORE_INDEX).sum(0)
    return total / count.clamp_min(1), count


def icl_score(loss: torch.Tensor, count: torch.Tensor) -> dict[str, float]:
    """Late-minus-early loss (see module doc); {} when a window has no scored targets (e.g. QA answers only)."""
    n = len(loss)
    windows = {"early": slice(round(0.05 * n), max(round(0.15 * n), round(0.05 * n) + 1)),
               "late": slice(min(round(0.9 * n), n - 1), n)}
    means = {}
    for name, w in windows.items():
        if count[w].sum() == 0:
            return {}
        means[name] = float((loss[w] * count[w]).sum() / count[w].sum())
    return {"icl/loss_early": means["early"], "icl/loss_late": means["late"],
            "icl/score": means["late"] - means["early"]}


def plot_loss_by_position(loss: torch.Tensor, count: torch.Tensor, path) -> None:
    from interp.viz import plt, save_figure

    fig, ax = plt.subplots(figsize=(6, 3.5))
    pos = torch.arange(len(loss))[count > 0]
    ax.plot(pos.numpy(), loss[count > 0].numpy())
    n = len(loss)
    ax.axvspan(0.05 * n, 0.15 * n, alpha=0.15, color="tab:green", label="early")
    ax.axvspan(0.9 * n, n, alpha=0.15, color="tab:red", label="late")
    ax.set(xlabel="position in context", ylabel="val loss (nats)", title="loss by position (in-context learning)")
    ax.legend()
    save_figure(fig, path)


def run(model, datamodule, out_dir, n_batch: int = 32, length: int = 40, seed: int = 0, icl_batches: int = 8) -> dict[str, float]:
    """Head scores of a transformer (heatmaps in out_dir) and the ICL score of any language model."""
    from itertools import islice

    require_lm(datamodule, "induction")
    results = {}
    if isinstance(model, HookedTransformer) and model.cfg.n_layers > 0:
        results.update(_head_results(model, datamodule, out_dir, n_batch, length, seed))
    if getattr(datamodule, "val_ds", None) is not None:
        loss, count = loss_by_position(model, islice(datamodule.val_dataloader(), icl_batches))
        plot_loss_by_position(loss, count, f"{out_dir}/loss_by_position.png")
        results.update(icl_score(loss, count))
    if not results:
        raise NotApplicable("the model has no attention heads and the data no scored validation positions")
    return results


def _head_results(model, datamodule, out_dir, n_batch, length, seed) -> dict[str, float]:
    from interp.data import repeated_random_tokens
    from interp.viz import save_head_heatmaps

    cfg = datamodule.cfg
    length = min(length, (model.cfg.n_ctx - 1) // 2)   # [BOS] + r + r must fit the context
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
