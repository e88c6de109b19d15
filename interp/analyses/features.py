"""Seed S1's feature study of an SAE on a probe set: rankings (strongest, most frequent, most selective,
composite), co-activation of the top features, and each category's best specialist with its score.

`probes=builtin` (the package's 7-category set), `probes=heldout` (data=mix's held-out documents) or a
file (`category<TAB>text` lines or JSON). features.json holds everything; the metrics are the counts
and each category's specialist score.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from interp.analyses.common.inputs import require_lm
from interp.features.probes import load_probes
from interp.features.study import metrics, study
from interp.run_dir import write_json
from interp.viz import save_figure


def specialist_figure(result: dict, path: Path) -> Path:
    """Each category's best specialist (rows) x its mean activation on each category (columns)."""
    cats = list(result["specialists"])
    spec = result["specialists"]
    grid = np.array([[spec[c]["category_means"][d] for d in cats] for c in cats])
    fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(cats), 1.2 + 0.5 * len(cats)))
    im = ax.imshow(grid / np.maximum(grid.max(1, keepdims=True), 1e-12), cmap="Oranges", vmin=0, vmax=1)
    ax.set(xticks=range(len(cats)), xticklabels=cats, yticks=range(len(cats)),
           yticklabels=[f"{c}: #{spec[c]['feature']} (score {spec[c]['score']})" for c in cats],
           xlabel="mean activation on texts of", title=f"best specialist per category ({result['hook']})")
    ax.tick_params(axis="x", labelrotation=30)
    fig.colorbar(im, ax=ax, label="÷ row max")
    return save_figure(fig, path)


def run(model, datamodule, out_dir, *, sae, probes: str = "builtin", k: int = 10, min_score: int = 1,
        max_tokens: int = 64, per_category: int = 50) -> dict[str, float]:
    require_lm(datamodule, "features")
    result = study(model, sae, datamodule.tokenizer, load_probes(probes, datamodule, per_category),
                   k=k, min_score=min_score, max_tokens=max_tokens)
    out_dir = Path(out_dir)
    write_json(out_dir / "features.json", result)
    specialist_figure(result, out_dir / "specialists.png")
    return metrics(result)
