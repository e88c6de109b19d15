"""An attribution graph of one prompt: the direct effect of every source node on every target node
through the local replacement model (interp.circuits.replacement), computed with backward passes.

Nodes, in circuit-tracer's order: active features (layer, position, feature), error terms (one per
layer and position), token embeddings (one per position), and the logits that carry most of the next
token's probability. An edge s -> t is the part of t's input (a feature's pre-activation, a logit
minus the mean logit) that s writes directly: a_s * (W_dec[s] . d input_t / d mlp_out) for a feature,
error . gradient for an error, embedding . gradient for a token. One backward pass gives a whole row
(every source of one target); a batch of copies of the prompt gives a batch of rows per pass.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from interp.circuits.replacement import LocalReplacement, pre_activations
from interp.errors import ConfigError


RANK_EVERY = 4   # batches of feature rows between re-rankings by influence (circuit-tracer's update_interval)


@dataclass
class Graph:
    prompt_tokens: list[str]      # the prompt, one string per token
    tokens: list[int]
    features: torch.Tensor        # (n_features, 3) long: layer, position, feature index of each feature node
    activations: torch.Tensor     # (n_features,) their activations
    n_layers: int
    logit_tokens: list[int]       # vocabulary ids of the logit nodes, most probable first (or the target first)
    logit_strings: list[str]
    logit_probs: torch.Tensor     # (n_logits,) their probabilities at the last position
    adjacency: torch.Tensor       # (N, N): rows are targets, columns sources
    values: torch.Tensor          # (N,) each target's input (pre-activation, demeaned logit); 0 for sources
    bias: torch.Tensor            # (N,) each target's input with every source zeroed
    n_active: int                 # active features on the prompt (more than `features` under a budget)

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def n_pos(self) -> int:
        return len(self.tokens)

    @property
    def error_start(self) -> int:
        return self.n_features

    @property
    def token_start(self) -> int:
        return self.n_features + self.n_layers * self.n_pos

    @property
    def logit_start(self) -> int:
        return self.token_start + self.n_pos

    @property
    def n_nodes(self) -> int:
        return self.logit_start + len(self.logit_tokens)

    def error_node(self, layer: int, pos: int) -> int:
        return self.error_start + layer * self.n_pos + pos

    def feature_node(self, layer: int, pos: int, feature: int) -> int:
        hit = ((self.features == torch.tensor([layer, pos, feature])).all(1)).nonzero()
        if not len(hit):
            raise KeyError(f"feature {feature} at layer {layer}, position {pos} is not a node of this graph")
        return int(hit[0, 0])

    def kind(self, node: int) -> str:
        return ("feature" if node < self.error_start else "error" if node < self.token_start
                else "token" if node < self.logit_start else "logit")


def salient_logits(logits: torch.Tensor, max_n: int, desired_prob: float,
                   target: int | None = None) -> tuple[list[int], torch.Tensor]:
    """The most probable next tokens until their probability reaches `desired_prob` (at most `max_n`),
    as circuit-tracer picks them; `target`, when given, is the first whatever its probability."""
    probs = torch.softmax(logits.float(), -1)
    top_p, top_i = probs.topk(min(max_n, len(probs)))
    cut = int(torch.searchsorted(top_p.cumsum(0), torch.tensor(desired_prob))) + 1
    ids = top_i[:cut].tolist()
    if target is not None:
        ids = [target, *[i for i in ids if i != target]][:max_n]
    return ids, probs[ids]


class _Targets:
    """What a batch of rows asks of one frozen forward pass: each target's value, from its own copy."""

    def __init__(self, rep: LocalReplacement, features: torch.Tensor, logit_vectors: torch.Tensor,
                 logit_offsets: torch.Tensor):
        self.rep, self.features = rep, features
        self.logit_vectors, self.logit_offsets = logit_vectors, logit_offsets

    def values(self, captured, targets: list[tuple[str, int]], copy: int | None = None) -> torch.Tensor:
        """(len(targets),): target i's input, read from copy i of the prompt (or every one from `copy`)."""
        k = len(targets)
        rows = torch.arange(k) if copy is None else torch.full((k,), copy)
        kinds = [kind for kind, _ in targets]
        index = torch.tensor([i for _, i in targets], dtype=torch.long)
        out = torch.zeros(k, dtype=captured.final.dtype)
        logit = torch.tensor([kind == "logit" for kind in kinds])
        if logit.any():
            ids = index[logit]
            out[logit] = (captured.final[rows[logit], -1] * self.logit_vectors[ids]).sum(-1) + self.logit_offsets[ids]
        feats = self.features[index[~logit]] if (~logit).any() else torch.zeros(0, 3, dtype=torch.long)
        where = (~logit).nonzero()[:, 0]
        for layer in feats[:, 0].unique().tolist():
            sel = feats[:, 0] == layer
            x = captured.inputs[layer][rows[where[sel]], feats[sel, 1]]
            pre = pre_activations(self.rep.transcoders[layer], x)
            out[where[sel]] = pre.gather(1, feats[sel, 2, None])[:, 0]
        return out


