"""Feature pages on demand (interp.features.store): the store against brute force, its cache (reused only for
the same weights and settings, rebuilt when cut short, kept in memory when the folder cannot be written),
pages from the cache equal to fresh ones, the feature list's top logits against logit_effects, and the
features of a text from one forward pass against feature_acts."""

import copy
import errno
import json
import time
from itertools import islice

import pytest
import torch
from sae_lens import Transcoder, TranscoderConfig
from test_features_dashboard import D_SAE, DATA, brute_force, tiny_model, tiny_sae

from interp.data import build_datamodule
from interp.errors import ConfigError
from interp.features.dashboard import describe, logit_effects
from interp.features.store import (
    feature_page,
    feature_rows,
    load_or_build,
    store_key,
    text_features,
    top_logit_ids,
)
from interp.sae.harvest import feature_acts

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py
SETTINGS = {"k": 5, "n_samples": 8}


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


@pytest.fixture(scope="module")
def built(model, sae, dm, tmp_path_factory):
    """A store built into a cache folder, and that folder."""
    folder = tmp_path_factory.mktemp("stores")
    return load_or_build(model, sae, dm.val_dataloader(), folder, **SETTINGS), folder


def never(*_):
    raise AssertionError("the batches were read: the cache was not used")
    yield


def fail(*_):
    raise AssertionError("computed again: the cache was not used")


def same_tables(a, b) -> bool:
    ca, cb = a.collector, b.collector
    return (ca.n_tokens == cb.n_tokens and torch.equal(ca.counts, cb.counts) and torch.equal(ca.hist, cb.hist)
            and all(torch.equal(getattr(ta, x), getattr(tb, x))
                    for ta, tb in ((ca.top, cb.top), (ca.sample, cb.sample)) for x in ("score", "value", "loc"))
            and len(a.corpus.sequences) == len(b.corpus.sequences)
            and all(torch.equal(s, t) for s, t in zip(a.corpus.sequences, b.corpus.sequences)))


def test_store_equals_brute_force_and_is_loaded_back_whole(model, sae, dm, built):
    store, folder = built
    feats, _ = brute_force(model, sae, dm)
    fired = (feats > 0).sum(0)
    assert 0 < fired.sum() < feats.numel() / 2 and store.collector.n_tokens == len(feats)
    assert store.build_s > 0 and store.loaded_from is None and store.note is None
    assert store.path == folder / f"{store.name}.pt" and store.path.is_file()
    rows = feature_rows(store, model, sae, dm.tokenizer)
    assert [r["feature"] for r in rows] == list(range(D_SAE))
    assert [r["count"] for r in rows] == fired.tolist()
    assert torch.allclose(torch.tensor([r["max"] for r in rows]), feats.max(0).values.clamp_min(0))
    assert [r["density"] for r in rows] == pytest.approx((fired / len(feats)).tolist())
    assert any(r["max"] == 0 for r in rows) or fired.min() > 0

    again = load_or_build(model, sae, never(), folder, **SETTINGS)   # the batches are not even read
    assert again.loaded_from == store.path and again.build_s == 0.0 and again.note is None
    assert same_tables(store, again)


def test_a_cache_is_reused_only_for_the_same_weights_and_settings(model, sae, dm, built):
    store, folder = built
    settings = {"max_tokens": 65_536, **SETTINGS, "data": None}
    key = store_key(model, sae, settings)
    assert key == store.key == store_key(copy.deepcopy(model), copy.deepcopy(sae), settings)

    def changed(obj, name):
        other = copy.deepcopy(obj)
        with torch.no_grad():
            dict(other.named_parameters())[name].view(-1)[7] += 1e-3   # one element
        return other

    for other_sae in (changed(sae, "W_enc"), changed(sae, "W_dec"), changed(sae, "b_enc")):
        assert store_key(model, other_sae, settings) != key
    assert store_key(changed(model, "blocks.1.mlp.W_out"), sae, settings) != key
    assert store_key(model, sae, {**settings, "k": 6}) != key
    moved = copy.deepcopy(sae)
    moved.cfg.metadata.hook_name = "blocks.1.hook_resid_pre"
    assert store_key(model, moved, settings) != key

    other = copy.deepcopy(sae)
    with torch.no_grad():
        other.W_enc.mul_(1.1)
    rebuilt = load_or_build(model, other, dm.val_dataloader(), folder, **SETTINGS)
    assert rebuilt.loaded_from is None and rebuilt.build_s > 0 and rebuilt.key != key
    assert not torch.equal(rebuilt.collector.top.value, store.collector.top.value)
    fewer = load_or_build(model, sae, dm.val_dataloader(), folder, **SETTINGS, max_tokens=100)
    assert fewer.loaded_from is None and 100 <= fewer.collector.n_tokens < store.collector.n_tokens
    assert len(list(folder.glob("*.pt"))) == 3
    other_data = load_or_build(model, sae, dm.val_dataloader(), folder, **SETTINGS, data_key="another", progress=True)
    assert other_data.loaded_from is None and other_data.key != key and same_tables(other_data, store)


