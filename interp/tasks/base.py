"""What every training task shares: the run config, the optimiser, the NaN guard.

A task is built from the full resolved run config (a plain dict) and saves it
as its hyperparameters, so a checkpoint alone rebuilds model, tokenizer and
everything else (`interp.runs.load_run`).
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from interp.errors import TrainingDiverged
from interp.models import build_model
from interp.subject import Subject
from interp.tasks.optim import build_optimizers


class ConfiguredTask(pl.LightningModule):
    """A LightningModule configured by the run config: base of model tasks and the SAE task."""

    #: What to try when the loss becomes NaN/inf (ends the TrainingDiverged message).
    diverged_fix = "lower optim.lr, set trainer.gradient_clip_val (e.g. 1.0) or add optim.warmup_steps."

    def __init__(self, config: dict):
        super().__init__()
        # logger=False: train() logs the flat resolved config to W&B itself.
        self.save_hyperparameters({"config": config}, logger=False)
        self.config = config

    def check_finite(self, loss: torch.Tensor, what: str = "loss") -> None:
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"{what} became {loss.item()} at step {self.global_step} (epoch {self.current_epoch}). "
                f"Nothing after the last good checkpoint was saved. Fix: {self.diverged_fix}")

    def configure_optimizers(self):
        return build_optimizers(self.parameters(), self.config["optim"], self.trainer.estimated_stepping_batches)

    def subject(self) -> Subject:
        """What analyses run at the end of training (or every N steps) look at."""
        raise NotImplementedError

    def outcome(self) -> dict:
        """What metrics.json should also say about how training went (e.g. parts that failed alone)."""
        return {}


class BaseTask(ConfiguredTask):
    """A task that trains the model described by config["model"]."""

    def __init__(self, config: dict):
        super().__init__(config)
        self.model = build_model(config["model"])

    def on_fit_start(self) -> None:
        # TransformerLens reads cfg.device when it creates tensors; keep it in sync with Lightning's placement.
        if hasattr(getattr(self.model, "cfg", None), "device"):
            self.model.cfg.device = self.device

    def subject(self) -> Subject:
        return Subject(self.model, self.trainer.datamodule)
