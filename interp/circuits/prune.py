"""Influence, pruning and the two scores of an attribution graph (Ameisen et al. 2025, methods §
"Graph pruning" and "Evaluating graphs"), with circuit-tracer's defaults.

Influence: normalise each row of |A| to sum to one (a target's inputs as shares), then a node's
influence on the logits is the sum over paths of the products of those shares, weighted by each
logit's probability: w A + w A^2 + ..., which ends because the graph has no cycles.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from interp.circuits.graph import Graph
from interp.errors import ConfigError


def normalized(adjacency: torch.Tensor) -> torch.Tensor:
    """|A| with each row scaled to sum to one (a zero row stays zero)."""
    a = adjacency.abs().float()
    return a.div_(a.sum(1, keepdim=True).clamp_min(1e-10))


def influence(norm: torch.Tensor, weights: torch.Tensor, sources: torch.Tensor | None = None) -> torch.Tensor:
    """sum_k weights @ norm^k for k >= 1; nothing flows on through the nodes in `sources` (as if their rows
    were zero: an error node, or a feature a pruned graph drops)."""
    total = torch.zeros_like(weights)
    current = weights
    for _ in range(len(weights) + 1):
        current = (current if sources is None else current.masked_fill(sources, 0.0)) @ norm
        if not current.any():
            return total
        total += current
    raise ConfigError("influence did not converge: the graph has a cycle")


def logit_weights(graph: Graph) -> torch.Tensor:
    w = torch.zeros(graph.n_nodes)
    w[graph.logit_start:] = graph.logit_probs
    return w


def threshold(scores: torch.Tensor, fraction: float) -> torch.Tensor:
    """The smallest score among the top scores that together hold `fraction` of the total. Zeros hold
    nothing, so only positive scores are sorted (an N x N edge matrix is mostly zeros after node pruning)."""
    positive = scores[scores > 0]
    if not len(positive):
        return torch.zeros((), dtype=scores.dtype)
    ordered = positive.sort(descending=True).values
    cumulative = ordered.cumsum(0) / ordered.sum().clamp_min(1e-30)
    at = min(int(torch.searchsorted(cumulative, torch.tensor(fraction, dtype=cumulative.dtype))), len(ordered) - 1)
    return ordered[at]


def check_thresholds(node_threshold: float, edge_threshold: float) -> None:
    for name, value in (("node_threshold", node_threshold), ("edge_threshold", edge_threshold)):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{name}={value} is not a fraction. Fix: {name}=<a number between 0 and 1>.")


@dataclass
class Pruned:
    nodes: torch.Tensor        # (N,) bool: kept nodes
    edges: torch.Tensor        # (N, N) bool: kept edges
    influence: torch.Tensor    # (N,) each node's influence on the logits in the full graph
    cumulative: torch.Tensor   # (N,) share of total influence held by the nodes at least as influential


def prune(graph: Graph, node_threshold: float = 0.8, edge_threshold: float = 0.98,
          norm: torch.Tensor | None = None) -> Pruned:
    """Keep the nodes holding `node_threshold` of the influence on the logits (tokens and logits always),
    then the edges holding `edge_threshold` of the edge influence among them; drop feature and error nodes
    left without outgoing edges and features left without incoming ones, until nothing changes.
    `norm`: normalized(graph.adjacency), when the caller has it."""
    check_thresholds(node_threshold, edge_threshold)
    w = logit_weights(graph)
    norm = normalized(graph.adjacency) if norm is None else norm
    node_influence = influence(norm, w)
    keep = node_influence >= threshold(node_influence, node_threshold)
    keep[graph.token_start:] = True

    # the graph among the kept nodes, renormalised: |A| / row sums, dropped rows and columns zeroed
    shares = norm * keep[None, :]
    shares.masked_fill_(~keep[:, None], 0.0)
    shares.div_(shares.sum(1, keepdim=True).clamp_min(1e-10))
    edge_scores = shares.mul_((influence(shares, w) + w)[:, None])
    edges = edge_scores >= threshold(edge_scores, edge_threshold)
    edges &= edge_scores > 0
    del shares, edge_scores

    sources, n_feat = graph.token_start, graph.n_features
    while True:
        before = keep.clone()
        edges[~keep] = False
        edges[:, ~keep] = False
        keep[:sources] &= edges[:, :sources].any(0)   # features and errors that still write somewhere
        keep[:n_feat] &= edges[:n_feat].any(1)          # features that still read something
        if torch.equal(keep, before):
            break
    ordered, order = node_influence.sort(descending=True)
    cumulative = torch.zeros_like(node_influence)
    cumulative[order] = ordered.cumsum(0) / ordered.sum().clamp_min(1e-30)
    return Pruned(keep, edges, node_influence, cumulative)


def scores(graph: Graph, kept: torch.Tensor | None = None, norm: torch.Tensor | None = None) -> dict[str, float]:
    """The replacement score (the share of the tokens' influence on the logits, against the errors',
    that reaches them through features) and the completeness score (the share of each node's inputs
    that come from features or tokens rather than errors, weighted by its influence on the logits).
    For a pruned graph (`kept`, its node mask), the features it drops count as errors, as in the paper."""
    error = torch.zeros(graph.n_nodes, dtype=torch.bool)
    error[graph.error_start:graph.token_start] = True
    if kept is not None:
        error[:graph.n_features] |= ~kept[:graph.n_features]
    w = logit_weights(graph)
    norm = normalized(graph.adjacency) if norm is None else norm
    node_influence = influence(norm, w, sources=error)   # an error is a source: nothing flows through it
    tokens = node_influence[graph.token_start:graph.logit_start].sum()
    errors = node_influence[error].sum()
    replacement = tokens / (tokens + errors).clamp_min(1e-30)
    non_error = 1 - (norm[:, error] if kept is not None else norm[:, graph.error_start:graph.token_start]).sum(-1)
    non_error = non_error.masked_fill(error, 1.0)   # a source's inputs: none, so none from errors
    weight = node_influence + w
    if kept is not None:   # the nodes of the pruned graph
        weight = weight * kept
    completeness = (non_error * weight).sum() / weight.sum()
    return {"replacement_score": float(replacement), "completeness_score": float(completeness)}


def pruned_adjacency(graph: Graph, kept: Pruned) -> torch.Tensor:
    """The graph's adjacency with only the kept edges between kept nodes."""
    return torch.where(kept.edges & kept.nodes[:, None] & kept.nodes[None, :], graph.adjacency,
                       torch.zeros(()))
