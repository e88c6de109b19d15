"""Feature dashboards of an SAE: `figures/dashboard/feature_<f>.html`, index.html and dashboard.json.

One streaming pass over the model's validation data serves every feature shown (interp.features.dashboard);
with no `features=`, the whole dictionary is tracked and the top `n_features` by `rank_by` are shown.
"""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import torch

from interp.analyses.common.inputs import require_lm
from interp.errors import ConfigError
from interp.features.dashboard import ablation_losses, collect, describe
from interp.features.dashboard_html import feature_page, index_page
from interp.features.indices import check_feature_index
from interp.files import atomic_write_text

RANKINGS = ("max", "frequency")


def chosen(collector, n: int, rank_by: str) -> list[int]:
    """The top-n features of the whole dictionary by max activation or firing frequency."""
    if rank_by == "max":
        score = collector.top.score[:, 0].clamp_min(0)   # each feature's largest activation (0: never fired)
    else:
        score = collector.density().float()
    return [int(f) for f in score.topk(min(n, collector.n)).indices if score[f] > 0]


@torch.no_grad()
def run(model, datamodule, out_dir, *, sae, features: list | None = None, n_features: int = 10,
        rank_by: str = "max", k: int = 20, max_tokens: int = 100_000, ablation_batches: int = 2) -> dict[str, float]:
    require_lm(datamodule, "dashboard")
    if rank_by not in RANKINGS:
        raise ConfigError(f"rank_by={rank_by!r} is not a ranking. Fix: rank_by=max or rank_by=frequency.")
    if features is not None:   # features=[] means the top n_features, like no features=
        listed = features if isinstance(features, list) else [features]
        features = list(dict.fromkeys(check_feature_index(sae, f) for f in listed)) or None
    collector, corpus = collect(model, sae, datamodule.val_dataloader(), features, k=k, max_tokens=max_tokens)
    shown = features if features is not None else chosen(collector, n_features, rank_by)
    columns = list(range(len(shown))) if features is not None else shown
    pages = describe(model, sae, collector, corpus, shown, columns, datamodule.tokenizer)
    losses = ablation_losses(model, sae, shown, islice(datamodule.val_dataloader(), ablation_batches))
    for page in pages:
        page.update(losses[page["feature"]])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    title = f"SAE at {sae.cfg.metadata.hook_name} (d_sae={sae.cfg.d_sae})"
    for page in pages:
        atomic_write_text(out_dir / f"feature_{page['feature']}.html", feature_page(page, title))
    atomic_write_text(out_dir / "index.html", index_page(pages, title))
    atomic_write_text(out_dir / "dashboard.json", json.dumps(pages) + "\n")
    results = {"n_tokens": float(collector.n_tokens)}
    for p in pages:
        results |= {f"f{p['feature']}/{key}": float(p[key])
                    for key in ("max", "density", "loss_delta", "loss_delta_where_active")}
    return results
