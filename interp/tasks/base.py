"""What every training task shares: the model, the optimiser, the NaN guard.

A task is built from the full resolved run config (a plain dict) and saves it
as its hyperparameters, so a checkpoint alone rebuilds model, tokenizer and
everything else (`interp.runs.load_run`).
"""

import math

import pytorch_lightning as pl
import torch

from interp.errors import ConfigError, TrainingDiverged
from interp.models import build_model


class BaseTask(pl.LightningModule):
    def __init__(self, config: dict):
        super().__init__()
        # logger=False: train() logs the flat resolved config to W&B itself.
        self.save_hyperparameters({"config": config}, logger=False)
        self.config = config
        self.model = build_model(config["model"])

    def check_finite(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"loss became {loss.item()} at step {self.global_step} (epoch {self.current_epoch}). "
                "Nothing after the last good checkpoint was saved. Fix: lower optim.lr, set "
                "trainer.gradient_clip_val (e.g. 1.0) or add optim.warmup_steps."
            )

    def on_fit_start(self) -> None:
        # TransformerLens reads cfg.device when it creates tensors; keep it in sync with Lightning's placement.
        if hasattr(getattr(self.model, "cfg", None), "device"):
            self.model.cfg.device = self.device

    def configure_optimizers(self):
        o = dict(self.config["optim"])
        name = o.pop("name")
        warmup = o.pop("warmup_steps", 0)
        schedule = o.pop("schedule", "constant")
        min_lr_ratio = o.pop("min_lr_ratio", 0.0)
        opt_cls = getattr(torch.optim, name, None)
        if opt_cls is None or not isinstance(opt_cls, type):
            raise ConfigError(f"optim.name={name!r} is not a torch.optim optimizer (e.g. AdamW, Adam, SGD).")
        if "betas" in o:
            o["betas"] = tuple(o["betas"])
        try:
            optimizer = opt_cls(self.parameters(), **o)
        except TypeError as e:
            raise ConfigError(f"optim: {e}. Remove or rename that field for {name}.") from e
        total = max(1, int(self.trainer.estimated_stepping_batches))
        if schedule not in ("constant", "cosine"):
            raise ConfigError(f"optim.schedule={schedule!r}; choose constant or cosine.")

        def lr_lambda(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if schedule == "constant":
                return 1.0
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
