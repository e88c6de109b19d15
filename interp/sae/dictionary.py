"""One dictionary being trained: its SAELens training SAE, firing tracker, normalisation statistics and
loss coefficients, and which columns of a training row it reads. The SAE task holds one per hook
(interp.sae.dictionaries); each steps on its own columns of the shared batch and fails alone.
"""

from __future__ import annotations

import torch
from sae_lens.saes.sae import TrainStepInput
from torch import nn

from interp.sae import normalize
from interp.sae.dictionaries import label
from interp.sae.metrics import FiringTracker, coefficient
from interp.sae.spec import SAESpec, build_training_sae, dead_window_steps, inference_sae, learning_rate, sites


class Dictionary(nn.Module):
    def __init__(self, spec: SAESpec, saelens: dict, d_in: int, columns: slice = slice(None), name: str | None = None,
                 seed: int | None = None):
        super().__init__()
        self.spec, self.sites = spec, sites(spec)
        self.label, self.columns = name or label(self.sites), columns
        with torch.random.fork_rng(devices=[]):   # its initial weights depend on the seed alone, not on what was
            if seed is not None:                  # built before it: the same as in a run of this dictionary alone
                torch.manual_seed(seed)
            self.sae = build_training_sae(spec, d_in, spec.hook, saelens)
        self.tracker = FiringTracker(self.sae.cfg.d_sae, dead_window_steps(spec))
        self.scaler = normalize.ActivationScaler()   # sae.normalize_activations statistics (normalize.py)
        self.coefficients = {name: (c.value, c.warm_up_steps) if hasattr(c, "value") else (float(c), 0)
                             for name, c in self.sae.get_coefficients().items()}
        self.failed: str | None = None   # why it stopped training (a non-finite loss), if it did

    def learning_rate(self, optim_lr: float | None, steps: int) -> float:
        return learning_rate(self.spec, self.sae.cfg.d_sae, optim_lr, steps)

    @torch.no_grad()
    def init_b_dec(self, mean: torch.Tensor) -> None:
        """sae.b_dec_init=mean: the decoder bias at `mean`, the training rows' mean (raw, as the batch holds them:
        scaled here, which commutes with the mean as every normalisation is affine), the target's half for a
        transcoder. Where b_dec is not subtracted from the input (apply_b_dec_to_input false, transcoders), the
        encoder bias takes -mean(input) @ W_enc instead, so the pre-activations start centred either way."""
        mean = self.scaler.scale(mean[None].to(self.sae.b_dec.dtype))[0]
        d_in = self.sae.cfg.d_in
        x_mean, y_mean = (mean[:d_in], mean[d_in:]) if self.sites.transcodes else (mean, mean)
        self.sae.b_dec.copy_(y_mean)
        if not self.sae.cfg.apply_b_dec_to_input:
            self.sae.b_enc.sub_(x_mean @ self.sae.W_enc)

    def current_coefficients(self, step: int) -> dict[str, float]:
        return {name: coefficient(value, warm, step) for name, (value, warm) in self.coefficients.items()}

    def rows(self, batch: torch.Tensor) -> torch.Tensor:
        """Its columns of a training batch, scaled by its statistics (identity unless estimated)."""
        return self.scaler.scale(batch[:, self.columns])

    def step(self, batch: torch.Tensor, step: int):
        """SAELens's training forward pass on its columns of `batch`; the firing tracker updated."""
        out = self.sae.training_forward_pass(TrainStepInput(
            sae_in=self.rows(batch), coefficients=self.current_coefficients(step),
            dead_neuron_mask=self.tracker.dead_mask(), n_training_steps=step, is_logging_step=False))
        if torch.isfinite(out.loss):
            if getattr(out, "active_features", None) is not None:   # sparse TopK step: no pass over [B, d_sae]
                self.tracker.update_active(out.active_features, out.active_values, out.sae_in.shape[0])
            else:
                self.tracker.update(out.feature_acts)
        return out

    @torch.no_grad()
    def train_metrics(self, out, step: int) -> dict[str, torch.Tensor | float]:
        x = out.sae_in.float()
        per_token = (out.sae_out.float() - x).pow(2).sum(-1)
        ev = 1 - per_token.mean() / (x - x.mean(0)).pow(2).sum(-1).mean()
        if getattr(out, "active_values", None) is not None:
            l0 = (out.active_values != 0).sum() / out.sae_in.shape[0]
        else:
            l0 = out.feature_acts.bool().float().sum(-1).to_dense().mean()
        logs = {"train/loss": out.loss, "train/mse": per_token.mean(), "train/explained_variance": ev,
                "train/l0": l0, "train/dead_features": self.tracker.dead_mask().sum().float()}
        logs.update({f"train/{k}": v for k, v in out.losses.items()})
        logs.update({f"train/{k}_coefficient": v for k, v in self.current_coefficients(step).items()})
        if self.scaler.scaling_factor is not None:
            logs["train/norm_scaling_factor"] = self.scaler.scaling_factor
        return logs

    def fail(self, why: str) -> None:
        """Stop training it (its parameters leave the optimiser's updates); the others go on."""
        self.failed = why
        self.sae.requires_grad_(False)
        for p in self.sae.parameters():
            p.grad = None

    def saved_form(self):
        """The SAE as its folder holds it, in memory: SAELens's inference form with the normalisation
        statistics folded in, so it reads raw activations. Every metric and analysis uses this."""
        return normalize.fold(inference_sae(self.sae), self.scaler)
