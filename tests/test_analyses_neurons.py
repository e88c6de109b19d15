"""Known-answer tests of the neuron / hidden-state / bigram / k-gram analyses on tiny hand-set models."""

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from interp.analyses import ANALYSES, bigram, kgram_attribution, neurons
from interp.analyses.ngram import bigram_counts
from interp.data.base import ArrayDataset, BaseDataModule, lm_batch
from interp.data.tokenizer import Tokenizer
from interp.errors import ConfigError, NotApplicable
from interp.models import LSTMLM, ArithmeticMLP, KGramMLP
from interp.models.hooks import check_hook

V = 300   # smallest convenient GPT-2 BPE truncation (>= 257)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and on a busy shared CPU spinning OpenMP threads
    (torch SVD, sklearn t-SNE) made this file ~20x slower."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


class TinyDM(BaseDataModule):
    """In-memory datamodule: the same rows for train and val; `stream` is the training token stream."""

    def __init__(self, arrays, tokenizer=None, stream=None, to_batch=lm_batch):
        super().__init__(SimpleNamespace(batch_size=16, num_workers=0), seed=0)
        self.arrays, self.tokenizer, self.stream, self.to_batch = arrays, tokenizer, stream, to_batch
        self.setup()

    def build(self):
        ds = ArrayDataset(self.arrays, self.to_batch)
        return ds, ds, None

    def token_streams(self):
        return {"train": self.stream, "val": self.stream}


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer(V)


@pytest.fixture(scope="module")
def lm_dm(tokenizer):
    """64 sequences of 17 tokens drawn from ids 0..19 (each id seen ~50 times)."""
    seqs = np.random.default_rng(0).integers(0, 20, size=(64, 17)).astype(np.uint16)
    return TinyDM({"seq": seqs}, tokenizer)


def transformer(n_layers: int, d_model: int = 16, **kw) -> HookedTransformer:
    cfg = dict(n_layers=n_layers, d_model=d_model, n_heads=2, d_head=8, d_mlp=32, n_ctx=32, d_vocab=V,
               act_fn="gelu", normalization_type=None, positional_embedding_type="shortformer", seed=0) | kw
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return HookedTransformer(HookedTransformerConfig(**cfg)).eval()


def markov_table(seed: int = 0) -> np.ndarray:
    """Row-stochastic P [V, V] with one dominant next token (p=0.5) per row, the rest near uniform."""
    rng = np.random.default_rng(seed)
    p = 0.5 * rng.dirichlet(np.full(V, 5.0), size=V)
    p[np.arange(V), rng.permutation(V)] += 0.5
    return p


def table_model(table: np.ndarray) -> HookedTransformer:
    """0-layer transformer with W_E = log P, W_U = I, b_U = 0: its bigram table is exactly log P."""
    model = transformer(0, d_model=V)
    with torch.no_grad():
        model.W_E.copy_(torch.tensor(np.log(table), dtype=torch.float32))
        model.W_U.copy_(torch.eye(V))
        model.b_U.zero_()
    return model


@pytest.fixture(scope="module")
def bigram_model():
    table = markov_table()
    return table_model(table), table


def test_bigram_table_returns_known_top_next_and_predecessors(bigram_model):
    model, table = bigram_model
    a, b = 7, 123
    next_ids, next_p = zip(*bigram.top_next(model, a, n=5))
    assert list(next_ids) == np.argsort(-table[a])[:5].tolist()
    assert np.allclose(next_p, np.sort(table[a])[::-1][:5], atol=1e-5)
    (pred,) = bigram.top_predecessors(model, [b], n=5)
    assert [i for i, _ in pred] == np.argsort(-table[:, b])[:5].tolist()
    assert np.allclose([p for _, p in pred], np.sort(table[:, b])[::-1][:5], atol=1e-5)
    # The model's own forward pass is that table (0-layer, shortformer): the analysis reads the real model.
    forward = model(torch.tensor([[a]]))[0, 0].log_softmax(-1)
    assert torch.allclose(forward, bigram.bigram_log_probs(model)[a], atol=1e-5)


