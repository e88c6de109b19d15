"""The SAE feature study (interp.features): known-answer rankings and specialist scores, padding
invariance, probe files and their bad input, offline HTML. Real tiny models and SAELens SAEs, no training."""

import fnmatch
import json
import re

import pytest
import torch
from conftest import REPO
from sae_lens import TopKSAE, TopKSAEConfig
from transformer_lens import HookedTransformer, HookedTransformerConfig

from interp.data.tokenizer import Tokenizer
from interp.errors import ConfigError, DataError
from interp.features import layers
from interp.features.extract import extract, summarize
from interp.features.highlight import highlight_page, neuronpedia_url, readable_tokens
from interp.features.indices import check_feature_index
from interp.features.probes import CATEGORIES, builtin_probes, read_probe_file
from interp.features.rankings import (
    coactivation,
    consistency,
    feature_stats,
    rankings,
    specialists,
    strong,
)
from interp.features.study import metrics, study

HOOK = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer(1024)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_ctx=96, d_head=8, n_heads=4, d_vocab=1024, d_mlp=64,
                                  act_fn="gelu", normalization_type="LN")
    return HookedTransformer(cfg).eval()


@pytest.fixture(scope="module")
def sae():
    torch.manual_seed(1)
    sae = TopKSAE(TopKSAEConfig(d_in=32, d_sae=64, k=6))
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_()
    sae.cfg.metadata.hook_name = HOOK
    return sae.eval()


# ------------------------------------------------------------------ known answers on a hand-made matrix
#            f0   f1   f2   f3
MEAN = torch.tensor([
    [4.0, 1.0, 0.0, 0.0],   # a
    [3.0, 1.0, 0.0, 0.0],   # a
    [2.0, 1.0, 0.0, 0.0],   # a
    [0.0, 1.0, 9.0, 0.0],   # b
    [0.0, 1.0, 1.0, 0.0],   # b
    [1.0, 1.0, 0.0, 0.0],   # c
])
PEAK = MEAN * 2
CATS = ["a", "a", "a", "b", "b", "c"]


def test_strong_is_half_the_features_max():
    s = strong(MEAN)
    assert s[:, 0].tolist() == [True, True, True, False, False, False]    # >= 2.0
    assert s[:, 1].all() and s[:, 2].tolist() == [False, False, False, True, False, False]
    assert not s[:, 3].any()                                             # silent everywhere: never strong


def test_rankings_known_answers():
    stats = feature_stats(MEAN, PEAK)
    assert stats["max_activation"].tolist() == [8.0, 2.0, 18.0, 0.0]
    assert stats["frequency"].tolist() == pytest.approx([4 / 6, 1.0, 2 / 6, 0.0])
    assert stats["mean_when_active"].tolist() == pytest.approx([10 / 4, 1.0, 5.0, 0.0])
    assert stats["composite"].tolist() == pytest.approx([4 / 6 * 2.5, 1.0, 2 / 6 * 5.0, 0.0])
    assert stats["selectivity"].tolist() == pytest.approx([4 / 3, 1 / 6, 9.0, 0.0])
    r = rankings(MEAN, PEAK, k=3)
    assert [x["feature"] for x in r["strongest"]] == [2, 0, 1]
    assert [x["feature"] for x in r["most_frequent"]] == [1, 0, 2]
    assert [x["feature"] for x in r["most_selective"]] == [2, 0, 1]
    assert [x["feature"] for x in r["composite"]] == [0, 2, 1]          # 1.667, 1.667 (tie: lower index), 1.0
    assert all(3 not in [x["feature"] for x in v] for v in r.values())  # a dead feature ranks nowhere


def test_coactivation_counts_texts_where_both_fire():
    assert coactivation(PEAK, [0, 1, 2]) == [[4, 4, 0], [4, 6, 2], [0, 2, 2]]


def test_specialist_scores_known_answers():
    spec = specialists(MEAN, CATS, ["a", "b", "c"])
    assert spec["a"] == {"feature": 0, "score": 3, "inside": 3, "outside": 0, "n_texts": 3, "found": True}
    assert spec["b"]["feature"] == 2 and spec["b"]["score"] == 1 and (spec["b"]["inside"], spec["b"]["outside"]) == (1, 0)
    # c: f1 is strong on all 6 texts (1 - 5 = -4), f0 on a's 3 only (0 - 3); the best is 0 (silent f3)
    assert spec["c"]["score"] == 0 and spec["c"]["feature"] == 3 and not spec["c"]["found"]
    assert not specialists(MEAN, CATS, ["a", "b", "c"], min_score=2)["b"]["found"]


