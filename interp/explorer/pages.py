"""HTML of the explorer: the start page (also written as a static index.html) and a run's page.

Figures are plotly divs (numpy arrays, which plotly writes as compact typed arrays); the page loads
plotly.js from the app itself (`/static/plotly.min.js`, the copy inside the plotly package), so nothing
comes from the network. A page holds no inline script: each figure is JSON in its div's `data-figure`,
drawn by SCRIPT (`/static/explorer.js`), so the app's Content-Security-Policy can refuse every script
that is not its own. Every value put into HTML (paths, prompts, tokens, parameters, messages, config values,
file names) goes through `esc`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from html import escape
from pathlib import Path
from urllib.parse import urlencode

import numpy as np

from interp.explorer.listing import SAE_DIR, RunInfo, SweepInfo
from interp.explorer.views import SAE_TOP

STYLE = """body{font-family:sans-serif;margin:1.5em;max-width:1400px}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px;vertical-align:top}th{background:#f3f3f3}
.problem{color:#a40000}.notice{background:#fff3cd;padding:.4em}.reason{color:#666;font-style:italic}
.tok{font-family:monospace;white-space:pre}section{margin:1.2em 0}textarea{width:100%;font-family:monospace}
a.fig{margin-right:.6em;font-size:12px}"""

# Draws the figures and re-submits the form when a layer or head is chosen: the page's only script.
SCRIPT = """for (const div of document.querySelectorAll("div[data-figure]")) {
  const fig = JSON.parse(div.dataset.figure);
  Plotly.newPlot(div, fig.data, fig.layout, JSON.parse(div.dataset.config));
}
for (const menu of document.querySelectorAll("select[data-submit]")) {
  menu.addEventListener("change", () => menu.form.submit());
}
"""


def esc(value) -> str:
    """Any value as HTML text or a quoted attribute's value (quotes escaped too)."""
    return escape(str(value), quote=True)


def shown(token: str) -> str:
    """A token as visible text: escapes for newlines and tabs, spaces as '·'."""
    return repr(token)[1:-1].replace(" ", "·") or "''"


def page(title: str, body: str, scripts: bool = False) -> str:
    """`body` is HTML whose every value its builder escaped; `scripts`: plotly.js and the page's SCRIPT."""
    script = ("<script src='/static/plotly.min.js' defer></script><script src='/static/explorer.js' defer></script>"
              if scripts else "")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>{script}"
            f"<style>{STYLE}</style></head><body>{body}</body></html>")


def error_page(status: int, message: str) -> str:
    return page(f"error {status}", f"<p><a href='/'>all runs</a></p><p class='problem' id='error'>error: "
                                   f"{esc(message)}</p>")


def metrics_cell(metrics: dict) -> str:
    return "<br>".join(f"{esc(k)} = {v:.4g}" if isinstance(v, (int, float)) else f"{esc(k)} = {esc(v)}"
                       for k, v in metrics.items())


def figures_cell(info: RunInfo, file_url: Callable[[Path], str]) -> str:
    base = info.path / "figures"
    return " ".join(f"<a class='fig' href='{esc(file_url(p))}'>{esc(p.relative_to(base))}</a>"
                    for p in info.figures)


def run_rows(runs: list[RunInfo], file_url, run_url) -> str:
    rows = []
    for r in runs:
        name = esc(r.path)
        link = f"<a href='{esc(run_url(r.path))}'>{name}</a>" if run_url and r.problem is None else name
        problem = f"<div class='problem'>{esc(r.problem)}</div>" if r.problem else ""
        rows.append(f"<tr class='run'><td>{link}{problem}</td><td>{esc(r.task)}</td><td>{esc(r.model)}</td>"
                    f"<td>{esc(r.data)}</td><td>{metrics_cell(r.metrics)}</td>"
                    f"<td>{figures_cell(r, file_url)}</td></tr>")
    head = "<tr><th>run</th><th>task</th><th>model</th><th>data</th><th>metrics</th><th>figures</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def start_page(runs: list[RunInfo], sweeps: list[SweepInfo], roots: list[Path], file_url: Callable[[Path], str],
               run_url: Callable[[Path], str] | None) -> str:
    """The list of runs and sweeps. `run_url` None: a static page (no prompts, files linked directly)."""
    where = esc(", ".join(map(str, roots)))
    parts = [f"<h1>interp runs</h1><p>under {where}: {len(runs)} runs, {len(sweeps)} sweeps.</p>"]
    if run_url is None:
        parts.append("<p>A static listing. <code>python analyze.py serve</code> opens the explorer, where a "
                     "run's model can be given prompts.</p>")
    parts.append("<h2>Runs</h2>" + (run_rows(runs, file_url, run_url) if runs else "<p>none yet: "
                                    "<code>python train.py</code> trains one.</p>"))
    for s in sweeps:
        reports = " ".join(f"<a href='{esc(file_url(p))}'>{esc(p.name)}</a>" for p in s.reports)
        parts.append(f"<h2 class='sweep'>Sweep {esc(s.path)}</h2><p>{len(s.jobs)} jobs. Comparison report: "
                     f"{reports or '<span class=reason>none (python analyze.py compare writes one)</span>'}</p>"
                     + run_rows(s.jobs, file_url, run_url))
    return page("interp runs", "".join(parts))


