"""0-layer transformer as a bigram table: log P(b | a) = log_softmax(W_E[a] @ W_U + b_U).

With no blocks the model's whole computation is that table (exactly with
shortformer positions, which enter only attention and a 0-layer model has none;
a learned "standard" position embedding adds a position term this table leaves
out, and LayerNorm, if any, is applied).
For n_layers > 0 the same product is only the direct path: attention and MLPs
change the prediction, so calling it "the model's bigram table" and scoring its
agreement with the data would mislead; the analysis is NotApplicable there.

Agreement with the empirical bigram of the training split is measured on
contexts seen at least `min_count` times: top-1 agreement and the
count-weighted KL(P_emp(.|a) || P_model(.|a)) = CE of the model on the
training bigrams minus their entropy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from transformer_lens import HookedTransformer

from interp.analyses.ngram import bigram_counts
from interp.errors import ConfigError, NotApplicable


@torch.no_grad()
def bigram_log_probs(model: HookedTransformer, contexts: torch.Tensor | None = None) -> torch.Tensor:
    """log P(b | a) [len(contexts), d_vocab] for context tokens a (all tokens if None)."""
    w_e = model.W_E if contexts is None else model.W_E[contexts.to(model.W_E.device)]
    resid = model.ln_final(w_e) if hasattr(model, "ln_final") else w_e   # LN acts per token
    return (resid @ model.W_U + model.b_U).log_softmax(-1).float().cpu()


def top_next(model, token: int, n: int = 10) -> list[tuple[int, float]]:
    """The n most likely next tokens after `token`, with their probabilities."""
    top = bigram_log_probs(model, torch.tensor([token]))[0].topk(n)
    return list(zip(top.indices.tolist(), top.values.exp().tolist()))


def top_predecessors(model, tokens: list[int], n: int = 10, chunk: int = 1024) -> list[list[tuple[int, float]]]:
    """For each of `tokens`, the n tokens a that make it most likely next, with P(token | a)."""
    d_vocab, tokens = model.cfg.d_vocab, torch.as_tensor(tokens)
    columns = torch.cat([bigram_log_probs(model, torch.arange(i, min(i + chunk, d_vocab)))[:, tokens]
                         for i in range(0, d_vocab, chunk)])   # [d_vocab, len(tokens)], one pass over the table
    top = columns.topk(n, dim=0)
    return [list(zip(top.indices[:, j].tolist(), top.values[:, j].exp().tolist())) for j in range(len(tokens))]


def empirical_rows(counts, contexts: np.ndarray, vocab: int) -> np.ndarray:
    """Dense empirical P(b | a) [len(contexts), vocab] from `bigram_counts` output."""
    pair_ids, pair_counts, context_counts = counts
    rows = np.zeros((len(contexts), vocab), dtype=np.float32)
    for i, a in enumerate(contexts):
        lo, hi = np.searchsorted(pair_ids, [a * vocab, (a + 1) * vocab])
        rows[i, pair_ids[lo:hi] - a * vocab] = pair_counts[lo:hi]
    return rows / np.maximum(context_counts[contexts], 1)[:, None]


def agreement(model, counts, min_count: int = 100, chunk: int = 512) -> dict[str, float]:
    """Model table vs empirical bigram on contexts with c(a) >= min_count."""
    context_counts = counts[2]
    vocab = len(context_counts)
    contexts = np.flatnonzero(context_counts >= min_count)
    if len(contexts) == 0:
        raise ConfigError(f"no context token occurs {min_count} times in the training data; lower min_count=.")
    weights = context_counts[contexts].astype(np.float64)
    top1, ce, entropy = [], [], []
    for i in range(0, len(contexts), chunk):
        c = contexts[i:i + chunk]
        emp = torch.from_numpy(empirical_rows(counts, c, vocab))
        logp = bigram_log_probs(model, torch.from_numpy(c))
        top1.append((logp.argmax(-1) == emp.argmax(-1)).numpy())
        ce.append(-(emp * logp).sum(-1).numpy())
        entropy.append(-(emp * emp.clamp(min=1e-30).log()).sum(-1).numpy())
    top1, ce, entropy = map(np.concatenate, (top1, ce, entropy))
    return {"n_contexts": float(len(contexts)),
            "context_coverage": float(weights.sum() / context_counts.sum()),
            "top1_agreement": float(top1.mean()),
            "top1_agreement_weighted": float(np.average(top1, weights=weights)),
            "ce_on_train_bigrams": float(np.average(ce, weights=weights)),
            "entropy_train_bigrams": float(np.average(entropy, weights=weights)),
            "kl_empirical_to_model": float(np.average(ce - entropy, weights=weights))}


def train_stream(datamodule) -> np.ndarray:
    """The training split as one token stream (token-stream datasets; else the training rows joined)."""
    if hasattr(datamodule, "token_streams"):
        return datamodule.token_streams()["train"]
    return datamodule.train_ds.arrays["seq"].reshape(-1)


def resolve_token(token, tokenizer) -> int:
    """A token given as an id or as text that encodes to exactly one token."""
    if isinstance(token, int):
        return token
    ids = tokenizer.encode(str(token))
    if len(ids) != 1:
        raise ConfigError(f"token={token!r} is {len(ids)} tokens {tokenizer.decode_tokens(ids)}; "
                          "pass text that is a single token (mind the leading space, e.g. token=' the') or an id.")
    return ids[0]


def pca_2d(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(coordinates [N, 2] on the top two principal components, their explained-variance ratios [2])."""
    x = x - x.mean(0)
    _, s, v = torch.linalg.svd(x, full_matrices=False)
    return x @ v[:2].T, (s[:2] ** 2) / (s ** 2).sum()


