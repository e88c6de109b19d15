"""The feature workbench's data (JSON-able): feature lists, feature pages, search by text and steering,
for every dictionary of a run, built on demand with the dashboard analysis's own code.

A dictionary's whole-dictionary statistics (interp.features.store: one streaming pass over the run's
validation data) are built on its first view and cached in the run (`<run>/explorer/`), so a run needs
no precomputed dashboard and a later view, or a restarted explorer, reads them back.
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from interp.errors import ConfigError, NotApplicable
from interp.explorer.views import Loaded, dictionaries, encode

CACHE_DIR = "explorer"      # <run>/explorer/: the workbench's caches (rebuilt when missing)
STORE_TOKENS = 65_536       # validation tokens a dictionary's statistics are built from
ABLATION_ROWS = 8           # validation sequences a feature page's ablation effect is measured on
LIST_DEFAULT, SEARCH_TOP = 200, 3
SORTS = {"max": "max activation", "density": "density", "specialist": "specialist score", "feature": "feature index"}


@contextmanager
def every_core():
    """Batch work (a dictionary's statistics, a feature page's contexts and ablation) on every core: the
    explorer answers prompts on one thread (fastest for a short prompt), but these are thousands of tokens
    (a feature page: 0.97 s on one thread, 0.63 s on two, benchmarks/explorer_speed.py). Requests run one at
    a time (Models.lock), so changing the process's thread count is safe here."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(before, min(os.cpu_count() or 1, 8)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pick(loaded: Loaded, name: str | None) -> tuple[str, object]:
    """(label, dictionary) of the run named `name` (None or "": its first)."""
    found = dictionaries(loaded)
    if not found:
        raise NotApplicable(loaded.sae_note or "this run has no dictionary (SAE or transcoder): the feature pages "
                            "need one. Train one with task=sae base_run=<this run>, or give the explorer one "
                            "for every run: analyze.py serve --sae <SAELens folder>.")
    if not name:
        return next(iter(found.items()))
    if name not in found:
        raise ConfigError(f"this run has no dictionary {name!r}; it has {', '.join(found)}. Fix: dict=<one of them>.")
    return name, found[name]


def kind_name(sae) -> str:
    from interp.sae.sites import sites_of

    return sites_of(sae).kind


def validation(loaded: Loaded):
    from interp.targets import subject_of

    if loaded.run.tokenizer is None:
        raise NotApplicable("feature pages show text contexts; this run's model reads no text (the arithmetic "
                            "MLP: its features are on the run page's feature probe; data=synthetic: scored against "
                            "its true features in metrics.json, val/synthetic/*)")
    return subject_of(loaded.run).datamodule


def store_of(loaded: Loaded, name: str):
    """The dictionary's statistics: kept with the loaded run, read from its cache, or built (first view)."""
    from interp.features.store import load_or_build
    from interp.files import content_key

    stores = loaded.stores
    if name not in stores:
        _, sae = pick(loaded, name)
        data = validation(loaded)
        with every_core():
            stores[name] = load_or_build(loaded.run.model, sae, data.val_dataloader(), loaded.path / CACHE_DIR,
                                         max_tokens=STORE_TOKENS, label=name, progress=True,
                                         data_key=content_key([loaded.run.config.get("data"), loaded.run.data_seed]))
    return stores[name]


def feature_study(loaded: Loaded, name: str) -> dict | None:
    """The run's feature study of dictionary `name` (the `features` analysis: figures/features/features.json,
    or figures/features/<label>/features.json in a run of several), or None where none was run."""
    from interp.run_dir import FIGURES_DIR

    study = loaded.path / FIGURES_DIR / "features"
    one = len(dictionaries(loaded)) == 1   # a run's one dictionary has its study at the top
    for path in [study / name / "features.json", *([study / "features.json"] if one else [])]:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return None


