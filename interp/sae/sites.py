"""What a dictionary reads and what it writes: the one type every SAE-aware module asks.

An SAE reads a hook and reconstructs the same hook; a transcoder reads one hook (an MLP's input,
`blocks.L.ln2.hook_normalized`) and predicts another (the MLP's output, `blocks.L.hook_mlp_out`).
Training rows, caches and metrics hold the input and, for a transcoder, the target beside it
([n, d_in + d_out]); feature activations are read at the input, interventions act at the target.
A saved dictionary records both in SAELens's metadata (`hook_name`, `hook_name_out`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from interp.errors import ConfigError

_BLOCK = re.compile(r"blocks\.(\d+)\.")
_EMBEDDING_HOOKS = ("hook_embed", "hook_pos_embed", "hook_tokens")


def hook_layer(hook: str) -> int | None:
    """The transformer block a hook belongs to: -1 for the embeddings, None for other hooks."""
    if hook in _EMBEDDING_HOOKS:
        return -1
    m = _BLOCK.match(hook)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class Sites:
    hook: str            # where the dictionary reads (and, for an SAE, what it reconstructs)
    target: str          # what it reconstructs: the same hook for an SAE

    @property
    def transcodes(self) -> bool:
        return self.target != self.hook

    @property
    def hooks(self) -> tuple[str, ...]:
        return (self.hook, self.target) if self.transcodes else (self.hook,)

    @property
    def kind(self) -> str:
        return "transcoder" if self.transcodes else "SAE"

    def stop_layer(self) -> int | None:
        """The first block a transformer need not run to produce every hook (None: run them all)."""
        layers = [hook_layer(h) for h in self.hooks]
        return None if None in layers else max(layers) + 1

    def describe(self) -> str:
        return f"{self.hook} -> {self.target}" if self.transcodes else self.hook


def as_sites(where):
    """A hook name is an SAE's one site; Sites (or the Layout of several dictionaries) pass through."""
    return Sites(where, where) if isinstance(where, str) else where


def sites_of(sae) -> Sites:
    """The sites a SAELens SAE or transcoder records (cfg.json metadata)."""
    meta = sae.cfg.metadata
    hook = meta.hook_name
    if not hook:
        raise ConfigError("the SAE does not record its hook (cfg.json metadata.hook_name). Fix: sae.hook=<hook name>.")
    return Sites(hook, getattr(meta, "hook_name_out", None) or hook)


def hook_of(sae) -> str:
    """Where a dictionary reads: its features are activations of this hook."""
    return sites_of(sae).hook


def reconstruct(sae, x: torch.Tensor, feature_acts: torch.Tensor) -> torch.Tensor:
    """The dictionary's output for input `x` with features `feature_acts`: decode, plus a skip
    transcoder's linear path `x @ W_skip.T` (SAELens's SkipTranscoder.forward)."""
    out = sae.decode(feature_acts)
    skip = getattr(sae, "W_skip", None)
    return out if skip is None else out + x.to(skip.dtype) @ skip.T
