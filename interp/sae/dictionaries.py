"""Several dictionaries in one run, trained from one pass of the base model.

`sae.hook` (and `sae.target_hook`) may be a list or a wildcard (`blocks.*.hook_resid_post`): each hook it
names (each input/target pair, for transcoders) is one dictionary with the run's other settings. The
hooks every dictionary needs are harvested together into one row [h_1 | h_2 | ...] (a `Layout`), so one
forward pass per base batch feeds them all, from one cache or one stream; each dictionary trains on its
own columns of the same batch. A run with one hook is today's single-dictionary run, unchanged.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import itertools
from dataclasses import dataclass

from interp.errors import ConfigError
from interp.sae.sites import Sites, hook_layer

FOLDER = "saes"   # <run>/saes/<label>/: one SAELens folder per dictionary (a one-dictionary run keeps <run>/sae/)


def _names(value, setting: str) -> list[str]:
    """A hook setting as a list of names or patterns; a duplicate is an error."""
    names = [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
    if not names or any(not n for n in names):
        raise ConfigError(f"{setting} is empty. Fix: {setting}=<hook>, a list [<hook>,...] or a wildcard "
                          "such as blocks.*.hook_resid_post.")
    if dup := next((n for i, n in enumerate(names) if n in names[:i]), None):
        raise ConfigError(f"{setting} lists {dup} twice. Fix: name each hook once.")
    return names


def expand(value, model_hooks: list[str], setting: str = "sae.hook") -> list[str]:
    """The hooks a setting names, in the model's order: each wildcard (fnmatch) replaced by its matches."""
    out: list[str] = []
    for name in _names(value, setting):
        if any(c in name for c in "*?["):
            matches = [h for h in model_hooks if fnmatch.fnmatchcase(h, name)]
            if not matches:
                near = sorted({h.split(".")[-1] for h in model_hooks})[:12]
                raise ConfigError(f"{setting}={name} matches no hook of the model (hook names end in e.g. "
                                  f"{', '.join(near)}). Fix: correct the pattern; `python analyze.py run=<base run> "
                                  "hooks` lists the hooks.")
            out += matches
        else:
            out.append(name)
    if dup := next((n for i, n in enumerate(out) if n in out[:i]), None):
        raise ConfigError(f"{setting} names {dup} twice (a pattern and a name, or two patterns, overlap). "
                          "Fix: name each hook once.")
    return sorted(out, key=lambda h: model_hooks.index(h) if h in model_hooks else len(model_hooks))


def is_many(spec) -> bool:
    """Whether an `sae` spec may name several hooks (a list or a wildcard) rather than one (see also variants)."""
    return any(isinstance(v, (list, tuple)) or (isinstance(v, str) and any(c in v for c in "*?["))
               for v in (spec.hook, spec.target_hook))


def split(spec, model_hooks: list[str]) -> list:
    """One SAESpec per dictionary the run trains: hooks expanded, transcoders paired in order."""
    hooks = expand(spec.hook, model_hooks, "sae.hook")
    if spec.target_hook is None:
        return [dataclasses.replace(spec, hook=h, target_hook=None) for h in hooks]
    targets = expand(spec.target_hook, model_hooks, "sae.target_hook")
    if len(targets) != len(hooks):
        raise ConfigError(f"sae.hook names {len(hooks)} hooks ({', '.join(hooks)}) but sae.target_hook names "
                          f"{len(targets)} ({', '.join(targets)}); a transcoder needs one target per input. Fix: "
                          "give both the same number, e.g. sae.hook=blocks.*.ln2.hook_normalized "
                          "sae.target_hook=blocks.*.hook_mlp_out.")
    return [dataclasses.replace(spec, hook=h, target_hook=t) for h, t in zip(hooks, targets)]


def label(sites: Sites, variant: str = "") -> str:
    """A dictionary's name in its run (folder, metric keys): its hook (a transcoder's: the hook it writes),
    then its variant's settings (`-k8`) when the run varies them."""
    return (sites.target if sites.transcodes else sites.hook) + variant


