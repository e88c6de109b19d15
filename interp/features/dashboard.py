"""Feature-dashboard data (what sae-vis / sae-dashboard show), computed in one streaming pass.

One pass over a corpus keeps, for every tracked feature at once: the top-k activations and where
they occurred, a uniform sample of its firings (for activation-quantile examples: each firing gets a
random priority and the n highest priorities are kept, a bottom-k sample), its firing count and a
histogram of log10 activations. The bookkeeping sorts the batch's firing (feature, token, value)
triples once per table and merges dense [d_sae, k] tables, so beyond one scan for the firings its
cost grows with the number of firings, not with d_sae × tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from interp.data.batch import model_inputs, padding_mask
from interp.features.interventions import feature_direction
from interp.sae.harvest import feature_acts
from interp.sae.sites import hook_layer, sites_of

HIST_EDGES = torch.linspace(-3.0, 4.0, 71)   # log10 activation, 0.1 decade bins (values outside are clamped)
POS_BITS = 20                                 # location = sequence << POS_BITS | position


def group_rank(group: torch.Tensor, score: torch.Tensor, k: int, n_groups: int):
    """(indices, group, rank) of the (at most) k highest non-negative `score`s within each group, from one
    sort: a non-negative float's bits order like the float, so (group, -score) packs into one int64 key."""
    bits = score.float().contiguous().view(torch.int32).long()
    order = (group * (1 << 31) + ((1 << 31) - 1 - bits)).argsort()
    g = group[order]
    counts = torch.bincount(g, minlength=n_groups)
    rank = torch.arange(len(g), device=g.device) - (torch.cumsum(counts, 0) - counts)[g]
    keep = rank < k
    return order[keep], g[keep], rank[keep]


