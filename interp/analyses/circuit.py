"""Circuit report of the arithmetic MLP with its SAE spliced in after the first layer (seed S4's
feature reports): input positions -> hidden neurons -> SAE features -> second layer -> output.

Every edge's contribution is exact, not an approximation: with ReLU gates fixed by the input, each
node's value is the sum of its incoming contributions plus a bias, e.g. feature f's activation =
sum_j z_j * W_enc[j, f] + b_enc[f] (z the SAE's input) when f fires, 0 otherwise. Writes one
self-contained HTML page (plotly's JS inlined: it renders offline) and the numbers as CSV:

  circuit_trace.csv  every edge that carries signal on the chosen input: contribution there and on average
  logic_map.csv      features x input (position, value): Pearson correlation (the "logic map" heatmap)
  norms.csv          per test row, the L2 norm of every layer's activations (the "bell curves")
  sankey.csv         the strongest paths' edges (signed); per node the edges plus "other" sum to its value
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import torch

from interp.analyses import alignment
from interp.analyses.feature_probe import SEED_INPUT, parse_input
from interp.errors import NotApplicable
from interp.files import atomic_write_text
from interp.viz import plotly_divs

LAYERS = ("input", "neuron", "feature", "unit", "output")


@dataclass
class Trace:
    """Per stage s (LAYERS[s] -> LAYERS[s+1]): contributions [n_source, n_target], the target's bias
    term [n_target] and the target's value [n_target] (= contributions.sum(0) + bias)."""

    contributions: list[torch.Tensor]
    bias: list[torch.Tensor]
    values: list[torch.Tensor]


def encoder(sae) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(W [d_in, d_sae], b [d_sae], scale [d_sae]) with active features' acts = (z @ W + b) * scale,
    z = sae.process_sae_in(x): the magnitude path of a gated SAE, the plain encoder otherwise."""
    if hasattr(sae, "r_mag"):
        w, b = sae.W_enc * sae.r_mag.exp(), sae.b_mag
    else:
        w, b = sae.W_enc, sae.b_enc
    rescale = getattr(sae.cfg, "rescale_acts_by_decoder_norm", False)
    scale = sae.W_dec.norm(dim=-1) if rescale else torch.ones_like(b)
    return w, b, scale


@torch.no_grad()
def trace(model, sae, x: torch.Tensor) -> Trace:
    """Exact contributions on rows `x` [N, n_inputs], averaged over the rows (N = 1: one input)."""
    n = len(x)
    onehot = alignment.hook_activations(model, x)["hook_input"]                 # [N, 100]
    l0, l1 = model.blocks[0].linear, model.blocks[1].linear
    h = torch.relu(onehot @ l0.weight.T + l0.bias)                              # [N, H0]
    a0 = (h > 0).float()
    feats = sae.encode(h).float()
    af = (feats > 0).float()
    z = sae.process_sae_in(h).float()
    w_enc, b_enc, scale = encoder(sae)
    recon = sae.decode(feats)
    pre1 = recon @ l1.weight.T + l1.bias
    post1 = torch.relu(pre1)
    a1 = (post1 > 0).float()
    out = post1 @ model.out.weight.T + model.out.bias                            # [N, 1]
    w_fu = sae.W_dec @ l1.weight.T                                              # [F, H1]
    contributions = [l0.weight.T * (onehot.T @ a0) / n,
                     w_enc * scale * (z.T @ af) / n,
                     w_fu * (feats.T @ a1) / n,
                     model.out.weight.T * post1.mean(0)[:, None]]
    bias = [l0.bias * a0.mean(0), b_enc * scale * af.mean(0),
            (sae.b_dec @ l1.weight.T + l1.bias) * a1.mean(0), model.out.bias]
    values = [h.mean(0), feats.mean(0), post1.mean(0), out.mean(0)]
    return Trace([c.float() for c in contributions], [b.float() for b in bias], [v.float() for v in values])


def node_labels(model, sae, x_test: torch.Tensor) -> list[list[str]]:
    """Names of every node of every layer, with its ground-truth label (best-matching variable value)."""
    truth = alignment.task_variables(x_test)
    acts = alignment.hook_activations(model, x_test)
    feats = alignment.feature_activations(model, sae, x_test)
    raw = [name.removesuffix("_in") for name in alignment.raw_names(model.n_inputs)]

    def labelled(prefix, a):
        return [f"{prefix}{i} {lab} ({r:.2f})" for i, (lab, r) in enumerate(alignment.score(a, truth).unit_labels())]

    return [[f"{raw[p]}={v}" for p in range(model.n_inputs) for v in range(model.n_classes)],
            labelled("n", acts["blocks.0.hook_post"]), labelled("f", feats), labelled("u", acts["blocks.1.hook_post"]),
            ["output"]]


def strongest_paths(one: Trace, top: int) -> list[list[int]]:
    """Kept nodes per layer, from the output back: the `top` sources carrying the most |contribution|
    into the kept targets."""
    kept = [[0]]
    for c in reversed(one.contributions):
        flow = c[:, kept[0]].abs().sum(1)
        kept.insert(0, [i for i in flow.topk(min(top, int((flow > 0).sum()))).indices.tolist()])
    return kept


def sankey_links(one: Trace, kept: list[list[int]], labels: list[list[str]]) -> list[dict]:
    """Signed links between kept nodes of consecutive layers, plus per kept target an "other" link
    (its other sources and bias) so that a node's incoming links sum to its traced value."""
    links = []
    for s, c in enumerate(one.contributions):
        for t in kept[s + 1]:
            shown = 0.0
            for src in kept[s]:
                if (v := float(c[src, t])) != 0.0:
                    links.append({"stage": s, "source": labels[s][src], "target": labels[s + 1][t], "value": v})
                    shown += v
            links.append({"stage": s, "source": f"other {LAYERS[s]}s + bias", "target": labels[s + 1][t],
                          "value": float(one.values[s][t]) - shown})
    return links


