"""SAE feature activations of a batch of texts: model up to the SAE's hook, then the SAE's encoder.

Texts are right-padded into one batch. Each starts with [eot] (as documents do in training), which
is no text token: per-text summaries (mean, max) are over the text's own tokens only, with the
[eot] and the padding masked out. Seed S1's first study averaged over padding too, which diluted
every category signal; with causal models and right padding the text tokens' activations do not
depend on the padding at all, so adding padding changes nothing (tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from interp.models import context_length
from interp.sae.harvest import feature_acts
from interp.sae.pretrained import check_against_model
from interp.sae.sites import hook_of


@dataclass
class FeatureActs:
    tokens: torch.Tensor              # [N, T] ids, [eot] first, right-padded with [eot]
    mask: torch.Tensor                # [N, T] bool: the text's own tokens
    mean: torch.Tensor                # [N, F] mean activation over the text's tokens
    max: torch.Tensor                 # [N, F] max activation over the text's tokens
    per_token: dict[int, torch.Tensor] = field(default_factory=dict)   # feature -> [N, T], 0 where masked


def encode_texts(tokenizer, texts: list[str], max_tokens: int, n_ctx: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens [N, T], mask [N, T]): the tokenizer's prefix ([eot], or a pretrained model's BOS) + the first
    max_tokens tokens of each text, right-padded."""
    prefix = list(tokenizer.prefix)
    limit = min(max_tokens, n_ctx - len(prefix)) if n_ctx else max_tokens
    ids = [prefix + tokenizer.encode(t)[:limit] for t in texts]
    width = max(map(len, ids))
    tokens = torch.full((len(ids), width), tokenizer.eot_id, dtype=torch.long)
    mask = torch.zeros(len(ids), width, dtype=torch.bool)
    for i, row in enumerate(ids):
        tokens[i, :len(row)] = torch.tensor(row)
        mask[i, len(prefix):len(row)] = True
    return tokens, mask


def summarize(acts: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-text (mean, max) [N, F] of per-token activations [N, T, F] over the positions `mask` [N, T] keeps."""
    m = mask[..., None].to(acts.dtype)
    mean = (acts * m).sum(1) / m.sum(1).clamp(min=1)
    peak = acts.masked_fill(~mask[..., None], float("-inf")).amax(1)
    return mean, torch.where(mask.any(1, keepdim=True), peak, torch.zeros_like(peak))


def feature_activations(model, sae, tokens: torch.Tensor) -> torch.Tensor:
    """[B, T, F] SAE feature activations of `tokens` at the SAE's hook, float32 on the CPU."""
    return feature_acts(model, sae, tokens).float().cpu()


@torch.no_grad()
def extract(model, sae, tokenizer, texts: list[str], *, max_tokens: int = 64, features=(),
            batch_size: int = 16) -> FeatureActs:
    """Per-text summaries of every feature, and per-token activations of `features`."""
    check_against_model(sae, model, hook_of(sae))
    tokens, mask = encode_texts(tokenizer, texts, max_tokens, context_length(model))
    means, peaks, per_token = [], [], {f: torch.zeros(tokens.shape) for f in features}
    for start in range(0, len(texts), batch_size):
        rows = slice(start, start + batch_size)
        width = int(mask[rows].sum(1).max()) + 1            # this batch's longest text: less padding to run
        acts = feature_activations(model, sae, tokens[rows, :width])
        mean, peak = summarize(acts, mask[rows, :width])
        means.append(mean)
        peaks.append(peak)
        for f in features:
            per_token[f][rows, :width] = acts[..., f] * mask[rows, :width]
    return FeatureActs(tokens, mask, torch.cat(means), torch.cat(peaks), per_token)
