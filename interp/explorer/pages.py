"""The explorer's pages: what each shows, handed to its template (templates/, autoescaped), and the
plotly figures of a prompt's views.

Figures are plotly divs (numpy arrays, which plotly writes as compact typed arrays); the page loads
plotly.js from the app itself (`/static/plotly.min.js`, the copy inside the plotly package), so nothing
comes from the network. A page holds no inline script: each figure is JSON in its div's `data-figure`,
drawn by `/static/explorer.js`, so the app's Content-Security-Policy can refuse every script that is not
its own. Values reach the HTML only through templates, which escape them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from markupsafe import Markup

from interp.data.tokenizer import visible
from interp.explorer.listing import KEY_METRICS, SAE_DIR, RunInfo, SweepInfo
from interp.explorer.render import file_link, link, render, run_link, stylesheet
from interp.explorer.views import SAE_TOP


def metric_names(runs: list[RunInfo]) -> list[str]:
    """The key metrics any of `runs` has, in KEY_METRICS's order: the columns of a runs table."""
    have = {k for r in runs for k in r.metrics}
    return [k for k in KEY_METRICS if k in have]


def start_page(runs: list[RunInfo], sweeps: list[SweepInfo], roots: list[Path], file_url=file_link,
               run_url=run_link) -> str:
    """The list of runs and sweeps. `run_url` None: a static page (no server; files linked by `file_url`)."""
    static = run_url is None
    return render("start.html", runs=runs, sweeps=sweeps, roots=[str(r) for r in roots], file_url=file_url,
                  run_url=run_url, metric_names=metric_names, static=static,
                  inline_css=stylesheet() if static else "")


def error_page(status: int, message: str) -> str:
    return render("error.html", status=status, message=message)


def has_dictionaries(run: Path) -> bool:
    from interp.sae.dictionaries import FOLDER

    return (run / SAE_DIR).is_dir() or (run / FOLDER).is_dir()


def run_tabs(path: Path, dictionaries: bool | None = None) -> list[tuple[str, str]]:
    """The tabs of a run's pages: the feature pages only where the run has a dictionary (or the explorer
    was given one for every run)."""
    tabs = [("Overview", run_link(path))]
    if has_dictionaries(path) if dictionaries is None else dictionaries:
        tabs += [("Features", link("/features", path=path)), ("Search", link("/search", path=path)),
                 ("Steer", link("/steer", path=path)), ("Graph", link("/graph", path=path))]
    return tabs


def figure_html(fig) -> Markup:
    """A div that explorer.js draws `fig` in (no inline script: see the module's docstring)."""
    config = json.dumps({"displaylogo": False, "responsive": True})
    return Markup("<div class='figure' data-figure='{}' data-config='{}'></div>").format(fig.to_json(), config)


def ticks(labels: list[str]) -> dict:
    return {"tickvals": list(range(len(labels))), "ticktext": [visible(t) for t in labels], "tickfont": {"size": 9}}


def attention_figure(view: dict, labels: list[str]) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(1, 2, subplot_titles=("attention weights a_ij", "norm-based ||a_ij f(x_j)||"),
                        horizontal_spacing=0.12)
    for col, (key, scale) in enumerate((("weights", "Blues"), ("norms", "Oranges")), start=1):
        fig.add_trace(go.Heatmap(z=np.asarray(view[key], dtype=np.float32), colorscale=scale, showscale=False,
                                 hovertemplate="query %{y} key %{x}: %{z:.3f}<extra></extra>"), 1, col)
        fig.update_xaxes(title_text="key", **ticks(labels), row=1, col=col)
        fig.update_yaxes(title_text="query", autorange="reversed", **ticks(labels), row=1, col=col)
    side = min(900, 300 + 12 * len(labels))
    fig.update_layout(height=side, width=2 * side, margin={"t": 40},
                      title=f"layer {view['layer']} head {view['head']}")
    return figure_html(fig)


