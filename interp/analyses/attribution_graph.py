"""Attribution graph of one prompt through a run's per-layer transcoders (interp.circuits):

    python analyze.py run=<transcoder run> analysis=attribution_graph prompt="..." [target=" token"]

Writes into figures/attribution_graph/: graph.json (circuit-tracer's schema, the pruned graph),
graph.html (an offline view), interventions.json when `ablate=` / `clamp=` are given, summary.md,
and with `save_graph=true` graph.pt (every tensor of the full graph, for a notebook). Metrics: the
replacement and completeness scores of the full and the pruned graph, node and edge counts, seconds.

Features are named `layer:feature@position` in `ablate=[1:17@4]` and `'clamp=["1:17@4=3.0"]'` (the
quotes keep Hydra from reading `=`; the JSON's node ids, `1_17_4`, are accepted too).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from interp.analyses.common.inputs import encode_prompt, require_lm
from interp.circuits.export import graph_html, graph_json, write_graph_pt
from interp.circuits.graph import Graph, build_graph
from interp.circuits.prune import Pruned, check_thresholds, normalized, prune, scores
from interp.circuits.replacement import LocalReplacement, transcoders_by_layer
from interp.errors import ConfigError
from interp.files import atomic_write_text
from interp.models import context_length
from interp.sae.sites import sites_of

_FEATURE = re.compile(r"^\s*(\d+)\s*[:_]\s*(\d+)\s*[@_]\s*(\d+)\s*(?:=\s*(-?[\d.eE+-]+))?\s*$")


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def parse_features(items, graph_layers: int, with_value: bool) -> dict[tuple[int, int, int], float]:
    """`["L:F@P", ...]` (or `L:F@P=value` when `with_value`) as {(layer, pos, feature): value}."""
    items = [items] if isinstance(items, str) else list(items or [])
    out = {}
    for item in items:
        m = _FEATURE.match(str(item))
        value = _number(m.group(4)) if m is not None and m.group(4) is not None else None
        if m is None or (value is None) == with_value:
            form = "layer:feature@position=value" if with_value else "layer:feature@position"
            example = "'clamp=[\"1:17@4=3.0\"]'" if with_value else "ablate=[1:17@4]"
            raise ConfigError(f"{item!r} does not name a feature as {form}. Fix: e.g. {example}.")
        layer, feature, pos = int(m.group(1)), int(m.group(2)), int(m.group(3))
        if layer >= graph_layers:
            raise ConfigError(f"{item!r}: layer {layer} is past the model's {graph_layers} layers. Fix: a layer "
                              f"below {graph_layers}.")
        out[layer, pos, feature] = value if with_value else 0.0
    return out


def target_token(tokenizer, target: str | None) -> int | None:
    if target is None:
        return None
    ids = tokenizer.encode(target)
    if len(ids) != 1:
        raise ConfigError(f"target={target!r} is {len(ids)} tokens ({ids}); a logit node is one token. Fix: one "
                          "token of the vocabulary, usually with its leading space, e.g. target=\" the\".")
    return ids[0]


def check_length(n_pos: int, max_prompt_tokens: int) -> None:
    if n_pos > max_prompt_tokens:
        raise ConfigError(f"the prompt is {n_pos} tokens, past max_prompt_tokens={max_prompt_tokens} (time and "
                          "memory grow with the square of the active features, which grow with the prompt). "
                          "Fix: a shorter prompt, or raise max_prompt_tokens= (and memory_budget_gb=).")


def check_memory(n_active: int, n_layers: int, n_pos: int, max_feature_nodes: int | None,
                 memory_budget_gb: float) -> float:
    """GB the graph needs, from the prompt's active features (one forward pass tells them): the dense
    adjacency and pruning's copies of it (4 N^2 floats) and, under a feature budget, the rows over every
    active feature. Refused past `memory_budget_gb`, before the backward passes."""
    kept = n_active if max_feature_nodes is None else min(n_active, max_feature_nodes)
    nodes = kept + n_layers * n_pos + n_pos + 10
    rows = 0 if kept == n_active else (kept + 10) * (n_active + n_layers * n_pos + n_pos)
    gb = (4 * nodes ** 2 + rows) * 4 / 1e9
    if gb > memory_budget_gb:
        raise ConfigError(f"a graph of this prompt needs about {gb:.1f} GB ({nodes} nodes: {n_active} active "
                          f"features), past memory_budget_gb={memory_budget_gb}. Fix: a shorter prompt, "
                          "max_feature_nodes=<N> to keep the N features of most influence, or raise memory_budget_gb=.")
    return gb


@dataclass
class Traced:
    """One prompt's graph: the replacement model, the full graph, what pruning keeps, the scores, the JSON."""
    rep: LocalReplacement
    graph: Graph
    kept: Pruned
    full: dict
    pruned: dict
    doc: dict
    interventions: dict
    build_s: float