def sankey_figure(links: list[dict], title: str):
    import plotly.graph_objects as go

    names = list(dict.fromkeys(n for link in links for n in (link["source"], link["target"])))
    index = {n: i for i, n in enumerate(names)}
    color = ["rgba(31,119,180,0.5)" if lk["value"] >= 0 else "rgba(214,39,40,0.5)" for lk in links]
    return go.Figure(go.Sankey(
        node={"label": names, "pad": 12, "thickness": 14},
        link={"source": [index[lk["source"]] for lk in links], "target": [index[lk["target"]] for lk in links],
                  "value": [abs(lk["value"]) for lk in links], "color": color, "customdata": [lk["value"] for lk in links],
                  "hovertemplate": "%{source.label} → %{target.label}: %{customdata:.4f}<extra></extra>"}),
        layout={"title": title + " (blue: excites, red: inhibits)", "height": 700})


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def trace_rows(one: Trace, mean: Trace, labels: list[list[str]]) -> list[dict]:
    """Every edge (and bias) with signal on the chosen input, strongest first within a stage."""
    rows = []
    for s, (c, m) in enumerate(zip(one.contributions, mean.contributions)):
        src, tgt = c.nonzero(as_tuple=True)
        order = c[src, tgt].abs().argsort(descending=True)
        rows += [{"stage": f"{LAYERS[s]} -> {LAYERS[s + 1]}", "source": labels[s][i], "target": labels[s + 1][j],
                  "contribution": float(c[i, j]), "mean_contribution": float(m[i, j])}
                 for i, j in zip(src[order].tolist(), tgt[order].tolist())]
        rows += [{"stage": f"{LAYERS[s]} -> {LAYERS[s + 1]}", "source": "bias", "target": labels[s + 1][j],
                  "contribution": float(one.bias[s][j]), "mean_contribution": float(mean.bias[s][j])}
                 for j in one.bias[s].nonzero()[:, 0].tolist()]
    return rows


def html_table(rows: list[dict]) -> str:
    head = "".join(f"<th>{k}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{v:.4f}</td>" if isinstance(v, float) else f"<td>{v}</td>"
                                    for v in r.values()) + "</tr>" for r in rows)
    return f"<table border=1 cellspacing=0 cellpadding=3><tr>{head}</tr>{body}</table>"


