"""Hidden-state PCA across layers: how the representation's geometry changes with depth.

Each stage's PCA (residual stream after each block; LSTM h_t; k-gram / MLP
hidden layers) is fitted on validation activations, so the axes describe real
data rather than one prompt; the prompt's positions are then projected onto
them and labelled. The participation ratio (sum λ)² / sum λ² of the PCA
spectrum is the effective number of dimensions in use.
"""

from __future__ import annotations

import torch

from interp.analyses.common.activations import (
    hidden_hooks,
    prompt_activations,
    val_activations,
)
from interp.analyses.common.inputs import prompt_tokens


def pca(x: torch.Tensor, n: int = 2) -> dict[str, torch.Tensor]:
    """mean [d], components [n, d], explained-variance ratios [n] and participation ratio of rows x [N, d]."""
    mean = x.mean(0)
    _, s, v = torch.linalg.svd(x - mean, full_matrices=False)
    var = s ** 2
    return {"mean": mean, "components": v[:n], "ratio": var[:n] / var.sum(),
            "participation_ratio": var.sum() ** 2 / (var ** 2).sum()}


def project(x: torch.Tensor, basis: dict[str, torch.Tensor]) -> torch.Tensor:
    return (x - basis["mean"]) @ basis["components"].T


def plot(bases: dict[str, dict], background: dict[str, torch.Tensor], prompt: dict[str, torch.Tensor] | None,
         labels: list[str], path) -> None:
    """One panel per stage: validation points (grey) and the prompt's path through PC1/PC2."""
    from interp.viz import plt, save_figure, token_labels

    fig, axes = plt.subplots(1, len(bases), figsize=(5 * len(bases), 5), squeeze=False)
    for ax, (hook, basis) in zip(axes[0], bases.items()):
        bg = project(background[hook], basis)
        ax.scatter(bg[:, 0], bg[:, 1], s=2, c="0.8", label="validation")
        if prompt is not None:
            xy = project(prompt[hook], basis)
            ax.plot(xy[:, 0], xy[:, 1], "-", color="0.5", lw=0.5)
            sc = ax.scatter(xy[:, 0], xy[:, 1], s=14, c=range(len(xy)), cmap="viridis", zorder=3)
            for (x, y), label in zip(xy.tolist(), token_labels(labels)):
                ax.annotate(label, (x, y), fontsize=6)
        r = basis["ratio"].tolist()
        ax.set(title=hook, xlabel=f"PC1 ({r[0]:.0%})", ylabel=f"PC2 ({r[1]:.0%})")
    if prompt is not None:
        fig.colorbar(sc, ax=axes[0, -1], label="position")
    save_figure(fig, path)


def run(model, datamodule, out_dir, prompt: str | None = None, max_rows: int = 5000) -> dict[str, float]:
    """Per-stage PCA numbers; hidden_pca.png (prompt projected onto each stage's val-data PCA)."""
    hooks = hidden_hooks(model)
    acts, _, _ = val_activations(model, datamodule, hooks, max_rows)
    bases = {h: pca(a) for h, a in acts.items()}
    tokenizer = getattr(datamodule, "tokenizer", None)
    prompt_acts, labels = None, []
    if tokenizer is not None:   # models with one output per row (arithmetic MLP) have no prompt
        tokens = prompt_tokens(model, datamodule, prompt)
        prompt_acts, labels = prompt_activations(model, tokens, hooks), tokenizer.decode_tokens(tokens[0])
    sample = {h: a[torch.randperm(len(a), generator=torch.Generator().manual_seed(0))[:2000]] for h, a in acts.items()}
    plot(bases, sample, prompt_acts, labels, f"{out_dir}/hidden_pca.png")
    results = {}
    for hook, b in bases.items():
        results.update({f"{hook}/pc1_var_ratio": b["ratio"][0].item(), f"{hook}/pc2_var_ratio": b["ratio"][1].item(),
                        f"{hook}/participation_ratio": b["participation_ratio"].item()})
    return results