def tsne_2d(x: torch.Tensor, seed: int = 0) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = min(30.0, (len(x) - 1) / 3)
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x.numpy())


def token_kind(text: str) -> str:
    """Coarse class of a token string, to colour the embedding map."""
    core = text.strip()
    if not core:
        return "whitespace"
    if core.isdigit():
        return "digits"
    if not any(ch.isalnum() for ch in core):
        return "punctuation"
    return "word (leading space)" if text[0] == " " else "word piece"


def plot_embedding_maps(maps: dict[str, tuple[np.ndarray, np.ndarray]], strings: list[str], n_labels: int, path):
    """One scatter per method; `maps[name] = (token ids, coords [n, 2])`, ids sorted by frequency,
    the first n_labels of them labelled."""
    from interp.viz import plt, save_figure, token_labels

    fig, axes = plt.subplots(1, len(maps), figsize=(8 * len(maps), 7), squeeze=False)
    for ax, (name, (ids, xy)) in zip(axes[0], maps.items()):
        kinds = np.array([token_kind(strings[i]) for i in ids])
        for kind in sorted(set(kinds)):
            sel = kinds == kind
            ax.scatter(xy[sel, 0], xy[sel, 1], s=4, alpha=0.5, label=kind)
        for i, label in enumerate(token_labels([strings[t] for t in ids[:n_labels]])):
            ax.annotate(label, xy[i], fontsize=7)
        ax.set_title(f"token embeddings W_E: {name} ({len(ids)} tokens, {n_labels} most frequent labelled)")
        ax.legend(markerscale=3, fontsize=7)
    save_figure(fig, path)


def plot_tables(model_p: np.ndarray, empirical_p: np.ndarray, strings: list[str], path):
    """Model vs empirical P(next | token) among the most frequent tokens."""
    from interp.viz import plt, save_figure, token_labels

    labels = token_labels(strings)
    fig, axes = plt.subplots(1, 2, figsize=(14, 7), layout="constrained")
    vmax = max(model_p.max(), empirical_p.max())
    for ax, table, title in zip(axes, (model_p, empirical_p), ("model", "training data")):
        im = ax.imshow(table, cmap="viridis", vmin=0, vmax=vmax)
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set(xlabel="next token b", ylabel="token a", title=f"P(b | a), {title}")
    fig.colorbar(im, ax=axes.tolist(), shrink=0.6)
    save_figure(fig, path)


