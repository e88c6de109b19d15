"""An attribution graph's files: the pruned graph as JSON in the schema circuit-tracer's
`create_graph_files` writes (schema_version 1: `metadata`, `qParams`, `nodes`, `links`, node ids as
its own), which its local viewer and Neuronpedia read; and an offline HTML view of the same graph.

Node ids (circuit-tracer's): a feature `{layer}_{feature}_{pos}`, an error `{layer}_-1_{pos}`, a token
`E_{token id}_{pos}`, a logit `{n_layers + 1}_{token id}_{pos}`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from interp.circuits.graph import Graph
from interp.circuits.prune import Pruned
from interp.data.tokenizer import visible

SCHEMA_VERSION = 1


def cantor(x: int, y: int) -> int:
    return (x + y) * (x + y + 1) // 2 + y


def node_record(graph: Graph, node: int, kept: Pruned) -> dict:
    kind = graph.kind(node)
    influence = float(kept.cumulative[node])
    base = {"token_prob": 0.0, "is_target_logit": False, "run_idx": 0, "reverse_ctx_idx": 0, "clerp": "",
            "influence": influence, "activation": None}
    if kind == "feature":
        layer, pos, f = graph.features[node].tolist()
        return {**base, "node_id": f"{layer}_{f}_{pos}", "feature": cantor(layer, f), "layer": str(layer),
                "ctx_idx": pos, "feature_type": "cross layer transcoder", "jsNodeId": f"{layer}_{f}-0",
                "activation": float(graph.activations[node])}
    if kind == "error":
        layer, pos = divmod(node - graph.error_start, graph.n_pos)
        return {**base, "node_id": f"{layer}_-1_{pos}", "feature": -1, "layer": str(layer), "ctx_idx": pos,
                "feature_type": "mlp reconstruction error", "jsNodeId": f"{layer}_-1-{pos}"}
    if kind == "token":
        pos = node - graph.token_start
        tok = graph.tokens[pos]
        return {**base, "node_id": f"E_{tok}_{pos}", "feature": pos, "layer": "E", "ctx_idx": pos,
                "feature_type": "embedding", "jsNodeId": f"E_{tok}-{pos}",
                "clerp": graph.prompt_tokens[pos]}
    j = node - graph.logit_start
    tok, pos, layer = graph.logit_tokens[j], graph.n_pos - 1, str(graph.n_layers + 1)
    prob = float(graph.logit_probs[j])
    return {**base, "node_id": f"{layer}_{tok}_{pos}", "feature": tok, "layer": layer, "ctx_idx": pos,
            "feature_type": "logit", "token_prob": prob, "is_target_logit": j == 0,
            "jsNodeId": f"L_{tok}-{pos}", "clerp": f'Output "{graph.logit_strings[j]}" (p={prob:.3f})'}


def graph_json(graph: Graph, kept: Pruned, *, slug: str, scan: str, transcoders: list[str], prompt: str,
               node_threshold: float) -> dict:
    """The pruned graph in circuit-tracer's file schema (only kept nodes that a kept edge touches,
    and every token and logit)."""
    nodes = {int(i): node_record(graph, int(i), kept) for i in kept.nodes.nonzero()[:, 0]}
    targets, sources = (kept.edges & kept.nodes[:, None] & kept.nodes[None, :]).nonzero(as_tuple=True)
    links = [{"source": nodes[s]["node_id"], "target": nodes[t]["node_id"], "weight": float(graph.adjacency[t, s])}
             for t, s in zip(targets.tolist(), sources.tolist())]
    touched = {link["source"] for link in links} | {link["target"] for link in links}
    used = [n for n in nodes.values() if n["node_id"] in touched or n["feature_type"] in ("embedding", "logit")]
    return {"metadata": {"slug": slug, "scan": scan, "transcoder_list": transcoders,
                         "prompt_tokens": graph.prompt_tokens, "prompt": prompt, "node_threshold": node_threshold,
                         "schema_version": SCHEMA_VERSION},
            "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
            "nodes": used, "links": links}


# --- the offline view: layers up, positions across, one SVG, no script -----------------------------------

_W, _H, _R = 64, 70, 6   # column width per position, row height per layer, node radius


def _row(node: dict) -> int:
    """0 for the tokens, L + 1 for layer L's nodes, n_layers + 1 for the logits (their layer field)."""
    if node["layer"] == "E":
        return 0
    return int(node["layer"]) + (node["feature_type"] != "logit")


