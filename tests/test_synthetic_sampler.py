"""The fast synthetic sampler draws from SAELens's distribution: checked against the Bernoulli model it
replaces (per-feature rates, per-row counts, neighbouring rows independent) and against SAELens's own
sampler (the moments of the activations it produces), all with fixed seeds."""

import pytest
import torch

from interp.models import synthetic_sampler
from interp.models.synthetic import SyntheticActivations

SMALL = dict(num_features=256, hidden_dim=32, zipf_exponent=0.5, max_firing_prob=0.4, min_firing_prob=0.005,
             bias=0.5)


def rates_z(p: torch.Tensor, rows: int, draws: int, rng) -> tuple[torch.Tensor, torch.Tensor]:
    """z-score of each feature's firing count over `draws` batches, and the per-row firing counts."""
    count, per_row = torch.zeros(len(p)), []
    for _ in range(draws):
        r, f = synthetic_sampler.firing(p, rows, rng)
        assert len(torch.unique(r * len(p) + f)) == len(r)          # no (row, feature) twice
        assert int(r.min()) >= 0 and int(r.max()) < rows
        count += torch.bincount(f, minlength=len(p))
        per_row.append(torch.bincount(r, minlength=rows))
    n = rows * draws
    return (count / n - p) / (p * (1 - p) / n).sqrt(), torch.cat(per_row).double()


@pytest.mark.parametrize("spare", [synthetic_sampler._SPARE_SD, -3.0])   # -3: most features run short
def test_each_row_fires_each_feature_independently_with_its_probability(spare, monkeypatch):
    monkeypatch.setattr(synthetic_sampler, "_SPARE_SD", spare)
    synthetic_sampler._plans.clear()
    p = torch.cat([torch.linspace(0.002, 0.5, 255), torch.tensor([1.0])])
    z, per_row = rates_z(p, 512, 200, torch.Generator().manual_seed(0))
    assert z[:-1].abs().max() < 5 and abs(float(z[:-1].mean())) < 0.2 and 0.85 < float(z[:-1].std()) < 1.15
    assert z[-1] == 0 or torch.isnan(z[-1])                        # p = 1 fires on every row
    # rows: Poisson-binomial counts (features independent within a row, rows alike)
    mean, var = float(p.sum()), float((p * (1 - p)).sum())
    assert abs(per_row.mean().item() - mean) < 0.05 and abs(per_row.var().item() / var - 1) < 0.05
    synthetic_sampler._plans.clear()


def test_a_feature_fires_on_neighbouring_rows_independently():
    p = torch.full((64,), 0.3)
    rng, both, n = torch.Generator().manual_seed(1), 0, 0
    for _ in range(100):
        r, f = synthetic_sampler.firing(p, 1024, rng)
        fired = torch.zeros(64, 1024, dtype=torch.bool)
        fired[f, r] = True
        both += int((fired[:, 1:] & fired[:, :-1]).sum())
        n += 64 * 1023
    assert abs(both / n - 0.09) < 0.003          # P(fire at r and r+1) = p², not more or less


@pytest.mark.parametrize("fields", [
    SMALL,
    {**SMALL, "std_magnitude": 0.5, "mean_magnitude": {"name": "linear", "start": 2.0, "end": 1.0}},
    {**SMALL, "hierarchy": {"total_root_nodes": 8, "branching_factor": 3, "max_depth": 2}},
])
def test_the_fast_rows_have_the_moments_of_saelens_own(fields):
    fast, theirs = SyntheticActivations(sampler="fast", **fields), SyntheticActivations(sampler="saelens", **fields)
    assert fast.fast and not theirs.fast
    ids = torch.arange(4096)
    a = torch.cat([fast(ids + i * 4096) for i in range(25)])
    b = torch.cat([theirs(ids + i * 4096) for i in range(25)])
    se = (a.var(0) / len(a) + b.var(0) / len(b)).sqrt()
    assert ((a.mean(0) - b.mean(0)) / se).abs().max() < 5           # the same mean, feature by feature
    assert ((a.std(0) / b.std(0)) - 1).abs().max() < 0.03           # and spread
    ca, cb = torch.cov(a.T), torch.cov(b.T)
    assert (ca - cb).abs().max() < 0.05 * cb.abs().max()            # and covariance between dimensions


def test_the_fast_sampler_repeats_for_the_same_ids_and_correlated_firing_uses_saelens():
    model = SyntheticActivations(sampler="fast", **SMALL)
    ids = torch.arange(100, 612)
    assert torch.equal(model(ids), model(ids)) and not torch.equal(model(ids), model(ids + 1))
    correlated = SyntheticActivations(sampler="fast", correlation_rank=4, **SMALL)
    assert not correlated.fast and torch.equal(correlated(ids), correlated(ids))
    with pytest.raises(ValueError, match="correlated firing"):
        synthetic_sampler.sample(correlated.synthetic, 8, torch.Generator())
