"""The local replacement model of one prompt (Ameisen et al. 2025, "Circuit Tracing"): every MLP
replaced by its transcoder plus an error term (the true MLP output minus the transcoder's), attention
patterns and normalisation scales frozen at the prompt's values. With the transcoders' feature
activations held fixed, what remains is linear from the sources (token embeddings, feature
activations, error terms) to every feature's pre-activation and every logit, and on the prompt it
reproduces the model's own outputs exactly.

A skip transcoder's linear path (`x @ W_skip.T`) is part of that linear map, as in circuit-tracer.
Positional embeddings and every bias (b_dec, b_enc, attention and LayerNorm biases) are constants: the
"bias" of each node, which is its value with every source set to zero.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from interp.errors import ConfigError
from interp.sae.sites import hook_layer, reconstruct, sites_of

_MLP_OUT = re.compile(r"blocks\.(\d+)\.hook_mlp_out$")


def transcoders_by_layer(model, dictionaries) -> list:
    """One transcoder per block of `model`, in block order, from a run's dictionaries: each reads a hook
    of its block and writes that block's `hook_mlp_out`. Anything else is a ConfigError naming what is
    missing."""
    cfg = model.cfg
    if getattr(cfg, "attn_only", False) or not any(h.endswith("hook_mlp_out") for h in model.hook_dict):
        raise ConfigError("an attribution graph replaces each MLP by its transcoder, but this model is "
                          "attention-only (no MLPs). Fix: use a run of transcoders on a transformer with MLPs, "
                          "e.g. python train.py experiment=lm_mix_transcoders.")
    by_layer: dict[int, object] = {}
    for sae in dictionaries:
        sites = sites_of(sae)
        m = _MLP_OUT.match(sites.target)
        if not sites.transcodes or m is None:
            raise ConfigError(f"the dictionary at {sites.describe()} is not a transcoder of an MLP (it must write "
                              "blocks.<L>.hook_mlp_out). Fix: an attribution graph needs one transcoder per "
                              "layer: python train.py experiment=lm_mix_transcoders.")
        layer = int(m.group(1))
        if hook_layer(sites.hook) != layer:
            raise ConfigError(f"the transcoder {sites.describe()} reads another block than it writes. Fix: one "
                              "transcoder per block, reading that block's MLP input (sae=transcoder sae.layer=L).")
        if layer in by_layer:
            raise ConfigError(f"two transcoders write {sites.target}. Fix: pick one per layer.")
        norm = getattr(sae.cfg, "normalize_activations", "none")
        if norm not in (None, "none"):
            raise ConfigError(f"the transcoder at {sites.target} normalises its activations at run time "
                              f"(normalize_activations={norm}), so its output is not linear in its features. "
                              "Fix: fold the normalisation into its weights (SAELens: "
                              "fold_activation_norm_scaling_factor) before building a graph.")
        by_layer[layer] = sae
    missing = [layer for layer in range(cfg.n_layers) if layer not in by_layer]
    if missing:
        raise ConfigError(f"an attribution graph needs a transcoder for every layer; this run has none for "
                          f"layer(s) {', '.join(map(str, missing))} of {cfg.n_layers}. Fix: train them in one "
                          "pass: python train.py experiment=lm_mix_transcoders (or sae=transcoder "
                          "'sae.hook=blocks.*.ln2.hook_normalized' 'sae.target_hook=blocks.*.hook_mlp_out').")
    return [by_layer[layer] for layer in range(cfg.n_layers)]


def pre_activations(sae, x: torch.Tensor) -> torch.Tensor:
    """A dictionary's encoder output before its activation function (SAELens's `hidden_pre`)."""
    return sae.process_sae_in(x) @ sae.W_enc + sae.b_enc


@dataclass
class Captured:
    """Tensors of one frozen forward pass on `n` copies of the prompt (the graph's autograd inputs)."""
    embed: torch.Tensor               # (n, pos, d_model): the token embeddings (a source)
    inputs: list[torch.Tensor]        # per layer (n, pos, d_in): what each transcoder reads
    mlp_out: list[torch.Tensor]       # per layer (n, pos, d_model): the replaced MLP outputs
    final: torch.Tensor               # (n, pos, d_model): the residual stream after the final norm


class LocalReplacement:
    """The model frozen on `tokens` (1, pos) with `transcoders` (one per block) in place of its MLPs."""

    def __init__(self, model, transcoders: list, tokens: torch.Tensor):
        self.model, self.transcoders = model, transcoders
        self.tokens = tokens
        self.sites = [sites_of(t) for t in transcoders]
        self.frozen_hooks = [h for h in model.hook_dict if h.endswith((".hook_pattern", "hook_scale"))]
        names = {"hook_embed", *self.frozen_hooks, *(h for s in self.sites for h in s.hooks)}
        with torch.no_grad():
            logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
            self.logits = logits[0].float()                        # (pos, d_vocab)
            self.frozen = {h: cache[h] for h in self.frozen_hooks}  # batch 1, expanded per run
            self.embed = cache["hook_embed"][0]                     # (pos, d_model)
            self.features, self.errors = [], []
            for tc, s in zip(transcoders, self.sites):
                x = cache[s.hook][0]
                feats = tc.encode(x)
                self.features.append(feats)                                   # (pos, d_sae)
                self.errors.append(cache[s.target][0] - reconstruct(tc, x, feats))   # (pos, d_model)

    @property
    def n_pos(self) -> int:
        return self.tokens.shape[1]

    def decoded(self, features: torch.Tensor, layer: int) -> torch.Tensor:
        """The transcoder's output without its skip path: features @ W_dec + b_dec."""
        return self.transcoders[layer].decode(features)

    def forward(self, n: int, embed: torch.Tensor | None = None, features: list | None = None,
                errors: list | None = None) -> Captured:
        """The frozen model on n copies of the prompt, features and errors held fixed (by default at the
        prompt's values; pass others to intervene, e.g. zeros for the bias). Differentiable in `embed` and
        through every linear path; run it under torch.no_grad() when only values are needed."""
        model = self.model
        embed = self.embed.expand(n, -1, -1) if embed is None else embed
        features = self.features if features is None else features
        errors = self.errors if errors is None else errors
        fixed = [self.decoded(f, layer) + e for layer, (f, e) in enumerate(zip(features, errors))]
        inputs: list = [None] * len(self.sites)
        mlp_out: list = [None] * len(self.sites)

        def frozen(act, hook):
            return self.frozen[hook.name].expand(n, *act.shape[1:])

        def read(act, hook, layer):
            inputs[layer] = act
            return act

        def replace(act, hook, layer):
            out = fixed[layer].expand(n, -1, -1)
            skip = getattr(self.transcoders[layer], "W_skip", None)
            if skip is not None:
                out = out + inputs[layer] @ skip.T
            mlp_out[layer] = out
            return out

        hooks = [("hook_embed", lambda act, hook: embed), *((h, frozen) for h in self.frozen_hooks)]
        for layer, s in enumerate(self.sites):
            hooks += [(s.hook, lambda a, hook, i=layer: read(a, hook, i)),
                      (s.target, lambda a, hook, i=layer: replace(a, hook, i))]
        with model.hooks(fwd_hooks=hooks):
            resid = model(self.tokens.expand(n, -1), stop_at_layer=model.cfg.n_layers)
            final = model.ln_final(resid) if getattr(model, "ln_final", None) is not None else resid
        return Captured(embed, inputs, mlp_out, final)

    def unembed(self, final: torch.Tensor) -> torch.Tensor:
        return final @ self.model.W_U + self.model.b_U

    @torch.no_grad()
    def intervene(self, values: dict[tuple[int, int, int], float], freeze_attention: bool = True) -> torch.Tensor:
        """Logits (pos, d_vocab) with features set to `values` ({(layer, pos, feature): value}, 0 to
        ablate). Every transcoder recomputes its features from its input, so an intervention reaches later
        layers through features as well as the residual stream; error terms stay at the prompt's values,
        so with no values this is the model's own output. Attention patterns are the prompt's when
        `freeze_attention`, else recomputed; normalisation scales are recomputed."""
        by_layer: dict[int, list] = {}
        for (layer, pos, feature), value in values.items():
            by_layer.setdefault(layer, []).append((pos, feature, value))

        def replace(act, hook, layer):
            tc, x = self.transcoders[layer], inputs[layer]
            feats = tc.encode(x)
            for pos, feature, value in by_layer.get(layer, ()):
                feats[:, pos, feature] = value
            return reconstruct(tc, x, feats) + self.errors[layer]

        inputs: dict[int, torch.Tensor] = {}
        hooks = []
        if freeze_attention:
            hooks += [(h, lambda act, hook: self.frozen[hook.name]) for h in self.frozen_hooks
                      if h.endswith("hook_pattern")]
        for layer, s in enumerate(self.sites):
            hooks += [(s.hook, lambda a, hook, i=layer: inputs.__setitem__(i, a)),
                      (s.target, lambda a, hook, i=layer: replace(a, hook, i))]
        return self.model.run_with_hooks(self.tokens, fwd_hooks=hooks)[0].float()
