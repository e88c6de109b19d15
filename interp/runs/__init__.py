"""The run-directory contract (see DESIGN.md, "Runs").

    <run>/.hydra/             Hydra's config.yaml, overrides.yaml, hydra.yaml
    <run>/config.yaml         the fully resolved config
    <run>/checkpoints/        last.ckpt and best.ckpt
    <run>/metrics.json        final metrics, flat keys like "val/loss"
    <run>/figures/<analysis>/ PNG and HTML
    <run>/wandb/              the W&B run (offline by default)
"""

from interp.runs.contract import (
    CONFIG_FILE,
    METRICS_FILE,
    checkpoint_path,
    read_metrics,
    require_run_dir,
    write_config,
    write_metrics,
)
from interp.runs.load import LoadedRun, load_checkpoint_config, load_run

__all__ = [
    "CONFIG_FILE", "METRICS_FILE", "LoadedRun", "checkpoint_path", "load_checkpoint_config",
    "load_run", "read_metrics", "require_run_dir", "write_config", "write_metrics",
]
