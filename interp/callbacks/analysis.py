"""Run one analysis during and/or at the end of training and log what it returns."""

import logging
from pathlib import Path

import pytorch_lightning as pl

from interp.analyses import ANALYSES
from interp.analyses.inputs import NotApplicable
from interp.errors import ConfigError

log = logging.getLogger(__name__)


class AnalysisCallback(pl.Callback):
    """`every_n_steps`: also run every N optimizer steps (e.g. to watch induction heads form);
    figures are then overwritten, metrics logged against the step."""

    def __init__(self, analysis: str, every_n_steps: int | None = None, **options):
        if analysis not in ANALYSES:
            raise ConfigError(f"unknown analysis {analysis!r}; valid: {sorted(ANALYSES)}.")
        self.analysis, self.every_n_steps, self.options = analysis, every_n_steps, options
        self.results: dict[str, float] = {}
        self._ran_at_step: int | None = None
        self._skipped = False   # NotApplicable once means never: don't retry every N steps

    def _run(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The last step can be both an every_n_steps step and the end of training: run once.
        if not trainer.is_global_zero or self._skipped or self._ran_at_step == trainer.global_step:
            return
        self._ran_at_step = trainer.global_step
        out_dir = Path(trainer.default_root_dir) / "figures" / self.analysis
        was_training = pl_module.training
        pl_module.eval()
        try:
            raw = ANALYSES[self.analysis](pl_module.model, trainer.datamodule, out_dir, **self.options)
        except NotApplicable as e:
            self._skipped = True
            log.warning(f"skipped {self.analysis}: {e}")
            return
        finally:
            pl_module.train(was_training)
        self.results = {f"analysis/{self.analysis}/{k}": float(v) for k, v in raw.items()}
        for logger in trainer.loggers:
            logger.log_metrics(self.results, step=trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self._run(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._run(trainer, pl_module)
