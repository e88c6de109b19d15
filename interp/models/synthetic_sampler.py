"""A faster exact sampler for SAELens's synthetic activations (independent firing, with or without a tree).

SAELens draws a [batch, num_features] Bernoulli matrix (`torch.bernoulli`) to decide which features fire:
one random number per (row, feature) although only ~L0 of num_features fire per row, and that draw is most
of a synthetic training step's time on a CPU. Here each feature's firing rows are drawn as a Bernoulli
process read along the batch: the gaps between a feature's successive firing rows are i.i.d. geometric with
its firing probability, so drawing the gaps gives exactly the same distribution (every (row, feature) fires
independently with probability p_feature) from about L0 random numbers per row instead of num_features.

Magnitudes (relu(mean + std · N(0, 1)) per firing entry), the hierarchy modifier (SAELens's own, on the
dense matrix) and the feature directions plus bias are SAELens's. Low-rank correlated firing has no such
shortcut (every entry needs its Gaussian); `sample` refuses it and the caller uses SAELens's sampler.
"""

from __future__ import annotations

import numpy as np
import torch

_SPARE_SD = 4.0   # gaps drawn per feature: mean + 4 sd (+4) of its firing count; rarer overruns are completed exactly


def supported(generator) -> bool:
    """Whether `sample` can draw for this SAELens ActivationGenerator (independent firing)."""
    return generator.correlation_matrix is None and generator.low_rank_correlation is None


class _Plan:
    """What `firing` needs for n rows that depends only on the probabilities: computed once per batch size."""

    def __init__(self, p: torch.Tensor, n: int):
        self.n, self.p = n, p.double()
        sd = (n * self.p * (1 - self.p)).sqrt()
        self.draws = torch.where(self.p > 0, (n * self.p + _SPARE_SD * sd + 4).ceil(), torch.zeros_like(self.p)).long()
        self.feature = torch.repeat_interleave(torch.arange(len(p)), self.draws)
        self.inv_log = 1 / torch.log1p(-self.p[self.feature])      # p = 1: -0.0, every gap 1
        ends = self.draws.cumsum(0)
        self.has = self.draws > 0
        self.last = ends[self.has] - 1                               # each drawing feature's last gap
        self.starts = ends - self.draws                              # each feature's first gap


_plans: dict = {}


def firing(p: torch.Tensor, n: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, features), ordered by feature, where each of n rows fires feature f independently with
    probability p[f]."""
    key = (p.data_ptr(), len(p), n)
    plan = _plans.get(key)
    if plan is None or not torch.equal(plan.p, p.double()):
        plan = _plans[key] = _Plan(p, n)
    u = torch.rand(len(plan.feature), dtype=torch.float64, generator=rng)
    # geometric gap on {1, 2, ...} by inversion: P(gap > g) = (1 - p)^g
    gaps = (torch.log1p(-u) * plan.inv_log).floor() + 1
    position = gaps.cumsum(0)
    before = position[plan.starts - 1]           # the running sum before each feature's first gap ...
    before[plan.starts == 0] = 0
    position = position - torch.repeat_interleave(before, plan.draws) - 1      # ... so each feature counts alone
    keep = position < n
    rows, feature = position[keep].long(), plan.feature[keep]
    last = torch.full((len(p),), float(n), dtype=torch.float64)
    last[plan.has] = position[plan.last]
    short = (last < n - 1).nonzero().flatten()         # ran out of gaps before the last row: complete them
    if len(short):
        extra_rows, extra_features = [rows], [feature]
        for f in short.tolist():
            start = int(last[f]) + 1
            fired = (torch.rand(n - start, dtype=torch.float64, generator=rng) < plan.p[f]).nonzero().flatten() + start
            extra_rows.append(fired)
            extra_features.append(torch.full_like(fired, f))
        rows, feature = torch.cat(extra_rows), torch.cat(extra_features)
    return rows, feature


@torch.no_grad()
def sample(synthetic, batch_size: int, rng: torch.Generator) -> torch.Tensor:
    """[batch_size, hidden_dim] activations of a SAELens SyntheticModel, drawn from its own distribution."""
    gen, fd = synthetic.activation_generator, synthetic.feature_dict
    if not supported(gen):
        raise ValueError("correlated firing has no fast sampler; use the SyntheticModel's own sample()")
    rows, features = firing(gen.firing_probabilities, batch_size, rng)
    values = gen.mean_firing_magnitudes[features]
    std = gen.std_firing_magnitudes[features]
    if bool((std != 0).any()):
        values = values + torch.randn(len(values), dtype=values.dtype, generator=rng) * std
    values = values.relu()
    if gen.modify_activations is not None:     # SAELens's tree modifier works on the dense matrix
        acts = torch.zeros(batch_size, gen.num_features, dtype=values.dtype)
        acts[rows, features] = values
        return gen.modify_activations(acts, gen).relu() @ fd.feature_vectors + fd.bias
    # each row's sum of its firing features' directions × magnitudes, without the mostly-zero dense matrix;
    # rows grouped by a stable radix sort (numpy's, for 16-bit keys), much faster than a comparison sort
    keys = rows.numpy().astype(np.int16 if batch_size <= np.iinfo(np.int16).max else np.int32)
    order = torch.from_numpy(np.argsort(keys, kind="stable"))
    offsets = torch.zeros(batch_size, dtype=torch.long)
    offsets[1:] = torch.bincount(rows, minlength=batch_size).cumsum(0)[:-1]
    hidden = torch.nn.functional.embedding_bag(features[order], fd.feature_vectors, offsets, mode="sum",
                                               per_sample_weights=values[order])
    return hidden + fd.bias
