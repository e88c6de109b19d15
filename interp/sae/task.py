"""The SAE LightningModule: a SAELens training SAE on a frozen base model's activations.

Training batches are activation rows [B, d_in] (from the cache or the stream
buffer). Each step calls the SAE's own `training_forward_pass` with SAELens's
coefficient warm-up and dead-feature mask, so every architecture trains
exactly as under SAELens's `SAETrainer`; Lightning adds the loop, devices,
checkpoints and loggers. Validation runs the base model on its own validation
data, so downstream metrics (CE or task MSE with the SAE spliced in) come for
free from the same batches.
"""

from __future__ import annotations

from pathlib import Path

import torch
from sae_lens.saes.sae import TrainStepInput

from interp.data.batch import is_lm_batch, model_inputs, padding_mask, scored
from interp.files import atomic_dir
from interp.models.hooks import to_device
from interp.sae import harvest, normalize
from interp.sae.figures import save_density_histogram
from interp.sae.metrics import (
    EvalAccumulator,
    FiringTracker,
    coefficient,
    lm_downstream,
    log10_density,
)
from interp.sae.sites import Sites, as_sites, reconstruct
from interp.sae.spec import build_training_sae, inference_sae, parse_spec, sites
from interp.subject import Subject
from interp.tasks.base import ConfiguredTask

SAE_DIR = "sae"   # <run>/sae/: the trained SAE in SAELens format


class SAETask(ConfiguredTask):
    diverged_fix = "lower optim.lr, or check the base activations for inf/NaN (python analyze.py run=<base run> hooks)."

    def __init__(self, config: dict, d_in: int, base_model=None):
        super().__init__(config)
        self.spec, saelens_kwargs = parse_spec(config["sae"])
        self.hook, self.sites = self.spec.hook, sites(self.spec)
        self.sae = build_training_sae(self.spec, d_in, self.hook, saelens_kwargs)
        self.tracker = FiringTracker(self.sae.cfg.d_sae, self.spec.dead_feature_window)
        self.scaler = normalize.ActivationScaler()   # sae.normalize_activations statistics (normalize.py)
        self.coefficients = {name: (c.value, c.warm_up_steps) if hasattr(c, "value") else (float(c), 0)
                             for name, c in self.sae.get_coefficients().items()}
        # Frozen and not a submodule: not in parameters() (the optimiser), nor in checkpoints.
        object.__setattr__(self, "base_model", base_model)
        self.eval_density: torch.Tensor | None = None

    def on_fit_start(self) -> None:
        self._place_base()
        kind = self.sae.cfg.normalize_activations
        if kind in normalize.ESTIMATED and not normalize.estimated(self.scaler):   # kept on resume
            self.scaler = normalize.estimate(kind, self.sae.cfg.d_in, self.trainer.datamodule.norm_batches(),
                                             self.spec.norm_estimate_batches)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["activation_scaler"] = normalize.state(self.scaler)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.scaler = normalize.from_state(checkpoint.get("activation_scaler", {}))

    def on_validation_start(self) -> None:
        self._place_base()

    def _place_base(self) -> None:
        if self.base_model is not None:
            to_device(self.base_model.requires_grad_(False).eval(), self.device)

    # --- training ---------------------------------------------------------------------------
    def current_coefficients(self) -> dict[str, float]:
        return {name: coefficient(value, warm, self.global_step) for name, (value, warm) in self.coefficients.items()}

    def training_step(self, batch: torch.Tensor, batch_idx: int):
        batch = self.scaler.scale(batch)   # identity unless normalize_activations is estimated
        coeffs = self.current_coefficients()
        out = self.sae.training_forward_pass(TrainStepInput(
            sae_in=batch, coefficients=coeffs, dead_neuron_mask=self.tracker.dead_mask(),
            n_training_steps=self.global_step, is_logging_step=False))
        self.check_finite(out.loss, "SAE loss")
        if getattr(out, "active_features", None) is not None:   # sparse TopK step: no pass over [B, d_sae]
            self.tracker.update_active(out.active_features, out.active_values, batch.shape[0])
        else:
            self.tracker.update(out.feature_acts)
        if self.global_step % self.trainer.log_every_n_steps == 0:   # the metrics cost passes over the batch
            self._log_train(out, coeffs)
        window = self.spec.feature_sampling_window
        if (self.global_step + 1) % window == 0:
            self.log("sparsity/mean_log10_feature_density", log10_density(self.tracker.density()).mean())
            self.tracker.reset_window()
        return out.loss

    @torch.no_grad()
    def _log_train(self, out, coeffs: dict[str, float]) -> None:
        x = out.sae_in.float()
        per_token = (out.sae_out.float() - x).pow(2).sum(-1)
        ev = 1 - per_token.mean() / (x - x.mean(0)).pow(2).sum(-1).mean()
        logs = {"train/loss": out.loss, "train/mse": per_token.mean(), "train/explained_variance": ev,
                "train/l0": self._l0(out),
                "train/dead_features": self.tracker.dead_mask().sum().float()}
        logs.update({f"train/{k}": v for k, v in out.losses.items()})
        logs.update({f"train/{k}_coefficient": v for k, v in coeffs.items()})
        if self.scaler.scaling_factor is not None:
            logs["train/norm_scaling_factor"] = self.scaler.scaling_factor
        self.log_dict(logs, prog_bar=False)

    @staticmethod
    def _l0(out) -> torch.Tensor:
        if getattr(out, "active_values", None) is not None:
            return (out.active_values != 0).sum() / out.sae_in.shape[0]
        return out.feature_acts.bool().float().sum(-1).to_dense().mean()

    def on_fit_end(self) -> None:
        if self.trainer.is_global_zero:
            self.save_sae(Path(self.trainer.default_root_dir) / SAE_DIR)

    def save_sae(self, path) -> None:
        """SAELens format (cfg.json + sae_weights.safetensors + sparsity.safetensors):
        `sae_lens.SAE.load_from_disk(path)` loads it."""
        from sae_lens.constants import SPARSITY_FILENAME
        from safetensors.torch import save_file

        meta = self.sae.cfg.metadata
        base = self.config.get("base", {})
        meta.model_name = base.get("run") or base.get("pretrained", {}).get("name")
        if "pretrained" in base:   # how SAELens should load the model for this SAE's activations
            meta.model_from_pretrained_kwargs = dict(base["pretrained"].get("processing") or {})
        meta.context_size = self.config["data"].get("seq_len")
        meta.sae_lens_training_version = __import__("sae_lens").__version__
        if int(self.tracker.n_samples) > 0:
            meta.l0 = float(self.tracker.density().sum())
            meta.num_dead_features = int(self.tracker.dead_mask().sum())
        # The saved form: normalisation statistics folded in (it takes raw activations), a transcoder as
        # SAELens's transcoder. Written as a whole folder renamed into place, so `path` is never half an SAE.
        with atomic_dir(path) as tmp:
            self.saved_form().save_model(tmp)
            save_file({"sparsity": log10_density(self.tracker.density()).cpu()}, str(tmp / SPARSITY_FILENAME))

    # --- evaluation -------------------------------------------------------------------------
    def subject(self) -> Subject:
        """Analyses look at the saved SAE on the frozen base model and the base run's data."""
        return Subject(self.base_model, self.trainer.datamodule.base_dm, self.saved_form())

    def saved_form(self):
        """The SAE as `<run>/sae/` holds it, in memory: SAELens's inference form with the
        normalisation statistics folded in, so it reads raw activations. Every metric and
        analysis of the run uses this, not the training form."""
        return normalize.fold(inference_sae(self.sae), self.scaler)

    def on_validation_epoch_start(self) -> None:
        self.acc = EvalAccumulator(self.sae.cfg.d_sae, self.spec.dense_threshold)
        self.eval_sae = self.saved_form()

    @torch.no_grad()
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        evaluate_batch(self.eval_sae, self.base_model, self.sites, batch, self.acc)

    def on_validation_epoch_end(self) -> None:
        results = self.acc.compute()
        results["dead_features"] = int(self.tracker.dead_mask().sum())
        self.eval_density = self.acc.density()
        self.log_dict({f"val/{k}": float(v) for k, v in results.items()}, prog_bar=False)
        self.log("val/loss", results["mse"], prog_bar=True)   # for ModelCheckpoint(monitor=val/loss)
        if not self.trainer.sanity_checking:
            self._log_density_histogram()

    def _log_density_histogram(self) -> None:
        """PNG in <run>/figures/sae/ (rewritten each evaluation) and a W&B histogram."""
        from pytorch_lightning.loggers import WandbLogger

        if self.trainer.is_global_zero:
            save_density_histogram(
                self.eval_density, Path(self.trainer.default_root_dir) / "figures" / "sae" / "feature_density.png",
                f"{self.spec.architecture} {self.sites.kind} at {self.sites.describe()}, step {self.global_step}")
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                hist = wandb.Histogram(log10_density(self.eval_density).numpy())
                logger.experiment.log({"val/log10_feature_density": hist, "trainer/global_step": self.global_step})

    test_step = validation_step
    on_test_epoch_start = on_validation_epoch_start

    def on_test_epoch_end(self) -> None:
        self.on_validation_epoch_end()


