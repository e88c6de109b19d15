"""Attribution graphs (interp.circuits) on a small transformer with MLPs and one transcoder per layer:
the local replacement model reproduces the model; every node's input is the sum of its incoming
edges plus its bias; edges equal interventions in the frozen model (circuit-tracer's own check);
influence, pruning and the scores against hand-computed graphs; the files; bad input."""

import json

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from interp.analyses.attribution_graph import check_length, check_memory, parse_features, target_token
from interp.circuits.export import graph_html, graph_json
from interp.circuits.graph import Graph, build_graph
from interp.circuits.prune import influence, normalized, prune, scores
from interp.circuits.replacement import LocalReplacement, pre_activations, transcoders_by_layer
from interp.errors import ConfigError
from interp.sae.spec import build_training_sae, inference_sae

D, LAYERS, VOCAB = 16, 3, 40


def model_with_mlps(attn_only=False):
    cfg = HookedTransformerConfig(n_layers=LAYERS, d_model=D, n_heads=2, d_head=8, n_ctx=16, d_vocab=VOCAB, d_mlp=32,
                                  act_fn=None if attn_only else "gelu", attn_only=attn_only,
                                  normalization_type="LN", seed=0)
    return HookedTransformer(cfg).eval()


def transcoder(layer: int, arch: str = "topk", skip: bool = True, target: str | None = None):
    torch.manual_seed(layer)
    spec = {"architecture": arch, "expansion": 4, "hook": f"blocks.{layer}.ln2.hook_normalized",
            "target_hook": target or f"blocks.{layer}.hook_mlp_out", "skip": skip, "apply_b_dec_to_input": False}
    if arch == "topk":
        spec["k"] = 5
    sae = build_training_sae(spec, d_in=D, hook=spec["hook"])
    with torch.no_grad():   # away from the initialisation's symmetries: nonzero biases, a skip path
        for p in sae.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return inference_sae(sae)


def replacement(arch="topk", skip=True, seed=0, n=11):
    model = model_with_mlps()
    tcs = transcoders_by_layer(model, [transcoder(layer, arch, skip) for layer in reversed(range(LAYERS))])
    tokens = torch.randint(0, VOCAB, (1, n), generator=torch.Generator().manual_seed(seed))
    return LocalReplacement(model, tcs, tokens)


def graph_of(rep, **kw):
    return build_graph(rep, [f"t{i}" for i in rep.tokens[0].tolist()], lambda ids: [f"t{i}" for i in ids],
                       progress=False, **kw)


CASES = [("topk", True), ("topk", False), ("jumprelu", True)]


@pytest.mark.parametrize("arch, skip", CASES)
def test_the_replacement_model_reproduces_the_model_on_its_prompt(arch, skip):
    rep = replacement(arch, skip)
    with torch.no_grad():
        frozen = rep.unembed(rep.forward(1).final)[0]
    assert torch.allclose(frozen, rep.logits, atol=1e-5)
    for freeze in (True, False):
        assert torch.allclose(rep.intervene({}, freeze_attention=freeze), rep.logits, atol=1e-5)
    assert sum(int((f != 0).sum()) for f in rep.features) > 0
    assert max(float(e.abs().max()) for e in rep.errors) > 1e-3   # random transcoders: real error nodes


@pytest.mark.parametrize("arch, skip", CASES)
def test_each_node_input_is_the_sum_of_its_incoming_edges_plus_its_bias(arch, skip):
    rep = replacement(arch, skip)
    g = graph_of(rep)
    targets = torch.cat([torch.arange(g.n_features), torch.arange(g.logit_start, g.n_nodes)])
    got = g.adjacency[targets].sum(1) + g.bias[targets]
    assert torch.allclose(got, g.values[targets], atol=1e-4)
    # the values are the real ones: pre-activations of the active features, demeaned logits
    for node in range(g.n_features):
        layer, pos, f = g.features[node].tolist()
        assert g.values[node] == pytest.approx(float(g.activations[node]) if arch == "topk" else g.values[node])
    logits = rep.logits[-1]
    assert g.values[g.logit_start] == pytest.approx(float(logits[g.logit_tokens[0]] - logits.mean()), abs=1e-4)
    # sources have no inputs; no edge runs forward in position or from a layer to an earlier one
    assert not g.adjacency[g.error_start:g.logit_start].any()
    f_layers, f_pos = g.features[:, 0], g.features[:, 1]
    feature_edges = g.adjacency[:g.n_features, :g.n_features]
    assert not feature_edges[(f_layers[:, None] <= f_layers[None, :]) | (f_pos[:, None] < f_pos[None, :])].any()


