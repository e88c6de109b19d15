"""`synthetic`: SAELens's synthetic benchmark (SynthSAEBench, `sae_lens.synthetic`) as data for `task=sae`.

A SAELens `SyntheticModel` (interp.models.synthetic) turns a batch of sample ids into activations of known
ground-truth features; the SAE learns them at its one hook, `hook_hidden`. The data here is only those ids:
a split is a range of integers, and each batch's activations are drawn from a seed that its ids determine,
so every split, and every run with the same seed, sees the same activations.

The fields below are the synthetic model's (SAELens's `SyntheticModelConfig`, flattened) and the splits'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from interp.data.base import ArrayDataset, BaseDataConfig, BaseDataModule
from interp.errors import ConfigError

HOOK = "hook_hidden"   # where the activations are read (the one hook of the synthetic model)
# data.* fields that define the synthetic model (the rest size the splits): its config in the run
MODEL_FIELDS = ("num_features", "hidden_dim", "zipf_exponent", "max_firing_prob", "min_firing_prob", "hierarchy",
                "correlation_rank", "correlation_scale", "mean_magnitude", "std_magnitude", "bias",
                "orthogonalize_steps", "orthogonalize_lr", "model_seed", "sampler")
SAMPLERS = ("fast", "saelens")


@dataclass
class SyntheticConfig(BaseDataConfig):
    name: str = "synthetic"
    kind: str = "synthetic"
    num_features: int = 1024          # ground-truth features
    hidden_dim: int = 128             # width of the activations (the SAE's d_in)
    zipf_exponent: float = 1.0        # firing probabilities 1/rank^exponent, rescaled into [min, max]
    max_firing_prob: float = 0.3
    min_firing_prob: float = 0.01
    # A feature tree (SAELens HierarchyConfig fields: total_root_nodes, branching_factor, max_depth,
    # mutually_exclusive_portion, ...); null: independent features.
    hierarchy: Any = None
    correlation_rank: int = 0         # low-rank firing correlations (0: none)
    correlation_scale: float = 0.1
    # a firing feature's activation: relu(mean + std * N(0, 1)); each a number, or per feature by SAELens's
    # kinds, e.g. {name: linear, start: 5.0, end: 4.0}, {name: folded_normal, mean: 0.5, std: 0.5}
    mean_magnitude: Any = 1.0
    std_magnitude: Any = 0.0
    bias: float = 1.0                 # norm of the activations' constant offset (0: none)
    orthogonalize_steps: int = 0      # steps making the feature directions near-orthogonal (0: random unit vectors)
    orthogonalize_lr: float = 0.01
    model_seed: int = 42              # builds the synthetic model (directions, probabilities, tree)
    # How rows are drawn: "fast" (the same distribution as SAELens's sampler, ~8x faster: each feature's
    # firing rows as geometric gaps instead of one Bernoulli draw per row and feature; correlated firing
    # still uses SAELens's), or "saelens" (SyntheticModel.sample itself, row for row).
    sampler: str = "fast"
    num_train: int = 2_097_152        # rows per split
    num_val: int = 16_384
    num_test: int = 16_384
    eval_samples: int = 65_536        # rows SAELens's eval_sae_on_synthetic_data scores each validation on
    batch_size: int = 1024


class SyntheticDataModule(BaseDataModule):
    kind = "synthetic"

    def __init__(self, cfg: SyntheticConfig, seed: int):
        super().__init__(cfg, seed)
        check(cfg)
        self.summary.update(train_examples=cfg.num_train, val_examples=cfg.num_val, test_examples=cfg.num_test)

    def build(self):
        # disjoint id ranges: a batch's seed comes from its ids, so the splits never share activations
        starts = np.cumsum([0, self.cfg.num_train, self.cfg.num_val])
        sizes = (self.cfg.num_train, self.cfg.num_val, self.cfg.num_test)
        return tuple(ArrayDataset({"x": np.arange(s, s + n, dtype=np.int64)}) for s, n in zip(starts, sizes))


def check(cfg: SyntheticConfig) -> None:
    """What SAELens would refuse, or accept silently but wrongly (a tree bigger than the features: it
    would stop adding nodes without a word), as one ConfigError each."""
    if cfg.num_features < 1 or cfg.hidden_dim < 1:
        raise ConfigError(f"data.num_features={cfg.num_features} and data.hidden_dim={cfg.hidden_dim} must be >= 1.")
    if not 0 < cfg.min_firing_prob < cfg.max_firing_prob <= 1 or cfg.zipf_exponent <= 0:
        raise ConfigError(f"firing probabilities need 0 < data.min_firing_prob ({cfg.min_firing_prob}) < "
                          f"data.max_firing_prob ({cfg.max_firing_prob}) <= 1 and data.zipf_exponent > 0 "
                          f"({cfg.zipf_exponent}). Fix: e.g. data.min_firing_prob=0.01 data.max_firing_prob=0.3.")
    if cfg.sampler not in SAMPLERS:
        raise ConfigError(f"data.sampler={cfg.sampler!r} is not a sampler. Fix: data.sampler=fast (SAELens's "
                          "distribution, faster) or data.sampler=saelens (SAELens's own sampler).")
    if min(cfg.num_train, cfg.num_val, cfg.num_test, cfg.eval_samples) < 1 or cfg.num_train < cfg.batch_size:
        raise ConfigError("data.num_train/num_val/num_test/eval_samples must be >= 1 and num_train >= data.batch_size.")
    for name in ("mean_magnitude", "std_magnitude"):
        try:
            from interp.models.synthetic import magnitudes

            magnitudes(getattr(cfg, name))
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"data.{name}={getattr(cfg, name)!r}: {e}. Fix: a number, or e.g. "
                              "{name: linear, start: 5.0, end: 4.0} (kinds: constant, linear, exponential, "
                              "folded_normal).") from None
    if cfg.hierarchy:
        nodes = tree_size(cfg.hierarchy)
        if nodes > cfg.num_features:
            raise ConfigError(f"data.hierarchy makes a tree of {nodes} features but data.num_features="
                              f"{cfg.num_features}; SAELens would cut the tree short without a word. Fix: "
                              f"data.num_features>={nodes}, or fewer data.hierarchy.total_root_nodes / "
                              "branching_factor / max_depth.")


def tree_size(hierarchy: dict) -> int:
    """Features a full hierarchy uses: roots × (1 + b + b² + ... + b^(depth-1)), b the largest branching."""
    from sae_lens.synthetic import HierarchyConfig

    try:
        h = HierarchyConfig(**hierarchy)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"data.hierarchy: {e}. Fix: SAELens HierarchyConfig's fields, e.g. "
                          "data.hierarchy={total_root_nodes: 16, branching_factor: 4, max_depth: 2}.") from None
    b = max(h.branching_factor) if isinstance(h.branching_factor, (tuple, list)) else h.branching_factor
    return h.total_root_nodes * sum(b ** d for d in range(h.max_depth))


def model_config(data: dict) -> dict:
    """The synthetic model's config (model.* of an SAE run on this data)."""
    return {"arch": "synthetic", "kind": "synthetic", **{k: data[k] for k in MODEL_FIELDS if k in data}}


def true_l0(data: dict) -> float:
    """Features active per row, on average, before any tree or correlation: the sum of firing probabilities."""
    from sae_lens.synthetic import ZipfianFiringProbabilityConfig

    probs = ZipfianFiringProbabilityConfig(exponent=data["zipf_exponent"], max_prob=data["max_firing_prob"],
                                           min_prob=data["min_firing_prob"]).generate(data["num_features"], 0)
    return float(probs.sum())