# Settings a run may list to train one dictionary per value on the same activations (sae.k=[8,16,32,64]).
VARIED = ("k", "d_sae", "expansion", "l1_coefficient")


def variants(raw: dict) -> list[tuple[dict, str, dict]]:
    """(the `sae` config of one variant, its label suffix, its settings) for each combination of the listed
    VARIED settings; [(raw, "", {})] when none is a list."""
    listed = {k: list(v) for k, v in raw.items() if k in VARIED and isinstance(v, (list, tuple))}
    for key, values in listed.items():
        if not values:
            raise ConfigError(f"sae.{key}=[] lists no value. Fix: sae.{key}=<a value> or a list of them.")
        if dup := next((v for i, v in enumerate(values) if v in values[:i]), None):
            raise ConfigError(f"sae.{key} lists {dup} twice. Fix: list each value once.")
    out = []
    for combo in itertools.product(*listed.values()):
        chosen = dict(zip(listed, combo))
        suffix = "".join(f"-{k}{v}" for k, v in chosen.items())
        out.append(({**raw, **chosen}, suffix, {f"sae.{k}": v for k, v in chosen.items()}))
    return out


@dataclass(frozen=True)
class Layout:
    """The hooks harvested for a run's dictionaries, in the order of their columns in a row."""

    hooks: tuple[str, ...]
    widths: tuple[int, ...] = ()

    @classmethod
    def of(cls, all_sites: list[Sites]) -> Layout:
        # Each dictionary's own hooks stay adjacent (input, then target), so its columns are one slice.
        return cls(tuple(dict.fromkeys(h for s in all_sites for h in s.hooks)))

    def stop_layer(self) -> int | None:
        layers = [hook_layer(h) for h in self.hooks]
        return None if None in layers else max(layers) + 1

    def describe(self) -> str:
        return self.hooks[0] if len(self.hooks) == 1 else f"{len(self.hooks)} hooks ({self.hooks[0]}, ...)"

    def columns(self, sites: Sites) -> slice:
        """The columns of a row that hold `sites`' input (and target beside it)."""
        if len(self.widths) != len(self.hooks):
            raise ValueError("Layout.columns needs the hooks' widths (Layout(hooks, widths))")
        starts = [sum(self.widths[:i]) for i in range(len(self.hooks))]
        first = self.hooks.index(sites.hook)
        width = sum(self.widths[self.hooks.index(h)] for h in sites.hooks)
        if sites.transcodes and self.hooks.index(sites.target) != first + 1:   # another dictionary reads one of them
            raise ConfigError(f"the transcoder {sites.describe()} shares a hook with another dictionary of this run "
                              "in a way one harvest layout cannot hold. Fix: train them in separate runs.")
        return slice(starts[first], starts[first] + width)


def memory_bytes(d_in: int, d_sae: int, d_out: int, skip: bool, batch_size: int) -> int:
    """Training memory of one dictionary (float32): weights, their gradients and Adam's two moments, plus
    one batch of its input rows and its [batch, d_sae] pre-activations (the dense step's largest tensors)."""
    params = d_in * d_sae + d_sae + d_sae * d_out + d_out + (d_in * d_out if skip else 0)
    return 4 * (4 * params + batch_size * (d_in + d_out) + 2 * batch_size * d_sae)


def check_budget(needs: dict[str, int], budget_gb: float | None) -> str:
    """A line saying what the dictionaries need; ConfigError when that exceeds `budget_gb` (None: no limit)."""
    total = sum(needs.values())
    line = (f"{len(needs)} dictionar{'y' if len(needs) == 1 else 'ies'} need about {total / 2**30:.2f} GiB for "
            f"training (weights, gradients, Adam state, one batch)")
    if budget_gb is not None and total > budget_gb * 2**30:
        biggest = max(needs, key=needs.get)
        raise ConfigError(f"{line}, more than sae.memory_budget_gb={budget_gb}. Fix: train fewer dictionaries per "
                          f"run (fewer hooks), lower sae.expansion or sae.batch_size, or raise sae.memory_budget_gb "
                          f"(largest: {biggest}, {needs[biggest] / 2**30:.2f} GiB).")
    return line