@torch.no_grad()
def run(model, datamodule, out_dir, *, sae, x=SEED_INPUT, n_samples: int = 4096, top: int = 8) -> dict[str, float]:
    """circuit_report.html + CSVs (module docstring) for input `x`; averages over `n_samples` test rows."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    x_test = alignment.require_arithmetic(model, datamodule, "circuit")[:n_samples]
    if sae.cfg.metadata.hook_name != "blocks.0.hook_post" or len(model.blocks) != 2:
        raise NotApplicable("circuit traces a 2-layer arithmetic MLP with its SAE at blocks.0.hook_post; "
                            f"this SAE reads {sae.cfg.metadata.hook_name} of a {len(model.blocks)}-layer MLP")
    row = parse_input(x, model.n_inputs, model.n_classes)
    device = sae.W_enc.device
    one, mean = trace(model, sae, row.to(device)), trace(model, sae, x_test.to(device))
    labels = node_labels(model, sae, x_test)
    out_dir = Path(out_dir)

    rows = trace_rows(one, mean, labels)
    links = sankey_links(one, strongest_paths(one, top), labels)
    feats = alignment.feature_activations(model, sae, x_test)
    raw = {k: v for k, v in alignment.task_variables(x_test).items() if alignment.is_raw(k)}
    logic = alignment.score(feats, raw)
    shown = (feats > 0).float().mean(0).topk(min(48, feats.shape[1])).indices.tolist()   # most frequent features
    columns = [f"{var.removesuffix('_in')}={v}" for var, v in logic.values]
    acts = alignment.hook_activations(model, x_test)
    norms = {"input (one-hot)": acts["hook_input"].norm(dim=1), "hidden neurons": acts["blocks.0.hook_post"].norm(dim=1),
             "SAE features": feats.norm(dim=1), "second layer": acts["blocks.1.hook_post"].norm(dim=1),
             "output": acts["hook_out"].norm(dim=1)}

    title = f"input {row[0].tolist()}"
    logic_fig = go.Figure(go.Heatmap(z=logic.corr[shown].numpy(), x=columns, y=[labels[2][f] for f in shown],
                                     colorscale="RdBu", zmid=0),
                          layout={"title": "Logic map: features x input (position = value), Pearson r",
                                      "height": 900, "yaxis": {"autorange": "reversed"}})
    norm_fig = make_subplots(rows=len(norms), cols=1, subplot_titles=list(norms))
    for i, v in enumerate(norms.values(), start=1):
        norm_fig.add_trace(go.Histogram(x=v.numpy(), nbinsx=60, histnorm="probability density", showlegend=False), i, 1)
    norm_fig.update_layout(title=f"Per-layer activation norms over {len(x_test)} test rows", height=220 * len(norms))
    figs = [sankey_figure(links, f"Strongest paths on {title}"), logic_fig, norm_fig]
    html = [(f"<html><head><meta charset='utf-8'><title>Circuit report</title></head><body>"
            f"<h1>Circuit report: arithmetic MLP + {sae.cfg.architecture()} SAE ({sae.cfg.d_sae} features)</h1>"),
            (f"<p>{title}: expected {float(alignment.task_variables(row)['target'][0]):.1f}, output with the SAE "
            f"{float(one.values[3][0]):.4f}. Labels: best-matching variable value (Pearson r).</p>")]
    html.append(plotly_divs(figs))
    html.append("<h2>Traced circuit (strongest 25 edges per stage; all in circuit_trace.csv)</h2>")
    html += [html_table([r for r in rows if r["stage"] == f"{LAYERS[s]} -> {LAYERS[s + 1]}"][:25]) for s in range(4)]
    atomic_write_text(out_dir / "circuit_report.html", "\n".join(html) + "</body></html>\n")
    atomic_write_text(out_dir / "circuit_trace.csv", to_csv(rows))
    atomic_write_text(out_dir / "sankey.csv", to_csv(links))
    atomic_write_text(out_dir / "logic_map.csv", to_csv(
        [{"feature": labels[2][f], **dict(zip(columns, logic.corr[f].tolist()))} for f in shown]))
    atomic_write_text(out_dir / "norms.csv", to_csv([dict(zip(norms, r)) for r in torch.stack(
        list(norms.values()), 1).tolist()]))
    return {"output_with_sae": float(one.values[3][0]), "active_neurons": int((one.values[0] > 0).sum()),
            "active_features": int((one.values[1] > 0).sum()), "active_units": int((one.values[2] > 0).sum())}