def test_bigram_agrees_with_data_sampled_from_its_table(bigram_model):
    model, table = bigram_model
    rng = np.random.default_rng(1)
    cdf, stream = table.cumsum(1), [0]
    for u in rng.random(120_000):
        stream.append(min(int(np.searchsorted(cdf[stream[-1]], u)), V - 1))
    counts = bigram_counts(np.array(stream), V)
    result = bigram.agreement(model, counts, min_count=100)
    assert result["n_contexts"] == V and result["top1_agreement"] == 1.0
    # Only sampling noise is left: KL(empirical || true) ~ (V - 1) / (2 * 400 counts per context) = 0.37 nats.
    assert result["kl_empirical_to_model"] == pytest.approx(0.37, abs=0.1)
    other = bigram.agreement(table_model(markov_table(seed=1)), counts, min_count=100)
    assert other["top1_agreement"] < 0.05 and other["kl_empirical_to_model"] > 2


def test_bigram_run_writes_tables_and_maps(bigram_model, tokenizer, tmp_path):
    model, table = bigram_model
    stream = np.random.default_rng(2).integers(0, V, 50_000)
    dm = TinyDM({"seq": stream[:17 * 64].reshape(64, 17)}, tokenizer, stream)
    token = tokenizer.decode([65])
    results = bigram.run(model, dm, tmp_path, token=token, min_count=100, tsne_tokens=100)
    assert {"top1_agreement", "kl_empirical_to_model", "pca/var_ratio_pc1"} <= set(results)
    top = np.argsort(-table[65])[0]
    row = f"| `{token!r}` | `{tokenizer.decode([top])!r}` {table[65, top]:.3f},"   # its top next token first
    assert row in (tmp_path / "bigram_table.md").read_text()
    for name in ("bigram_heatmap.png", "embedding_map.png"):
        assert (tmp_path / name).stat().st_size > 5000
    with pytest.raises(ConfigError, match="single token"):
        bigram.run(model, dm, tmp_path, token=" many tokens here")
    with pytest.raises(NotApplicable, match="direct path"):
        bigram.run(transformer(1), dm, tmp_path)


def test_top_variance_neuron_is_the_one_given_variance(lm_dm, tmp_path):
    """Identity embedding, k=1: hidden neuron 7 = 5 * [token == 5], every other neuron is constant 0."""
    model = KGramMLP(V, k=1, d_embed=V, d_hidden=16, act_fn="relu").eval()
    with torch.no_grad():
        model.embed.weight.copy_(torch.eye(V))
        model.blocks[0].linear.weight.zero_()
        model.blocks[0].linear.bias.zero_()
        model.blocks[0].linear.weight[7, 5] = 5.0
    results = neurons.run(model, lm_dm, tmp_path, k=3)
    assert results["top0/neuron"] == 7 and results["top0/variance"] > 0
    assert results["top1/variance"] == 0 and results["var_share_top_k"] == pytest.approx(1.0)
    assert results["top0/token_purity"] == 1.0   # every top context ends on token 5
    table = (tmp_path / "top_neurons.md").read_text()
    assert f"`{lm_dm.tokenizer.decode([5])!r}` 5.00" in table
    assert (tmp_path / "top_neurons.png").stat().st_size > 5000


def test_kgram_attribution_finds_the_only_window_slot_used(lm_dm, tmp_path):
    """Window k=4; the first layer reads only slot 2 (token t-1): all attribution goes there."""
    torch.manual_seed(0)
    model = KGramMLP(V, k=4, d_embed=8, d_hidden=16).eval()
    with torch.no_grad():
        model.blocks[0].linear.weight.unflatten(1, (4, 8))[:, [0, 1, 3]] = 0
        model.unembed.weight.mul_(10)   # sharper predictions, so ablating the slot changes the loss visibly
    results = kgram_attribution.run(model, lm_dm, tmp_path, k=5)
    assert results["gxi_share/t-1"] == pytest.approx(1.0)
    assert all(results[f"ablation_dce/{s}"] == 0 for s in ("t-3", "t-2", "t-0"))
    assert abs(results["ablation_dce/t-1"]) > 1e-3
    assert {f"neuron_top{r}/index" for r in range(5)} <= set(results)
    assert (tmp_path / "attribution.png").stat().st_size > 5000


