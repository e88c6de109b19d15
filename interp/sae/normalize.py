"""`sae.normalize_activations`, as SAELens applies it.

- `none`.
- `layer_norm`, `constant_norm_rescale`: the SAE itself normalises each input
  and undoes it on the output (SAELens's run-time functions); nothing to do here.
- `expected_average_only_in`, `covariance_whitening`: statistics of the
  activations, estimated once before training (SAELens's `ActivationScaler`,
  over `sae.norm_estimate_batches` training batches), applied to every training
  batch, kept in checkpoints, and folded into the weights of every SAE we
  evaluate or save (`fold_activation_norm_scaling_factor` /
  `fold_activation_whitening`). The saved SAE therefore takes raw activations
  and says `normalize_activations: none`, as one trained by SAELens's trainer.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from sae_lens.training.activation_scaler import ActivationScaler, ActivationWhitening

ESTIMATED = ("expected_average_only_in", "covariance_whitening")
RUN_TIME = ("layer_norm", "constant_norm_rescale")
KINDS = ("none", *RUN_TIME, *ESTIMATED)


def estimate(kind: str, d_in: int, batches: Iterator[torch.Tensor], n_batches: int) -> ActivationScaler:
    scaler = ActivationScaler()
    if kind == "expected_average_only_in":
        scaler.estimate_scaling_factor(d_in, batches, n_batches)
    elif kind == "covariance_whitening":
        scaler.estimate_whitening(d_in, batches, n_batches)
    return scaler


def fold(sae, scaler: ActivationScaler):
    """Fold the estimated statistics into `sae` (in place): it then takes raw activations."""
    if scaler.scaling_factor is not None:
        sae.fold_activation_norm_scaling_factor(scaler.scaling_factor)
    if scaler.whitening is not None:
        w = scaler.whitening
        sae.fold_activation_whitening(mean=w.mean, whitening_matrix=w.matrix, unwhitening_matrix=w.inverse_matrix)
    return sae


def state(scaler: ActivationScaler) -> dict:
    """For a checkpoint: the weights were trained against these statistics, so a resumed run keeps them."""
    w = scaler.whitening
    return {"scaling_factor": scaler.scaling_factor,
            "whitening": None if w is None else {"mean": w.mean, "matrix": w.matrix, "inverse_matrix": w.inverse_matrix}}


def from_state(saved: dict) -> ActivationScaler:
    w = saved.get("whitening")
    return ActivationScaler(scaling_factor=saved.get("scaling_factor"),
                            whitening=None if w is None else ActivationWhitening(**w))


def estimated(scaler: ActivationScaler) -> bool:
    return scaler.scaling_factor is not None or scaler.whitening is not None
