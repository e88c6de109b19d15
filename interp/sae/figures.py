"""SAE figures: the feature-density histogram (log10 firing rate per feature)."""

from pathlib import Path

import torch

from interp.sae.metrics import log10_density


def save_density_histogram(density: torch.Tensor, path: str | Path, title: str = "") -> Path:
    """Histogram of log10(feature density + 1e-10); never-firing features pile up at -10."""
    from interp.viz import plt, save_figure

    values = log10_density(density.float().cpu()).numpy()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(values, bins=50, range=(-10, 0), color="tab:blue")
    ax.set(xlabel="log10 feature density", ylabel="features", title=title or "feature density")
    return save_figure(fig, path)
