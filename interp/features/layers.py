"""Seed S1's comparison of several SAEs (one per layer, typically) on one probe set.

From each SAE's study (interp.features.study): the category x SAE specialist-score heatmap, the top-5
strongest activations per SAE, the most frequent feature's coverage per SAE, and the number of
categories with a specialist per SAE (S1's four figures, PNG and one interactive HTML page), the
category x SAE table, and S1's always / sometimes / never summary.
"""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from interp.features.rankings import consistency
from interp.files import atomic_write_text
from interp.sae.sites import hook_layer
from interp.viz import plotly_divs, save_figure


def layer_of(hook: str) -> float:
    """Depth of a hook, for ordering: the embeddings -1, blocks.L.hook_resid_pre L, anything else in block L
    L + 0.5, hooks after the blocks last."""
    layer = hook_layer(hook)
    if layer is None:
        return float("inf")
    return float(layer) + (0.5 if layer >= 0 and not hook.endswith(".hook_resid_pre") else 0.0)


def summary(studies: dict[str, dict]) -> dict:
    """studies: {label: study result}, in display order. Everything the figures show, as numbers."""
    labels = list(studies)
    categories = list(dict.fromkeys(c for s in studies.values() for c in s["specialists"]))
    scores = {c: {lab: studies[lab]["specialists"].get(c, {}).get("score") for lab in labels} for c in categories}
    found = {lab: {c: s["found"] for c, s in studies[lab]["specialists"].items()} for lab in labels}
    best = {}
    for lab in labels:
        spec = studies[lab]["specialists"]
        c = max(spec, key=lambda c: spec[c]["score"])   # first category wins ties
        best[lab] = {"category": c, "feature": spec[c]["feature"], "score": spec[c]["score"]}
    frequent = {lab: (studies[lab]["rankings"]["most_frequent"] or [{"feature": None, "frequency": 0.0}])[0]
                for lab in labels}
    return {"saes": labels, "hooks": {lab: studies[lab]["hook"] for lab in labels}, "categories": categories,
            "scores": scores, "features": {c: {lab: studies[lab]["specialists"][c]["feature"] for lab in labels
                                               if c in studies[lab]["specialists"]} for c in categories},
            "specialists_found": {lab: studies[lab]["specialists_found"] for lab in labels},
            "n_categories": len(categories), "best_category": best,
            "strongest": {lab: [{"feature": r["feature"], "max_activation": r["max_activation"]}
                                for r in studies[lab]["rankings"]["strongest"][:5]] for lab in labels},
            "most_frequent": {lab: {"feature": f["feature"], "coverage": f["frequency"]} for lab, f in frequent.items()},
            "consistency": consistency(found), "per_sae": studies}


def table(s: dict) -> str:
    """Markdown: category x SAE best specialist score (feature), then specialists found."""
    head = "| category | " + " | ".join(s["saes"]) + " |\n|---|" + "---|" * len(s["saes"]) + "\n"
    rows = [f"| {c} | " + " | ".join(f"{s['scores'][c][lab]} (#{s['features'][c][lab]})" for lab in s["saes"]) + " |"
            for c in s["categories"]]
    rows.append("| specialists found | " + " | ".join(f"{s['specialists_found'][lab]}/{s['n_categories']}"
                                                   for lab in s["saes"]) + " |")
    c = s["consistency"]
    return (head + "\n".join(rows) + f"\n\nalways: {', '.join(c['always']) or '-'}; sometimes: "
            f"{', '.join(c['sometimes']) or '-'}; never: {', '.join(c['never']) or '-'}\n")


def _score_matrix(s: dict) -> np.ndarray:
    return np.array([[np.nan if s["scores"][c][lab] is None else s["scores"][c][lab] for lab in s["saes"]]
                     for c in s["categories"]], dtype=float)


