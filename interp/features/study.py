"""Seed S1's feature study of one SAE on a probe set: rankings, co-activation, specialists."""

from __future__ import annotations

import torch

from interp.features.extract import extract, hook_of
from interp.features.probes import Probes
from interp.features.rankings import coactivation, rankings, specialists


def study(model, sae, tokenizer, probes: Probes, *, k: int = 10, min_score: int = 1, max_tokens: int = 64) -> dict:
    """Everything JSON-able: rankings (top k each), co-activation of the top composite features,
    each category's best specialist, per-category mean activation of those specialists."""
    acts = extract(model, sae, tokenizer, probes.texts, max_tokens=max_tokens)
    names = probes.category_names()
    ranks = rankings(acts.mean, acts.max, k)
    top = [r["feature"] for r in ranks["composite"]]
    spec = specialists(acts.mean, probes.categories, names, min_score)
    in_cat = {c: torch.tensor([x == c for x in probes.categories]) for c in names}
    for s in spec.values():   # how the specialist's mean activation splits over the categories
        s["category_means"] = {d: float(acts.mean[in_cat[d], s["feature"]].mean()) for d in names}
    return {"hook": hook_of(sae), "d_sae": int(sae.cfg.d_sae), "probes": probes.source, "n_texts": len(probes),
            "texts_per_category": {c: int(in_cat[c].sum()) for c in names}, "min_score": min_score,
            "rankings": ranks, "coactivation": {"features": top, "texts_both_fire": coactivation(acts.max, top)},
            "specialists": spec, "specialists_found": sum(s["found"] for s in spec.values()),
            "n_categories": len(names)}


def metrics(result: dict) -> dict[str, float]:
    """The study's headline numbers, flat (metrics.json, W&B): counts and every category's score."""
    out = {"specialists_found": result["specialists_found"], "n_categories": result["n_categories"],
           "specialist_score_mean": sum(s["score"] for s in result["specialists"].values()) / result["n_categories"]}
    for c, s in result["specialists"].items():
        out[f"specialist_score/{c}"] = s["score"]
        out[f"specialist_feature/{c}"] = s["feature"]
    for name in ("strongest", "most_frequent"):
        if result["rankings"][name]:
            first = result["rankings"][name][0]
            out[f"{name}/feature"] = first["feature"]
            out[f"{name}/value"] = first["max_activation" if name == "strongest" else "frequency"]
    return out

