"""SAE figures: the feature-density histogram (log10 firing rate per feature)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from interp.sae.metrics import log10_density  # noqa: E402


def save_density_histogram(density: torch.Tensor, path: str | Path, title: str = "") -> Path:
    """Histogram of log10(feature density + 1e-10); never-firing features pile up at -10."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    values = log10_density(density.float().cpu()).numpy()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(values, bins=50, range=(-10, 0), color="tab:blue")
    ax.set(xlabel="log10 feature density", ylabel="features", title=title or "feature density")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