@torch.no_grad()
def evaluate_batch(sae, base_model, where: str | Sites, batch: dict, acc: EvalAccumulator) -> None:
    """Add one base-data batch to `acc`: reconstruction metrics of the target and, with the
    dictionary's output spliced into the base model at the target hook (a transcoder in place of
    its MLP), the downstream loss (CE for LMs, MSE for regression)."""
    device = next(base_model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    inputs = model_inputs(batch)
    sites = as_sites(where)
    hook = sites.target
    # The clean run also gives the dictionary's input and target
    clean, cache = base_model.run_with_cache(inputs, names_filter=list(sites.hooks))
    acts = harvest.rows(cache[sites.hook], batch, sites.hook)
    feats = sae.encode(acts)
    recon = reconstruct(sae, acts, feats)
    acc.add(harvest.rows(cache[hook], batch, hook), recon, feats)

    mask = padding_mask(batch)

    def splice(act, hook=None):   # same prefix as the clean run, so the same activations: reuse recon
        if act.ndim == 2 or mask is None:
            return recon.to(act.dtype).view(act.shape)
        out = act.clone()
        out[mask] = recon.to(act.dtype)
        return out

    def zero(act, hook=None):
        return torch.zeros_like(act)

    with_sae = base_model.run_with_hooks(inputs, fwd_hooks=[(hook, splice)])
    ablated = base_model.run_with_hooks(inputs, fwd_hooks=[(hook, zero)])
    if is_lm_batch(batch):        # language model: CE (and KL) over positions that have a target
        keep = scored(batch["targets"])
        if mask is not None:
            keep &= mask
        for name, per_token in lm_downstream(clean, with_sae, ablated, batch["targets"], keep).items():
            acc.add_downstream(name, per_token)
    else:                         # regression: the task's MSE
        for name, pred in (("without_sae", clean), ("with_sae", with_sae), ("with_ablation", ablated)):
            acc.add_downstream(f"task_mse_{name}", (pred.float() - batch["y"].float()).pow(2))