def build_graph(rep: LocalReplacement, prompt_tokens: list[str], logit_strings, *, target: int | None = None,
                max_n_logits: int = 10, desired_logit_prob: float = 0.95, batch_size: int = 64,
                max_feature_nodes: int | None = None, progress: bool = True) -> Graph:
    """The attribution graph of the prompt `rep` was built on. `logit_strings(ids)` names vocabulary ids.
    With `max_feature_nodes` below the number of active features, rows are computed for the features of
    most influence on the logits so far (circuit-tracer's ordering) and the others are dropped."""
    L, n_pos = len(rep.transcoders), rep.n_pos
    model = rep.model
    nonzero = [f.nonzero() for f in rep.features]   # (n, 2): position, feature; in layer, position order
    feats = torch.cat([torch.cat([torch.full((len(nz), 1), layer), nz], 1) for layer, nz in enumerate(nonzero)])
    acts = torch.cat([f[nz[:, 0], nz[:, 1]] for f, nz in zip(rep.features, nonzero)]).detach()
    n_active = len(feats)

    logit_ids, logit_probs = salient_logits(rep.logits[-1], max_n_logits, desired_logit_prob, target)
    W_U, b_U = model.W_U.detach(), model.b_U.detach()
    logit_vectors = (W_U[:, logit_ids] - W_U.mean(1, keepdim=True)).T       # demeaned, as circuit-tracer
    logit_offsets = b_U[logit_ids] - b_U.mean()
    targets = _Targets(rep, feats, logit_vectors, logit_offsets)

    # Columns: every active feature, the errors, the tokens (then the logits, which are never sources).
    n_cols, n_logits = n_active + L * n_pos + n_pos, len(logit_ids)
    capped = max_feature_nodes is not None and max_feature_nodes < n_active
    budget = max_feature_nodes if capped else n_active
    decoders = [rep.transcoders[layer].W_dec.detach() for layer in range(L)]
    by_layer = [(feats[:, 0] == layer).nonzero()[:, 0] for layer in range(L)]
    scaled_dec = torch.zeros(n_active, model.cfg.d_model)
    for layer, idx in enumerate(by_layer):
        scaled_dec[idx] = acts[idx, None] * decoders[layer][feats[idx, 2]]

    embed = rep.embed.expand(batch_size, -1, -1).clone().requires_grad_(True)
    captured = rep.forward(batch_size, embed=embed)

    def compute(batch: list[tuple[str, int]], out: torch.Tensor, out_values: torch.Tensor) -> None:
        """Rows of `batch`'s targets into `out` (k, n_cols) and their inputs into `out_values`."""
        vals = targets.values(captured, batch)
        grads = torch.autograd.grad(vals.sum(), [captured.embed, *captured.mlp_out], retain_graph=True,
                                    allow_unused=True)
        k = len(batch)
        if grads[0] is not None:
            out[:, n_active + L * n_pos:] = torch.einsum("kpd,pd->kp", grads[0][:k], rep.embed)
        for layer in range(L):
            g = grads[1 + layer]
            if g is None:   # a layer after every target in the batch
                continue
            g = g[:k]
            base = n_active + layer * n_pos
            out[:, base:base + n_pos] = torch.einsum("kpd,pd->kp", g, rep.errors[layer])
            idx = by_layer[layer]
            for p in feats[idx, 1].unique().tolist():
                at = idx[feats[idx, 1] == p]
                out[:, at] = g[:, p] @ scaled_dec[at].T
        out_values.copy_(vals.detach())

    def compute_all(batch, out, out_values, bar=None):
        for s in range(0, len(batch), batch_size):
            compute(batch[s:s + batch_size], out[s:s + batch_size], out_values[s:s + batch_size])
            if bar is not None:
                bar.update(len(batch[s:s + batch_size]))

    logit_batch = [("logit", i) for i in range(n_logits)]
    bar = tqdm(total=budget, desc="attribution rows", unit="feature", disable=not progress)
    N = budget + L * n_pos + n_pos + n_logits
    adjacency, node_values = torch.zeros(N, N), torch.zeros(N)
    if not capped:   # every feature gets a row, in node order: written in place, the columns are the nodes'
        kept = torch.arange(n_active)
        compute_all([("feature", i) for i in range(n_active)], adjacency[:n_active, :n_cols],
                    node_values[:n_active], bar)
        compute_all(logit_batch, adjacency[N - n_logits:, :n_cols], node_values[N - n_logits:])
    else:            # rows over every active feature's column, computed in order of influence on the logits
        rows, values = torch.zeros(n_logits + budget, n_cols), torch.zeros(n_logits + budget)
        compute_all(logit_batch, rows[:n_logits], values[:n_logits])
        row_node = [n_cols + i for i in range(n_logits)]   # each row's node (logits after the columns)
        done = torch.zeros(n_active, dtype=torch.bool)
        for i in itertools.count():
            if len(row_node) == n_logits + budget:
                break
            if i % RANK_EVERY == 0:   # re-rank by the rows so far every few batches, as circuit-tracer does
                influence = _partial_influence(rows[:len(row_node)], logit_probs, row_node, n_cols)[:n_active]
            influence[done] = -1.0
            batch = influence.argsort(descending=True)[:min(batch_size, n_logits + budget - len(row_node))]
            start = len(row_node)
            compute([("feature", int(i)) for i in batch], rows[start:start + len(batch)],
                    values[start:start + len(batch)])
            row_node += batch.tolist()
            done[batch] = True
            bar.update(len(batch))
        kept = torch.tensor(row_node[n_logits:], dtype=torch.long)
        source_cols = torch.cat([kept, torch.arange(n_active, n_cols)])
        adjacency[:budget, :len(source_cols)] = rows[n_logits:, source_cols]
        adjacency[N - n_logits:, :len(source_cols)] = rows[:n_logits, source_cols]
        node_values[:budget], node_values[N - n_logits:] = values[n_logits:], values[:n_logits]
        del rows
    bar.close()

    node_bias = torch.zeros(N)
    bias = _bias(rep, targets, [("feature", int(i)) for i in kept] + logit_batch)
    node_bias[:len(kept)], node_bias[N - n_logits:] = bias[:len(kept)], bias[len(kept):]
    return Graph(prompt_tokens, rep.tokens[0].tolist(), feats[kept], acts[kept], L, logit_ids,
                 list(logit_strings(logit_ids)), logit_probs, adjacency, node_values, node_bias, n_active)