def test_hook_typo_lists_valid_hooks(lm_dm, tmp_path):
    model = LSTMLM(V, d_embed=8, d_hidden=8, n_layers=2)
    assert check_hook(model, "blocks.1.hook_hidden") == "blocks.1.hook_hidden"
    with pytest.raises(ConfigError, match="valid hooks") as err:
        neurons.run(model, lm_dm, tmp_path, hook="blocks.0.hook_hiden")
    assert "blocks.0.hook_hidden" in str(err.value) and "hook_embed" in str(err.value)
    with pytest.raises(ConfigError, match="attention weights"):
        neurons.run(transformer(1), lm_dm, tmp_path, hook="blocks.0.attn.hook_pattern")


def test_analyses_that_do_not_apply_say_why(lm_dm, tmp_path):
    with pytest.raises(NotApplicable, match="no LSTM"):
        ANALYSES["lstm_hidden"](transformer(1), lm_dm, tmp_path)
    with pytest.raises(NotApplicable, match="no k-gram"):
        ANALYSES["kgram_attribution"](LSTMLM(V, d_embed=8, d_hidden=8, n_layers=1), lm_dm, tmp_path)
    with pytest.raises(NotApplicable, match="no transformer"):
        ANALYSES["bigram"](LSTMLM(V, d_embed=8, d_hidden=8, n_layers=1), lm_dm, tmp_path)


def test_lm_figures_on_prompt_and_default_example(lm_dm, tmp_path):
    lstm = LSTMLM(V, d_embed=8, d_hidden=12, n_layers=2).eval()
    results = ANALYSES["lstm_hidden"](lstm, lm_dm, tmp_path / "lstm", prompt="Hello world")
    assert {"L0/mean_abs", "L1/saturated_frac"} <= set(results)
    assert 0 < results["L1/mean_abs"] < 1   # h_t = o * tanh(c) lies in (-1, 1)
    results = ANALYSES["hidden_pca"](lstm, lm_dm, tmp_path / "pca")
    assert set(results) == {f"{h}/{m}" for h in ("hook_embed", "blocks.0.hook_hidden", "blocks.1.hook_hidden")
                            for m in ("pc1_var_ratio", "pc2_var_ratio", "participation_ratio")}
    model = transformer(2)
    results = ANALYSES["topk_next"](model, lm_dm, tmp_path / "topk", prompt="Hello world", k=3)
    assert 0 <= results["next_top1_acc"] <= results["next_in_top3"] <= 1
    assert 0 <= ANALYSES["topk_next"](model, lm_dm, tmp_path / "topk_val")["scored_top1_acc"] <= 1
    results = ANALYSES["hidden_pca"](model, lm_dm, tmp_path / "pca_tf")
    assert "blocks.1.hook_resid_post/participation_ratio" in results
    with pytest.raises(ConfigError, match="n_ctx=32"):
        ANALYSES["topk_next"](model, lm_dm, tmp_path / "topk", prompt="word " * 40)
    for png in ("lstm/hidden_states.png", "pca/hidden_pca.png", "topk/topk_next.png", "pca_tf/hidden_pca.png"):
        assert (tmp_path / png).stat().st_size > 5000, png


def test_neurons_and_pca_on_a_model_without_tokens(tmp_path):
    """The arithmetic MLP has one output per input row: neurons list top inputs, no prompt."""
    x = np.random.default_rng(0).integers(0, 10, size=(64, 10))
    dm = TinyDM({"x": x, "y": np.zeros(64, np.float32)}, to_batch=None)
    model = ArithmeticMLP(d_hidden=[16, 8]).eval()
    results = neurons.run(model, dm, tmp_path, k=3)
    assert results["n_rows"] == 64 and results["n_neurons"] == 8   # default hook: last hidden layer
    assert "top_inputs" in (tmp_path / "top_neurons.json").read_text()
    assert "blocks.1.hook_post/pc1_var_ratio" in ANALYSES["hidden_pca"](model, dm, tmp_path)
    with pytest.raises(NotApplicable):
        ANALYSES["topk_next"](model, dm, tmp_path)
