"""Training curves of a run, read from its own logs: the offline W&B run, else Lightning's CSV log.

`curves(run_dir)` -> {metric: [(global step, value), ...]}, the same shape from either source, so a
comparison overlays runs logged either way (logger=wandb, logger=csv, or both).
"""

from __future__ import annotations

import csv
from pathlib import Path

from interp.runs.wandb_offline import history, offline_runs

CSV_LOG = "csv/metrics.csv"   # conf/logger/csv.yaml: save_dir=<run>, name=csv, version=""
# Bookkeeping columns, not curves.
_SKIP = ("_", "epoch", "step", "trainer/global_step")


def _is_curve(key: str) -> bool:
    return not (key.startswith(("_", "final/")) or key in _SKIP)


def _add(curves: dict, step, row: dict) -> None:
    for key, value in row.items():   # numbers only: W&B rows also hold media and tables
        if _is_curve(key) and isinstance(value, (int, float)) and not isinstance(value, bool):
            curves.setdefault(key, []).append((int(step), float(value)))


def wandb_curves(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    curves: dict = {}
    for wandb_file in offline_runs(run_dir, training_only=True):   # a resumed run may hold several
        for row in history(wandb_file):
            _add(curves, row.get("trainer/global_step", row.get("_step", 0)), row)
    return curves


def csv_curves(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    curves: dict = {}
    path = Path(run_dir) / CSV_LOG
    if path.is_file():
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                _add(curves, row.get("step") or 0, {k: float(v) for k, v in row.items() if v not in ("", None)})
    return curves


def curves(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every logged metric's curve, sorted by step; {} when the run logged nothing readable."""
    found = wandb_curves(run_dir) or csv_curves(run_dir)
    return {k: sorted(v) for k, v in sorted(found.items())}