def figure_html(fig) -> str:
    """A div that SCRIPT draws `fig` in (no inline script: see the module's docstring)."""
    config = json.dumps({"displaylogo": False})
    return f"<div class='figure' data-figure='{esc(fig.to_json())}' data-config='{esc(config)}'></div>"


def ticks(labels: list[str]) -> dict:
    return {"tickvals": list(range(len(labels))), "ticktext": [shown(t) for t in labels], "tickfont": {"size": 9}}


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
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers+text", text=[shown(t) for t in labels],
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


def topk_table(rows: list[dict]) -> str:
    k = len(rows[0]["top"]) if rows else 0
    head = "<tr><th>pos</th><th>input</th><th>actual next</th>" + "".join(f"<th>#{i + 1}</th>" for i in range(k))
    body = []
    for pos, row in enumerate(rows):
        actual = row["actual_next"]
        cells = "".join(f"<td><span class='tok'>{esc(shown(t))}</span> {p:.3f}</td>" for t, p in row["top"])
        body.append(f"<tr><td>{pos}</td><td class='tok'>{esc(shown(row['input']))}</td>"
                    f"<td class='tok'>{esc(shown(actual)) if actual is not None else ''}</td>{cells}</tr>")
    return f"<table class='topk'>{head}</tr>{''.join(body)}</table>"


def sae_table(view: dict, file_url) -> str:
    body = []
    for row in view["tokens"]:
        feats = ", ".join(
            (f"<a href='{esc(file_url(Path(f['dashboard'])))}'>f{f['feature']}</a>" if f["dashboard"] else
             f"f{f['feature']}") + f" ({f['act']:.3g})" for f in row["features"])
        body.append(f"<tr><td class='tok'>{esc(shown(row['token']))}</td><td>{row['n_active']}</td>"
                    f"<td>{feats}</td></tr>")
    return (f"<p>SAE on <code>{esc(view['hook'])}</code>, {view['d_sae']} features; the top {SAE_TOP} active "
            "per token (linked when a dashboard exists in figures/dashboard/).</p><table class='sae'><tr><th>token</th>"
            f"<th>active</th><th>features (activation)</th></tr>{''.join(body)}</table>")


def section(name: str, title: str, view: dict, render: Callable[[object], str]) -> str:
    inner = render(view["data"]) if "data" in view else f"<p class='reason'>{esc(view['reason'])}</p>"
    return f"<section id='{name}'><h2>{esc(title)}</h2>{inner}</section>"


def prompt_sections(result: dict, file_url) -> str:
    labels = result["tokens"]
    parts = [f"<p class='notice'>{esc(result['notice'])}</p>" if result["notice"] else "",
             f"<p>{len(labels)} tokens: " + " ".join(f"<span class='tok'>[{esc(shown(t))}]</span>" for t in labels)
             + "</p>"]
    parts.append(section("attention", "Attention", result["attention"], lambda v: attention_figure(v, labels)))

    def pca(v):
        note = f"<p class='reason'>{esc(v['note'])}</p>" if v.get("note") else ""
        return note + pca_figure(v, labels)

    parts.append(section("pca", "Hidden states: PCA across layers", result["pca"], pca))
    parts.append(section("topk", "Top-k next tokens", result["topk"], topk_table))
    parts.append(section("sae_features", "SAE features", result["sae_features"], lambda v: sae_table(v, file_url)))
    if result["kind"] == "lstm":
        parts.append(section("lstm", "LSTM hidden states", result["lstm"], lambda layers: "".join(
            heatmap_figure(h, labels, f"layer {i}: h_t", "neuron") for i, h in enumerate(layers))))
    if result["kind"] == "kgram":
        parts.append(section("kgram", "k-gram window attribution", result["kgram"], lambda v: heatmap_figure(
            v["share"], labels, "share of |grad x input| per window slot, for the top-1 prediction", "slot",
            v["slots"], "Magma", None)))
    return "".join(parts)


def row_sections(result: dict, file_url) -> str:
    parts = [(f"<p>inputs {esc(result['inputs'])}: prediction <b>{result['prediction']:.3f}</b>, "
              f"answer |col1[ptr1] - col2[ptr2]| = <b>{esc(result['answer'])}</b></p>")]
    for hook, acts in result["hidden"].items():
        parts.append(heatmap_figure([acts], [str(i) for i in range(len(acts))], f"{hook} activations", "",
                                    scale="Viridis", zmid=None))
    parts.append(section("sae_features", "SAE features", result["sae_features"], lambda v: sae_table(v, file_url)))
    parts.append(section("probe", "Feature probe", result["probe"], lambda v: f"<pre>{esc(v['report'])}</pre>"))
    return "".join(parts)


