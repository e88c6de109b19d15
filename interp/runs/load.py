"""Rebuild a trained run from its checkpoint alone: no sizes typed by hand."""

from __future__ import annotations

from pathlib import Path

from interp.registry import task_kind
from interp.run_dir import LoadedRun, checkpoint_path, read_checkpoint


def load_run(run_dir: str | Path, which: str = "last", device: str = "cpu") -> LoadedRun:
    """Model (eval mode, on `device`), config and tokenizer of a run directory; for SAE runs also
    the SAE (`run.sae`) on its base model (`run.model`). The run's task kind does the rebuilding."""
    ckpt = checkpoint_path(run_dir, which)
    config, raw = read_checkpoint(ckpt)
    return task_kind(config["task"]["name"]).load(Path(run_dir), config, raw, ckpt, device)