def graph_layout(doc: dict, feature_link=None, notes: dict[str, str] | None = None) -> dict:
    """Where everything of the graph's picture goes, as plain values (templates/graph.svg draws them):
    tokens along the bottom, layers up to the logits, edges blue (positive) and red (negative) with width by
    weight, a tooltip on every node and edge. `feature_link(layer, feature)` gives a feature's page or None;
    `notes` {node id: text} adds to a node's tooltip (e.g. a feature's top activating contexts)."""
    nodes, links = doc["nodes"], doc["links"]
    n_pos = len(doc["metadata"]["prompt_tokens"])
    rows = max((_row(n) for n in nodes), default=1)   # the logits' row
    cells: dict[tuple[int, int], list[str]] = {}
    for n in nodes:
        cells.setdefault((_row(n), n["ctx_idx"]), []).append(n["node_id"])
    labels = [visible(tok) for tok in doc["metadata"]["prompt_tokens"]]   # · for a space, \n for a newline
    # each position as wide as its fullest (layer, position) cell and its token, at least _W
    widths = [max([_W, 7 * len(labels[p]) + 10] + [len(ids) * 2 * _R + 8 for (_, pos), ids in cells.items()
                                                    if pos == p]) for p in range(n_pos)]
    left = [40 + sum(widths[:p]) for p in range(n_pos)]
    height, width = 80 + rows * _H, 80 + sum(widths)
    placed = {node: (left[pos] + 4 + i * 2 * _R, height - 40 - row * _H)
              for (row, pos), ids in cells.items() for i, node in enumerate(ids)}
    top = max((abs(link["weight"]) for link in links), default=1.0) or 1.0
    lines = []
    for link in sorted(links, key=lambda link: abs(link["weight"])):
        (x1, y1), (x2, y2) = placed[link["source"]], placed[link["target"]]
        share = abs(link["weight"]) / top
        lines.append({"x1": x1, "y1": y1, "x2": x2, "y2": y2, "colour": "#2563eb" if link["weight"] > 0 else "#dc2626",
                      "width": 0.3 + 3 * share, "opacity": 0.08 + 0.7 * share,
                      "title": f'{link["source"]} → {link["target"]}: {link["weight"]:+.4g}'})
    fill = {"cross layer transcoder": "#f59e0b", "mlp reconstruction error": "#9ca3af", "embedding": "#10b981",
            "logit": "#8b5cf6"}
    circles = []
    for n in nodes:
        tip = [n["node_id"], n["feature_type"]]
        if n["activation"] is not None:
            tip.append(f"activation {n['activation']:.4g}")
        if n["influence"] is not None:
            tip.append(f"cumulative influence {n['influence']:.3f}")
        if n["clerp"]:
            tip.append(n["clerp"])
        if notes and n["node_id"] in notes:
            tip.append(notes[n["node_id"]])
        href = None
        if n["feature_type"] == "cross layer transcoder" and feature_link is not None:
            href = feature_link(int(n["layer"]), int(n["node_id"].split("_")[1]))
        x, y = placed[n["node_id"]]
        circles.append({"x": x, "y": y, "fill": fill.get(n["feature_type"], "#000"), "title": " · ".join(tip),
                        "href": href})
    return {"width": width, "height": height, "radius": _R, "lines": lines, "nodes": circles,
            "tokens": [{"x": left[pos], "y": height - 12, "label": label} for pos, label in enumerate(labels)],
            "rows": [{"y": height - 36 - row * _H, "label": "emb" if row == 0 else "logits" if row == rows else f"L{row - 1}"}
                     for row in range(rows + 1)]}


def _template(name: str):
    """A template of templates/ (autoescaped: every string from the graph is escaped where it is shown)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template(name)


def graph_svg(doc: dict, feature_link=None, notes: dict[str, str] | None = None) -> str:
    """The graph as one SVG (graph_layout drawn by templates/graph.svg): no script."""
    return _template("graph.svg").render(**graph_layout(doc, feature_link, notes))


LEGEND = ("Features orange, errors grey, tokens green, logits purple; edges blue when positive, red when negative. "
          "Hover for values.")


def graph_html(doc: dict, feature_link=None, notes: dict[str, str] | None = None) -> str:
    """A self-contained page of the graph (graph_svg) with its prompt and size."""
    from markupsafe import Markup

    return _template("graph.html").render(doc=doc, legend=LEGEND,
                                          svg=Markup(graph_svg(doc, feature_link, notes))) + "\n"


def write_graph_pt(graph: Graph, path) -> None:
    """Every tensor of the full graph, for a notebook (torch.load(path))."""
    from interp.files import atomic_writer

    with atomic_writer(path, "wb") as f:
        torch.save(dict(vars(graph)), f)
