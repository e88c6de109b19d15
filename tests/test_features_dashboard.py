"""Feature dashboards: the streaming pass against brute force, the logit table through LayerNorm,
the ablation effect against a direct computation, offline HTML, a bad feature index."""

import copy
import json
import re
import warnings

import pytest
import torch
import torch.nn.functional as F
from sae_lens import StandardSAE, StandardSAEConfig
from transformer_lens import HookedTransformer, HookedTransformerConfig

from interp.analyses.runner import run_analysis
from interp.data import build_datamodule
from interp.data.batch import model_inputs, padding_mask
from interp.errors import ConfigError
from interp.features.dashboard import (
    POS_BITS,
    ablation_losses,
    collect,
    logit_effects,
)
from interp.features.indices import check_feature_index
from interp.sae.harvest import feature_acts
from interp.subject import Subject

VOCAB, N_CTX, D_MODEL, D_SAE = 512, 32, 32, 64
DATA = {"name": "induction", "vocab_size": VOCAB, "seq_len": N_CTX, "token_low": 256, "token_high": 511,
        "min_repeat": 4, "max_repeat": 12, "num_train": 16, "num_val": 24, "batch_size": 8}
HOOK = "blocks.0.hook_resid_post"


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def tiny_model(**kw) -> HookedTransformer:
    fields = {"n_layers": 2, "d_model": D_MODEL, "n_heads": 4, "d_head": 8, "d_mlp": 64, "n_ctx": N_CTX,
              "d_vocab": VOCAB, "normalization_type": "LN", "seed": 0} | kw
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = HookedTransformer(HookedTransformerConfig(**fields))
    g = torch.Generator().manual_seed(0)
    for p in model.parameters():   # LN gains and biases too: nothing cancels by accident
        p.data.normal_(0, 0.3, generator=g)
    return model.eval()


def tiny_sae(hook: str = HOOK, d_in: int = D_MODEL, d_sae: int = D_SAE, seed: int = 0) -> StandardSAE:
    """Random weights, encoder bias shifted down so features fire on a minority of tokens."""
    torch.manual_seed(seed)
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae))
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_()
        sae.b_enc -= 6.0
    sae.cfg.metadata.hook_name = hook
    return sae


@pytest.fixture(scope="module")
def dm():
    dm = build_datamodule(DATA, seed=0)
    dm.setup("validate")
    return dm


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def sae():
    return tiny_sae()


def brute_force(model, sae, dm):
    """Every (value, location) of every feature over the validation data."""
    feats, locs, seq = [], [], 0
    for batch in dm.val_dataloader():
        tokens = model_inputs(batch)
        mask = padding_mask(batch)
        mask = torch.ones(tokens.shape, dtype=torch.bool) if mask is None else mask
        a = feature_acts(model, sae, tokens).detach()
        s, p = mask.nonzero(as_tuple=True)
        feats.append(a[mask])
        locs.append((s + seq) << POS_BITS | p)
        seq += len(tokens)
    return torch.cat(feats), torch.cat(locs)


def test_streaming_top_k_equals_brute_force(model, sae, dm):
    k = 7
    collector, corpus = collect(model, sae, dm.val_dataloader(), k=k, n_samples=5)
    feats, locs = brute_force(model, sae, dm)
    assert len(list(dm.val_dataloader())) >= 3 and collector.n_tokens == len(feats)   # several merges
    fired = (feats > 0).sum(0)
    assert 0 < fired.sum() < feats.numel() / 2 and (fired > k).sum() >= 5
    assert torch.equal(collector.counts, fired)
    assert torch.equal(collector.hist.sum(1), fired)
    for f in range(D_SAE):
        values, where = collector.top.of(f)
        n = min(k, int(fired[f]))
        best = feats[:, f].topk(n)
        assert torch.allclose(values, best.values), f
        value_at = dict(zip(locs.tolist(), feats[:, f].tolist()))   # ties (repeated tokens) may swap places
        assert len(set(where.tolist())) == n and torch.allclose(torch.tensor([value_at[w] for w in where.tolist()]),
                                                                best.values), f
        sample_v, sample_l = collector.sample.of(f)
        assert len(sample_v) == min(5, int(fired[f])) and len(set(sample_l.tolist())) == len(sample_l)
        assert all(value_at[loc] == pytest.approx(v) for loc, v in zip(sample_l.tolist(), sample_v.tolist()))
    # tracking a few features gives the same records as tracking the whole dictionary
    some, _ = collect(model, sae, dm.val_dataloader(), [3, 11], k=k, n_samples=5)
    for col, f in enumerate([3, 11]):
        assert torch.equal(some.top.of(col)[1], collector.top.of(f)[1])
    # contexts come from the sequences seen
    loc = int(collector.top.of(int(fired.argmax()))[1][0])
    window, seq, _ = corpus.context(loc, 3, 1)
    assert torch.equal(window, model_inputs(dm.val_ds[seq])[max(0, (loc & 0xFFFFF) - 3):(loc & 0xFFFFF) + 2])