def run_page(info: RunInfo, kind: str, form: dict, result: dict | None, error: str | None, file_url,
             n_layers: int = 0, n_heads: int = 0) -> str:
    """A run's page: its metrics and figures, a form for a prompt (or input row), and the views."""
    def options(name, n):
        return "".join(f"<option value='{i}'{' selected' if str(i) == str(form.get(name, 0)) else ''}>{i}</option>"
                       for i in range(n))

    hidden = f"<input type='hidden' name='path' value='{esc(info.path)}'>"
    if kind == "regression":
        fields = (f"<label>inputs (col1, ptr1, col2, ptr2) <input name='inputs' size='40' "
                  f"value='{esc(form.get('inputs', ''))}'></label>")
    else:
        selects = (f" layer <select name='layer' data-submit>{options('layer', n_layers)}</select>"
                   f" head <select name='head' data-submit>{options('head', n_heads)}</select>"
                   if n_layers else "")
        fields = (f"<textarea name='prompt' rows='4'>{esc(form.get('prompt', ''))}</textarea><br>{selects}"
                  f" top-k <input name='k' type='number' min='1' max='50' value='{esc(form.get('k', 5))}'>")
    body = [f"<p><a href='/'>all runs</a></p><h1>{esc(info.path)}</h1>",
            f"<p>task {esc(info.task)}, model {esc(info.model)}, data {esc(info.data)}</p>",
            f"<p>{metrics_cell(info.metrics)}</p><p>figures: {figures_cell(info, file_url) or 'none'}</p>",
            (f"<p><a id='graph-link' href='{esc(graph_link(info.path))}'>attribution graph</a> (a transcoder per "
             "layer)</p>" if has_dictionaries(info.path) else ""),
            # POST: a prompt of any length up to the body limit (a GET URL is cut at a few kB)
            (f"<form method='post' action='/run' id='prompt-form' accept-charset='utf-8'>{hidden}{fields} "
             "<button type='submit'>Show</button></form>")]
    if error:
        body.append(f"<p class='problem' id='error'>{esc(error)}</p>")
    if result is not None:
        body.append(row_sections(result, file_url) if kind == "regression" else prompt_sections(result, file_url))
        if "seconds" in result:
            body.append(f"<p>answered in {result['seconds']:.3f} s</p>")
    return page(str(info.path), "".join(body), scripts=True)


def file_link(path: Path) -> str:
    return "/file?" + urlencode({"path": str(path)})


def run_link(path: Path) -> str:
    return "/run?" + urlencode({"path": str(path)})


def graph_page(info: RunInfo, form: dict, result: dict | None, error: str | None, file_url) -> str:
    """A run's attribution graph of a prompt (its transcoders, one per layer): a form, the scores, the SVG."""
    from interp.circuits.export import LEGEND, graph_svg

    hidden = f"<input type='hidden' name='path' value='{esc(info.path)}'>"
    body = [f"<p><a href='/'>all runs</a> · <a href='{esc(run_link(info.path))}'>this run</a></p>",
            f"<h1>attribution graph: {esc(info.path)}</h1>",
            f"<form method='post' action='/graph' id='graph-form' accept-charset='utf-8'>{hidden}"
            f"<textarea name='prompt' rows='3'>{esc(form.get('prompt', ''))}</textarea><br>"
            f"target token (optional) <input name='target' value='{esc(form.get('target', ''))}'> "
            "<button type='submit'>Trace</button></form>"]
    if error:
        body.append(f"<p class='problem' id='error'>{esc(error)}</p>")
    if result is not None:
        doc, s = result["graph"], result["scores"]
        rows = "".join(f"<tr><td>{name}</td><td>{v['replacement_score']:.3f}</td><td>{v['completeness_score']:.3f}"
                       "</td></tr>" for name, v in s.items())
        pages = result["dashboards"]

        def link(layer: int, feature: int):
            page = pages.get(f"{layer}_{feature}")
            return file_url(Path(page)) if page else None

        body += [f"<p>{len(doc['nodes'])} nodes, {len(doc['links'])} edges after pruning; built in "
                 f"{result['build_s']:.2f} s. {esc(LEGEND)}</p>",
                 f"<table id='scores'><tr><th>graph</th><th>replacement score</th><th>completeness score</th></tr>"
                 f"{rows}</table>", f"<div id='graph'>{graph_svg(doc, link)}</div>"]
    return page(f"graph: {info.path}", "".join(body))


def has_dictionaries(run: Path) -> bool:
    from interp.sae.dictionaries import FOLDER

    return (run / SAE_DIR).is_dir() or (run / FOLDER).is_dir()


def graph_link(path: Path) -> str:
    return "/graph?" + urlencode({"path": str(path)})