def test_a_cut_short_or_foreign_cache_file_is_rebuilt_in_place(model, sae, dm, tmp_path):
    first = load_or_build(model, sae, dm.val_dataloader(), tmp_path, **SETTINGS)
    whole = first.path.read_bytes()
    for damage in (whole[:len(whole) // 2], b"", b"not a torch file"):
        first.path.write_bytes(damage)
        store = load_or_build(model, sae, dm.val_dataloader(), tmp_path, **SETTINGS)
        assert store.loaded_from is None and store.build_s > 0 and same_tables(store, first)
        assert store.note.startswith(f"rebuilt {first.path.name}: the cached file could not be read")
        loaded = load_or_build(model, sae, never(), tmp_path, **SETTINGS)   # replaced by a whole file
        assert loaded.loaded_from == first.path and same_tables(loaded, first)
    # a whole file of another key (copied or renamed by hand) is not taken for this one
    other = tmp_path / "other"
    other.mkdir()
    (other / first.path.name).write_bytes(whole.replace(first.key.encode(), b"0" * len(first.key)))
    assert "could not be read" in load_or_build(model, sae, dm.val_dataloader(), other, **SETTINGS).note
    assert list(tmp_path.glob(".*tmp*")) == []   # no temporaries left


def test_a_folder_that_cannot_be_written_keeps_the_store_in_memory(model, sae, dm, tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    store = load_or_build(model, sae, dm.val_dataloader(), blocker / "cache", **SETTINGS)   # mkdir fails
    assert store.path is None and store.collector.n_tokens > 0 and "kept in memory only: cannot write" in store.note
    page = feature_page(store, model, sae, dm.tokenizer, 3, None, blocker / "cache")
    assert page["cached"] is False and "cannot write" in page["note"] and page["feature"] == 3

    def read_only(*args, **kwargs):   # tests run as root, which chmod does not stop: a read-only mount's error
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("interp.files.tempfile.mkstemp", read_only)
    store = load_or_build(model, sae, dm.val_dataloader(), tmp_path / "ro", **SETTINGS)
    assert store.path is None and "Read-only file system" in store.note and not list((tmp_path / "ro").glob("*"))


def test_a_page_is_describe_plus_ablation_and_comes_back_from_the_cache(model, sae, dm, built):
    store, folder = built
    feats, _ = brute_force(model, sae, dm)
    f = int((feats > 0).sum(0).argmax())
    ablate = list(islice(dm.val_dataloader(), 1))
    page = feature_page(store, model, sae, dm.tokenizer, f, ablate, folder)
    assert page["cached"] is False and page["seconds"] > 0 and (folder / store.name / f"feature_{f}.json").is_file()
    # against an independent pass: top values, count and max from brute force
    assert page["count"] == int((feats[:, f] > 0).sum()) and page["max"] == pytest.approx(feats[:, f].max().item())
    best = feats[:, f].topk(SETTINGS["k"]).values.tolist()
    assert [c["acts"][c["at"]] for c in page["top"]] == pytest.approx(best, abs=1e-4)
    top = page["top"][0]
    assert top["acts"][top["at"]] == pytest.approx(top["value"])
    assert page["logits"]["top"][0][1] == pytest.approx(logit_effects(model, sae, f).max().item(), rel=1e-5)
    fresh = describe(model, sae, store.collector, store.corpus, [f], [f], dm.tokenizer)[0]
    assert {k: v for k, v in page.items() if k not in ("loss_delta", "loss_delta_where_active", "seconds", "cached")} \
        == fresh
    assert page["loss_delta"] != 0
    cached = feature_page(store, model, sae, dm.tokenizer, str(f), ablate, folder)   # digits, as from a URL
    assert cached.pop("cached") is True and page.pop("cached") is False and cached == page
    # a page cached without the ablation effect is built again when it is asked for
    g = (f + 1) % D_SAE
    assert "loss_delta" not in feature_page(store, model, sae, dm.tokenizer, g, None, folder)
    assert feature_page(store, model, sae, dm.tokenizer, g, None, folder)["cached"] is True
    with_ablation = feature_page(store, model, sae, dm.tokenizer, g, ablate, folder)
    assert with_ablation["cached"] is False and "loss_delta" in with_ablation
    # a page file cut short is built again
    path = folder / store.name / f"feature_{f}.json"
    path.write_text(path.read_text()[:50])
    assert feature_page(store, model, sae, dm.tokenizer, f, None, folder)["cached"] is False
    json.loads(path.read_text())
    for bad in (D_SAE, -1, "x", 1.5):
        with pytest.raises(ConfigError, match=rf"this SAE has {D_SAE} features"):
            feature_page(store, model, sae, dm.tokenizer, bad, None, folder)


def test_top_logits_of_the_list_agree_with_logit_effects(model, sae, dm, built, monkeypatch):
    store, folder = built
    rows = feature_rows(store, model, sae, dm.tokenizer, cache_dir=folder)
    ids = top_logit_ids(model, sae, 3, max_elements=5 * model.cfg.d_vocab)   # chunks of 5 features
    assert ids.shape == (D_SAE, 3)
    for f in (0, 7, 33, D_SAE - 1):
        table = logit_effects(model, sae, f)
        assert torch.allclose(table[ids[f]], table.topk(3).values, atol=1e-5), f
        assert rows[f]["top_logits"] == dm.tokenizer.decode_tokens(ids[f].tolist())
    # kept beside the store: a fresh load of it does not compute them again
    monkeypatch.setattr("interp.features.store.top_logit_ids", fail)
    loaded = load_or_build(model, sae, never(), folder, **SETTINGS)
    assert feature_rows(loaded, model, sae, dm.tokenizer, cache_dir=folder) == rows
    monkeypatch.undo()
    # a dictionary whose decode rescales its output: directions by decode, still logit_effects' order
    scaled = copy.deepcopy(sae)
    gain = torch.linspace(0.1, 3.0, 32)   # per dimension: W_dec's rows alone would give another order
    scaled.decode = lambda acts, decode=scaled.decode: gain * decode(acts) + 1.0
    scaled_ids = top_logit_ids(model, scaled, 3, max_elements=7 * model.cfg.d_vocab)
    assert not torch.equal(scaled_ids, ids)
    for f in (1, 40):
        table = logit_effects(model, scaled, f)
        assert torch.allclose(table[scaled_ids[f]], table.topk(3).values, atol=1e-4), f
    hook_z = tiny_sae(hook="blocks.0.attn.hook_z", d_in=32)
    z_store = load_or_build(model, hook_z, islice(dm.val_dataloader(), 1), None, **SETTINGS)
    assert all(r["top_logits"] == [] for r in feature_rows(z_store, model, hook_z, dm.tokenizer))


def transcoder(layer: int, d_sae: int = 48) -> Transcoder:
    torch.manual_seed(layer)
    tc = Transcoder(TranscoderConfig(d_in=32, d_sae=d_sae, d_out=32, apply_b_dec_to_input=False))
    with torch.no_grad():
        for p in tc.parameters():
            p.normal_()
        tc.b_enc -= 4.0
    tc.cfg.metadata.hook_name = f"blocks.{layer}.ln2.hook_normalized"
    tc.cfg.metadata.hook_name_out = f"blocks.{layer}.hook_mlp_out"
    return tc


def test_text_features_are_each_dictionarys_top_features_from_one_forward_pass():
    model = tiny_model(n_ctx=64)
    saes = {"resid0": tiny_sae(), "resid1_pre": tiny_sae(hook="blocks.1.hook_resid_pre", seed=1),
            "z0": tiny_sae(hook="blocks.0.attn.hook_z", d_in=32, seed=2), "tc1": transcoder(1)}
    tokens = torch.randint(256, 512, (1, 64), generator=torch.Generator().manual_seed(0))
    calls = {"embed": 0, "unembed": 0}
    counters = [getattr(model, name).register_forward_hook(lambda *_, name=name: calls.update({name: calls[name] + 1}))
                for name in calls]
    try:
        got = text_features(model, saes, tokens, top=3)
    finally:
        for handle in counters:
            handle.remove()
    assert calls == {"embed": 1, "unembed": 0}   # one pass, stopped before the unembedding
    assert list(got) == list(saes)
    for label, sae in saes.items():
        feats = feature_acts(model, sae, tokens)[0]
        assert len(got[label]) == 64, label
        assert [t["n_active"] for t in got[label]] == (feats > 0).sum(-1).tolist(), label
        for pos in range(64):
            values, ids = feats[pos].topk(3)
            want = [(f, v) for f, v in zip(ids.tolist(), values.tolist()) if v > 0]
            have = [(x["feature"], x["act"]) for x in got[label][pos]["features"]]
            assert [f for f, _ in have] == [f for f, _ in want] and \
                [v for _, v in have] == pytest.approx([v for _, v in want], abs=1e-5), (label, pos)
        assert sum(t["n_active"] for t in got[label]) > 0, label
    start = time.perf_counter()
    text_features(model, saes, tokens[0])   # [T] works too
    assert time.perf_counter() - start < 1.0
