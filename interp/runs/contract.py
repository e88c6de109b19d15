"""Reading and writing the files of a run directory."""

import json
import math
import os
import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from interp.errors import RunDirError

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"


def _atomic_write(path: Path, text: str) -> None:
    # A crash mid-write must never leave a truncated file that looks valid.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_config(run_dir: str | Path, cfg: DictConfig) -> None:
    _atomic_write(Path(run_dir) / CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))


def write_metrics(run_dir: str | Path, metrics: dict) -> None:
    clean = {k: (float(v) if not isinstance(v, (int, str)) else v) for k, v in sorted(metrics.items())}
    # JSON has no NaN/inf; keep them readable as strings rather than writing invalid JSON.
    clean = {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in clean.items()}
    _atomic_write(Path(run_dir) / METRICS_FILE, json.dumps(clean, indent=2) + "\n")


def read_metrics(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / METRICS_FILE).read_text())


def require_run_dir(run_dir: str | Path) -> Path:
    """Return the run dir as a Path, or raise a RunDirError saying what is missing."""
    path = Path(run_dir)
    if not path.is_dir():
        raise RunDirError(f"run directory {str(path)!r} does not exist. Fix: pass a directory under outputs/ or multirun/.")
    if not (path / "checkpoints").is_dir() or not (path / CONFIG_FILE).is_file():
        raise RunDirError(
            f"{str(path)!r} is not an interp run directory: it has no {CONFIG_FILE} and checkpoints/. "
            "Fix: pass the directory train.py printed at the end of a run (e.g. outputs/<date>/<time>_<name>)."
        )
    return path


def checkpoint_path(run_dir: str | Path, which: str = "last") -> Path:
    path = require_run_dir(run_dir) / "checkpoints" / f"{which}.ckpt"
    if not path.is_file():
        found = sorted(p.name for p in path.parent.glob("*.ckpt"))
        raise RunDirError(f"{path} does not exist (checkpoints there: {found or 'none'}). "
                          "Fix: choose one of those, or let the run train past its first validation.")
    return path