def specialists(loaded: Loaded, name: str) -> dict[int, list[dict]]:
    """{feature: [{category, score, mean, best}]} for the features that are a category's best specialist in
    the run's feature study; {} where no study was run."""
    out: dict[int, list[dict]] = {}
    for category, s in ((feature_study(loaded, name) or {}).get("specialists") or {}).items():
        out.setdefault(int(s["feature"]), []).append(
            {"category": category, "score": s.get("score"), "mean": (s.get("category_means") or {}).get(category),
             "best": s.get("found")})
    return out


def study_tables(study: dict | None) -> dict | None:
    """The feature study's rankings (top 5 each) and each category's specialist, for the feature list."""
    if not study:
        return None
    return {"probes": study.get("probes"), "n_texts": study.get("n_texts"),
            "rankings": {name: [r["feature"] for r in rows[:5]] for name, rows in (study.get("rankings") or {}).items()},
            "specialists": [{"category": c, "feature": s["feature"], "score": s.get("score"), "found": s.get("found")}
                            for c, s in (study.get("specialists") or {}).items()]}


def readable(ctx: dict, tokenizer) -> dict:
    """A context with each character split over several tokens shown as one piece (its strongest activation),
    instead of a U+FFFD per token."""
    if "ids" not in ctx:
        return ctx
    pieces = tokenizer.characters(ctx["ids"])
    return {**ctx, "tokens": [text for text, _ in pieces],
            "acts": [max(ctx["acts"][i] for i in where) for _, where in pieces],
            "at": next(j for j, (_, where) in enumerate(pieces) if ctx["at"] in where or where[-1] >= ctx["at"])}


DENSITY_LO, DENSITY_HI, DENSITY_WIDTH = -7.0, 0.0, 0.25   # log10 density range of the histograms, 0.25-decade bins
N_DENSITY_BINS = int((DENSITY_HI - DENSITY_LO) / DENSITY_WIDTH)


def density_bin(density: float) -> int:
    """The histogram bin of a feature that fires with `density` (> 0), clamped into the range."""
    return min(N_DENSITY_BINS - 1, max(0, int((math.log10(density) - DENSITY_LO) / DENSITY_WIDTH)))


def density_bins(densities: list[float]) -> tuple[list[float], list[int]]:
    """(edges, counts) of log10 density over the features that fired (the rest are left out)."""
    edges = [DENSITY_LO + i * DENSITY_WIDTH for i in range(N_DENSITY_BINS + 1)]
    counts = [0] * N_DENSITY_BINS
    for d in densities:
        if d > 0:
            counts[density_bin(d)] += 1
    return edges, counts


def feature_list(loaded: Loaded, name: str | None, sort: str = "max", n: int = LIST_DEFAULT) -> dict:
    """Every feature's density, max activation, top logits and specialist category; the top `n` by `sort`."""
    from interp.features.store import feature_rows

    if sort not in SORTS:
        raise ConfigError(f"sort={sort!r} is not a column. Fix: sort= one of {', '.join(SORTS)}.")
    name, sae = pick(loaded, name)
    started = time.perf_counter()
    store = store_of(loaded, name)
    rows = loaded.rows
    if name not in rows:
        with every_core():
            rows[name] = feature_rows(store, loaded.run.model, sae, loaded.run.tokenizer,
                                      cache_dir=loaded.path / CACHE_DIR)
        spec = specialists(loaded, name)
        for r in rows[name]:
            best = spec.get(r["feature"], [])
            r["specialist"] = ", ".join(s["category"] for s in best) or None
            r["specialist_score"] = max((s["score"] for s in best if s["score"] is not None), default=None)
    every = rows[name]
    key = {"max": lambda r: -r["max"], "density": lambda r: -r["density"], "feature": lambda r: r["feature"],
           "specialist": lambda r: -(r["specialist_score"] if r["specialist_score"] is not None else -math.inf)}[sort]
    shown = sorted(every, key=key)[:n]
    return {"label": name, "kind": kind_name(sae), "d_sae": int(sae.cfg.d_sae), "n_tokens": store.collector.n_tokens,
            "dead": sum(r["max"] <= 0 for r in every), "rows": shown, "densities": [r["density"] for r in every],
            "has_specialist": any(r["specialist"] for r in every), "build_s": store.build_s,
            "study": study_tables(feature_study(loaded, name)),
            "seconds": time.perf_counter() - started, "note": getattr(store, "note", None)}