def trace(model, tok, dictionaries, prompt: str | None, *, target: str | None = None, max_n_logits: int = 10,
          desired_logit_prob: float = 0.95, node_threshold: float = 0.8, edge_threshold: float = 0.98,
          batch_size: int = 64, max_feature_nodes: int | None = None, max_prompt_tokens: int = 256,
          memory_budget_gb: float = 4.0, ablate=None, clamp=None, scan: str = "interp",
          progress: bool = True) -> Traced:
    """Every input checked first (ConfigError), then the graph of `prompt` through `dictionaries`."""
    transcoders = transcoders_by_layer(model, dictionaries)
    check_thresholds(node_threshold, edge_threshold)
    tokens = encode_prompt(prompt, tok, context_length(model))   # None or blank: "the prompt is empty"
    target_id = target_token(tok, target)
    interventions = {**parse_features(ablate, len(transcoders), False),
                     **parse_features(clamp, len(transcoders), True)}
    for (layer, pos, f) in interventions:
        if pos >= tokens.shape[1] or f >= transcoders[layer].cfg.d_sae:
            raise ConfigError(f"feature {layer}:{f}@{pos} is outside the graph: the prompt has {tokens.shape[1]} "
                              f"positions (with its leading [eot]) and layer {layer}'s transcoder "
                              f"{transcoders[layer].cfg.d_sae} features. Fix: a position and feature below those.")
    check_length(tokens.shape[1], max_prompt_tokens)

    start = time.perf_counter()
    rep = LocalReplacement(model, transcoders, tokens)
    check_memory(sum(int((f != 0).sum()) for f in rep.features), len(transcoders), rep.n_pos, max_feature_nodes,
                 memory_budget_gb)
    names = [tok.decode([t]) for t in tokens[0].tolist()]
    graph = build_graph(rep, names, lambda ids: [tok.decode([i]) for i in ids], target=target_id,
                        max_n_logits=max_n_logits, desired_logit_prob=desired_logit_prob, batch_size=batch_size,
                        max_feature_nodes=max_feature_nodes, progress=progress)
    build_s = time.perf_counter() - start
    norm = normalized(graph.adjacency)   # shared by pruning and both scores
    kept = prune(graph, node_threshold, edge_threshold, norm=norm)
    full, pruned = scores(graph, norm=norm), scores(graph, kept.nodes, norm=norm)
    del norm
    doc = graph_json(graph, kept, slug="attribution_graph", scan=scan,
                     transcoders=[sites_of(t).target for t in transcoders], prompt=prompt,
                     node_threshold=node_threshold)
    return Traced(rep, graph, kept, full, pruned, doc, interventions, build_s)


def run(model, datamodule, out_dir, *, dictionaries, prompt: str | None = None, target: str | None = None,
        max_n_logits: int = 10, desired_logit_prob: float = 0.95, node_threshold: float = 0.8,
        edge_threshold: float = 0.98, batch_size: int = 64, max_feature_nodes: int | None = None,
        max_prompt_tokens: int = 256, memory_budget_gb: float = 4.0, ablate=None, clamp=None,
        save_graph: bool = False, examples: int = 3, examples_tokens: int = 20_000) -> dict[str, float]:
    require_lm(datamodule, "attribution_graph")
    out_dir = Path(out_dir)
    start = time.perf_counter()
    t = trace(model, datamodule.tokenizer, dictionaries, prompt, target=target, max_n_logits=max_n_logits,
              desired_logit_prob=desired_logit_prob, node_threshold=node_threshold, edge_threshold=edge_threshold,
              batch_size=batch_size, max_feature_nodes=max_feature_nodes, max_prompt_tokens=max_prompt_tokens,
              memory_budget_gb=memory_budget_gb, ablate=ablate, clamp=clamp,
              scan=f"interp:{out_dir.resolve().parents[1].name}")
    graph, doc, full, pruned = t.graph, t.doc, t.full, t.pruned
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = doc["metadata"]["transcoder_list"]
    dashboards = out_dir.parent / "dashboard"

    def feature_link(layer: int, feature: int) -> str | None:
        for folder in (dashboards / targets[layer], dashboards):
            if (folder / f"feature_{feature}.html").is_file():
                return str(Path("..") / folder.relative_to(out_dir.parent) / f"feature_{feature}.html")
        return None

    atomic_write_text(out_dir / "graph.json", json.dumps(doc, indent=1) + "\n")
    notes = top_contexts(model, datamodule, t.rep.transcoders, doc, examples, examples_tokens) if examples else None
    atomic_write_text(out_dir / "graph.html", graph_html(doc, feature_link, notes))
    if save_graph:   # the full dense graph: N^2 floats (290 MB at 64 tokens on lm_mix), so only when asked
        write_graph_pt(graph, out_dir / "graph.pt")
    seconds = time.perf_counter() - start
    metrics = {"nodes": float(graph.n_nodes), "features": float(graph.n_features),
               "active_features": float(graph.n_active),
               "edges": float((graph.adjacency != 0).sum()), "pruned_nodes": float(len(doc["nodes"])),
               "pruned_edges": float(len(doc["links"])), "build_s": t.build_s, "seconds": seconds,
               **{k: v for k, v in full.items()}, **{f"pruned_{k}": v for k, v in pruned.items()}}
    lines = [f"# Attribution graph of {prompt!r}", "",
             f"{graph.n_nodes} nodes ({graph.n_features} features), pruned to {len(doc['nodes'])} nodes and "
             f"{len(doc['links'])} edges in {seconds:.1f} s.", "",
             "| graph | replacement score | completeness score |", "|---|---|---|",
             f"| full | {full['replacement_score']:.3f} | {full['completeness_score']:.3f} |",
             f"| pruned | {pruned['replacement_score']:.3f} | {pruned['completeness_score']:.3f} |", "",
             "Logit nodes: " + ", ".join(f"{s!r} p={float(p):.3f}" for s, p in zip(graph.logit_strings,
                                                                                   graph.logit_probs))]
    if t.interventions:
        result = intervention_report(t.rep, t.interventions, graph, datamodule.tokenizer)
        atomic_write_text(out_dir / "interventions.json", json.dumps(result, indent=1) + "\n")
        lines += ["", "## Intervention", ""] + [
            f"- attention {mode}: " + ", ".join(f"{row['token']!r} {row['before']:.3f} -> {row['after']:.3f}"
                                                for row in result[mode]) for mode in ("frozen", "unfrozen")]
        metrics["intervention_kl_frozen"] = result["kl_frozen"]
    atomic_write_text(out_dir / "summary.md", "\n".join(lines) + "\n")
    return metrics