def frozen_values(rep, g, features=None, errors=None, embed=None):
    """Every target's input in the frozen model with some sources changed."""
    with torch.no_grad():
        c = rep.forward(1, embed=embed, features=features, errors=errors)
        out = torch.zeros(g.n_nodes)
        for node in range(g.n_features):
            layer, pos, f = g.features[node].tolist()
            out[node] = pre_activations(rep.transcoders[layer], c.inputs[layer][0, pos][None])[0, f]
        W_U, b_U = rep.model.W_U, rep.model.b_U
        for j, t in enumerate(g.logit_tokens):
            logits = c.final[0, -1] @ W_U + b_U
            out[g.logit_start + j] = logits[t] - logits.mean()
    return out


@pytest.mark.parametrize("arch, skip", CASES[:2])
def test_edges_equal_interventions_on_their_source_in_the_frozen_model(arch, skip):
    rep = replacement(arch, skip)
    g = graph_of(rep)
    base = frozen_values(rep, g)
    targets = torch.cat([torch.arange(g.n_features), torch.arange(g.logit_start, g.n_nodes)])
    checked = 0
    for source in torch.randperm(g.n_features, generator=torch.Generator().manual_seed(0))[:12].tolist():
        layer, pos, f = g.features[source].tolist()
        feats = [x.clone() for x in rep.features]
        feats[layer][pos, f] *= 1.5          # activation a -> 1.5 a: the edge's effect times 0.5
        change = frozen_values(rep, g, features=feats) - base
        assert torch.allclose(change[targets], 0.5 * g.adjacency[targets, source], atol=1e-4)
        checked += int((g.adjacency[targets, source].abs() > 1e-3).sum())
    assert checked > 10   # the sampled sources do reach later nodes
    errors = [e.clone() for e in rep.errors]
    errors[0][3] *= 2.0                      # an error node, doubled
    change = frozen_values(rep, g, errors=errors) - base
    assert torch.allclose(change[targets], g.adjacency[targets, g.error_node(0, 3)], atol=1e-4)
    embed = rep.embed.clone()
    embed[2] *= 2.0                          # a token's embedding, doubled
    change = frozen_values(rep, g, embed=embed[None]) - base
    assert torch.allclose(change[targets], g.adjacency[targets, g.token_start + 2], atol=1e-4)


def test_rows_do_not_depend_on_how_they_are_batched():
    rep = replacement()
    a, b = graph_of(rep, batch_size=64), graph_of(rep, batch_size=7)
    assert torch.equal(a.features, b.features)
    assert torch.allclose(a.adjacency, b.adjacency, atol=1e-6)


def test_a_feature_budget_keeps_the_most_influential_features_rows_unchanged():
    rep = replacement(n=14)
    full = graph_of(rep)
    capped = graph_of(rep, max_feature_nodes=10, batch_size=4)
    assert capped.n_features == 10 < full.n_features == full.n_active == capped.n_active
    kept = [full.feature_node(*capped.features[i].tolist()) for i in range(10)]
    columns = torch.cat([torch.tensor(kept), torch.arange(full.error_start, full.logit_start)])
    assert torch.allclose(capped.adjacency[:10, :len(columns)], full.adjacency[kept][:, columns], atol=1e-5)
    # the first batch is the features with most direct influence on the logits
    direct = (full.adjacency[full.logit_start:, :full.n_features].abs()
              / full.adjacency[full.logit_start:].abs().sum(1, keepdim=True))
    top = set((full.logit_probs @ direct).topk(4).indices.tolist())
    assert set(kept[:4]) == top


