"""Empirical unigram and bigram baselines for a language model's val loss.

A 0-layer transformer can only represent a bigram table (Elhage et al. 2021),
so the bar for it is the empirical bigram of the training split. The bigram
is smoothed towards the unigram with a Dirichlet prior of strength beta,
P(b|a) = (c(a,b) + beta * P(b)) / (c(a) + beta), and beta is chosen on the
evaluated tokens themselves: that flatters the baseline, making the model's
gap to it a conservative number.
"""

import numpy as np
import torch

from interp.data.batch import IGNORE_INDEX
from interp.errors import NotApplicable


def bigram_counts(stream: np.ndarray, vocab: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse bigram counts of a token stream: (sorted pair ids a*vocab+b, their counts, c(a) [vocab])."""
    stream = stream.astype(np.int64)
    pair_ids, pair_counts = np.unique(stream[:-1] * vocab + stream[1:], return_counts=True)
    return pair_ids, pair_counts, np.bincount(stream[:-1], minlength=vocab)


def ngram_cross_entropies(train_stream: np.ndarray, tokens: np.ndarray, targets: np.ndarray, vocab: int,
                          betas=(0.1, 0.3, 1, 3, 10, 30, 100, 300, 1000)) -> dict[str, float]:
    """Mean CE (nats) of unigram and best-beta bigram models at the (token -> target) pairs given."""
    train = train_stream.astype(np.int64)
    mask = targets != IGNORE_INDEX
    prev, nxt = tokens[mask].astype(np.int64), targets[mask].astype(np.int64)
    unigram = (np.bincount(train, minlength=vocab) + 1.0) / (len(train) + vocab)   # add-one
    pair_ids, pair_counts, context_counts = bigram_counts(train, vocab)
    query = prev * vocab + nxt
    pos = np.searchsorted(pair_ids, query).clip(max=len(pair_ids) - 1)
    c_ab = np.where(pair_ids[pos] == query, pair_counts[pos], 0)
    results = {"unigram_ce": float(-np.log(unigram[nxt]).mean())}
    best = min(
        (float(-np.log((c_ab + b * unigram[nxt]) / (context_counts[prev] + b)).mean()), b) for b in betas
    )
    results["bigram_ce"], results["bigram_beta"] = best
    return results


@torch.no_grad()
def model_cross_entropy(model, tokens: torch.Tensor, targets: torch.Tensor, batch_size: int = 32) -> float:
    total, count = 0.0, 0
    for i in range(0, len(tokens), batch_size):
        logits = model(tokens[i:i + batch_size])
        t = targets[i:i + batch_size]
        total += torch.nn.functional.cross_entropy(
            logits.flatten(0, 1).float(), t.flatten(), ignore_index=IGNORE_INDEX, reduction="sum").item()
        count += int((t != IGNORE_INDEX).sum())
    return total / count


def run(model, datamodule, out_dir) -> dict[str, float]:
    """Model vs empirical n-gram CE on the val split; `bigram_gap_ratio` = share of the
    unigram->bigram gain the model has NOT captured (0 = as good as the bigram)."""
    if not hasattr(datamodule, "token_streams"):   # e.g. the synthetic induction or arithmetic tasks
        raise NotApplicable(f"ngram compares against the training split's n-grams of a text corpus; "
                            f"data={datamodule.cfg.name} is not one (those are data=code, mix, text_files, hf)")
    streams = datamodule.token_streams()
    val = datamodule.val_dataloader()
    batches = list(val)
    tokens = torch.cat([b["tokens"] for b in batches])
    targets = torch.cat([b["targets"] for b in batches])
    results = ngram_cross_entropies(streams["train"], tokens.numpy(), targets.numpy(),
                                    datamodule.tokenizer.vocab_size)
    device = next(model.parameters()).device
    results["model_ce"] = model_cross_entropy(model, tokens.to(device), targets.to(device))
    gap = results["unigram_ce"] - results["bigram_ce"]
    results["bigram_gap_ratio"] = (results["model_ce"] - results["bigram_ce"]) / gap
    return results
