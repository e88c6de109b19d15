"""Figure helpers shared by analyses (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

if TYPE_CHECKING:
    import torch


def save_head_heatmaps(grids: dict[str, torch.Tensor], out_dir: str | Path, title: str = "") -> list[Path]:
    """One [layer x head] heatmap per score, annotated, saved as PNG."""
    import torch  # here, not at the top: plots of run files (analyze.py compare) need no torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, grid in grids.items():
        n_layers, n_heads = grid.shape
        fig, ax = plt.subplots(figsize=(1.0 + 0.7 * n_heads, 1.0 + 0.6 * n_layers))
        im = ax.imshow(grid.numpy(), vmin=0, vmax=1, cmap="viridis")
        for (layer, head), value in zip(torch.cartesian_prod(torch.arange(n_layers), torch.arange(n_heads)).tolist(),
                                        grid.flatten().tolist()):
            ax.text(head, layer, f"{value:.2f}", ha="center", va="center", color="w" if value < 0.6 else "k")
        ax.set(xlabel="head", ylabel="layer", xticks=range(n_heads), yticks=range(n_layers),
               title=f"{name}\n{title}")
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        paths.append(out_dir / f"{name}.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Write `fig` as PNG (creating the folder) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def token_labels(tokens: list[str]) -> list[str]:
    """Plot-safe token strings: spaces as '·', escaped newlines, and no mathtext from '$'."""
    return [repr(t)[1:-1].replace(" ", "·").replace("$", r"\$") or "''" for t in tokens]


def plotly_divs(figs) -> str:
    """Plotly figures as HTML divs with plotly.js inlined once, before the first: a page that holds them
    renders offline."""
    return "\n".join(f.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, f in enumerate(figs))