def test_a_target_token_is_the_first_logit_whatever_its_probability():
    rep = replacement()
    least = int(rep.logits[-1].argmin())
    g = graph_of(rep, target=least)
    assert g.logit_tokens[0] == least and len(g.logit_tokens) <= 10
    assert float(g.logit_probs.sum()) <= 1.0


# --- influence, pruning, scores on graphs computed by hand -----------------------------------------

def hand_graph(adjacency: list[list[float]], n_features: int, n_layers: int, n_pos: int, probs: list[float]):
    A = torch.tensor(adjacency)
    n = len(A)
    return Graph([f"p{i}" for i in range(n_pos)], list(range(n_pos)), torch.tensor([[0, 0, i] for i in range(n_features)]),
                 torch.ones(n_features), n_layers, list(range(len(probs))), [f"o{i}" for i in range(len(probs))],
                 torch.tensor(probs), A, torch.zeros(n), torch.zeros(n), n_features)


def test_influence_is_the_power_series_of_the_normalised_graph():
    g = torch.rand(7, 7, generator=torch.Generator().manual_seed(0)).tril(-1)   # a DAG
    norm, w = normalized(g), torch.rand(7)
    expected = w @ (torch.linalg.inv(torch.eye(7) - norm) - torch.eye(7))
    assert torch.allclose(influence(norm, w), expected, atol=1e-5)


def test_scores_count_what_reaches_the_logit_through_features_and_errors():
    # nodes: feature 0, error 0 (1 layer x 1 position), token 0, logit 0
    # token -> feature (2), feature -> logit (3), error -> logit (1): the logit's inputs are 3/4 feature
    A = [[0, 0, 2, 0], [0, 0, 0, 0], [0, 0, 0, 0], [3, 1, 0, 0]]
    g = hand_graph(A, n_features=1, n_layers=1, n_pos=1, probs=[1.0])
    s = scores(g)
    # influence: feature 3/4, error 1/4, token 3/4 (through the feature): replacement 3/4 / (3/4 + 1/4)
    assert s["replacement_score"] == pytest.approx(0.75)
    # completeness (circuit-tracer's): each node's non-error share of inputs (1 for a source), weighted
    # by its influence plus its logit weight: feature 3/4 x 1, error 1/4 x 1, token 3/4 x 1, logit 1 x 3/4
    assert s["completeness_score"] == pytest.approx((0.75 + 0.25 + 0.75 + 0.75) / (0.75 + 0.25 + 0.75 + 1))
    # pruning the feature makes it an error: nothing reaches the logit from the token
    assert scores(g, torch.tensor([False, True, True, True]))["replacement_score"] == pytest.approx(0.0)


def test_pruning_keeps_tokens_and_logits_and_drops_the_weak_paths():
    # two features feed the logit: a strong path (token0 -> f0 -> logit) and a weak one (token1 -> f1)
    A = [[0, 0, 0, 0, 5, 0, 0], [0, 0, 0, 0, 0, 1, 0]] + [[0] * 7] * 4 + [[9, 0.1, 0, 0, 0, 0, 0]]
    g = hand_graph(A, n_features=2, n_layers=1, n_pos=2, probs=[1.0])
    kept = prune(g, node_threshold=0.8, edge_threshold=0.98)
    assert kept.nodes.tolist() == [True, False, False, False, True, True, True]
    assert kept.edges[6, 0] and kept.edges[0, 4] and not kept.edges[6, 1]
    everything = prune(g, node_threshold=1.0, edge_threshold=1.0)
    assert everything.nodes[[0, 1, 4, 5, 6]].all()
    with pytest.raises(ConfigError, match="node_threshold"):
        prune(g, node_threshold=1.5)


# --- files -----------------------------------------------------------------------------------------