def png_figures(s: dict, out_dir: Path) -> list[Path]:
    labels, cats = s["saes"], s["categories"]
    paths = []
    grid = _score_matrix(s)
    fig, ax = plt.subplots(figsize=(2 + 1.3 * len(labels), 1.2 + 0.45 * len(cats)))
    im = ax.imshow(grid, cmap="RdYlGn", aspect="auto", vmin=-max(1, np.nanmax(np.abs(grid))),
                   vmax=max(1, np.nanmax(np.abs(grid))))
    for i, c in enumerate(cats):
        for j, lab in enumerate(labels):
            ax.text(j, i, f"{s['scores'][c][lab]}\n#{s['features'][c][lab]}", ha="center", va="center", fontsize=8)
    ax.set(xticks=range(len(labels)), xticklabels=labels, yticks=range(len(cats)), yticklabels=cats,
           title="specialist score (strong texts in category - outside)")
    ax.tick_params(axis="x", labelrotation=30)
    fig.colorbar(im, ax=ax)
    paths.append(save_figure(fig, out_dir / "specialist_scores.png"))

    fig, ax = plt.subplots(figsize=(2 + 1.3 * len(labels), 3.5))
    for j, lab in enumerate(labels):
        for r, row in enumerate(s["strongest"][lab]):
            x = j + (r - 2) * 0.16
            ax.bar(x, row["max_activation"], width=0.15, color=plt.cm.viridis(r / 5))
            ax.text(x, row["max_activation"], f"#{row['feature']}", rotation=90, ha="center", va="bottom", fontsize=7)
    ax.set(xticks=range(len(labels)), xticklabels=labels, ylabel="max activation",
           title="top 5 strongest features per SAE")
    paths.append(save_figure(fig, out_dir / "strongest.png"))

    fig, ax = plt.subplots(figsize=(2 + 1.3 * len(labels), 3.5))
    cover = [100 * s["most_frequent"][lab]["coverage"] for lab in labels]
    ax.bar(range(len(labels)), cover, color="tab:blue")
    for j, lab in enumerate(labels):
        ax.text(j, cover[j], f"#{s['most_frequent'][lab]['feature']}", ha="center", va="bottom", fontsize=8)
    ax.set(xticks=range(len(labels)), xticklabels=labels, ylabel="% of texts", ylim=(0, 105),
           title="coverage of the most frequent feature")
    paths.append(save_figure(fig, out_dir / "most_frequent.png"))

    fig, ax = plt.subplots(figsize=(2 + 1.3 * len(labels), 3.5))
    ax.plot(range(len(labels)), [s["specialists_found"][lab] for lab in labels], "o-", label="specialists found")
    ax.axhline(s["n_categories"], color="tab:green", ls="--", label=f"all {s['n_categories']} categories")
    ax.set(xticks=range(len(labels)), xticklabels=labels, ylabel="categories with a specialist",
           ylim=(0, s["n_categories"] + 0.5), title="specialists found per SAE")
    ax.legend()
    paths.append(save_figure(fig, out_dir / "specialists_found.png"))
    return paths


def html_page(s: dict) -> str:
    """The four figures in one interactive page; plotly.js inline once, so it renders offline."""
    import plotly.graph_objects as go

    labels, cats = s["saes"], s["categories"]
    grid = _score_matrix(s)
    text = [[f"#{s['features'][c][lab]}" for lab in labels] for c in cats]
    figs = [go.Figure(go.Heatmap(z=grid, x=labels, y=cats, text=text, texttemplate="%{z}<br>%{text}",
                                 colorscale="RdYlGn", zmid=0, hovertemplate="%{y} @ %{x}: score %{z}, feature %{text}"))
            .update_layout(title="specialist score (strong texts in category - outside)")]
    bars = go.Figure()
    for r in range(5):
        rows = [s["strongest"][lab][r] if r < len(s["strongest"][lab]) else None for lab in labels]
        bars.add_bar(x=labels, y=[row["max_activation"] if row else None for row in rows], name=f"rank {r + 1}",
                     text=[f"#{row['feature']}" if row else "" for row in rows])
    figs.append(bars.update_layout(title="top 5 strongest features per SAE", barmode="group"))
    figs.append(go.Figure(go.Bar(x=labels, y=[100 * s["most_frequent"][lab]["coverage"] for lab in labels],
                                 text=[f"#{s['most_frequent'][lab]['feature']}" for lab in labels]))
                .update_layout(title="coverage of the most frequent feature (% of texts)"))
    line = go.Figure(go.Scatter(x=labels, y=[s["specialists_found"][lab] for lab in labels], mode="lines+markers",
                                name="specialists found"))
    line.add_hline(y=s["n_categories"], line_dash="dash", line_color="green")
    figs.append(line.update_layout(title="categories with a specialist per SAE",
                                   yaxis_range=[0, s["n_categories"] + 0.5]))
    body = plotly_divs(figs)
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>feature_layers</title></head><body>"
            f"<pre>{html.escape(table(s))}</pre>\n{body}</body></html>\n")


def write(s: dict, out_dir: str | Path) -> list[Path]:
    """PNGs, feature_layers.html and summary.md into out_dir (results.json is the caller's)."""
    out_dir = Path(out_dir)
    paths = png_figures(s, out_dir)
    atomic_write_text(out_dir / "feature_layers.html", html_page(s))
    atomic_write_text(out_dir / "summary.md", table(s))
    return [*paths, out_dir / "feature_layers.html", out_dir / "summary.md"]