@torch.no_grad()
def top_contexts(model, datamodule, transcoders: list, doc: dict, k: int, max_tokens: int) -> dict[str, str]:
    """{feature node id: its `k` top activating contexts in the first `max_tokens` validation tokens}, for
    the view's tooltips: one pass per layer over the features the pruned graph keeps (the dashboard's pass)."""
    from interp.features.dashboard import collect

    tok = datamodule.tokenizer
    nodes: dict[tuple[int, int], list[str]] = {}   # (layer, feature) -> its nodes (one per position it fires at)
    for n in doc["nodes"]:
        if n["feature_type"] == "cross layer transcoder":
            layer, feature, _ = map(int, n["node_id"].split("_"))
            nodes.setdefault((layer, feature), []).append(n["node_id"])
    notes: dict[str, str] = {}
    for layer in sorted({layer for layer, _ in nodes}):
        features = sorted(f for lay, f in nodes if lay == layer)
        collector, corpus = collect(model, transcoders[layer], datamodule.val_dataloader(), features, k=k,
                                    n_samples=1, max_tokens=max_tokens)
        for col, f in enumerate(features):
            if note := context_note(*collector.top.of(col), corpus, tok, collector.n_tokens):
                notes |= {node: note for node in nodes[layer, f]}
    return notes


def context_note(values, locs, corpus, tok, n_tokens: int, k: int | None = None) -> str | None:
    """A feature's top activating contexts as one line of a tooltip: 'value: eight tokens before[[the token]]'."""
    shown = []
    for value, loc in list(zip(values.tolist(), locs.tolist()))[:k]:
        window, _, _ = corpus.context(loc, 8, 0)
        shown.append(f"{value:.2f}: {tok.decode(window[:-1].tolist())}[[{tok.decode(window[-1:].tolist())}]]")
    return f"top in {n_tokens} tokens: " + " | ".join(shown) if shown else None


def intervention_report(rep: LocalReplacement, values: dict, graph, tok) -> dict:
    """The graph's logits and the top next tokens before and after setting `values`, with attention
    frozen at the prompt's patterns and recomputed."""
    before = torch.softmax(rep.logits[-1], -1)
    out = {"features": [f"{layer}:{f}@{pos}={v}" for (layer, pos, f), v in values.items()]}
    for mode, freeze in (("frozen", True), ("unfrozen", False)):
        after = torch.softmax(rep.intervene(values, freeze_attention=freeze)[-1], -1)
        ids = list(dict.fromkeys(graph.logit_tokens + after.topk(5).indices.tolist()))
        out[mode] = [{"token": tok.decode([i]), "id": i, "before": float(before[i]), "after": float(after[i])}
                     for i in ids]
        if freeze:
            out["kl_frozen"] = float((before * (before.clamp_min(1e-30).log() - after.clamp_min(1e-30).log())).sum())
    return out