def pca_figure(view: dict, labels: list[str]) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    stages = view["stages"]
    fig = make_subplots(1, len(stages), subplot_titles=[s["hook"] for s in stages])
    for col, stage in enumerate(stages, start=1):
        if stage["background"]:
            x, y = np.asarray(stage["background"], dtype=np.float32).T
            fig.add_trace(go.Scatter(x=x, y=y, mode="markers", marker={"color": "#ccc", "size": 3},
                                     name="validation", showlegend=col == 1, hoverinfo="skip"), 1, col)
        x, y = np.asarray(stage["xy"], dtype=np.float32).T
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers+text", text=[visible(t) for t in labels],
                                 textposition="top center", textfont={"size": 9}, line={"color": "#999", "width": 1},
                                 marker={"color": list(range(len(labels))), "colorscale": "Viridis", "size": 7},
                                 name="prompt", showlegend=col == 1), 1, col)
        r = stage["ratio"]
        fig.update_xaxes(title_text=f"PC1 ({r[0]:.0%})", row=1, col=col)
        fig.update_yaxes(title_text=f"PC2 ({r[1]:.0%})", row=1, col=col)
    fig.update_layout(height=420, width=max(700, 340 * len(stages)), margin={"t": 40})
    return figure_html(fig)


def heatmap_figure(z, labels: list[str], title: str, ylabel: str, yticks: list[str] | None = None,
                   scale: str = "RdBu_r", zmid: float | None = 0) -> str:
    import plotly.graph_objects as go

    fig = go.Figure(go.Heatmap(z=np.asarray(z, dtype=np.float32), colorscale=scale, zmid=zmid))
    if len(labels) <= 80:   # beyond that tick labels overlap
        fig.update_xaxes(**ticks(labels))
    if yticks:
        fig.update_yaxes(tickvals=list(range(len(yticks))), ticktext=yticks)
    fig.update_layout(title=title, yaxis_title=ylabel, height=min(700, 250 + 3 * len(z)),
                      width=min(1300, max(600, 300 + 16 * len(labels))), margin={"t": 40})
    return figure_html(fig)


def view_figures(result: dict) -> dict:
    """The plotly figures of a prompt's (or row's) views; "" for a view that does not fit."""
    labels = result.get("tokens", [])
    figs = {name: "" for name in ("attention", "pca", "lstm", "kgram", "hidden")}
    if "data" in result.get("attention", {}):
        figs["attention"] = attention_figure(result["attention"]["data"], labels)
    if "data" in result.get("pca", {}):
        figs["pca"] = pca_figure(result["pca"]["data"], labels)
    if "data" in result.get("lstm", {}):
        figs["lstm"] = Markup("").join(heatmap_figure(h, labels, f"layer {i}: h_t", "neuron")
                                       for i, h in enumerate(result["lstm"]["data"]))
    if "data" in result.get("kgram", {}):
        v = result["kgram"]["data"]
        figs["kgram"] = heatmap_figure(v["share"], labels, "share of |grad x input| per window slot, for the top-1 "
                                       "prediction", "slot", v["slots"], "Magma", None)
    if "hidden" in result:
        figs["hidden"] = Markup("").join(
            heatmap_figure([acts], [str(i) for i in range(len(acts))], f"{hook} activations", "", scale="Viridis",
                           zmid=None) for hook, acts in result["hidden"].items())
    return figs


def run_page(info: RunInfo, kind: str, form: dict, result: dict | None, error: str | None,
             n_layers: int = 0, n_heads: int = 0, tabs: list | None = None) -> str:
    """A run's page: its identity, figures, a form for a prompt (or input row), and the views."""
    return render("run.html", info=info, kind=kind, form=form, result=result, error=error, n_layers=n_layers,
                  n_heads=n_heads, tabs=tabs or run_tabs(info.path), sae_top=SAE_TOP, plots=True,
                  embed=form.get("embed") == "1",
                  figures=view_figures(result) if result is not None else {})