def test_consistency_across_saes():
    found = {"L0": {"a": True, "b": False, "c": False}, "L1": {"a": True, "b": True, "c": False}}
    assert consistency(found) == {"always": ["a"], "sometimes": ["b"], "never": ["c"]}


# ------------------------------------------------------------------ padding


def test_summaries_ignore_padding_values():
    torch.manual_seed(0)
    acts = torch.rand(3, 5, 4)
    mask = torch.tensor([[0, 1, 1, 0, 0], [0, 1, 1, 1, 1], [0, 1, 0, 0, 0]], dtype=torch.bool)
    mean, peak = summarize(acts, mask)
    assert torch.allclose(mean[0], acts[0, 1:3].mean(0)) and torch.allclose(peak[2], acts[2, 1])
    noisy = torch.where(mask[..., None], acts, torch.full_like(acts, 100.0))   # padding full of large values
    assert torch.equal(summarize(noisy, mask)[0], mean) and torch.equal(summarize(noisy, mask)[1], peak)


def test_adding_padding_changes_nothing(model, sae, tokenizer):
    short = ["x = 1", "hello there", "f(x) = x^2"]
    alone = extract(model, sae, tokenizer, short, features=[0, 5])
    long_text = "a much longer text that forces every other text in the batch to be padded " * 3
    padded = extract(model, sae, tokenizer, [*short, long_text], features=[0, 5], batch_size=8)
    assert padded.tokens.shape[1] > alone.tokens.shape[1] + 20
    assert torch.allclose(padded.mean[:3], alone.mean, atol=1e-5)
    assert torch.allclose(padded.max[:3], alone.max, atol=1e-5)
    width = alone.tokens.shape[1]
    assert torch.allclose(padded.per_token[5][:3, :width], alone.per_token[5], atol=1e-5)
    assert not padded.mask[:3, width:].any() and (padded.per_token[5][:3, width:] == 0).all()
    assert not padded.mask[:, 0].any()          # the leading [eot] is no text token
    # the naive average over all positions (S1's first bug) does change with padding
    naive_alone = alone.mean * alone.mask.sum(1, keepdim=True) / width
    naive_padded = padded.mean[:3] * padded.mask[:3].sum(1, keepdim=True) / padded.tokens.shape[1]
    assert not torch.allclose(naive_alone, naive_padded)


# ------------------------------------------------------------------ probe sets


def test_builtin_probes_have_ten_per_category_and_ship_as_package_data():
    p = builtin_probes()
    assert p.category_names() == list(CATEGORIES)
    assert all(p.categories.count(c) >= 10 for c in CATEGORIES)
    assert any("\n    return" in t for t in p.texts) and any("\\frac{1}{3}" in t for t in p.texts)
    assert len(set(p.texts)) == len(p.texts)
    listed = re.search(r'^"interp\.features" = \[(.*?)\]', (REPO / "pyproject.toml").read_text(), re.MULTILINE)
    globs = re.findall(r'"([^"]+)"', listed.group(1))   # [tool.setuptools.package-data]
    data = [f.name for f in (REPO / "interp" / "features").iterdir() if f.suffix not in (".py", ".pyc") and f.is_file()]
    assert data and all(any(fnmatch.fnmatch(name, g) for g in globs) for name in data)


def test_user_probe_files_tsv_and_json(tmp_path):
    tsv = tmp_path / "p.tsv"
    tsv.write_text("# mine\nmath\t1 + 1 = 2\npython\tdef f():\\n    pass\n\nformal\tDear Sir\n", encoding="utf-8")
    p = read_probe_file(tsv)
    assert p.categories == ["math", "python", "formal"] and p.texts[1] == "def f():\n    pass"
    js = tmp_path / "p.json"
    js.write_text(json.dumps({"social": ["lol 😂"], "web": ["https://x.org"]}))
    assert read_probe_file(js).texts == ["lol 😂", "https://x.org"]
    js.write_text(json.dumps([{"category": "math", "text": "2 x 3"}]))
    assert read_probe_file(js).categories == ["math"]


@pytest.mark.parametrize("content, message", [
    ("math\t1 + 1\ncooking\tadd salt\n", "unknown category 'cooking'"),
    ("math\t1 + 1\nweb\t   \n", "line 2: the text is empty"),
    ("math 1 + 1\n", "has no tab"),
    (b"math\tcaf\xe9\n", "is not UTF-8"),
])
def test_bad_probe_files(tmp_path, content, message):
    path = tmp_path / "bad.tsv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises((ConfigError, DataError), match=re.escape(message)) as e:
        read_probe_file(path)
    assert "Fix:" in str(e.value)


