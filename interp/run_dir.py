"""The files of a run directory: where they are, how they are written and read.

    <run>/.hydra/             Hydra's config.yaml, overrides.yaml, hydra.yaml
    <run>/config.yaml         the fully resolved config, plus `run_meta` (overrides, group choices, resumed_from)
    <run>/checkpoints/        last.ckpt and best.ckpt (the checkpoint's hyperparameters hold the same config)
    <run>/metrics.json        final metrics, flat keys like "val/loss", and "status": done | failed (+ "error")
    <run>/figures/<analysis>/ PNG, HTML and results.json of each analysis
    <run>/sae/                SAE runs: the SAE in SAELens format
    <run>/wandb/              the W&B run (offline by default)

This module only knows files; rebuilding models from them is `interp.runs.load_run`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from interp.errors import RunDirError
from interp.files import atomic_write_text

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
RESULTS_FILE = "results.json"
FIGURES_DIR = "figures"
STATUS_DONE, STATUS_FAILED = "done", "failed"   # metrics.json's "status"


def run_config(cfg: DictConfig, run_meta: dict) -> dict:
    """The run config as a plain dict: the resolved config plus `run_meta` (what reproduces the run:
    overrides, group choices, resumed_from). Checkpoints and config.yaml hold the same."""
    config = OmegaConf.to_container(cfg, resolve=True)
    config["run_meta"] = run_meta
    return config


def write_config(run_dir: str | Path, cfg: DictConfig, run_meta: dict) -> None:
    atomic_write_text(Path(run_dir) / CONFIG_FILE, OmegaConf.to_yaml(OmegaConf.create(run_config(cfg, run_meta))))


def json_safe(metrics: dict) -> dict:
    """Sorted, plain numbers; JSON has no NaN/inf, so those become readable strings."""
    clean = {k: (float(v) if not isinstance(v, (int, str)) else v) for k, v in sorted(metrics.items())}
    return {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in clean.items()}


def write_json(path: str | Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def write_metrics(run_dir: str | Path, metrics: dict) -> None:
    write_json(Path(run_dir) / METRICS_FILE, json_safe(metrics))


def flat_config(config: dict, prefix: str = "") -> dict:
    """A nested config as {"dotted.key": leaf value}, as Hydra overrides name its fields."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def is_wandb_logger(spec) -> bool:
    """Whether one entry of a config's `logger` group is W&B's (conf/logger/wandb.yaml)."""
    return bool(spec) and str(spec.get("_target_", "")).endswith("WandbLogger")


def wandb_logger(config) -> dict | None:
    """The run config's WandbLogger settings, or None when the run does not log to W&B."""
    return next((spec for spec in (config.get("logger") or {}).values() if is_wandb_logger(spec)), None)


def read_metrics(run_dir: str | Path) -> dict:
    """metrics.json: numbers, plus "status" ("done" or "failed") and, for a failed run, "error" and
    "error_type" (strings; so are non-finite numbers, see json_safe)."""
    return json.loads((Path(run_dir) / METRICS_FILE).read_text())


def failure(error: BaseException) -> dict:
    """How a run that raised ended: status, a one-line reason, the exception's class."""
    return {"status": STATUS_FAILED, "error": " ".join(str(error).split()) or type(error).__name__,
            "error_type": type(error).__name__}


def write_failure(run_dir: str | Path, error: BaseException, known: dict) -> None:
    """metrics.json of a run that raised: `failure(error)` and the metrics known by then."""
    write_metrics(run_dir, {**known, **failure(error)})


def is_done(run_dir: str | Path) -> bool:
    """The run finished (a failed run has a metrics.json too)."""
    path = Path(run_dir) / METRICS_FILE
    return path.is_file() and read_metrics(run_dir).get("status", STATUS_DONE) == STATUS_DONE


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


def read_checkpoint(ckpt: str | Path) -> tuple[dict, dict]:
    """(resolved run config, raw checkpoint) of an interp checkpoint; RunDirError otherwise."""
    import torch

    ckpt = Path(ckpt)
    if not ckpt.is_file():
        raise RunDirError(f"checkpoint {str(ckpt)!r} does not exist. Fix: point to <run>/checkpoints/last.ckpt.")
    try:
        raw = torch.load(ckpt, map_location="cpu", weights_only=False)
    except Exception as e:
        raise RunDirError(f"{ckpt} is not a readable PyTorch checkpoint ({type(e).__name__}: {e}).") from e
    config = (raw.get("hyper_parameters") or {}).get("config") if isinstance(raw, dict) else None
    if not isinstance(config, dict) or "model" not in config:
        raise RunDirError(f"{ckpt} was not written by interp's train.py (no run config inside it).")
    return config, raw


@dataclass
class LoadedRun:
    """A run rebuilt from its directory (see `interp.runs.load_run`)."""

    run_dir: Path
    config: dict
    model: object                # a transformer_lens HookedRootModule, eval mode
    tokenizer: object | None     # interp.data.tokenizer.Tokenizer for language models
    checkpoint: Path
    global_step: int
    sae: object | None = None    # SAE runs: the trained sae_lens.SAE (from <run>/sae/)
    saes: dict | None = None     # runs of several dictionaries: {label: sae_lens.SAE} (from <run>/saes/<label>/)
    data_seed: int | None = None  # the seed of the data splits the model saw (None: config["seed"])

    @property
    def dictionaries(self) -> tuple:
        """Every dictionary of the run: its several (`saes`), or its one (`sae`), or none."""
        return tuple(self.saes.values()) if self.saes else (self.sae,) if self.sae is not None else ()

    @property
    def model_name(self) -> str:
        model = self.config["model"]
        return self.config.get("run_meta", {}).get("choices", {}).get("model", model.get("name", model["arch"]))