def graph_page(info: RunInfo, form: dict, result: dict | None, error: str | None, tabs: list | None = None) -> str:
    """A run's attribution graph of a prompt (its transcoders, one per layer): a form, the scores, the SVG
    with each feature node linked to its feature page."""
    from interp.circuits.export import LEGEND, graph_svg
    from interp.explorer.render import feature_link

    svg = ""
    if result is not None:
        labels = result["labels"]   # {layer: dictionary label}

        def node_link(layer: int, feature: int):
            return feature_link(info.path, labels[layer], feature) if layer in labels else None

        svg = Markup(graph_svg(result["graph"], node_link, result["notes"]))   # graph_svg escapes every string
    return render("graph.html", info=info, form=form, result=result, error=error, legend=LEGEND, svg=svg,
                  tabs=tabs or run_tabs(info.path, True))


def _density_hist(densities: list[float], mark: float | None = None) -> Markup:
    from interp.explorer.workbench import density_bin, density_bins
    from interp.features.dashboard_html import histogram_svg

    edges, counts = density_bins(densities)
    at = density_bin(mark) if mark is not None and mark > 0 else None
    return Markup(histogram_svg(edges, counts, mark=at, what=" features"))   # numbers only


def features_page(info: RunInfo, form: dict, result: dict, names: list[str]) -> str:
    from interp.explorer.workbench import SORTS

    built = (f"statistics built from the validation data in {result['build_s']:.1f} s (cached in the run)"
             if result["build_s"] else "statistics read from the run's cache")
    return render("features.html", info=info, tabs=run_tabs(info.path, True), names=names,
                  dictionary=result["label"], kind=result["kind"], d_sae=result["d_sae"], n=len(result["rows"]),
                  n_tokens=result["n_tokens"], dead=result["dead"], rows=result["rows"], sort=form.get("sort") or "max",
                  sorts=list(SORTS.items()), sort_title=SORTS[form.get("sort") or "max"],
                  has_specialist=result["has_specialist"], density_hist=_density_hist(result["densities"]),
                  study=result["study"],
                  timing=f"{built}; page in {result['seconds']:.3f} s" + (f"; {result['note']}" if result["note"] else ""))


def feature_page(info: RunInfo, result: dict, names: list[str]) -> str:
    from interp.explorer.workbench import ABLATION_ROWS
    from interp.features.dashboard_html import histogram_svg

    page = result["page"]
    return render("feature.html", info=info, tabs=run_tabs(info.path, True), names=names, dictionary=result["label"],
                  kind=result["kind"], d_sae=result["d_sae"], page=page, specialist=result["specialist"],
                  scale=page["max"] or 1.0, seconds=result["seconds"], store_note=result["note"],
                  ablation_rows=ABLATION_ROWS,
                  activation_hist=Markup(histogram_svg(page["hist_edges"], page["hist"], what=" tokens")),
                  density_hist=_density_hist(result["densities"], page["density"]))


def search_page(info: RunInfo, form: dict, result: dict | None, error: str | None, top: int) -> str:
    return render("search.html", info=info, tabs=run_tabs(info.path, True), form=form, result=result, error=error,
                  top=top)


def steer_page(info: RunInfo, form: dict, result: dict | None, error: str | None, names: list[str]) -> str:
    return render("steer.html", info=info, tabs=run_tabs(info.path, True), form=form, result=result, error=error,
                  names=names)


def sweep_page(sweep: SweepInfo, overrides: list[str]) -> str:
    """A sweep: its jobs (what each overrides, its metrics), its comparison reports inline, a side-by-side form."""
    varied = sorted({o.split("=")[0] for line in overrides for o in line.split() if "=" in o})
    texts = {p: p.read_text(errors="replace") for p in sweep.reports if p.suffix == ".md"}
    return render("sweep.html", sweep=sweep, overrides=overrides, varied=varied, texts=texts,
                  openable=[r for r in sweep.jobs if r.problem is None], metric_names=metric_names, plots=False)


def compare_page(a: Path, b: Path, prompt: str) -> str:
    return render("compare.html", a=a, b=b, prompt=prompt)