def test_feature_index_out_of_range_names_the_width(sae):
    assert check_feature_index(sae, 63) == 63 and check_feature_index(sae, "7") == 7
    with pytest.raises(ConfigError, match=r"feature 64 is out of range: this SAE has 64 features \(0\.\.63\)\. Fix"):
        check_feature_index(sae, 64)
    with pytest.raises(ConfigError, match="not a feature index"):
        check_feature_index(sae, "abc")


def test_sae_that_does_not_fit_the_model(model, tokenizer):
    wrong = TopKSAE(TopKSAEConfig(d_in=16, d_sae=32, k=4))
    wrong.cfg.metadata.hook_name = HOOK
    with pytest.raises(ConfigError, match="d_in=16"):
        extract(model, wrong, tokenizer, ["x"])
    wrong = TopKSAE(TopKSAEConfig(d_in=32, d_sae=32, k=4))
    wrong.cfg.metadata.hook_name = "blocks.7.hook_resid_post"
    with pytest.raises(ConfigError, match="does not exist on this model"):
        extract(model, wrong, tokenizer, ["x"])


# ------------------------------------------------------------------ HTML that renders offline


def assert_offline(page: str):
    """No resource fetched from the network: no script/link/img/iframe src or href, no CSS url() or @import."""
    assert not re.search(r"<(script|img|iframe|link)[^>]*\s(src|href)\s*=", page, re.IGNORECASE)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page, re.IGNORECASE) and "@import" not in page
    assert not re.search(r"@font-face", page, re.IGNORECASE)


def test_highlight_page_offline_with_hover_values_and_neuronpedia_link(sae):
    texts = [{"category": "math", "tokens": ["1", " +", " 1"], "values": [0.0, 2.5, 0.5]},
             {"category": "web", "tokens": ["<a>", "</script>"], "values": [1.0, 0.0]}]
    page = highlight_page(7, texts, title="t", target="math", link="https://www.neuronpedia.org/gpt2-small/6-res-jb/7")
    assert_offline(page)
    assert 'title="2.5"' in page and "rgba(255,140,0,1.000)" in page and "&lt;/script&gt;" in page
    assert page.index("<h2>math") < page.index("<h2>web")
    assert neuronpedia_url(sae, 7) is None
    sae.cfg.metadata.neuronpedia_id = "gpt2-small/6-res-jb"
    try:
        assert neuronpedia_url(sae, 7) == "https://www.neuronpedia.org/gpt2-small/6-res-jb/7"
    finally:
        sae.cfg.metadata.neuronpedia_id = None


def test_study_and_layer_comparison(model, sae, tokenizer, tmp_path):
    probes = builtin_probes()
    result = study(model, sae, tokenizer, probes, k=5)
    assert result["n_texts"] == len(probes) and set(result["specialists"]) == set(CATEGORIES)
    m = metrics(result)
    assert m["specialists_found"] == sum(m[f"specialist_score/{c}"] >= 1 for c in CATEGORIES)
    other = study(model, sae, tokenizer, probes, k=5, min_score=100)
    s = layers.summary({"blocks.0.hook_resid_pre": other, HOOK: result})
    assert s["scores"]["math"][HOOK] == result["specialists"]["math"]["score"]
    assert s["specialists_found"]["blocks.0.hook_resid_pre"] == 0
    assert s["consistency"]["always"] == [] and len(s["consistency"]["never"]) == 7 - result["specialists_found"]
    paths = layers.write(s, tmp_path)
    assert {p.name for p in paths} >= {"specialist_scores.png", "strongest.png", "most_frequent.png",
                                       "specialists_found.png", "feature_layers.html", "summary.md"}
    page = (tmp_path / "feature_layers.html").read_text()
    assert_offline(page)
    assert "Plotly.newPlot" in page and len(page) > 1_000_000      # plotly.js inline, not from a CDN
    assert layers.layer_of("blocks.3.hook_resid_pre") < layers.layer_of("blocks.3.hook_resid_post") < \
        layers.layer_of("blocks.4.hook_resid_pre")


def test_tokens_cut_inside_a_character_are_merged_for_display():
    laugh = "😂".encode()                                   # 4 bytes, split over two byte-level tokens here
    pieces, values = readable_tokens([b"lol ", laugh[:2], laugh[2:], b"!", b"\xff"], [1.0, 5.0, 2.0, 0.5, 0.0])
    assert pieces == ["lol ", "😂", "!", "\ufffd"] and values == [1.0, 5.0, 0.5, 0.0]
