"""Run one analysis at the end of training and log what it returns."""

from pathlib import Path

import pytorch_lightning as pl

from interp.analyses import ANALYSES
from interp.errors import ConfigError


class AnalysisCallback(pl.Callback):
    def __init__(self, analysis: str, **options):
        if analysis not in ANALYSES:
            raise ConfigError(f"unknown analysis {analysis!r}; valid: {sorted(ANALYSES)}.")
        self.analysis, self.options = analysis, options
        self.results: dict[str, float] = {}

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        out_dir = Path(trainer.default_root_dir) / "figures" / self.analysis
        was_training = pl_module.training
        pl_module.eval()
        raw = ANALYSES[self.analysis](pl_module.model, trainer.datamodule, out_dir, **self.options)
        pl_module.train(was_training)
        self.results = {f"analysis/{self.analysis}/{k}": float(v) for k, v in raw.items()}
        for logger in trainer.loggers:
            logger.log_metrics(self.results, step=trainer.global_step)
