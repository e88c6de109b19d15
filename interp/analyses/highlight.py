"""Token highlighting of SAE features on a probe set: one offline HTML page per feature, every probe
text grouped by category, each token shaded by the feature's activation (its value on hover), with a
Neuronpedia link for public SAEs. `feature=87` (or `feature=[12,87]`); without it, the best specialist
of each category that has one.
"""

from __future__ import annotations

from pathlib import Path

from interp.analyses.common.inputs import require_lm
from interp.features.extract import extract, hook_of
from interp.features.highlight import highlight_page, neuronpedia_url, readable_tokens
from interp.features.indices import check_feature_index
from interp.features.probes import load_probes
from interp.features.rankings import specialist_scores, specialists
from interp.files import atomic_write_text


def token_bytes(tokenizer, ids: list[int]) -> list[bytes]:
    return tokenizer.encoding.decode_tokens_bytes(ids)


def run(model, datamodule, out_dir, *, sae, feature=None, probes: str = "builtin", max_tokens: int = 64,
        per_category: int = 50, min_score: int = 1) -> dict[str, float]:
    require_lm(datamodule, "highlight")
    asked = [] if feature is None else feature if isinstance(feature, (list, tuple)) else [feature]
    features = [check_feature_index(sae, f) for f in asked]
    p = load_probes(probes, datamodule, per_category)
    names = p.category_names()
    acts = extract(model, sae, datamodule.tokenizer, p.texts, max_tokens=max_tokens, features=features)
    if not features:   # each category's best specialist, then a second pass for their per-token values
        found = [s for s in specialists(acts.mean, p.categories, names, min_score).values() if s["found"]]
        features = list(dict.fromkeys(s["feature"] for s in found))
        acts = extract(model, sae, datamodule.tokenizer, p.texts, max_tokens=max_tokens, features=features)
    scores = specialist_scores(acts.mean, p.categories, names)
    per_token = acts.per_token
    order = sorted(range(len(p)), key=lambda i: names.index(p.categories[i]))   # grouped, stable within
    results, out_dir = {}, Path(out_dir)
    for f in features:
        score = {c: int(scores[c][2, f]) for c in names}
        target = max(names, key=score.get)
        texts = []
        for i in order:
            ids = acts.tokens[i][acts.mask[i]].tolist()
            pieces, values = readable_tokens(token_bytes(datamodule.tokenizer, ids), per_token[f][i][acts.mask[i]].tolist())
            texts.append({"category": p.categories[i], "tokens": pieces, "values": values})
        title = (f"SAE at {hook_of(sae)} ({int(sae.cfg.d_sae)} features), probes={probes}; highest specialist "
                 f"score: {target} ({score[target]})")
        atomic_write_text(out_dir / f"feature_{f}.html",
                          highlight_page(f, texts, title=title, target=target if score[target] > 0 else None,
                                         link=neuronpedia_url(sae, f)))
        results[f"max_activation/{f}"] = float(per_token[f].max())
        results[f"specialist_score/{f}"] = score[target]
    return results