class TopTable:
    """Per feature, the k records with the highest score: dense [n, k] tables (score -inf: empty)."""

    def __init__(self, n: int, k: int):
        self.k = k
        self.score = torch.full((n, k), float("-inf"))
        self.value = torch.zeros(n, k)
        self.loc = torch.zeros(n, k, dtype=torch.long)

    def merge(self, col, score, value, loc) -> None:
        """Fold in a batch's records (score >= 0): its own top-k per feature, then a top-k over 2k columns.
        Records below their feature's current k-th score cannot enter, so they are dropped before the sort
        (once the tables fill, few records pass)."""
        enter = score > self.score[col, -1]
        col, score, value, loc = col[enter], score[enter], value[enter], loc[enter]
        idx, g, rank = group_rank(col, score, self.k, len(self.score))
        new = TopTable(len(self.score), self.k)
        new.score[g, rank], new.value[g, rank], new.loc[g, rank] = score[idx], value[idx], loc[idx]
        both = torch.cat([self.score, new.score], 1)
        self.score, pick = both.topk(self.k, dim=1)
        self.value = torch.cat([self.value, new.value], 1).gather(1, pick)
        self.loc = torch.cat([self.loc, new.loc], 1).gather(1, pick)

    def of(self, column: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(values, locations) of one feature's records, highest score first."""
        full = self.score[column] > float("-inf")
        return self.value[column][full], self.loc[column][full]


class FeatureCollector:
    """Streaming per-feature statistics over [rows, n_features] activation blocks."""

    def __init__(self, n_features: int, k: int = 20, n_samples: int = 100, seed: int = 0):
        self.n = n_features
        self.top, self.sample = TopTable(n_features, k), TopTable(n_features, n_samples)
        self.counts = torch.zeros(n_features, dtype=torch.long)
        self.hist = torch.zeros(n_features, len(HIST_EDGES) - 1, dtype=torch.long)
        self.n_tokens = 0
        self.gen = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def add(self, feats: torch.Tensor, locs: torch.Tensor) -> None:
        """feats [N, n_features] (a feature fires where > 0), locs [N] the rows' locations."""
        feats = feats.float().cpu()
        rows, col = (feats > 0).nonzero(as_tuple=True)
        value, loc = feats[rows, col], locs[rows]
        self.n_tokens += feats.shape[0]
        self.counts += torch.bincount(col, minlength=self.n)
        bins = torch.bucketize(value.log10(), HIST_EDGES[1:-1])
        self.hist.view(-1).index_add_(0, col * self.hist.shape[1] + bins, torch.ones_like(bins))
        self.top.merge(col, value, value, loc)
        self.sample.merge(col, torch.rand(len(value), generator=self.gen), value, loc)

    def density(self) -> torch.Tensor:
        return self.counts.double() / max(self.n_tokens, 1)




@dataclass
class Corpus:
    """The sequences seen by the pass (valid tokens only), for showing contexts."""
    sequences: list = field(default_factory=list)

    def context(self, loc: int, before: int, after: int) -> tuple[torch.Tensor, int, int]:
        """(tokens of the window, sequence index, window start) around location `loc`."""
        seq, pos = loc >> POS_BITS, loc & ((1 << POS_BITS) - 1)
        start = max(0, pos - before)
        return self.sequences[seq][start:pos + after + 1], seq, start


@torch.no_grad()
def collect(model, sae, batches, features: list[int] | None = None, *, k: int = 20, n_samples: int = 100,
            max_tokens: int | None = None, seed: int = 0) -> tuple[FeatureCollector, Corpus]:
    """One pass over `batches` (LM batches) tracking `features` (None: the whole dictionary)."""
    cols = None if features is None else torch.tensor(features)
    collector = FeatureCollector(sae.cfg.d_sae if cols is None else len(cols), k, n_samples, seed)
    corpus = Corpus()
    for batch in batches:
        tokens = model_inputs(batch)
        mask = padding_mask(batch)
        mask = torch.ones(tokens.shape, dtype=torch.bool) if mask is None else mask.cpu()
        feats = feature_acts(model, sae, tokens)
        feats = feats if cols is None else feats[..., cols.to(feats.device)]
        seq, pos = mask.nonzero(as_tuple=True)
        base = len(corpus.sequences)
        collector.add(feats[mask.to(feats.device)], (seq + base) << POS_BITS | pos)
        corpus.sequences += [t[m] for t, m in zip(tokens.cpu(), mask)]
        if max_tokens is not None and collector.n_tokens >= max_tokens:
            break
    return collector, corpus


def logit_effects(model, sae, feature: int) -> torch.Tensor | None:
    """[d_vocab]: the direct effect of one unit of `feature` on the logits, W_dec[f] @ W_U, through
    the final normalisation (`unembedding_path`). None where the SAE's target has no such path."""
    path = unembedding_path(model, sae)
    if path is None:
        return None
    return path(feature_direction(sae, feature)).detach().float().cpu()


def unembedding_path(model, sae):
    """The direct path from the dictionary's target hook to the logits, as a function of directions
    [..., d] written there (-> [..., d_vocab], on W_U's device and dtype), or None for hooks that do not
    write to the residual stream in one step (attention internals) or non-transformers.
    The final normalisation's per-token 1/σ scales every logit alike (a positive factor that does not
    change the order), so it is left out; its centring and gain act on the direction itself:
    LN: (d - mean d) * w; LNPre (GPT-2 with folded LN: the gain already sits in W_U): d - mean d;
    RMS: d * w. A hook inside an MLP (mlp.hook_post) goes through that layer's W_out first."""
    import re

    cfg = getattr(model, "cfg", None)
    if cfg is None or not hasattr(model, "W_U"):
        return None
    hook = sites_of(sae).target   # where the direction is written
    W_out = None
    if hook.endswith(".mlp.hook_post") and (layer := hook_layer(hook)) is not None:
        W_out = model.blocks[layer].mlp.W_out
    elif not re.fullmatch(r"blocks\.\d+\.hook_(resid_pre|resid_mid|resid_post|attn_out|mlp_out)|hook_embed|"
                          r"hook_pos_embed|unembed\.hook_in", hook):
        return None
    norm = cfg.normalization_type

    def path(d: torch.Tensor) -> torch.Tensor:
        d = d.to(model.W_U.dtype).to(model.W_U.device)
        if W_out is not None:
            d = d @ W_out
        if norm in ("LN", "LNPre"):
            d = d - d.mean(-1, keepdim=True)
        if norm in ("LN", "RMS"):
            d = d * model.ln_final.w
        return d @ model.W_U
    return path


@torch.no_grad()
def sequence_activations(model, sae, sequences: list[torch.Tensor], features: list[int],
                         chunk: int = 32) -> list[torch.Tensor]:
    """Per-token activations [len, n_features] of `features` on each sequence (right-padded batches:
    causal models never see the padding from earlier positions)."""
    out = []
    for i in range(0, len(sequences), chunk):
        part = sequences[i:i + chunk]
        width = max(len(s) for s in part)
        tokens = torch.zeros(len(part), width, dtype=torch.long)
        for j, s in enumerate(part):
            tokens[j, :len(s)] = s
        feats = feature_acts(model, sae, tokens)[..., features].float().cpu()
        out += [feats[j, :len(s)] for j, s in enumerate(part)]
    return out


def quantile_picks(values: torch.Tensor, locs: torch.Tensor, n_quantiles: int, per_quantile: int) -> list[dict]:
    """Examples from each activation quantile of a uniform sample of firings, highest first
    ("80-100%": the top fifth of its firings by activation)."""
    order = values.argsort(descending=True)
    values, locs = values[order], locs[order]
    groups = []
    for q in range(n_quantiles):
        lo, hi = q * len(values) // n_quantiles, (q + 1) * len(values) // n_quantiles
        if hi <= lo:
            continue
        idx = torch.linspace(lo, hi - 1, min(per_quantile, hi - lo)).round().long().unique()
        groups.append({"quantile": f"{100 - 100 * (q + 1) // n_quantiles}-{100 - 100 * q // n_quantiles}%",
                       "range": [values[hi - 1].item(), values[lo].item()], "locs": locs[idx].tolist()})
    return groups


@torch.no_grad()
def describe(model, sae, collector: FeatureCollector, corpus: Corpus, features: list[int], columns: list[int],
             tokenizer, *, before: int = 10, after: int = 4, n_quantiles: int = 5, per_quantile: int = 3,
             n_logits: int = 10) -> list[dict]:
    """Everything a dashboard shows for each of `features` (collector column `columns[i]`), except the
    ablation effect: top contexts and quantile examples with every token's activation, histogram,
    density and the logit table."""
    plans = []
    for col in columns:
        values, locs = collector.top.of(col)
        sample_v, sample_l = collector.sample.of(col)
        plans.append(({"value": values.tolist(), "locs": locs.tolist()},
                      quantile_picks(sample_v, sample_l, n_quantiles, per_quantile)))
    # each sequence a context is taken from, cut after the last token a context shows (a causal model's
    # activations before the cut do not depend on what follows it)
    ends: dict[int, int] = {}
    for top, groups in plans:
        for loc in top["locs"] + [x for g in groups for x in g["locs"]]:
            seq, pos = loc >> POS_BITS, loc & ((1 << POS_BITS) - 1)
            ends[seq] = max(ends.get(seq, 0), pos + after + 1)
    needed = sorted(ends)
    acts = dict(zip(needed, sequence_activations(model, sae, [corpus.sequences[s][:ends[s]] for s in needed],
                                                 features)))

    def context(loc: int, i: int) -> dict:
        window, seq, start = corpus.context(loc, before, after)
        a = acts[seq][start:start + len(window), i]
        return {"tokens": tokenizer.decode_tokens(window.tolist()), "ids": window.tolist(),
                "acts": [round(x, 4) for x in a.tolist()],
                "at": (loc & ((1 << POS_BITS) - 1)) - start, "value": round(a.max().item(), 4)}

    pages = []
    for i, (f, col, (top, groups)) in enumerate(zip(features, columns, plans)):
        logits = logit_effects(model, sae, f)
        page = {"feature": f, "density": collector.density()[col].item(), "count": int(collector.counts[col]),
                "n_tokens": collector.n_tokens, "max": top["value"][0] if top["value"] else 0.0,
                "hist_edges": HIST_EDGES.tolist(), "hist": collector.hist[col].tolist(),
                "top": [context(loc, i) for loc in top["locs"]],
                "quantiles": [{**{k: g[k] for k in ("quantile", "range")},
                               "examples": [context(loc, i) for loc in g["locs"]]} for g in groups],
                "logits": None}
        if logits is not None:
            hi, lo = logits.topk(n_logits), (-logits).topk(n_logits)
            page["logits"] = {"top": [[tokenizer.decode_tokens([t])[0], v] for v, t in zip(hi.values.tolist(),
                                                                                           hi.indices.tolist())],
                              "bottom": [[tokenizer.decode_tokens([t])[0], -v] for v, t in zip(lo.values.tolist(),
                                                                                               lo.indices.tolist())]}
        pages.append(page)
    return pages


@torch.no_grad()
def ablation_losses(model, sae, features: list[int], batches) -> dict[int, dict[str, float]]:
    """Per feature: mean change of the next-token loss when it is zeroed inside the spliced SAE (error
    term kept), over every scored token, and over the sequences where the loss changes at all."""
    from interp.data.batch import scored
    from interp.features.interventions import ablation_hook, hooked, token_losses

    sums = {f: [0.0, 0, 0.0, 0] for f in features}   # all: sum, count; affected sequences: sum, count
    for batch in batches:
        tokens, targets = model_inputs(batch), batch["targets"]
        keep = scored(targets).to(tokens.device)
        clean = token_losses(model(tokens), targets)
        for f in features:
            with hooked(model, sae, ablation_hook(sae, [f])):
                delta = (token_losses(model(tokens), targets) - clean) * keep
            hit = (delta != 0).any(-1)
            s = sums[f]
            s[0] += delta.sum().item()
            s[1] += int(keep.sum())
            s[2] += delta[hit].sum().item()
            s[3] += int(keep[hit].sum())
    return {f: {"loss_delta": s[0] / max(s[1], 1), "loss_delta_where_active": s[2] / max(s[3], 1)}
            for f, s in sums.items()}
