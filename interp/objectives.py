"""Scalar objectives for hyperparameter search, derived from a run's final metrics.

`objective/ce_recovered_at_l0` (SAEs; set `objective.target_l0`): CE-loss recovered minus
max(0, ln(L0 / target_l0)). SAEs are compared on the L0 vs CE-recovered frontier, and a search
should find the best reconstruction at the sparsity the user wants: below the target only CE
recovered counts; above it, every e-fold of extra L0 costs a full 1.0 of CE recovered (the whole
range of the score), so denser SAEs cannot win by trading sparsity for reconstruction, while
the penalty stays smooth for the sampler.
"""

from __future__ import annotations

import math


def ce_recovered_at_l0(ce_recovered: float, l0: float, target_l0: float) -> float:
    return ce_recovered - (max(0.0, math.log(l0 / target_l0)) if l0 > 0 else 0.0)


def derived_metrics(cfg, metrics: dict) -> dict:
    target = (cfg.get("objective") or {}).get("target_l0")
    if target and {"val/ce_loss_score", "val/l0"} <= set(metrics):
        return {"objective/ce_recovered_at_l0": ce_recovered_at_l0(metrics["val/ce_loss_score"], metrics["val/l0"], target)}
    return {}
