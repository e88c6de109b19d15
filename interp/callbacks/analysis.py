"""Run one analysis during and/or at the end of training and log what it returns."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger

from interp.analyses.runner import check_name, run_analysis, split_options
from interp.callbacks.wandb_figures import media
from interp.run_dir import FIGURES_DIR

log = logging.getLogger(__name__)


class AnalysisCallback(pl.Callback):
    """`every_n_steps`: also run every N optimizer steps (e.g. to watch induction heads form);
    figures are then overwritten, metrics logged against the step. `tasks`: run only in runs of these
    tasks (the default experiment's analyses study the language model, not an SAE trained on it).
    Options are checked here, when the run starts, not after training."""

    def __init__(self, analysis: str, every_n_steps: int | None = None, tasks: list[str] | None = None, **options):
        check_name(analysis)
        split_options([analysis], options)   # raises on an unknown option
        self.analysis, self.every_n_steps, self.options = analysis, every_n_steps, options
        self.tasks = list(tasks) if tasks else None
        self.results: dict[str, float] = {}
        self._ran_at_step: int | None = None
        self._skipped = False   # NotApplicable once means never: don't retry every N steps

    def setup(self, trainer: pl.Trainer, pl_module, stage: str) -> None:
        task = getattr(pl_module, "config", {}).get("task", {}).get("name")
        if self.tasks and task not in self.tasks and not self._skipped:
            self._skipped = True
            if trainer.is_global_zero:
                print(f"skipped {self.analysis}: it runs in task={'/'.join(self.tasks)} runs; this is task={task}",
                      flush=True)

    def _run(self, trainer: pl.Trainer, pl_module) -> None:
        # The last step can be both an every_n_steps step and the end of training: run once.
        if not trainer.is_global_zero or self._skipped or self._ran_at_step == trainer.global_step:
            return
        self._ran_at_step = trainer.global_step
        out_dir = Path(trainer.default_root_dir) / FIGURES_DIR / self.analysis
        was_training = pl_module.training
        pl_module.eval()
        started = time.time() - 1   # file times may be rounded down to the second
        try:
            raw = run_analysis(self.analysis, pl_module.subject(), out_dir, self.options)
        finally:
            pl_module.train(was_training)
        if raw is None:
            self._skipped = True
            return
        self.results = {f"analysis/{self.analysis}/{k}": float(v) for k, v in raw.items()}
        for logger in trainer.loggers:
            logger.log_metrics(self.results, step=trainer.global_step)
            if isinstance(logger, WandbLogger):
                logger.log_metrics(media(self.analysis, out_dir, raw, since=started), step=trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self._run(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module) -> None:
        self._run(trainer, pl_module)