def markdown(entries: list[dict]) -> str:
    def code(text) -> str:
        return f"`{text!r}`".replace("|", "\\|")

    def cell(pairs):
        return ", ".join(f"{code(t)} {p:.3f}" for t, p in pairs)

    lines = ["| token | top next P(b\\|a) (model) | top next (training data) | top predecessors P(token\\|a) |",
             "|---|---|---|---|"]
    lines += [f"| {code(e['token'])} | {cell(e['next'])} | {cell(e['next_empirical'])} | {cell(e['predecessors'])} |"
              for e in entries]
    return "\n".join(lines) + "\n"


def run(model, datamodule, out_dir, token=None, n: int = 10, min_count: int = 100, n_frequent: int = 25,
        tsne_tokens: int = 1000, n_labels: int = 60) -> dict[str, float]:
    """Bigram table (bigram_table.md/json for `token`, default the most frequent tokens), agreement with
    the training bigram, model-vs-data heatmap and the embedding map (PCA, t-SNE)."""
    if not isinstance(model, HookedTransformer):
        raise NotApplicable("bigram reads W_E and W_U of a 0-layer transformer; this model is no transformer")
    if model.cfg.n_layers > 0:
        raise NotApplicable(f"bigram needs a 0-layer transformer: with n_layers={model.cfg.n_layers} "
                            "W_E·W_U is only the direct path, not what the model predicts")
    tok, vocab = datamodule.tokenizer, model.cfg.d_vocab
    stream = train_stream(datamodule).astype(np.int64)
    counts, frequency = bigram_counts(stream, vocab), np.bincount(stream, minlength=vocab)
    by_frequency = np.argsort(-frequency, kind="stable")
    if token is None:
        tokens = by_frequency[:5].tolist()
    else:
        tokens = [resolve_token(t, tok) for t in (token if isinstance(token, (list, tuple)) else [token])]

    def named(pairs):
        return [(tok.decode([i]), p) for i, p in pairs]

    entries = []
    for t, predecessors in zip(tokens, top_predecessors(model, tokens, n)):
        emp = torch.from_numpy(empirical_rows(counts, np.array([t]), vocab)[0]).topk(n)
        entries.append({"token": tok.decode([t]), "id": t, "count": int(counts[2][t]),
                        "next": named(top_next(model, t, n)),
                        "next_empirical": named(zip(emp.indices.tolist(), emp.values.tolist())),
                        "predecessors": named(predecessors)})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bigram_table.json").write_text(json.dumps(entries, indent=1) + "\n")
    (out_dir / "bigram_table.md").write_text(markdown(entries))

    frequent = by_frequency[:n_frequent]
    plot_tables(bigram_log_probs(model, torch.from_numpy(frequent))[:, frequent].exp().numpy(),
                empirical_rows(counts, frequent, vocab)[:, frequent], tok.decode_tokens(frequent),
                out_dir / "bigram_heatmap.png")

    w_e = model.W_E.detach().float().cpu()
    strings = tok.decode_tokens(range(vocab))
    pca, ratio = pca_2d(w_e)
    maps = {"PCA": (by_frequency, pca[by_frequency].numpy())}
    if tsne_tokens:
        ids = by_frequency[:tsne_tokens]
        maps["t-SNE"] = (ids, tsne_2d(w_e[ids]))
    plot_embedding_maps(maps, strings, n_labels, out_dir / "embedding_map.png")

    results = agreement(model, counts, min_count)
    results.update({"pca/var_ratio_pc1": ratio[0].item(), "pca/var_ratio_pc2": ratio[1].item()})
    return results
