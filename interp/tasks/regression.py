"""Regression task: MSE on a scalar target, plus rounded-integer accuracy."""

import torch
import torch.nn.functional as F

from interp.tasks.base import BaseTask


class RegressionTask(BaseTask):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch, batch_idx):
        loss = F.mse_loss(self(batch["x"]), batch["y"])
        self.check_finite(loss)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _evaluate(self, batch, stage: str):
        pred = self(batch["x"])
        mse = F.mse_loss(pred, batch["y"])
        acc = (pred.round() == batch["y"]).float().mean()
        n = batch["y"].numel()
        self.log(f"{stage}/loss", mse, batch_size=n, sync_dist=True, prog_bar=stage == "val")
        self.log(f"{stage}/mse", mse, batch_size=n, sync_dist=True)
        self.log(f"{stage}/acc", acc, batch_size=n, sync_dist=True)

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")
