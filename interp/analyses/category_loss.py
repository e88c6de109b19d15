"""Validation loss per data category (data=mix) against unigram and bigram baselines.

Each category's baselines are fitted on that category's own training tokens (the best a model
without context could do if told the category) and scored at the same (token -> target)
positions as the model, by `ngram.ngram_cross_entropies` (its bigram prior is tuned on the
scored tokens, which flatters the baseline). The `all` row scores every validation token
against baselines fitted on the whole training mix (what `ngram` reports).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from interp.analyses.common.inputs import require_lm
from interp.analyses.ngram import model_cross_entropy, ngram_cross_entropies
from interp.data.batch import IGNORE_INDEX
from interp.errors import NotApplicable


def labelled_val(datamodule) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """tokens [N, T], targets [N, T], category [N] of the whole validation split."""
    batches = list(datamodule.val_dataloader())
    if not batches or "category" not in batches[0]:
        raise NotApplicable("category_loss needs validation batches with a `category` key (data=mix)")
    return tuple(torch.cat([b[k] for b in batches]) for k in ("tokens", "targets", "category"))


def category_losses(model, tokens, targets, category, names: list[str], train_streams: dict[str, np.ndarray],
                    vocab: int) -> dict[str, dict[str, float]]:
    """{category or 'all': {model_ce, unigram_ce, bigram_ce, tokens}} (nats per target token)."""
    device = next(model.parameters()).device
    table = {}
    groups = [(c, category == i, train_streams[c]) for i, c in enumerate(names)]
    groups.append(("all", torch.ones_like(category, dtype=torch.bool), np.concatenate(list(train_streams.values()))))
    for name, rows, train in groups:
        if not rows.any():
            continue
        tok, tgt = tokens[rows], targets[rows]
        ngram = ngram_cross_entropies(train, tok.numpy(), tgt.numpy(), vocab)
        table[name] = {"model_ce": model_cross_entropy(model, tok.to(device), tgt.to(device)),
                       "unigram_ce": ngram["unigram_ce"], "bigram_ce": ngram["bigram_ce"],
                       "tokens": float((tgt != IGNORE_INDEX).sum())}
    return table


def plot(table: dict[str, dict[str, float]], path) -> None:
    """Grouped bars: model, bigram, unigram CE per category."""
    from interp.viz import plt, save_figure

    names = list(table)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(1.4 * len(names) + 2, 4))
    for k, (key, label, color) in enumerate([("model_ce", "model", "C0"), ("bigram_ce", "bigram", "C1"),
                                             ("unigram_ce", "unigram", "0.6")]):
        values = [table[n][key] for n in names]
        bars = ax.bar(x + (k - 1) * 0.27, values, 0.27, label=label, color=color)
        ax.bar_label(bars, fmt="%.2f", fontsize=6)
    ax.set_xticks(x, [f"{n}\n{int(table[n]['tokens']):,} tok" for n in names], fontsize=8)
    ax.set(ylabel="validation CE (nats/token)", title="validation loss by category")
    ax.legend()
    save_figure(fig, path)


def run(model, datamodule, out_dir) -> dict[str, float]:
    """`<category>/{model_ce,unigram_ce,bigram_ce,tokens}` and category_loss.png."""
    require_lm(datamodule, "category_loss")
    if not hasattr(datamodule, "category_streams"):
        raise NotApplicable("category_loss needs data with labelled categories (data=mix)")
    tokens, targets, category = labelled_val(datamodule)
    table = category_losses(model, tokens, targets, category, datamodule.categories,
                            datamodule.category_streams("train"), datamodule.tokenizer.vocab_size)
    plot(table, Path(out_dir) / "category_loss.png")
    return {f"{name}/{k}": v for name, row in table.items() for k, v in row.items()}
