"""Attention grid per block (AlphaFold-appendix style): every head a small heatmap over the prompt.

Each head gets two panels side by side: the weights a_ij and the norm-based
attention ||a_ij f(x_j)|| (Kobayashi et al. 2020, see attention.py). Rows are
queries (the token doing the looking), columns keys.
"""

import math

from interp.analyses.common.attention import attention_maps, first_token_share
from interp.analyses.common.inputs import prompt_tokens, require_attention, require_lm


def plot_block(weights, norms, labels: list[str], layer: int, path) -> None:
    """weights, norms: [head, q, k] of one block -> one PNG with a (weights | norms) pair per head."""
    from interp.viz import plt, save_figure

    n_heads, n_pos = weights.shape[0], weights.shape[-1]
    cols = math.ceil(math.sqrt(n_heads))
    rows = math.ceil(n_heads / cols)
    side = max(2.2, 0.16 * n_pos)
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(2 * cols * side, rows * side + 0.6), squeeze=False,
                             layout="constrained")
    ticks = n_pos <= 48   # beyond that labels overlap: leave the axes bare
    for ax in axes.flat:
        ax.set_axis_off()
    for h in range(n_heads):
        for k, (maps, what, cmap) in enumerate(((weights, "a", "Blues"), (norms, "||a f(x)||", "Oranges"))):
            ax = axes[h // cols, 2 * (h % cols) + k]
            ax.set_axis_on()
            ax.imshow(maps[h].numpy(), cmap=cmap, vmin=0, interpolation="nearest")
            ax.set_title(f"H{h} {what}", fontsize=8)
            if ticks:
                ax.set_xticks(range(n_pos), labels, rotation=90, fontsize=5)
                ax.set_yticks(range(n_pos), labels, fontsize=5)
            else:
                ax.set(xticks=[], yticks=[])
    fig.suptitle(f"block {layer}: attention weights (blue) and norm-based attention (orange); rows = queries")
    save_figure(fig, path)


def run(model, datamodule, out_dir, prompt: str | None = None, max_positions: int = 32) -> dict[str, float]:
    """`block_{l}_grid.png` per layer; numbers: share of attention (weight, norm) on position 0 per head."""
    from interp.viz import token_labels

    require_attention(model, "attention_grid")
    require_lm(datamodule, "attention_grid")
    tokens = prompt_tokens(model, datamodule, prompt, max_positions)
    weights, norms = attention_maps(model, tokens)
    labels = token_labels(datamodule.tokenizer.decode_tokens(tokens[0]))
    for layer in range(model.cfg.n_layers):
        plot_block(weights[layer], norms[layer], labels, layer, f"{out_dir}/block_{layer}_grid.png")
    results = {}
    for kind, maps in (("pos0_weight", weights), ("pos0_norm_share", norms)):
        for layer, row in enumerate(first_token_share(maps).tolist()):
            results.update({f"{kind}/L{layer}H{h}": v for h, v in enumerate(row)})
    return results