def test_the_json_follows_circuit_tracers_schema_and_the_page_escapes_the_prompt():
    rep = replacement()
    g = graph_of(rep)
    g.prompt_tokens[1] = "<script>alert(1)</script>"
    kept = prune(g)
    doc = graph_json(g, kept, slug="s", scan="interp:x", transcoders=["a"], prompt="<b>hi</b>", node_threshold=0.8)
    assert set(doc) == {"metadata", "qParams", "nodes", "links"} and doc["metadata"]["schema_version"] == 1
    ids = {n["node_id"] for n in doc["nodes"]}
    assert all(link["source"] in ids and link["target"] in ids for link in doc["links"]) and doc["links"]
    kinds = {n["feature_type"] for n in doc["nodes"]}
    assert {"embedding", "logit", "cross layer transcoder"} <= kinds
    feature = next(n for n in doc["nodes"] if n["feature_type"] == "cross layer transcoder")
    layer, f, pos = map(int, feature["node_id"].split("_"))
    assert g.activations[g.feature_node(layer, pos, f)] == pytest.approx(feature["activation"])
    assert sum(n["is_target_logit"] for n in doc["nodes"]) == 1
    json.dumps(doc)
    page = graph_html(doc, lambda layer, f: f"../dashboard/feature_{f}.html?x=<y>")
    assert "<script>" not in page and "&lt;script&gt;" in page and "<b>hi" not in page
    assert 'href="../dashboard/feature_' in page and "x=&lt;y&gt;" in page


# --- bad input --------------------------------------------------------------------------------------

def test_runs_without_a_transcoder_per_mlp_layer_are_refused_with_what_is_missing():
    model = model_with_mlps()
    with pytest.raises(ConfigError, match=r"layer\(s\) 0, 2 of 3"):
        transcoders_by_layer(model, [transcoder(1)])
    with pytest.raises(ConfigError, match="not a transcoder"):
        transcoders_by_layer(model, [transcoder(0, skip=False, target="blocks.0.ln2.hook_normalized")])
    with pytest.raises(ConfigError, match="reads another block"):
        transcoders_by_layer(model, [transcoder(0, target="blocks.1.hook_mlp_out")])
    with pytest.raises(ConfigError, match="attention-only"):
        transcoders_by_layer(model_with_mlps(attn_only=True), [transcoder(0)])
    with pytest.raises(ConfigError, match="two transcoders"):
        transcoders_by_layer(model, [transcoder(0), transcoder(0), transcoder(1), transcoder(2)])


class _Tok:
    def encode(self, text):
        return [ord(c) for c in text]


def test_targets_features_and_budgets_are_checked_before_any_work():
    assert target_token(_Tok(), "a") == 97
    with pytest.raises(ConfigError, match="2 tokens"):
        target_token(_Tok(), "ab")
    assert parse_features(["1:17@4", "2_3_0"], 3, False) == {(1, 4, 17): 0.0, (2, 0, 3): 0.0}
    assert parse_features(["0:5@2=-1.5"], 3, True) == {(0, 2, 5): -1.5}
    for bad, with_value in (("1:17", False), ("1:17@4", True), ("5:1@0", False), ("1:2@3=1e", True)):
        with pytest.raises(ConfigError, match="Fix"):
            parse_features([bad], 3, with_value)
    with pytest.raises(ConfigError, match="max_prompt_tokens"):
        check_length(300, 256)
    check_length(256, 256)
    # lm_mix at 64 tokens: 4 x 64 x 32 active features, about 1.2 GB; at 256 tokens about 18 GB
    assert check_memory(4 * 64 * 32, 4, 64, None, 4.0) == pytest.approx(4 * (8192 + 330) ** 2 * 4 / 1e9)
    with pytest.raises(ConfigError, match=r"GB \(34058 nodes: 32768 active features\).*max_feature_nodes"):
        check_memory(4 * 256 * 32, 4, 256, None, 4.0)
    assert check_memory(4 * 256 * 32, 4, 256, 8192, 4.0) < 4.0   # under a feature budget
