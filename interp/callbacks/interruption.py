"""A run stopped by SIGTERM (a cluster's pre-emption or time limit, `kill`) or Ctrl-C keeps its progress.

Lightning turns SIGTERM into `SIGTERMException` at the next batch and Ctrl-C into `sys.exit(1)`, both
after calling `on_exception`. Here, on either, last.ckpt is saved at the step the run stopped, so
`python train.py ckpt_path=<run>/checkpoints/last.ckpt` resumes it; train() then records the
interruption in metrics.json and W&B (interp.training) and exits 143 (SIGTERM) or 130 (Ctrl-C).
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

# The shell's exit status of a process ended by the signal: 128 + its number.
EXIT_CODE = {"SIGTERM": 128 + 15, "Ctrl-C": 128 + 2}


class SaveOnInterrupt(pl.Callback):
    def __init__(self):
        self.signal: str | None = None    # "SIGTERM" or "Ctrl-C" once the run was stopped
        self.saved: Path | None = None    # the checkpoint written then
        self.step = 0

    def on_exception(self, trainer: pl.Trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            self.signal = "SIGTERM"
        elif isinstance(exception, KeyboardInterrupt):
            self.signal = "Ctrl-C"
        else:
            return
        self.step = trainer.global_step
        ckpt = trainer.checkpoint_callback
        if ckpt is not None and ckpt.dirpath and trainer.global_step > 0:
            self.saved = Path(ckpt.dirpath) / "last.ckpt"
            trainer.save_checkpoint(self.saved)

    def reason(self) -> str:
        """One line for metrics.json, W&B and the terminal: what stopped the run and how to go on."""
        if self.saved is None:
            return (f"stopped by {self.signal} at step {self.step}, before anything was saved. "
                    "Fix: run the same command again.")
        return (f"stopped by {self.signal} at step {self.step}; {self.saved} holds that step. "
                f"Fix: resume with python train.py ckpt_path={self.saved}")
