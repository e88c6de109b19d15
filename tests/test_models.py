"""Every architecture is a HookedRootModule with its documented hooks."""

import pytest
import torch
from transformer_lens import HookedRootModule

from interp.errors import ConfigError
from interp.models import build_model

V, T = 97, 10
LM_MODELS = {
    "transformer_0l": dict(arch="transformer", kind="lm", n_layers=0, d_model=32, n_heads=1, d_head=32, n_ctx=T,
                           d_vocab=V, attn_only=True, normalization_type=None,
                           positional_embedding_type="shortformer"),
    "transformer_2l": dict(arch="transformer", kind="lm", n_layers=2, d_model=32, n_heads=4, d_head=8, n_ctx=T,
                           d_vocab=V, attn_only=True, normalization_type="LN",
                           positional_embedding_type="shortformer"),
    "transformer": dict(arch="transformer", kind="lm", n_layers=1, d_model=32, n_heads=4, d_head=8, d_mlp=64,
                        n_ctx=T, d_vocab=V, act_fn="gelu", normalization_type="LN"),
    "kgram": dict(arch="kgram", kind="lm", d_vocab=V, k=3, d_embed=8, d_hidden=16, n_layers=2),
    "lstm": dict(arch="lstm", kind="lm", d_vocab=V, d_embed=8, d_hidden=16, n_layers=2),
}
EXPECTED_HOOKS = {
    "transformer_0l": {"hook_embed"},
    "transformer_2l": {"blocks.1.attn.hook_pattern", "blocks.0.hook_resid_post"},
    "transformer": {"blocks.0.mlp.hook_post", "blocks.0.attn.hook_pattern"},
    "kgram": {"hook_embed", "hook_window", "blocks.0.hook_pre", "blocks.1.hook_post"},
    "lstm": {"hook_embed", "blocks.0.hook_hidden", "blocks.1.hook_hidden"},
}


@pytest.mark.parametrize("name", sorted(LM_MODELS))
def test_lm_models_expose_hooks(name):
    model = build_model(LM_MODELS[name])
    assert isinstance(model, HookedRootModule)
    tokens = torch.randint(0, V, (3, T))
    logits, cache = model.run_with_cache(tokens)
    assert logits.shape == (3, T, V)
    assert EXPECTED_HOOKS[name] <= set(cache.keys())
    for hook_name in cache.keys():
        assert cache[hook_name].shape[0] == 3


def test_kgram_window_holds_the_last_k_embeddings():
    model = build_model(LM_MODELS["kgram"])
    tokens = torch.randint(0, V, (2, T))
    _, cache = model.run_with_cache(tokens)
    emb, window = cache["hook_embed"], cache["hook_window"].view(2, T, 3, 8)
    assert torch.equal(window[:, 5, 2], emb[:, 5])      # newest slot = current token
    assert torch.equal(window[:, 5, 0], emb[:, 3])      # oldest slot = t - k + 1
    assert torch.equal(window[:, 0, 0], torch.zeros(2, 8))  # before the start: zeros


def test_causal_models_do_not_look_ahead():
    for name, cfg in LM_MODELS.items():
        model = build_model(cfg).eval()
        a = torch.randint(0, V, (1, T))
        b = a.clone()
        b[0, -1] = (a[0, -1] + 1) % V
        with torch.no_grad():
            assert torch.allclose(model(a)[0, :-1], model(b)[0, :-1], atol=1e-6), name


def test_zero_layer_logits_are_the_bigram_map():
    model = build_model(LM_MODELS["transformer_0l"])
    tokens = torch.randint(0, V, (2, T))
    expected = model.W_E[tokens] @ model.W_U + model.b_U
    assert torch.allclose(model(tokens), expected, atol=1e-5)


def test_arithmetic_mlp_hooks_and_output():
    model = build_model(dict(arch="arithmetic_mlp", kind="regression", n_values=4, d_hidden=[32, 8]))
    x = torch.randint(0, 4, (5, 10))
    out, cache = model.run_with_cache(x)
    assert out.shape == (5,)
    assert cache["hook_input"].shape == (5, 100)
    assert cache["blocks.0.hook_post"].shape == (5, 32)
    assert torch.equal(cache["hook_out"], out)


def test_unknown_arch_and_fields_are_config_errors():
    with pytest.raises(ConfigError, match="valid"):
        build_model({"arch": "rnn", "kind": "lm"})
    with pytest.raises(ConfigError, match="d_modle"):
        build_model({**LM_MODELS["transformer_2l"], "d_modle": 3})
    with pytest.raises(ConfigError, match="model"):
        build_model({**LM_MODELS["lstm"], "hidden": 3})
