"""SAELens's `SyntheticModel` (SynthSAEBench) as a base model: sample ids in, activations of known
ground-truth features out.

    hook_hidden   [B, hidden_dim]   sum of the firing features' directions × magnitudes, plus the bias

Built from data.* (interp.data.synthetic): the same config and `model_seed` give the same feature
directions, firing probabilities and tree, so a run rebuilds its base from its config alone. A batch's
activations are drawn with a seed its ids determine (the global RNG is left as it was), so a batch always
gives the same rows, on any run.
"""

from __future__ import annotations

import torch
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from interp.models import synthetic_sampler

_MIX = 2654435761   # Knuth's multiplicative hash: a batch's seed is the sum of its ids' hashes


def magnitudes(value):
    """A magnitude setting: a number (every feature alike), or SAELens's per-feature kinds by name, e.g.
    {name: linear, start: 5.0, end: 4.0} or {name: folded_normal, mean: 0.5, std: 0.5}."""
    from sae_lens.synthetic import get_magnitude_class

    if not isinstance(value, dict):
        return float(value)
    fields = dict(value)
    return get_magnitude_class(fields.pop("name"))(**fields)


def saelens_config(num_features: int, hidden_dim: int, zipf_exponent: float = 1.0, max_firing_prob: float = 0.3,
                   min_firing_prob: float = 0.01, hierarchy: dict | None = None, correlation_rank: int = 0,
                   correlation_scale: float = 0.1, mean_magnitude=1.0, std_magnitude=0.0, bias: float = 1.0,
                   orthogonalize_steps: int = 0, orthogonalize_lr: float = 0.01, model_seed: int = 42):
    """SAELens's SyntheticModelConfig from our flat fields."""
    from sae_lens.synthetic import (HierarchyConfig, LowRankCorrelationConfig, OrthogonalizationConfig,
                                    SyntheticModelConfig, ZipfianFiringProbabilityConfig)

    return SyntheticModelConfig(
        num_features=num_features, hidden_dim=hidden_dim,
        firing_probability=ZipfianFiringProbabilityConfig(exponent=zipf_exponent, max_prob=max_firing_prob,
                                                          min_prob=min_firing_prob),
        hierarchy=HierarchyConfig(**hierarchy) if hierarchy else None,
        orthogonalization=(OrthogonalizationConfig(num_steps=orthogonalize_steps, lr=orthogonalize_lr)
                           if orthogonalize_steps else None),
        correlation=LowRankCorrelationConfig(rank=correlation_rank, correlation_scale=correlation_scale,
                                             seed=model_seed) if correlation_rank else None,
        mean_firing_magnitudes=magnitudes(mean_magnitude), std_firing_magnitudes=magnitudes(std_magnitude),
        bias=bias if bias else False, seed=model_seed)


class SyntheticActivations(HookedRootModule):
    def __init__(self, sampler: str = "saelens", **fields):
        """`sampler`: "fast" (interp.models.synthetic_sampler: the same distribution, drawn ~8x faster; for
        independent firing, with or without a tree) or "saelens" (SyntheticModel.sample, also what a run
        recorded before the choice existed used)."""
        from sae_lens.synthetic import SyntheticModel

        super().__init__()
        if sampler not in ("fast", "saelens"):
            raise ValueError(f"sampler={sampler!r}: 'fast' or 'saelens'")
        # not a submodule: it stays on the CPU where its sampler lives (rows are moved to the ids' device),
        # and its tensors stay out of state_dict (the config rebuilds them)
        object.__setattr__(self, "synthetic", SyntheticModel(saelens_config(**fields)))
        # correlated firing has no fast path: SAELens's own sampler draws it
        self.fast = sampler == "fast" and synthetic_sampler.supported(self.synthetic.activation_generator)
        # no weights of its own; an empty parameter says which device the model is on, as others' do
        self.placement = torch.nn.Parameter(torch.zeros(0), requires_grad=False)
        self.hook_hidden = HookPoint()
        self.setup()

    @property
    def feature_dict(self):
        return self.synthetic.feature_dict

    @property
    def activation_generator(self):
        return self.synthetic.activation_generator

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B] (int) -> activations [B, hidden_dim], the same for the same ids."""
        seed = int(((ids.long().cpu() + 1) * _MIX).sum()) % (1 << 63)
        if self.fast:
            acts = synthetic_sampler.sample(self.synthetic, len(ids), torch.Generator().manual_seed(seed))
            return self.hook_hidden(acts.to(ids.device))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            acts = self.synthetic.sample(len(ids))
        return self.hook_hidden(acts.to(ids.device))
