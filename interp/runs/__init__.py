"""Run directories read back: `load_run`, and offline W&B records (`wandb_offline`).

The files of a run directory and how they are written are in interp.run_dir;
the names are re-exported here for convenience (`load_run` on first use: it imports torch).
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


def __getattr__(name: str):
    # load_run pulls in torch, the models and SAELens; readers of run files (wandb_offline, history,
    # `analyze.py compare`) should not pay for that.
    if name == "load_run":
        from interp.runs.load import load_run

        return load_run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CONFIG_FILE", "METRICS_FILE", "LoadedRun", "checkpoint_path", "load_run", "read_checkpoint",
    "read_metrics", "require_run_dir", "write_config", "write_metrics",
]
