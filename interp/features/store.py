"""Feature pages built on demand (a local "Neuronpedia"): one dictionary's whole-dictionary statistics over
validation tokens, cached in the run after the first view.

A `FeatureStore` is what the dashboard's streaming pass (interp.features.dashboard.collect) keeps for every
feature at once: top activations, a uniform sample of firings, counts, histograms, and the token sequences
seen. Pages, the feature list and "which features fire on this text" are all computed from it (or from one
forward pass) with the dashboard's own code, so they agree with the `dashboard` analysis.

On disk (`cache_dir`): `<label>-<key>.pt` holds the store (tensors, ints and strings only: it loads with
`torch.load(weights_only=True)`), and the folder `<label>-<key>/` beside it each page built
(`feature_<f>.json`) and the feature list's top logits. The key is a content key of the dictionary's
and the model's weights and of the settings, so a cache built for other weights or settings is never
reused. Every file is written atomically; a folder that cannot be written leaves the store in memory
(with a `note` saying why) and a file that cannot be read is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter

import torch

from interp.data.batch import model_inputs, padding_mask
from interp.errors import DiskFull
from interp.features.dashboard import (
    HIST_EDGES,
    Corpus,
    FeatureCollector,
    ablation_losses,
    collect,
    describe,
    unembedding_path,
)
from interp.features.indices import check_feature_index
from interp.features.interventions import feature_direction
from interp.files import atomic_writer, content_key
from interp.sae.dictionaries import Layout
from interp.sae.harvest import encode_acts, run_to
from interp.sae.sites import hook_of, sites_of

FORMAT = 1   # bump when the file's layout changes: older files then fail the key check and are rebuilt


@dataclass
class FeatureStore:
    """One dictionary's whole-dictionary statistics over validation tokens."""
    label: str
    key: str                      # store_key(...): the weights and settings it was built for
    collector: FeatureCollector   # top table, uniform sample of firings, counts, histogram, n_tokens
    corpus: Corpus                # the token sequences seen (contexts of the tables' locations)
    build_s: float = 0.0          # seconds of the pass that built it; 0.0 when loaded from disk
    loaded_from: Path | None = None
    path: Path | None = None      # the cache file, when it is on disk
    note: str | None = None       # why it was rebuilt or kept in memory only
    top_logits: dict = field(default_factory=dict, repr=False)   # n -> [d_sae, n] ids (None: no logit table)

    @property
    def name(self) -> str:
        return cache_name(self.label, self.key)