def ablation_batch(loaded: Loaded, data) -> dict:
    """The first ABLATION_ROWS validation sequences, read once per run: every feature page's ablation
    effect is measured on the same tokens (a few thousand: the page stays under a second)."""
    if loaded.ablation is None:
        batch = next(iter(data.val_dataloader()))
        loaded.ablation = {k: v[:ABLATION_ROWS] if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    return loaded.ablation


def feature_view(loaded: Loaded, name: str | None, feature: int) -> dict:
    """A feature's page: its contexts, quantile samples, histograms, logits, ablation effect, specialist."""
    from interp.features.store import feature_page

    name, sae = pick(loaded, name)
    started = time.perf_counter()
    store = store_of(loaded, name)
    data = validation(loaded)
    with every_core():
        page = feature_page(store, loaded.run.model, sae, loaded.run.tokenizer, feature,
                            [ablation_batch(loaded, data)], loaded.path / CACHE_DIR)
    tok = loaded.run.tokenizer
    page = {**page, "top": [readable(c, tok) for c in page["top"]],
            "quantiles": [{**q, "examples": [readable(c, tok) for c in q["examples"]]} for q in page["quantiles"]]}
    densities = loaded.rows.get(name)
    densities = [r["density"] for r in densities] if densities else store.collector.density().tolist()
    return {"label": name, "kind": kind_name(sae), "d_sae": int(sae.cfg.d_sae), "page": page,
            "specialist": specialists(loaded, name).get(page["feature"], []), "densities": densities,
            "seconds": time.perf_counter() - started, "build_s": store.build_s, "note": getattr(store, "note", None)}


def search_view(loaded: Loaded, prompt: str, top: int = SEARCH_TOP) -> dict:
    """Which features of every dictionary fire on which token of `prompt` (one forward pass)."""
    from interp.features.store import text_features
    from interp.models import context_length

    found = dictionaries(loaded)
    if not found:
        pick(loaded, None)   # raises, saying why
    validation(loaded)       # a text model
    started = time.perf_counter()
    tokens, notice = encode(prompt, loaded.run.tokenizer, context_length(loaded.run.model))
    feats = text_features(loaded.run.model, found, tokens.to(next(loaded.run.model.parameters()).device), top)
    scale = {name: max((f["act"] for cell in cells for f in cell["features"]), default=0.0) for name, cells in feats.items()}
    return {"tokens": loaded.run.tokenizer.decode_tokens(tokens[0]), "labels": list(found), "features": feats,
            "scale": scale, "notice": notice, "seconds": time.perf_counter() - started}


def parse_features(text: str, d_sae: int) -> list[int]:
    """'12, 40 7' -> [12, 40, 7], each checked against the dictionary."""
    items = text.replace(",", " ").split()
    if not items:
        raise ConfigError("no feature given. Fix: feature=<index>, or several: feature=12,40.")
    out = []
    for item in items:
        if not item.isdigit() or int(item) >= d_sae:
            raise ConfigError(f"feature {item[:40]!r} is not a feature index of this dictionary (0 to {d_sae - 1}). "
                              "Fix: feature=<index>, or several: feature=12,40.")
        out.append(int(item))
    return list(dict.fromkeys(out))


@torch.no_grad()
def steer_view(loaded: Loaded, name: str | None, features: str, scale: float, prompt: str,
               max_new_tokens: int = 24, k: int = 10) -> dict:
    """Greedy continuations without and with `scale × direction` of the features added at their hook, and
    the features ablated on the prompt: the next-token log-probabilities that change most."""
    from interp.features.interventions import ablation_hook, hooked, steer_generate
    from interp.models import context_length
    from interp.sae.harvest import feature_acts

    name, sae = pick(loaded, name)
    validation(loaded)
    chosen = parse_features(features, int(sae.cfg.d_sae))
    if not math.isfinite(scale):
        raise ConfigError(f"scale must be a finite number; got {scale}.")
    run, started = loaded.run, time.perf_counter()
    tok, model = run.tokenizer, run.model
    tokens, notice = encode(prompt, tok, context_length(model))
    tokens = tokens.to(next(model.parameters()).device)
    clean, steered = steer_generate(model, sae, chosen, scale, tokens[0].tolist(), max_new_tokens, tok.eot_id)
    before = model(tokens)[0, -1].float().log_softmax(-1)
    with hooked(model, sae, ablation_hook(sae, chosen)):
        after = model(tokens)[0, -1].float().log_softmax(-1)
    change = after - before
    up, down = change.topk(k), (-change).topk(k)

    def tokens_of(ids, values, sign=1):
        return [[tok.decode_tokens([i])[0], sign * v, before[i].exp().item(), after[i].exp().item()]
                for i, v in zip(ids.tolist(), values.tolist())]

    acts = feature_acts(model, sae, tokens)[0][:, chosen].float().cpu()
    pieces = tok.characters(tokens[0].tolist())
    return {"label": name, "kind": kind_name(sae), "features": chosen, "scale": scale, "notice": notice,
            "prompt_tokens": [text for text, _ in pieces],
            "acts": [[max(a[i] for i in where) for _, where in pieces] for a in acts.T.tolist()],
            "without": tok.decode(clean), "with": tok.decode(steered), "prompt": tok.decode(tokens[0, 1:].tolist()),
            "ablation": {"up": tokens_of(up.indices, up.values), "down": tokens_of(down.indices, down.values, -1),
                         "kl": (before.exp() * (before - after)).sum().item()},
            "seconds": time.perf_counter() - started}


def cache_size(run: Path) -> int:
    """Bytes of the workbench's caches in a run (shown on its page, so a user knows what can be deleted)."""
    folder = run / CACHE_DIR
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


GRAPH_NOTES = 3   # top contexts per feature node in the graph's tooltips


def graph_view(loaded: Loaded, prompt: str, target: str | None = None, *, node_threshold: float = 0.8,
               edge_threshold: float = 0.98) -> dict:
    """An attribution graph of the prompt through the run's per-layer transcoders (analysis
    attribution_graph's defaults): the pruned graph's JSON, its scores, which dictionary is each layer's
    (its features link to their pages), and each feature node's top contexts (from the dictionary's
    statistics, built on first use like a feature page's)."""
    from interp.analyses.attribution_graph import context_note, trace
    from interp.sae.sites import hook_layer, sites_of

    run = loaded.run
    if run.tokenizer is None:
        raise NotApplicable("an attribution graph needs a language model; this run's data has no tokenizer")
    traced = trace(run.model, run.tokenizer, run.dictionaries, prompt, target=target or None, progress=False,
                   scan=f"interp:{loaded.path.name}", node_threshold=node_threshold, edge_threshold=edge_threshold)
    labels = {hook_layer(sites_of(sae).hook): name for name, sae in dictionaries(loaded).items()}
    notes = {}
    for node in traced.doc["nodes"]:
        if node["feature_type"] == "cross layer transcoder":
            layer, feature, _ = map(int, node["node_id"].split("_"))
            store = store_of(loaded, labels[layer])
            if note := context_note(*store.collector.top.of(feature), store.corpus, run.tokenizer,
                                    store.collector.n_tokens, GRAPH_NOTES):
                notes[node["node_id"]] = note
    return {"graph": traced.doc, "scores": {"full": traced.full, "pruned": traced.pruned},
            "labels": labels, "notes": notes, "build_s": round(traced.build_s, 3)}
