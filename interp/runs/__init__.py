"""Run directories read back: `load_run`, and offline W&B records (`wandb_offline`).

The files of a run directory and how they are written are in interp.run_dir;
the names are re-exported here for convenience.
"""

from interp.run_dir import (
    CONFIG_FILE,
    METRICS_FILE,
    LoadedRun,
    checkpoint_path,
    read_checkpoint,
    read_metrics,
    require_run_dir,
    write_config,
    write_metrics,
)
from interp.runs.load import load_run

__all__ = [
    "CONFIG_FILE", "METRICS_FILE", "LoadedRun", "checkpoint_path", "load_run", "read_checkpoint",
    "read_metrics", "require_run_dir", "write_config", "write_metrics",
]