def cache_name(label: str, key: str) -> str:
    """A store's file stem in its cache folder: the label made safe for a file name, then the key."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("._")[:80] or "dictionary"
    return f"{safe}-{key}"


def _fingerprint(named: Iterable[tuple[str, torch.Tensor]], limit: int | None) -> list:
    """Per tensor: shape, dtype, the sum of the bit patterns of (a strided sample of at most `limit` of) its
    elements, and a hash of a small strided sample. Bit patterns, not values: exact, the same on every
    device, and any changed element in the summed part changes the sum."""
    out = []
    for name, t in named:
        flat = t.detach().reshape(-1)
        if limit is not None and flat.numel() > limit:
            flat = flat[::-(-flat.numel() // limit)]
        bits = flat.contiguous().view({1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
                                      [flat.element_size()])
        sample = bits[::max(1, bits.numel() // 4096)].cpu()
        out.append([name, list(t.shape), str(t.dtype), int(bits.sum(dtype=torch.int64)),
                    hashlib.sha256(sample.numpy().tobytes()).hexdigest()[:16]])
    return out


@torch.no_grad()
def store_key(model, sae, settings: dict) -> str:
    """A content key of the dictionary (every weight's bit sum, its config and hooks), the base model
    (a strided sample of each parameter: a fine-tuned or different model changes them) and `settings`."""
    sites = sites_of(sae)
    cfg = sae.cfg.to_dict() if hasattr(sae.cfg, "to_dict") else vars(sae.cfg)
    cfg = {k: v for k, v in cfg.items() if k not in ("device", "metadata")}   # the same weights on any device
    return content_key({
        "format": FORMAT,
        "dictionary": {"class": type(sae).__name__, "hook": sites.hook, "target": sites.target,
                       "d_sae": int(sae.cfg.d_sae), "cfg": cfg,
                       "weights": _fingerprint(sae.state_dict().items(), None)},
        "model": {"class": type(model).__name__, "weights": _fingerprint(model.named_parameters(), 1 << 16)},
        "settings": settings})


def _try_write(path: Path, mode: str, write) -> str | None:
    """Write `path` atomically with `write(file)`; None, or why it could not be written (read-only folder,
    no permission, full disk): a cache that cannot be written is not worth failing a page for."""
    try:
        with atomic_writer(path, mode) as f:
            write(f)
    except (OSError, DiskFull) as e:
        return f"kept in memory only: cannot write {path} ({type(e).__name__}: {e})"
    return None


def _save(store: FeatureStore, path: Path) -> str | None:
    c, seqs = store.collector, store.corpus.sequences
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    state = {"format": FORMAT, "key": store.key, "label": store.label, "n_tokens": int(c.n_tokens),
             "top": [c.top.score, c.top.value, c.top.loc], "sample": [c.sample.score, c.sample.value, c.sample.loc],
             "counts": c.counts, "hist": c.hist.int() if c.n_tokens < 2**31 else c.hist,   # int32: half the size
             "tokens": torch.cat(seqs).long() if seqs else torch.zeros(0, dtype=torch.long),
             "offsets": torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])}
    return _try_write(path, "wb", lambda f: torch.save(state, f))


def _load(path: Path, key: str, label: str, d_sae: int) -> FeatureStore:
    """The store in `path`; ValueError (or torch's own error) when it is not a whole store for `key`."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("key") != key:
        raise ValueError("not a feature store of this format and key")
    (top_s, top_v, top_l), (smp_s, smp_v, smp_l) = state["top"], state["sample"]
    counts, hist, tokens, offsets = state["counts"], state["hist"], state["tokens"], state["offsets"]
    n, k = top_s.shape
    n_samples = smp_s.shape[1]
    shapes_ok = (n == d_sae and top_v.shape == top_l.shape == (n, k) and smp_v.shape == smp_l.shape == (n, n_samples)
                 and counts.shape == (n,) and hist.shape == (n, len(HIST_EDGES) - 1) and offsets.ndim == 1
                 and len(offsets) >= 1 and int(offsets[0]) == 0 and int(offsets[-1]) == len(tokens)
                 and bool((offsets.diff() >= 0).all()))
    if not shapes_ok:
        raise ValueError("its tables do not fit together")
    collector = FeatureCollector(n, k, n_samples)
    collector.top.score, collector.top.value, collector.top.loc = top_s, top_v, top_l
    collector.sample.score, collector.sample.value, collector.sample.loc = smp_s, smp_v, smp_l
    collector.counts, collector.hist, collector.n_tokens = counts, hist.long(), int(state["n_tokens"])
    bounds = offsets.tolist()
    corpus = Corpus([tokens[a:b] for a, b in zip(bounds[:-1], bounds[1:])])
    return FeatureStore(label, key, collector, corpus, loaded_from=path, path=path)


def _counting(batches: Iterable[dict], total: int | None, label: str) -> Iterator[dict]:
    """`batches`, with a progress bar of the tokens they hold."""
    from tqdm.auto import tqdm

    with tqdm(total=total, unit="tok", desc=f"feature store {label}") as bar:
        for batch in batches:
            yield batch
            mask = padding_mask(batch)
            bar.update(model_inputs(batch).numel() if mask is None else int(mask.sum()))
        bar.total = bar.n   # the data ran out before `total` tokens: end the bar at 100%


def load_or_build(model, sae, batches: Iterable[dict], cache_dir: Path | None, *, max_tokens: int = 65_536,
                  k: int = 20, n_samples: int = 64, progress: bool = False, label: str | None = None,
                  data_key: str | None = None) -> FeatureStore:
    """The store of `sae` over `batches` (LM batches, e.g. a datamodule's val_dataloader()): loaded from
    `cache_dir` when built before for the same weights and settings, else built by one pass (`collect`
    over the whole dictionary) and saved there. `label` names the dictionary (default: its hooks);
    `data_key` identifies the batches' data, when the caller has such a key (it joins the content key)."""
    label = label or sites_of(sae).describe()
    key = store_key(model, sae, {"max_tokens": max_tokens, "k": k, "n_samples": n_samples, "data": data_key})
    path = None if cache_dir is None else Path(cache_dir) / f"{cache_name(label, key)}.pt"
    note = None
    if path is not None:
        try:
            if path.is_file():
                return _load(path, key, label, int(sae.cfg.d_sae))
        except Exception as e:   # truncated, corrupt, unreadable, another format: build it again
            note = f"rebuilt {path.name}: the cached file could not be read ({type(e).__name__}: {str(e)[:200]})"
    start = perf_counter()
    if progress:
        batches = _counting(batches, max_tokens, label)
    collector, corpus = collect(model, sae, batches, None, k=k, n_samples=n_samples, max_tokens=max_tokens)
    store = FeatureStore(label, key, collector, corpus, build_s=perf_counter() - start)
    if path is not None:
        unwritten = _save(store, path)
        store.path = None if unwritten else path
        note = "; ".join(n for n in (note, unwritten) if n) or None
    store.note = note
    return store


def _direction_chunks(sae, rows: int) -> Iterator[torch.Tensor]:
    """Every feature's direction (feature_direction), `rows` features at a time, [rows, d]. They are W_dec's
    rows for SAELens's dictionaries; a few are checked against feature_direction, and a dictionary that
    rescales its output gets decode(one-hot) - decode(0) instead (exact, slower)."""
    n = int(sae.cfg.d_sae)
    W = sae.W_dec.detach().reshape(n, -1)
    probe = sorted({0, n // 3, n // 2, n - 1})
    linear = all(torch.allclose(feature_direction(sae, f).reshape(-1), W[f], rtol=1e-5, atol=1e-6) for f in probe)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        if linear:
            yield W[start:stop]
        else:
            one_hot = torch.zeros(stop - start, n, device=W.device, dtype=W.dtype)
            one_hot[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
            yield (sae.decode(one_hot) - sae.decode(torch.zeros_like(one_hot[:1]))).reshape(stop - start, -1)


@torch.no_grad()
def top_logit_ids(model, sae, n: int = 3, max_elements: int = 1 << 24) -> torch.Tensor | None:
    """[d_sae, n] token ids of each feature's n highest direct logit effects (logit_effects for every
    feature, W_dec @ W_U through the same normalisation), in chunks of at most `max_elements` logits;
    None where the dictionary's target has no logit table."""
    path = unembedding_path(model, sae)
    if path is None:
        return None
    d_vocab = model.W_U.shape[-1]
    n = min(n, d_vocab)
    return torch.cat([path(d).topk(n, dim=-1).indices.cpu()
                      for d in _direction_chunks(sae, max(1, max_elements // d_vocab))])


def _top_logits(store: FeatureStore, model, sae, n: int, cache_dir: Path | None) -> torch.Tensor | None:
    """top_logit_ids, kept on the store and in its cache folder (on a CPU a large dictionary's W_dec @ W_U
    is tens of seconds of matrix products; they depend only on the weights the key names)."""
    path = None if cache_dir is None else Path(cache_dir) / store.name / f"top_logits_{n}.pt"
    if n not in store.top_logits and path is not None:
        try:
            ids = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(ids, torch.Tensor) and ids.shape == (store.collector.n, n):
                store.top_logits[n] = ids
        except Exception:   # not there yet, or unreadable: computed again
            pass
    if n not in store.top_logits:
        store.top_logits[n] = top_logit_ids(model, sae, n)
    ids = store.top_logits[n]
    if ids is not None and path is not None and not path.is_file():
        _try_write(path, "wb", lambda f: torch.save(ids, f))
    return ids


def feature_rows(store: FeatureStore, model, sae, tokenizer, *, n_logits: int = 3,
                 cache_dir: Path | None = None) -> list[dict]:
    """One row per feature, for a sortable list of the whole dictionary: feature, density, count, max (its
    largest activation seen, 0 if it never fired) and top_logits (its `n_logits` highest-logit tokens as
    strings; [] where the hook has no logit table). `cache_dir`: where the top logits are kept."""
    c = store.collector
    density, counts = c.density().tolist(), c.counts.tolist()
    best = torch.where(c.top.score[:, 0] > float("-inf"), c.top.value[:, 0], 0.0).tolist()
    ids = _top_logits(store, model, sae, n_logits, cache_dir)
    if ids is None:
        logits = [[] for _ in range(c.n)]
    else:
        unique = ids.unique().tolist()
        text = dict(zip(unique, tokenizer.decode_tokens(unique)))
        logits = [[text[t] for t in row] for row in ids.tolist()]
    return [{"feature": f, "density": density[f], "count": counts[f], "max": best[f], "top_logits": logits[f]}
            for f in range(c.n)]


def _cached_page(path: Path, feature: int) -> dict | None:
    try:
        page = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):   # not there yet, unreadable or cut short: build it again
        return None
    return page if isinstance(page, dict) and page.get("feature") == feature else None


def feature_page(store: FeatureStore, model, sae, tokenizer, feature: int, ablation_batches: Iterable | None = None,
                 cache_dir: Path | None = None) -> dict:
    """What `describe` gives for one feature (top contexts, quantile examples, histogram, density, logits), plus
    `loss_delta` and `loss_delta_where_active` from `ablation_losses` on `ablation_batches` (left out when None),
    `seconds` (to build it) and `cached` (whether it came from `cache_dir/<store name>/feature_<f>.json`)."""
    feature = check_feature_index(sae, feature)
    path = None if cache_dir is None else Path(cache_dir) / store.name / f"feature_{feature}.json"
    if path is not None and (page := _cached_page(path, feature)) is not None:
        if ablation_batches is None or "loss_delta" in page:
            return {**page, "cached": True}
    start = perf_counter()
    page = describe(model, sae, store.collector, store.corpus, [feature], [feature], tokenizer)[0]
    if ablation_batches is not None:
        page.update(ablation_losses(model, sae, [feature], ablation_batches)[feature])
    page["seconds"] = perf_counter() - start
    if path is not None and (unwritten := _try_write(path, "w", lambda f: json.dump(page, f))):
        page["note"] = unwritten
    return {**page, "cached": False}


@torch.no_grad()
def text_features(model, saes: dict[str, object], tokens: torch.Tensor, top: int = 3) -> dict[str, list[dict]]:
    """For a prompt's tokens [1, T] (or [T]): per dictionary (label -> SAE or transcoder), per token, its `top`
    most active features [{feature, act}] (act > 0) and `n_active`, the number of features active there.
    One forward pass caches every dictionary's input hook, stopping after the deepest."""
    tokens = tokens[None] if tokens.ndim == 1 else tokens
    if tokens.shape[0] != 1:
        raise ValueError(f"text_features takes one prompt's tokens [1, T], not {list(tokens.shape)}")
    if not saes:
        return {}
    acts = run_to(model, tokens, Layout(tuple(dict.fromkeys(hook_of(sae) for sae in saes.values()))))
    out = {}
    for label, sae in saes.items():
        feats = encode_acts(sae, acts[hook_of(sae)])[0].float()   # [T, d_sae]
        values, ids = feats.topk(min(top, feats.shape[-1]), dim=-1)
        active = (feats > 0).sum(-1).tolist()
        out[label] = [{"features": [{"feature": f, "act": a} for f, a in zip(fs, vs) if a > 0], "n_active": n}
                      for fs, vs, n in zip(ids.tolist(), values.tolist(), active)]
    return out