@torch.no_grad()
def _bias(rep: LocalReplacement, targets: _Targets, nodes: list[tuple[str, int]]) -> torch.Tensor:
    """Each target's input with every source (embeddings, features, errors) zeroed."""
    zero = rep.forward(1, embed=torch.zeros_like(rep.embed)[None],
                       features=[torch.zeros_like(f) for f in rep.features],
                       errors=[torch.zeros_like(e) for e in rep.errors])
    return targets.values(zero, nodes, copy=0)


def _partial_influence(rows: torch.Tensor, logit_probs: torch.Tensor, row_node: list[int],
                       n_cols: int) -> torch.Tensor:
    """Influence on the logits of every column node through the rows computed so far (rows normalised
    to unit L1 of absolute weights; power series from the logits)."""
    norm = rows.abs()
    norm = norm / norm.sum(1, keepdim=True).clamp_min(1e-8)
    node = torch.tensor(row_node)
    prod = torch.zeros(n_cols + len(logit_probs))
    prod[n_cols:] = logit_probs
    influence = torch.zeros(n_cols)
    for _ in range(1000):
        prod_cols = prod[node] @ norm
        if not prod_cols.any():
            break
        influence += prod_cols
        prod = torch.zeros_like(prod)
        prod[:n_cols] = prod_cols
    else:
        raise ConfigError("attribution influence did not converge (a cycle in the graph?)")
    return influence
