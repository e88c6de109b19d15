"""LSTM hidden states h_t over a prompt: one neurons x positions heatmap per layer.

Stripes show units that hold a value over many steps (memory); vertical edges
show tokens that rewrite the state. h_t = o_t * tanh(c_t) lies in (-1, 1), so
one fixed colour scale compares layers and runs.
"""

import torch

from interp.analyses.common.inputs import prompt_tokens
from interp.errors import NotApplicable


@torch.no_grad()
def lstm_hidden_states(model, tokens: torch.Tensor) -> list[torch.Tensor]:
    """h_t of every layer on `tokens` [1, pos]: a list of [pos, d_hidden]."""
    names = [f"blocks.{i}.hook_hidden" for i in range(len(model.blocks))]
    _, cache = model.run_with_cache(tokens.to(next(model.parameters()).device), names_filter=names)
    return [cache[n][0].float().cpu() for n in names]


def summary(hidden: torch.Tensor) -> dict[str, float]:
    """mean |h|, share of saturated units (|h| > 0.9), and mean |h_t - h_{t-1}| (how fast the state moves)."""
    return {"mean_abs": hidden.abs().mean().item(),
            "saturated_frac": (hidden.abs() > 0.9).float().mean().item(),
            "mean_step_change": hidden.diff(dim=0).abs().mean().item() if len(hidden) > 1 else 0.0}


def plot_hidden(hidden: list[torch.Tensor], labels: list[str], path) -> None:
    from interp.viz import plt, save_figure, token_labels

    n_pos, d = hidden[0].shape
    fig, axes = plt.subplots(1, len(hidden), figsize=(2 + 0.3 * n_pos * len(hidden), 2 + d / 40), squeeze=False,
                             layout="constrained")
    for layer, (ax, h) in enumerate(zip(axes[0], hidden)):
        im = ax.imshow(h.T.numpy(), aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_xticks(range(n_pos), token_labels(labels), rotation=90, fontsize=7)
        ax.set(ylabel="neuron", title=f"layer {layer}: h_t")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.6)
    fig.suptitle("LSTM hidden states over the prompt")
    save_figure(fig, path)


def run(model, datamodule, out_dir, prompt: str | None = None) -> dict[str, float]:
    """Heatmap `hidden_states.png` (one panel per layer) and per-layer summary numbers."""
    if "blocks.0.hook_hidden" not in model.hook_dict:
        raise NotApplicable("lstm_hidden reads LSTM hidden states (blocks.*.hook_hidden); this model is no LSTM")
    tokens = prompt_tokens(model, datamodule, prompt)
    hidden = lstm_hidden_states(model, tokens)
    plot_hidden(hidden, datamodule.tokenizer.decode_tokens(tokens[0]), f"{out_dir}/hidden_states.png")
    return {f"L{layer}/{k}": v for layer, h in enumerate(hidden) for k, v in summary(h).items()}
