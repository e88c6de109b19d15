"""Seed S1's feature rankings and category specialists, from per-text activations.

Input: `mean` [N, F] (each text's mean activation over its own tokens, as S1 uses) and `peak` [N, F]
(each text's max over its tokens). A feature *fires* on a text when its peak there is > 0; it is
*strong* on a text when the text's mean reaches half of the feature's largest mean over all texts.

- strongest: largest activation on any token of any text.
- most frequent: fraction of texts it fires on.
- most selective: high activation on few texts: largest mean / number of texts it is strong on.
- composite: frequency x mean activation over the texts it fires on.
- co-activation: for the top features, on how many texts each pair fires together.
- specialist score (S1) of feature f for category c: texts of c it is strong on minus texts of
  other categories it is strong on. A category's best specialist maximises it; S1 counts the
  category as having a specialist when that best score is >= 1 (`min_score`). The criterion is
  weak (surface tokens suffice), so scores are reported, not only counts.
"""

from __future__ import annotations

import torch

STRONG_FRACTION = 0.5   # S1: strong = at least half the feature's max (per-text mean) over all texts


def strong(mean: torch.Tensor) -> torch.Tensor:
    """[N, F] bool: text n is among feature f's strong texts (never for a feature silent everywhere)."""
    top = mean.amax(0, keepdim=True)
    return (mean >= STRONG_FRACTION * top) & (top > 0)


def feature_stats(mean: torch.Tensor, peak: torch.Tensor) -> dict[str, torch.Tensor]:
    """[F] per feature: max_activation, frequency, mean_when_active, composite, n_strong, selectivity."""
    fires = peak > 0
    n_fires = fires.sum(0)
    mean_when_active = (mean * fires).sum(0) / n_fires.clamp(min=1)
    frequency = n_fires.float() / mean.shape[0]
    n_strong = strong(mean).sum(0)
    return {"max_activation": peak.amax(0), "frequency": frequency, "mean_when_active": mean_when_active,
            "composite": frequency * mean_when_active, "n_strong": n_strong.float(),
            "selectivity": mean.amax(0) / n_strong.clamp(min=1)}


RANKINGS = {"strongest": "max_activation", "most_frequent": "frequency", "most_selective": "selectivity",
            "composite": "composite"}


def top_features(score: torch.Tensor, k: int) -> list[int]:
    """Indices of the k largest scores (ties: the lower index first), only features scoring > 0."""
    order = torch.sort(-score.float(), stable=True).indices[:k].tolist()
    return [f for f in order if score[f] > 0]


def rankings(mean: torch.Tensor, peak: torch.Tensor, k: int = 10) -> dict[str, list[dict]]:
    """Each ranking's top k features, each with all its statistics."""
    stats = feature_stats(mean, peak)
    row = lambda f: {"feature": f, **{name: float(v[f]) for name, v in stats.items()}}  # noqa: E731
    return {name: [row(f) for f in top_features(stats[key], k)] for name, key in RANKINGS.items()}


def coactivation(peak: torch.Tensor, features: list[int]) -> list[list[int]]:
    """[K, K] number of texts on which features i and j both fire (the diagonal: i alone)."""
    fires = (peak[:, features] > 0).float()
    return (fires.T @ fires).long().tolist()


def specialist_scores(mean: torch.Tensor, categories: list[str], names: list[str]) -> dict[str, torch.Tensor]:
    """Per category name: (inside [F], outside [F], score [F]) stacked as [3, F] of strong-text counts."""
    is_strong = strong(mean).float()
    out = {}
    for c in names:
        inside_rows = torch.tensor([x == c for x in categories])
        inside = is_strong[inside_rows].sum(0)
        outside = is_strong[~inside_rows].sum(0)
        out[c] = torch.stack([inside, outside, inside - outside])
    return out


def specialists(mean: torch.Tensor, categories: list[str], names: list[str], min_score: int = 1) -> dict[str, dict]:
    """Each category's best specialist: feature, score, strong texts inside / outside, texts in the
    category, and whether it counts (score >= min_score). Ties go to the lower feature index."""
    out = {}
    for c, (inside, outside, score) in specialist_scores(mean, categories, names).items():
        f = top_features(score - score.min() + 1, 1)[0]   # shifted: the best even when all scores <= 0
        out[c] = {"feature": f, "score": int(score[f]), "inside": int(inside[f]), "outside": int(outside[f]),
                  "n_texts": sum(x == c for x in categories), "found": bool(score[f] >= min_score)}
    return out


def consistency(found: dict[str, dict[str, bool]]) -> dict[str, list[str]]:
    """S1's summary across SAEs: {SAE: {category: found}} -> categories with a specialist in every SAE
    (always), in some (sometimes), in none (never)."""
    categories = list(dict.fromkeys(c for per_sae in found.values() for c in per_sae))
    counts = {c: sum(per_sae.get(c, False) for per_sae in found.values()) for c in categories}
    n = len(found)
    return {"always": [c for c in categories if counts[c] == n],
            "sometimes": [c for c in categories if 0 < counts[c] < n],
            "never": [c for c in categories if counts[c] == 0]}