def test_logit_table_is_the_same_through_folded_layernorm(model, sae):
    """Folding the final LN's gain into W_U (LN -> LNPre) is the same model: the same table."""
    folded = copy.deepcopy(model)
    folded.process_weights_(fold_ln=True, center_writing_weights=False, center_unembed=False)
    assert folded.cfg.normalization_type == "LNPre"
    plain_table = logit_effects(model, sae, 5)
    assert torch.allclose(plain_table, logit_effects(folded, sae, 5), atol=1e-4)
    naive = (sae.W_dec[5] @ model.W_U).detach()   # W_dec @ W_U without the LN: a different order
    assert not torch.equal(plain_table.topk(10).indices, naive.topk(10).indices)
    assert logit_effects(model, tiny_sae(hook="blocks.0.attn.hook_z", d_in=32), 0) is None


def test_ablation_changes_the_loss_by_the_direct_computation(model, sae, dm):
    batch = next(iter(dm.val_dataloader()))
    tokens, targets = model_inputs(batch), batch["targets"]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=HOOK)
        x = cache[HOOK]
        a = sae.encode(x)
        f = int((a > 0).sum((0, 1)).argmax())
        direct = model(x - a[..., f, None] * sae.W_dec[f], start_at_layer=1)   # remove its share of x, rest kept
        keep = targets >= 0
        ce = lambda logits: F.cross_entropy(logits[keep], targets[keep])
        expected = (ce(direct) - ce(model(tokens))).item()
    got = ablation_losses(model, sae, [f], [batch])[f]["loss_delta"]
    assert expected != 0 and got == pytest.approx(expected, abs=1e-5)


def test_dashboard_analysis_writes_offline_pages_and_numbers(model, sae, dm, tmp_path):
    results = run_analysis("dashboard", Subject(model, dm, sae), tmp_path, {"features": [3, 11], "k": 5})
    pages = json.loads((tmp_path / "dashboard.json").read_text())
    assert [p["feature"] for p in pages] == [3, 11]
    assert results["f3/max"] == pytest.approx(pages[0]["top"][0]["value"], rel=1e-3)
    top = pages[0]["top"][0]
    assert top["acts"][top["at"]] == pytest.approx(top["value"])   # the shaded context peaks at its token
    assert pages[0]["quantiles"] and pages[0]["logits"]["top"][0][1] >= pages[0]["logits"]["top"][-1][1]
    assert json.loads((tmp_path / "results.json").read_text()) == results
    html = {p.name: p.read_text() for p in tmp_path.glob("*.html")}
    assert set(html) == {"index.html", "feature_3.html", "feature_11.html"}
    for text in html.values():   # renders with no network: nothing to fetch, no scripts at all
        low = text.lower()
        assert not any(s in low for s in ("<script", "<link", "<img", "<iframe", "@import", "url(", " src="))
        assert all("://" not in href for href in re.findall(r'href="([^"]*)"', low))
    auto = run_analysis("dashboard", Subject(model, dm, sae), tmp_path / "auto", {"n_features": 3, "k": 3})
    assert len([k for k in auto if k.endswith("/max")]) == 3


def test_a_feature_index_out_of_range_names_the_width(model, sae, dm, tmp_path):
    for bad in (D_SAE, -1, "x"):
        with pytest.raises(ConfigError, match=rf"this SAE has {D_SAE} features.*Fix:"):
            check_feature_index(sae, bad)
    with pytest.raises(ConfigError, match=rf"feature 99 .*has {D_SAE} features"):
        run_analysis("dashboard", Subject(model, dm, sae), tmp_path / "d", {"features": [3, 99]})
    assert not (tmp_path / "d").exists()   # nothing half-written
